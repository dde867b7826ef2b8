//! Per-frame metadata (Linux: struct page, and struct folio for its head).
//!
//! One [`Page`] per physical frame, in an array indexed by frame number and
//! carved out of memory at boot (see [`super::frame::init`]). Every field is an
//! atomic: GUP-fast takes references without any lock, KSM and the fault paths
//! read counts that other CPUs change.
//!
//! Counting rules (the ones the race protocol depends on):
//! * `refcount` lives on the folio head. It is 0 for a free frame and for a
//!   frame the kernel uses raw (page tables, stacks, heap). A folio from
//!   [`alloc_folio`] starts at 1 (the allocating [`PageRef`]). Every page-table
//!   entry that maps a folio holds one reference: a pte mapping a subpage
//!   counts one, a pmd mapping a whole 2 MiB folio counts one.
//! * `mapcount` is per page (subpage): how many ptes map it. A pmd mapping of
//!   a 2 MiB folio is counted in the head's `entire_mapcount` instead
//!   (Linux's _mapcount starts at -1; ours starts at 0, so a count is a count).
//! * Pins (FOLL_PIN): on a small folio a pin adds [`PIN_BIAS`] (1024) to
//!   `refcount`, as Linux's GUP_PIN_COUNTING_BIAS; on a large folio it adds 1
//!   to `refcount` and 1 to the head's `pincount`. So "may be pinned" is
//!   `refcount >= 1024` (small) or `pincount > 0` (large), exactly
//!   folio_maybe_dma_pinned(), false positives included.
//! * The testbed's exact pin count ([`Page::dma_pins`]), outside the
//!   protocol: the free path reads it to catch a pinned frame being freed
//!   (the "uaf" oracle of controls.md), the DMA device to refuse an unpinned
//!   frame. No protocol decision reads it. A large folio's `pincount` is
//!   exact already (Linux's too), so it is that; a small folio keeps it in
//!   the upper half of the word whose lower half is the refcount
//!   (`counts`), so that a pin or an unpin changes both with the one atomic
//!   Linux spends on the bias (a separate counter cost two more atomics per
//!   4 KiB pin+unpin, about 8 ns each under TCG).
//!
//! A folio whose refcount drops to zero is checked (no mappings, no pins, not
//! locked; otherwise an invariant error or a uaf is recorded and logged),
//! poisoned and returned to the buddy allocator.

use core::fmt;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
use x86_64::PhysAddr;

use super::{PAGE_SIZE, frame};
use crate::stamps::{self, Step};
use crate::sync::{ThreadLock, ThreadLockGuard};

/// What a FOLL_PIN adds to a small folio's refcount (Linux GUP_PIN_COUNTING_BIAS).
pub const PIN_BIAS: i32 = 1024;
/// The byte freed folios are filled with (Linux's slab POISON_FREE).
pub const POISON_BYTE: u8 = 0x6b;

/// The reference count in a head's `counts` word (its lower 32 bits).
#[inline(always)]
fn refs_of(counts: u64) -> i32 {
    counts as u32 as i32
}

/// A small folio's exact pin count in its `counts` word (the upper 32 bits).
#[inline(always)]
fn pins_of(counts: u64) -> i32 {
    (counts >> 32) as u32 as i32
}

/// What adding `refs` references and `pins` exact pins (either may be
/// negative) adds to a `counts` word, wrapping.
#[inline(always)]
const fn counts_delta(refs: i32, pins: i32) -> u64 {
    ((pins as i64) << 32).wrapping_add(refs as i64) as u64
}

bitflags::bitflags! {
    /// Page flags (Linux PG_* and page types).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PageFlags: u32 {
        /// Anonymous memory (PageAnon).
        const ANON = 1 << 0;
        /// Mapped by exactly one process, which may write it without copying
        /// (PageAnonExclusive): set on a fresh anonymous page, cleared when
        /// fork or KSM shares it. Per page (subpage), not per folio.
        const ANON_EXCLUSIVE = 1 << 1;
        /// A KSM page (PageKsm): shared, read-only, content-identified.
        const KSM = 1 << 2;
        /// In the swap cache. Never set here (no swap), but counted where
        /// Linux counts it, so the checks read as Linux's.
        const SWAPCACHE = 1 << 3;
        /// Head of a large (compound) folio.
        const HEAD = 1 << 4;
        /// Tail page of a large folio; `head` says which.
        const TAIL = 1 << 5;
        /// The page lock (PG_locked) is held.
        const LOCKED = 1 << 6;
        /// Written since it was last cleaned (PG_dirty).
        const DIRTY = 1 << 7;
        /// Used as a page table (PageTable).
        const PAGETABLE = 1 << 8;
        /// Never given to the allocator (below 1 MiB, firmware, kernel image).
        const RESERVED = 1 << 9;
        /// The flags that belong to the whole folio, as in Linux (folio
        /// flags on the head, page types of the folio): anon, KSM, swap
        /// cache, locked, dirty. They are kept on the head and read through
        /// any of its pages; ANON_EXCLUSIVE stays per page, as Linux keeps
        /// PG_anon_exclusive. Before, a tail page of a THP did not look
        /// anonymous, so a read-only pin of it skipped the unshare.
        const FOLIO = Self::ANON.bits() | Self::KSM.bits() | Self::SWAPCACHE.bits()
            | Self::LOCKED.bits() | Self::DIRTY.bits();
    }
}

/// Metadata of one physical frame.
pub struct Page {
    flags: AtomicU32,
    /// Head only: the references (see module docs) in the lower 32 bits, an
    /// `i32`; a small folio's exact pin count in the upper 32 bits (see
    /// [`refs_of`] and [`pins_of`]).
    counts: AtomicU64,
    /// Ptes mapping this page.
    mapcount: AtomicI32,
    /// Head of a large folio only: pmd mappings of the whole folio.
    entire_mapcount: AtomicI32,
    /// Head of a large folio only: FOLL_PIN pins (Linux _pincount).
    pincount: AtomicI32,
    /// Head: the folio's order; tail: unused.
    order: AtomicU32,
    /// Tail: frame number of the head.
    head: AtomicU64,
    /// Page tables only: the split page-table lock (Linux ptdesc->ptl).
    ptl: ThreadLock<()>,
}

impl Page {
    const fn new() -> Page {
        Page {
            flags: AtomicU32::new(0),
            counts: AtomicU64::new(0),
            mapcount: AtomicI32::new(0),
            entire_mapcount: AtomicI32::new(0),
            pincount: AtomicI32::new(0),
            order: AtomicU32::new(0),
            head: AtomicU64::new(0),
            ptl: ThreadLock::new("page table", ()),
        }
    }
}

/// The metadata array, set once at boot.
static PAGES: spin::Once<&'static [Page]> = spin::Once::new();

/// Bytes of metadata for `frames` frames (for the boot-time carve-out).
pub(crate) const fn array_bytes(frames: usize) -> usize {
    frames * core::mem::size_of::<Page>()
}

/// Installs the metadata array at `virt` (direct-map address of memory the
/// caller reserved, [`array_bytes`] long) and marks every frame reserved until
/// the allocator frees it.
///
/// # Safety
/// `virt` must point to `array_bytes(frames)` bytes of memory nothing else uses,
/// ever, aligned for `Page`.
pub(super) unsafe fn init(virt: *mut Page, frames: usize) {
    for i in 0..frames {
        // SAFETY: inside the reserved range (caller); written before any reader
        // exists (the Once publishes the array below).
        unsafe { virt.add(i).write(Page::new()) };
    }
    // SAFETY: initialised above; never freed or written through a raw pointer again.
    let pages: &'static [Page] = unsafe { core::slice::from_raw_parts(virt, frames) };
    for p in pages {
        p.flags.store(PageFlags::RESERVED.bits(), Ordering::Relaxed);
    }
    PAGES.call_once(|| pages);
}

/// The metadata of frame `pfn`. Panics for a frame outside physical memory.
pub fn page(pfn: u64) -> &'static Page {
    let pages = PAGES.get().expect("page metadata used before mm::frame::init");
    pages.get(pfn as usize).unwrap_or_else(|| panic!("frame {:#x} outside physical memory", pfn * PAGE_SIZE))
}

/// The metadata of `page` and the `n - 1` frames after it, one slice of
/// the array (a folio's run of pages). Panics past the end of memory.
#[inline(always)]
fn run_of(page: &'static Page, n: usize) -> &'static [Page] {
    let pfn = page.pfn() as usize;
    &PAGES.get().expect("page metadata")[pfn..pfn + n]
}

/// The metadata of the frame holding `pa`.
pub fn page_of(pa: PhysAddr) -> &'static Page {
    page(pa.as_u64() / PAGE_SIZE)
}

/// Whether `pfn` has metadata (is inside physical memory).
pub(crate) fn exists(pfn: u64) -> bool {
    PAGES.get().is_some_and(|p| (pfn as usize) < p.len())
}

/// Counters of the oracles (controls.md "uaf" and "invariant_errors").
static UAF: AtomicU64 = AtomicU64::new(0);
static INVARIANT_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Folios currently allocated (small and large count one each).
static LIVE_FOLIOS: AtomicUsize = AtomicUsize::new(0);

/// Use-after-free events seen so far: a pinned folio freed, a reference put
/// on a free folio, a walker reading a poisoned table.
pub fn uaf_events() -> u64 {
    UAF.load(Ordering::Relaxed)
}

/// Broken count invariants seen so far.
pub fn invariant_errors() -> u64 {
    INVARIANT_ERRORS.load(Ordering::Relaxed)
}

/// Folios currently allocated.
pub fn live_folios() -> usize {
    LIVE_FOLIOS.load(Ordering::Relaxed)
}

/// Records a use-after-free (also used by lockless walkers that read a
/// poisoned table).
pub(crate) fn report_uaf(what: fmt::Arguments<'_>) {
    UAF.fetch_add(1, Ordering::Relaxed);
    log::error!("uaf: {what}");
}

/// Records a broken invariant.
pub(crate) fn report_invariant(what: fmt::Arguments<'_>) {
    INVARIANT_ERRORS.fetch_add(1, Ordering::Relaxed);
    log::error!("invariant: {what}");
}

impl Page {
    /// This page's frame number.
    pub fn pfn(&self) -> u64 {
        let base = PAGES.get().expect("page metadata").as_ptr() as usize;
        ((self as *const Page as usize - base) / core::mem::size_of::<Page>()) as u64
    }

    /// This page's physical address.
    pub fn phys(&self) -> PhysAddr {
        PhysAddr::new(self.pfn() * PAGE_SIZE)
    }

    /// This page's flags: its own per-page flags, and the folio-wide ones
    /// ([`PageFlags::FOLIO`]) of its folio's head.
    pub(crate) fn flags(&self) -> PageFlags {
        let own = self.flags.load(Ordering::Acquire);
        let bits = if own & PageFlags::TAIL.bits() != 0 {
            (own & !PageFlags::FOLIO.bits()) | (self.folio().flags.load(Ordering::Acquire) & PageFlags::FOLIO.bits())
        } else {
            own
        };
        PageFlags::from_bits_truncate(bits)
    }

    /// Whether every flag in `f` is set (folio-wide flags on the folio).
    #[inline]
    pub fn has(&self, f: PageFlags) -> bool {
        self.flags().contains(f)
    }

    /// Sets flags (atomic or; Release so that what the setter wrote before is
    /// visible to whoever sees the flag with Acquire). Folio-wide flags go to
    /// the folio's head, whichever page they are set through.
    pub(crate) fn set(&self, f: PageFlags) {
        let (folio, own) = (f & PageFlags::FOLIO, f - PageFlags::FOLIO);
        if !folio.is_empty() {
            self.folio().flags.fetch_or(folio.bits(), Ordering::Release);
        }
        if !own.is_empty() {
            self.flags.fetch_or(own.bits(), Ordering::Release);
        }
    }

    /// Clears flags (folio-wide ones on the folio's head).
    pub fn clear(&self, f: PageFlags) {
        let (folio, own) = (f & PageFlags::FOLIO, f - PageFlags::FOLIO);
        if !folio.is_empty() {
            self.folio().flags.fetch_and(!folio.bits(), Ordering::Release);
        }
        if !own.is_empty() {
            self.flags.fetch_and(!own.bits(), Ordering::Release);
        }
    }

    /// The folio head (itself for a small folio or a head).
    pub fn folio(&self) -> &'static Page {
        // The raw TAIL bit (not `flags()`, which asks the folio).
        if self.flags.load(Ordering::Acquire) & PageFlags::TAIL.bits() != 0 {
            page(self.head.load(Ordering::Acquire))
        } else {
            self.as_static()
        }
    }

    /// This page as the element of the metadata array it is (no round trip
    /// through its frame number: `page(self.pfn())` is `self`).
    #[inline(always)]
    fn as_static(&self) -> &'static Page {
        // SAFETY: a `Page` is only ever made by `init`, in place inside the
        // metadata array, which lives for the kernel's life (`PAGES` holds it
        // and nothing frees it); `Page::new` is private and a `Page` can be
        // neither cloned nor moved out of a shared reference, so every
        // `&Page` points into that array.
        unsafe { &*(self as *const Page) }
    }

    /// Whether this page's folio is larger than one page.
    pub fn is_large(&self) -> bool {
        self.folio().has(PageFlags::HEAD)
    }

    /// The folio's order (0 for small).
    #[inline]
    pub fn order(&self) -> u32 {
        let f = self.folio();
        if f.has(PageFlags::HEAD) { f.order.load(Ordering::Relaxed) } else { 0 }
    }

    /// The folio's reference count (page_count()).
    pub fn refcount(&self) -> i32 {
        refs_of(self.folio().counts.load(Ordering::Acquire))
    }

    /// Ptes mapping this page (page_mapcount() without the entire mappings).
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Ordering::Acquire)
    }

    /// Pmd mappings of this page's whole folio.
    pub fn entire_mapcount(&self) -> i32 {
        self.folio().entire_mapcount.load(Ordering::Acquire)
    }

    /// All mappings of this page: its ptes plus the pmds of its folio
    /// (Linux page_mapcount()).
    pub(crate) fn total_mapcount(&self) -> i32 {
        self.mapcount() + if self.is_large() { self.entire_mapcount() } else { 0 }
    }

    /// The large folio's pincount (0 for a small folio, whose pins are in
    /// the refcount bias).
    pub fn pincount(&self) -> i32 {
        let f = self.folio();
        if f.has(PageFlags::HEAD) { f.pincount.load(Ordering::Acquire) } else { 0 }
    }

    /// The exact pin count kept for the oracles: a large folio's pincount,
    /// a small folio's count beside its refcount (module docs).
    pub fn dma_pins(&self) -> i32 {
        let f = self.folio();
        if f.has(PageFlags::HEAD) {
            f.pincount.load(Ordering::Acquire)
        } else {
            pins_of(f.counts.load(Ordering::Acquire))
        }
    }

    /// Linux folio_maybe_dma_pinned(): may a DMA pin be holding this folio?
    /// False positives (1024 plain references on a small folio) are allowed,
    /// false negatives are not.
    pub fn maybe_dma_pinned(&self) -> bool {
        let f = self.folio();
        if f.has(PageFlags::HEAD) {
            f.pincount.load(Ordering::Acquire) > 0
        } else {
            refs_of(f.counts.load(Ordering::Acquire)) >= PIN_BIAS
        }
    }

    /// Adds `n` to the folio's refcount unless it is zero (Linux
    /// folio_ref_try_add_rcu / page_ref_add_unless): the only way a lockless
    /// walker may take a reference, since the folio may be on its way to the
    /// allocator. Returns whether the references were taken.
    pub fn try_get_many(&self, n: i32) -> bool {
        // The one add-unless-zero ([`folio_ref_try_add`]; its orderings are
        // argued there), on this page's folio as it is now.
        folio_ref_try_add(self.folio(), n)
    }

    /// Takes one reference on a folio the caller knows is live (it holds a
    /// reference, a mapping under the page-table lock, or the page lock).
    pub(crate) fn get(&self) {
        self.get_many(1)
    }

    /// Takes `n` references on a live folio.
    pub(crate) fn get_many(&self, n: i32) {
        // Relaxed: the caller's own reference keeps the folio alive; ordering
        // of the new reference against the final put is given by that put's
        // Release/Acquire pair.
        let old = refs_of(self.folio().counts_add(n, 0, Ordering::Relaxed));
        if old <= 0 {
            report_uaf(format_args!("reference taken on free frame {:#x} (refcount was {old})", self.phys()));
        }
    }

    /// Drops one reference; frees the folio when it was the last.
    pub fn put(&self) {
        self.put_many(1)
    }

    /// Drops `n` references; frees the folio when they were the last.
    pub fn put_many(&self, n: i32) {
        let f = self.folio();
        // Release: our accesses to the folio happen before its free; the last
        // putter's Acquire fence below pairs with every other putter's Release.
        let old = refs_of(f.counts_add(-n, 0, Ordering::Release));
        if old == n {
            fence(Ordering::Acquire);
            free_folio(f);
        } else if old < n {
            report_uaf(format_args!("reference put on free frame {:#x} (refcount was {old}, put {n})", f.phys()));
        }
    }

    /// Adds `refs` references and `pins` exact pins (small folio only;
    /// either may be negative) to this head's `counts` in one RMW with
    /// `order`; returns the word before. A refcount that crosses zero (a put
    /// on a free folio, an underflow the callers report as a use after free)
    /// carries into the pin half; a second RMW gives the carry back, so the
    /// pin count stays exact even then.
    #[inline(always)]
    fn counts_add(&self, refs: i32, pins: i32, order: Ordering) -> u64 {
        let old = self.counts.fetch_add(counts_delta(refs, pins), order);
        let carry = (i64::from(old as u32) + i64::from(refs)).div_euclid(1 << 32);
        if carry != 0 {
            // Relaxed: only after a reported use after free.
            self.counts.fetch_sub((carry << 32) as u64, Ordering::Relaxed);
        }
        old
    }

    /// Adds one pte mapping of this page.
    pub(crate) fn map_pte(&self) {
        self.mapcount.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes one pte mapping of this page.
    pub(crate) fn unmap_pte(&self) {
        let old = self.mapcount.fetch_sub(1, Ordering::AcqRel);
        if old <= 0 {
            report_invariant(format_args!("pte mapcount of {:#x} went below zero", self.phys()));
        }
    }

    /// Adds one pmd mapping of this large folio.
    pub(crate) fn map_pmd(&self) {
        self.folio().entire_mapcount.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes one pmd mapping of this large folio.
    pub(crate) fn unmap_pmd(&self) {
        let f = self.folio();
        if f.entire_mapcount.fetch_sub(1, Ordering::AcqRel) <= 0 {
            report_invariant(format_args!("entire mapcount of {:#x} went below zero", f.phys()));
        }
    }

    /// The split page-table lock of this page-table page.
    pub(crate) fn ptl(&self) -> ThreadLockGuard<'_, ()> {
        debug_assert!(self.has(PageFlags::PAGETABLE), "ptl of a frame that is no page table");
        self.ptl.lock()
    }

    /// Takes the page lock (PG_locked), waiting (yielding the CPU) while
    /// another holder has it. Linux folio_lock().
    pub fn lock(&self) -> PageLock {
        let f = self.folio();
        loop {
            if let Some(l) = f.try_lock() {
                return l;
            }
            crate::sync::yield_now();
        }
    }

    /// Takes the page lock if it is free (Linux folio_trylock()).
    pub fn try_lock(&self) -> Option<PageLock> {
        let f = self.folio();
        // Acquire: the critical section of the previous holder is visible.
        let old = f.flags.fetch_or(PageFlags::LOCKED.bits(), Ordering::Acquire);
        if old & PageFlags::LOCKED.bits() == 0 { Some(PageLock { folio: f }) } else { None }
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page {:#x} {:?} ref={} map={} entire={} pin={} dma_pins={} order={}",
            self.phys(),
            self.flags(),
            self.refcount(),
            self.mapcount(),
            self.entire_mapcount(),
            self.pincount(),
            self.dma_pins(),
            self.order()
        )
    }
}

/// The page lock of a folio, released when dropped.
#[must_use = "the page lock is released when the guard is dropped"]
pub struct PageLock {
    folio: &'static Page,
}

impl PageLock {
    /// The locked folio.
    pub(crate) fn folio(&self) -> &'static Page {
        self.folio
    }
}

impl Drop for PageLock {
    fn drop(&mut self) {
        // Release: our critical section is visible to the next holder.
        self.folio.flags.fetch_and(!PageFlags::LOCKED.bits(), Ordering::Release);
    }
}

/// An owned reference on a folio (get_page/put_page as a value): dropping it
/// puts the reference.
pub struct PageRef {
    page: &'static Page,
}

impl PageRef {
    /// The referenced page (a subpage of the folio, or its head).
    pub fn page(&self) -> &'static Page {
        self.page
    }

    /// Physical address of the referenced page.
    pub fn phys(&self) -> PhysAddr {
        self.page.phys()
    }

    /// Takes a new reference on `page`'s live folio (the caller's context
    /// keeps it live: a mapping seen under its page-table lock, another ref).
    pub fn new_ref(page: &'static Page) -> PageRef {
        page.get();
        PageRef { page }
    }

    /// Gives the reference up to a page-table entry (it is held by the
    /// mapping from now on, and comes back with [`PageRef::from_mapping`]).
    pub(crate) fn into_mapping(self) -> &'static Page {
        let p = self.page;
        core::mem::forget(self);
        p
    }

    /// Takes back the reference a mapping held.
    ///
    /// # Safety
    /// The caller must own one reference on `page`'s folio that nothing else
    /// will put (the one a just-removed mapping held).
    pub(crate) unsafe fn from_mapping(page: &'static Page) -> PageRef {
        PageRef { page }
    }

    /// Wraps `n` references a lockless walker took with
    /// [`folio_ref_try_add`] on the folio of `page` as one value per page
    /// (`page`, the next page, ...) handed to `each`. Each value puts its
    /// reference on its page's folio *as it is when dropped*: if the
    /// references were taken on another folio (GUP-fast under
    /// `gup.head_recheck=off`, after a split moved `page` to a new folio:
    /// bug H) the counts go wrong, which is that bug.
    ///
    /// The caller takes every item (each holds one reference); the run is
    /// one slice of the metadata array, see [`PinnedPage::adopt_run`].
    #[must_use = "each item holds a reference"]
    pub(crate) fn adopt_run(page: &'static Page, n: usize) -> impl ExactSizeIterator<Item = PageRef> {
        run_of(page, n).iter().map(|page| PageRef { page })
    }
}

impl Drop for PageRef {
    fn drop(&mut self) {
        self.page.put();
    }
}

impl fmt::Debug for PageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageRef({:?})", self.page)
    }
}

/// A FOLL_PIN pin on a page's folio (pin_user_pages as a value): dropping it
/// unpins (unpin_user_page).
pub struct PinnedPage {
    page: &'static Page,
}

impl PinnedPage {
    /// Pins a live folio (the caller holds a reference or a mapping under the
    /// page-table lock, so `refcount > 0`).
    pub fn pin(page: &'static Page) -> PinnedPage {
        let f = page.folio();
        if f.has(PageFlags::HEAD) {
            f.get();
            f.pincount.fetch_add(1, Ordering::AcqRel);
        } else {
            // The bias and the exact pin count, one RMW (get_many's check).
            let old = refs_of(f.counts_add(PIN_BIAS, 1, Ordering::AcqRel));
            if old <= 0 {
                report_uaf(format_args!("pin taken on free frame {:#x} (refcount was {old})", f.phys()));
            }
        }
        PinnedPage { page }
    }

    /// Pins a folio that may be on its way to the allocator (lockless
    /// walker): add-unless-zero of the pin's references (Linux
    /// try_grab_folio() with FOLL_PIN). `None` if the folio was free.
    pub fn try_pin(page: &'static Page) -> Option<PinnedPage> {
        // Not `then_some`: that would build (and drop, i.e. unpin) the value
        // even when no pin was taken.
        if Self::try_pin_many(page, 1) { Some(PinnedPage { page }) } else { None }
    }

    /// Pins `n` pages of one large folio at once, lockless (GUP-fast on a
    /// huge pmd: one add-unless-zero for the whole run). On success the
    /// `n` pins are handed out as values by the caller
    /// ([`PinnedPage::try_pin`]).
    fn try_pin_many(page: &'static Page, n: i32) -> bool {
        let f = page.folio();
        if f.has(PageFlags::HEAD) {
            if !f.try_get_many(n) {
                return false;
            }
            f.pincount.fetch_add(n, Ordering::AcqRel);
            true
        } else {
            // The bias and the exact pin count in one add-unless-zero.
            try_add_counts(f, n * PIN_BIAS, n)
        }
    }

    /// Wraps `n` pins a lockless walker took on the folio of `page`
    /// ([`folio_ref_try_add`], then [`folio_add_pins`]) as one value per
    /// page, `page` and the `n - 1` after it (as [`PageRef::adopt_run`],
    /// bug H included). The caller takes every item: each holds one pin
    /// (an item not taken is a pin leaked). The run is one slice of the
    /// metadata array, so a caller's `Vec::extend` reserves once and
    /// writes the values without a per-page lookup or capacity check.
    #[must_use = "each item holds a pin"]
    pub(crate) fn adopt_run(page: &'static Page, n: usize) -> impl ExactSizeIterator<Item = PinnedPage> {
        run_of(page, n).iter().map(|page| PinnedPage { page })
    }

    /// Gives up the value without unpinning: the pin stays counted on
    /// whatever folio it was taken on, and the caller releases it with
    /// [`unpin_folio`] on that folio (Linux: GUP hands out raw `struct
    /// page *`, and unpin_folio() releases a pin by folio). For the test
    /// that shows bug H, whose pin was counted on a folio that is no longer
    /// its page's.
    pub fn into_page(self) -> &'static Page {
        let p = self.page;
        core::mem::forget(self);
        p
    }

    /// The pinned page.
    pub fn page(&self) -> &'static Page {
        self.page
    }

    /// Physical address of the pinned page.
    pub fn phys(&self) -> PhysAddr {
        self.page.phys()
    }

}

impl Drop for PinnedPage {
    fn drop(&mut self) {
        unpin_folio_refs(self.page.folio(), 1, false);
    }
}

/// Drops `n` pins of folio `f` at once (Linux gup_put_folio() with `refs`
/// = n, i.e. folio_put_refs()): the exact pin count, the large folio's
/// pincount and the references, one atomic each for the whole run, in the
/// order a single unpin uses. Marks the folio dirty first if asked.
fn unpin_folio_refs(f: &'static Page, n: i32, make_dirty: bool) {
    unpin_folio_refs_inline(f, n, make_dirty)
}

/// [`unpin_folio_refs`] inlined into the batch loop of
/// [`unpin_user_pages_dirty_lock`], which then makes no call per 4 KiB
/// page (nor does GUP-fast's pte loop, with [`run_of`] inlined): under TCG
/// a call and its return are two lookups of the next translated block (a
/// return is an indirect jump). bench=gup 4 KiB pin+unpin slope, interleaved
/// runs: 184-285 -> 172-193 ns/page.
#[inline(always)]
fn unpin_folio_refs_inline(f: &'static Page, n: i32, make_dirty: bool) {
    let t = stamps::start();
    // Linux unpin_user_pages_dirty_lock() marks only a folio that is not
    // dirty yet: a read first, no atomic write on a folio that is already
    // dirty (a writeback clearing the flag meanwhile is a race Linux
    // accepts there too; the pin's holder marks it again at its next unpin).
    if make_dirty && f.flags.load(Ordering::Relaxed) & PageFlags::DIRTY.bits() == 0 {
        f.set(PageFlags::DIRTY);
    }
    // AcqRel, as for one pin: the counts are read by the free path's oracle
    // and by KSM/collapse's refcount checks, which only ever see the whole
    // run gone or the whole run still there (never fewer pins than remain).
    // A large folio's pincount is its exact pin count; a small folio's
    // exact count goes with the bias, in one RMW (Release/Acquire as in
    // `put_many`).
    let (pins, refs) = if f.has(PageFlags::HEAD) {
        (f.pincount.fetch_sub(n, Ordering::AcqRel), None)
    } else {
        let old = f.counts_add(-n * PIN_BIAS, -n, Ordering::AcqRel);
        (pins_of(old), Some(refs_of(old)))
    };
    if pins < n {
        report_invariant(format_args!("unpin of {n} pins of {:#x} with {pins} recorded", f.phys()));
    }
    match refs {
        None => f.put_many(n),
        Some(old) if old == n * PIN_BIAS => {
            fence(Ordering::Acquire);
            free_folio(f);
        }
        Some(old) if old < n * PIN_BIAS => {
            report_uaf(format_args!("unpin on free frame {:#x} (refcount was {old}, put {})", f.phys(), n * PIN_BIAS));
        }
        Some(_) => {}
    }
    stamps::end(Step::GupUnpin, t);
}

/// Drops one pin of folio `folio` (Linux unpin_folio()): the counts a
/// [`PinnedPage`] given up with [`PinnedPage::into_page`] still holds there.
pub fn unpin_folio(folio: &'static Page) {
    unpin_folio_refs(folio, 1, false);
}

/// Adds `n` to the refcount of `folio` unless it is zero (Linux
/// folio_ref_try_add(), the lockless half of try_get_folio()). `folio` is
/// the folio the walker found for its page a moment ago, taken as it is:
/// the count of that very `struct page` changes, whatever it heads now.
/// While a split has the count frozen at zero, or once the folio was freed,
/// this fails.
#[inline(always)]
pub(crate) fn folio_ref_try_add(folio: &'static Page, n: i32) -> bool {
    // SeqCst on success (it includes Acquire: what the owner did to the
    // folio before we see it referenced, its contents, its flags, a split's
    // rewritten metadata, is visible to us): GUP-fast's half of the Dekker
    // pair with a writer's clear, fence(SeqCst), reference-count load is
    // this RMW and its SeqCst re-read of the entry, with no fence between
    // (gup/fast.rs grab_then_recheck). On x86 the same LOCK CMPXCHG.
    try_add_counts(folio, n, 0)
}

/// The add-unless-zero of [`folio_ref_try_add`] (its orderings), adding
/// `pins` exact pins too (a small folio's, for [`PinnedPage::try_pin`]).
#[inline(always)]
fn try_add_counts(folio: &'static Page, refs: i32, pins: i32) -> bool {
    let mut cur = folio.counts.load(Ordering::Relaxed);
    loop {
        if refs_of(cur) <= 0 {
            return false;
        }
        let new = cur.wrapping_add(counts_delta(refs, pins));
        match folio.counts.compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Gives back `n` references [`folio_ref_try_add`] took on `folio` (Linux
/// folio_put_refs()); frees it if they were the last (a folio split and
/// freed meanwhile).
pub(crate) fn folio_put_refs(folio: &'static Page, n: i32) {
    // Release/Acquire as in `put_many`, on this very page's count.
    let old = refs_of(folio.counts_add(-n, 0, Ordering::Release));
    if old == n {
        fence(Ordering::Acquire);
        free_folio(folio);
    } else if old < n {
        report_uaf(format_args!("reference put on free frame {:#x} (refcount was {old}, put {n})", folio.phys()));
    }
}

/// Turns `n` references a walker holds on `folio` into `n` pins (Linux
/// try_grab_folio_fast() with FOLL_PIN after try_get_folio()): a large
/// folio counts them in its pincount, a small one adds the rest of the
/// bias to its refcount, and its exact pin count in the same RMW.
#[inline(always)]
pub(crate) fn folio_add_pins(folio: &'static Page, n: i32) {
    // SeqCst, both: the pin state fork reads (maybe_dma_pinned) after its
    // bump of `write_protect_seq` and its fence(SeqCst); GUP-fast re-reads
    // the sequence with a SeqCst load and no fence between (gup/fast.rs
    // fast_into has the argument). The folio is live: we hold `n`
    // references. On x86 the same LOCK XADD as Relaxed.
    if folio.flags.load(Ordering::Acquire) & PageFlags::HEAD.bits() != 0 {
        folio.pincount.fetch_add(n, Ordering::SeqCst);
    } else {
        folio.counts_add(n * (PIN_BIAS - 1), n, Ordering::SeqCst);
    }
}

/// Unpins every pin of `pins`, one batch per run of consecutive pins of the
/// same folio (Linux unpin_user_pages_dirty_lock(): gup_folio_next() groups
/// the array by folio, then one gup_put_folio() per group), marking each
/// folio dirty first if `make_dirty`. A 2 MiB THP pinned in one call is
/// two atomics to unpin, not two per subpage. The counts each folio ends
/// with are those of unpinning the pins one by one.
///
/// A pin whose page lies in the frames of the batch's folio belongs to the
/// batch without a folio lookup (Linux's gup_folio_next() looks each page's
/// folio up): the batch holds a pin on that folio, and a pinned folio
/// cannot be split (a split freezes the count at exactly the references
/// its mappings hold), so every page in its frames is its page until the
/// batch is unpinned. Under `gup.head_recheck=off` (bug H) a pin may be
/// counted on another folio than its page's; the batch's folio is still
/// the first page's folio as it is now, as unpinning one by one would use.
pub(crate) fn unpin_user_pages_dirty_lock(pins: impl IntoIterator<Item = PinnedPage>, make_dirty: bool) {
    // The folio, its pins so far, and the addresses of its frames' metadata.
    let mut run: Option<(&'static Page, i32, core::ops::Range<usize>)> = None;
    for pin in pins {
        let at = pin.page as *const Page as usize;
        // Its pin is now counted in `run` and dropped with it.
        let page = pin.into_page();
        match &mut run {
            Some((_, n, frames)) if frames.contains(&at) => *n += 1,
            _ => {
                let f = page.folio();
                let lo = f as *const Page as usize;
                let frames = lo..lo + (1usize << f.order()) * core::mem::size_of::<Page>();
                if let Some((cur, n, _)) = run.replace((f, 1, frames)) {
                    unpin_folio_refs_inline(cur, n, make_dirty);
                }
            }
        }
    }
    if let Some((cur, n, _)) = run {
        unpin_folio_refs(cur, n, make_dirty);
    }
}

impl fmt::Debug for PinnedPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinnedPage({:?})", self.page)
    }
}

/// Allocates a folio of 2^order frames with refcount 1 (order 0: a small
/// page; order 9: a 2 MiB transparent huge page), zeroed if asked.
pub fn alloc_folio(order: usize, zeroed: bool) -> Option<PageRef> {
    let frame = if zeroed { frame::alloc_zeroed(order)? } else { frame::alloc(order)? };
    let head_pfn = frame.start_address().as_u64() / PAGE_SIZE;
    let head = page(head_pfn);
    for i in 1..(1u64 << order) {
        let t = page(head_pfn + i);
        t.head.store(head_pfn, Ordering::Relaxed);
        t.mapcount.store(0, Ordering::Relaxed);
        t.flags.store(PageFlags::TAIL.bits(), Ordering::Relaxed);
    }
    head.mapcount.store(0, Ordering::Relaxed);
    head.entire_mapcount.store(0, Ordering::Relaxed);
    head.pincount.store(0, Ordering::Relaxed);
    head.order.store(order as u32, Ordering::Relaxed);
    head.flags.store(if order > 0 { PageFlags::HEAD.bits() } else { 0 }, Ordering::Relaxed);
    // Release: the metadata above is initialised before any CPU can see the
    // folio referenced (folio_ref_try_add's success ordering includes
    // Acquire).
    // No pins in the upper half.
    head.counts.store(1, Ordering::Release);
    LIVE_FOLIOS.fetch_add(1, Ordering::Relaxed);
    Some(PageRef { page: head })
}

impl Page {
    /// Sets the refcount of this folio from exactly `count` to zero (Linux
    /// folio_ref_freeze()): true if it was `count`. While it is zero a
    /// lockless walker's add-unless-zero fails, and nobody else may hold a
    /// reference: the caller accounted for every one in `count`.
    pub(crate) fn folio_ref_freeze(&self, count: i32) -> bool {
        // Acquire: the holders' accesses through the references that were
        // given up before the freeze happen before what the splitter does
        // next. A walker's add-unless-zero either came first (the count is
        // not `count`, the freeze fails) or fails on the zero.
        // The pin half is kept (it is zero: a pin adds the bias, so the
        // count would not be `count`); the compare-exchange retries only
        // while the references still are `count`.
        let mut cur = self.counts.load(Ordering::Relaxed);
        loop {
            if refs_of(cur) != count {
                return false;
            }
            match self.counts.compare_exchange_weak(cur, cur & !u64::from(u32::MAX), Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Sets a frozen refcount back to `count` (Linux folio_ref_unfreeze()).
    pub(crate) fn folio_ref_unfreeze(&self, count: i32) {
        // Release: the metadata written while frozen (a split's new small
        // folios) is visible to whoever takes a reference after this.
        // An add to the zero (no one else writes a frozen count), which
        // keeps the pin half.
        self.counts.fetch_add(counts_delta(count, 0), Ordering::Release);
    }
}

/// Rewrites the metadata of the frozen large folio `folio` (refcount 0, no
/// mappings, no pins) into 2^order small folios (Linux __split_huge_page()
/// and __split_huge_page_tail()): each page becomes its own head with the
/// folio-wide flags (anon, dirty, swap cache; not the lock, which stays
/// with the old head) and its own per-page ones (anon-exclusive), and is
/// unfrozen with `refs(i)` references. The tails first, the old head last:
/// a walker that takes a reference on the old head after its unfreeze and
/// then asks a tail for its folio sees the tail as its own folio.
pub(crate) fn split_frozen_folio(folio: &'static Page, mut refs: impl FnMut(usize) -> i32) {
    let head_bits = folio.flags.load(Ordering::Acquire);
    assert!(head_bits & PageFlags::HEAD.bits() != 0, "split of frame {:#x}, which heads no large folio", folio.phys());
    assert_eq!(refs_of(folio.counts.load(Ordering::Acquire)), 0, "split of a folio that is not frozen");
    let order = folio.order.load(Ordering::Relaxed);
    let inherited = head_bits & (PageFlags::FOLIO.bits() & !PageFlags::LOCKED.bits());
    let pfn = folio.pfn();
    for i in 1..(1usize << order) {
        let t = page(pfn + i as u64);
        t.order.store(0, Ordering::Relaxed);
        t.entire_mapcount.store(0, Ordering::Relaxed);
        t.pincount.store(0, Ordering::Relaxed);
        // References and exact pins both zero until the unfreeze below.
        t.counts.store(0, Ordering::Relaxed);
        let own = t.flags.load(Ordering::Relaxed) & !(PageFlags::TAIL.bits() | PageFlags::FOLIO.bits());
        // Release: the fields above before the page stops being a tail.
        t.flags.store(own | inherited, Ordering::Release);
        // Release: the flags before the count a walker's add-unless-zero
        // reads (Linux: smp_wmb() before page_ref_unfreeze()).
        t.folio_ref_unfreeze(refs(i));
    }
    folio.entire_mapcount.store(0, Ordering::Relaxed);
    folio.pincount.store(0, Ordering::Relaxed);
    folio.order.store(0, Ordering::Relaxed);
    folio.flags.fetch_and(!PageFlags::HEAD.bits(), Ordering::Release);
    LIVE_FOLIOS.fetch_add((1usize << order) - 1, Ordering::Relaxed);
    folio.folio_ref_unfreeze(refs(0));
}

/// The last reference is gone: check, poison and free the folio.
fn free_folio(f: &'static Page) {
    let order = if f.has(PageFlags::HEAD) { f.order.load(Ordering::Relaxed) as usize } else { 0 };
    let pins = f.dma_pins();
    if pins != 0 {
        report_uaf(format_args!("pinned folio {:#x} ({pins} pins) reached the free path", f.phys()));
    }
    if f.has(PageFlags::LOCKED) {
        report_invariant(format_args!("folio {:#x} freed while locked", f.phys()));
    }
    for i in 0..(1u64 << order) {
        let p = page(f.pfn() + i);
        if p.mapcount.load(Ordering::Acquire) != 0 {
            report_invariant(format_args!("frame {:#x} freed while mapped {} times", p.phys(), p.mapcount()));
        }
    }
    if f.entire_mapcount.load(Ordering::Acquire) != 0 {
        report_invariant(format_args!("folio {:#x} freed while pmd-mapped", f.phys()));
    }
    // SAFETY: the last reference is gone, so nothing owns the frames. A stale
    // user of the frame sees the poison, which is the point.
    unsafe { super::frame_io::poison(f.phys(), order, POISON_BYTE) };
    for i in 0..(1u64 << order) {
        page(f.pfn() + i).flags.store(0, Ordering::Relaxed);
    }
    LIVE_FOLIOS.fetch_sub(1, Ordering::Relaxed);
    if super::quarantine::hold(f.pfn(), order, super::quarantine::Poison::Folio) {
        return;
    }
    let frame = x86_64::structures::paging::PhysFrame::containing_address(f.phys());
    // SAFETY: the folio was allocated by alloc_folio with this order and its
    // last reference is gone.
    unsafe { frame::free(frame, order) };
}

/// Holds freed frames (folios of any order and page tables) back from reuse
/// while a race scenario runs; see [`super::quarantine`]. Turning it off
/// releases every held frame.
pub fn set_quarantine(on: bool) {
    super::quarantine::set(on);
}

/// The metadata of frame `pfn` if it has any (a frame number a lockless
/// walker read from a table that may have been freed and reused can be
/// anything; [`page`] would panic on it).
pub(crate) fn try_page(pfn: u64) -> Option<&'static Page> {
    PAGES.get()?.get(pfn as usize)
}

/// Marks a raw frame as a page table (and initialises its lock state).
pub(crate) fn set_pagetable(pa: PhysAddr) {
    let p = page_of(pa);
    p.flags.store(PageFlags::PAGETABLE.bits(), Ordering::Release);
}

/// Clears the page-table mark of a frame about to be freed.
pub(crate) fn clear_pagetable(pa: PhysAddr) {
    page_of(pa).flags.store(0, Ordering::Release);
}
