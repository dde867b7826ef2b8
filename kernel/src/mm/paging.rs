//! Page-table entries, tables and walks.
//!
//! Entries are `AtomicU64`s: page tables are shared with the CPU's page walker
//! and, later, with lockless software walkers (GUP-fast), so every access is a
//! single atomic load or store and a walker reads each level exactly once.
//! Orderings are chosen per use and documented there; building tables that no CPU
//! uses yet needs no ordering beyond the final CR3 write (which serialises).

use bitflags::bitflags;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::{PhysAddr, VirtAddr};

use super::{frame, phys_to_virt};

bitflags! {
    /// Bits of a page-table entry (Intel SDM vol. 3, 4.5).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PteFlags: u64 {
        /// The entry maps something.
        const PRESENT = 1 << 0;
        /// Writes allowed (if every level allows them).
        const WRITABLE = 1 << 1;
        /// Ring 3 may access (if every level allows it).
        const USER = 1 << 2;
        /// Write-through caching.
        const WRITE_THROUGH = 1 << 3;
        /// Caching disabled.
        const NO_CACHE = 1 << 4;
        /// Set by the CPU when the entry is used.
        const ACCESSED = 1 << 5;
        /// Set by the CPU on a write through a leaf entry.
        const DIRTY = 1 << 6;
        /// At pdpt/pd level: a 1 GiB / 2 MiB leaf (PS bit).
        const HUGE = 1 << 7;
        /// Survives CR3 writes (kernel mappings only).
        const GLOBAL = 1 << 8;
        /// Software bit (ignored by the CPU): a user page made inaccessible by
        /// mprotect(PROT_NONE); PRESENT is clear but the entry still maps
        /// (and holds a reference on) its page (Linux _PAGE_PROTNONE).
        const PROTNONE = 1 << 9;
        /// Software bit (ignored by the CPU): with PRESENT clear, a writer's
        /// temporary marker for a pte it cleared and will restore or replace
        /// after sleeping (KSM under `sync=rcu`, like Linux's migration
        /// entries). Faults wait for it to go; lockless walkers see a
        /// non-present entry.
        const MARKER = 1 << 10;
        /// Instruction fetches fault (EFER.NXE must be set).
        const NO_EXECUTE = 1 << 63;
    }
}

/// The physical-address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A page-table level, named as in the SDM (Linux: pgd/p4d, pud, pmd, pte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Top level; each entry covers 512 GiB.
    Pml4,
    /// Each entry covers 1 GiB (Linux: pud).
    Pdpt,
    /// Each entry covers 2 MiB (Linux: pmd).
    Pd,
    /// Each entry maps 4 KiB (Linux: pte).
    Pt,
}

impl Level {
    /// Bit position of this level's index in a virtual address.
    pub const fn shift(self) -> u32 {
        match self {
            Level::Pml4 => 39,
            Level::Pdpt => 30,
            Level::Pd => 21,
            Level::Pt => 12,
        }
    }

    /// Index of `va`'s entry in a table of this level.
    pub const fn index(self, va: u64) -> usize {
        ((va >> self.shift()) & 511) as usize
    }

    /// The next level down, if any.
    pub const fn next(self) -> Option<Level> {
        match self {
            Level::Pml4 => Some(Level::Pdpt),
            Level::Pdpt => Some(Level::Pd),
            Level::Pd => Some(Level::Pt),
            Level::Pt => None,
        }
    }

    /// Bytes covered by one entry.
    pub(crate) const fn entry_size(self) -> u64 {
        1 << self.shift()
    }

    /// The size of the page a leaf entry at this level maps (`None` at the
    /// top level, which has no leaves).
    pub(crate) const fn leaf_size(self) -> Option<PageSize> {
        match self {
            Level::Pml4 => None,
            Level::Pdpt => Some(PageSize::Size1G),
            Level::Pd => Some(PageSize::Size2M),
            Level::Pt => Some(PageSize::Size4K),
        }
    }
}

/// The size of a page a leaf entry maps: the one way the kernel says
/// "4 KiB or 2 MiB" (the x86_64 crate's `Size4KiB`/`Size2MiB`/`Size1GiB` as
/// a value, since which one a walker meets is known only at run time). The
/// byte sizes (`mm::PAGE_SIZE`, `mm::HUGE_PAGE_SIZE`), the frame order of a
/// huge folio, the leaf level of a mapping, the stride of a TLB flush and
/// the size a translation found are all this type. Ordered by size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, mapped by a pte (Linux PAGE_SIZE).
    Size4K,
    /// 2 MiB, mapped by a huge pmd (Linux HPAGE_PMD_SIZE, a THP).
    Size2M,
    /// 1 GiB, mapped by a huge pud: never in user address spaces; only
    /// [`translate`] may meet one (in tables it did not build).
    Size1G,
}

impl PageSize {
    /// log2 of the size in bytes.
    pub(crate) const fn shift(self) -> u32 {
        self.level().shift()
    }

    /// The size in bytes.
    pub(crate) const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The buddy order of a folio of this size (0 for 4 KiB, 9 for 2 MiB).
    pub(crate) const fn order(self) -> usize {
        (self.shift() - PageSize::Size4K.shift()) as usize
    }

    /// The level of the leaf entry that maps a page of this size.
    pub(crate) const fn level(self) -> Level {
        match self {
            PageSize::Size4K => Level::Pt,
            PageSize::Size2M => Level::Pd,
            PageSize::Size1G => Level::Pdpt,
        }
    }

    /// `addr` rounded down to a page of this size.
    pub(crate) const fn align_down(self, addr: u64) -> u64 {
        addr & !(self.bytes() - 1)
    }

}

/// A snapshot of an entry's value. Its bits are private: entries are built
/// with [`RawEntry::new`] and changed with named methods
/// ([`RawEntry::with_flags`], [`RawEntry::without_flags`]), never from raw
/// `u64`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry(u64);

impl RawEntry {
    /// The empty entry.
    pub const EMPTY: RawEntry = RawEntry(0);

    /// What a freed page table is filled with ([`POISON_ENTRY`]): not
    /// present, and recognisable by a late lockless walker.
    pub(crate) const POISON: RawEntry = RawEntry(POISON_ENTRY);

    /// An entry pointing at `addr` with `flags`.
    pub fn new(addr: PhysAddr, flags: PteFlags) -> Self {
        debug_assert_eq!(addr.as_u64() & !ADDR_MASK, 0, "unaligned physical address");
        RawEntry(addr.as_u64() | flags.bits())
    }

    /// The same entry with `flags` set too (Linux pte_mkwrite(),
    /// pte_mkdirty(), pmd_mkhuge() ...).
    #[inline]
    pub(crate) fn with_flags(self, flags: PteFlags) -> Self {
        RawEntry(self.0 | flags.bits())
    }

    /// The same entry with `flags` cleared (Linux pte_wrprotect(),
    /// pte_mkclean() ...).
    #[inline]
    pub(crate) fn without_flags(self, flags: PteFlags) -> Self {
        RawEntry(self.0 & !flags.bits())
    }

    /// Whether this is the poison of a freed table ([`RawEntry::POISON`]).
    #[inline]
    pub(crate) fn is_poison(self) -> bool {
        self.0 == POISON_ENTRY
    }

    /// The raw value (for reports and tests).
    pub fn bits(self) -> u64 {
        self.0
    }

    /// The flags.
    pub fn flags(self) -> PteFlags {
        PteFlags::from_bits_truncate(self.0)
    }

    /// The physical address it points to.
    pub fn addr(self) -> PhysAddr {
        PhysAddr::new(self.0 & ADDR_MASK)
    }

    /// Whether PRESENT is set.
    pub fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// Whether this is a huge leaf (only meaningful at Pdpt and Pd level).
    pub fn is_huge(self) -> bool {
        self.0 & PteFlags::HUGE.bits() != 0
    }
}

/// One page-table entry, shared with the hardware walker.
#[repr(transparent)]
pub struct Entry(AtomicU64);

impl Entry {
    /// Reads the entry once.
    pub fn load(&self, order: Ordering) -> RawEntry {
        RawEntry(self.0.load(order))
    }

    /// Writes the entry.
    pub fn store(&self, value: RawEntry, order: Ordering) {
        self.0.store(value.0, order)
    }

    /// Replaces the entry, returning the old value (Linux ptep_get_and_clear()
    /// when `value` is empty: the exchange is what makes a concurrent hardware
    /// dirty-bit update or a lockless walker's re-check see one value or the
    /// other, never a mix).
    pub fn swap(&self, value: RawEntry, order: Ordering) -> RawEntry {
        RawEntry(self.0.swap(value.0, order))
    }

    /// Replaces the entry if it still holds `current`.
    pub(crate) fn compare_exchange(&self, current: RawEntry, new: RawEntry, order: Ordering) -> Result<RawEntry, RawEntry> {
        self.0.compare_exchange(current.0, new.0, order, Ordering::Relaxed).map(RawEntry).map_err(RawEntry)
    }

    /// Clears flag bits atomically (e.g. WRITABLE for a write-protect),
    /// returning the old value.
    pub fn fetch_clear(&self, flags: PteFlags, order: Ordering) -> RawEntry {
        RawEntry(self.0.fetch_and(!flags.bits(), order))
    }
}

/// A 4 KiB page table of any level.
#[repr(C, align(4096))]
pub struct PageTable {
    entries: [Entry; 512],
}

impl PageTable {
    /// The entry at `index`.
    pub fn entry(&self, index: usize) -> &Entry {
        &self.entries[index]
    }

    /// The table in frame `phys`, through the direct map.
    ///
    /// # Safety
    /// `phys` must be a frame used as a page table (or zeroed for use as one) for
    /// as long as the returned reference is used.
    pub unsafe fn at(phys: PhysAddr) -> &'static PageTable {
        // SAFETY: the caller guarantees the frame is a page table; the direct map
        // covers all physical memory; all access is through atomics.
        unsafe { &*(phys_to_virt(phys).as_ptr::<PageTable>()) }
    }
}

/// Where a walker finds the tables it steps into, and how it fills an
/// empty entry on its way down: the policy of one kind of page-table tree,
/// for [`Cursor::descend`] and [`follow`].
pub(crate) trait Tables {
    /// Why filling an entry failed.
    type Error;

    /// The table in frame `pa`, which the walk reached through a present
    /// non-leaf entry of a tree of this kind.
    fn table(&self, pa: PhysAddr) -> &'static PageTable;

    /// A new zeroed table for an empty entry and the flags of the entry that
    /// will point to it, or `None` when this walk does not fill entries.
    fn alloc(&self) -> Result<Option<(PhysAddr, PteFlags)>, Self::Error>;

    /// Frees a table [`alloc`](Tables::alloc) gave that lost the race to
    /// fill the entry (never reachable).
    fn free_unused(&self, pa: PhysAddr);
}

/// One step of a walk: the table below `entry`, or what the entry holds when
/// there is none to step into (`Err`: empty and not filled, or a huge
/// leaf). An empty entry is filled when `tables` allocates: with a
/// compare-exchange from empty, so concurrent walkers agree on one table
/// and the loser's frame goes back.
#[inline(always)]
pub(crate) fn follow<T: Tables>(entry: &Entry, tables: &T) -> Result<Result<PhysAddr, RawEntry>, T::Error> {
    // Acquire: pairs with the Release of the exchange that installed the
    // table, so its zeroed contents are visible.
    let cur = entry.load(Ordering::Acquire);
    if cur.is_present() {
        return Ok(if cur.is_huge() { Err(cur) } else { Ok(cur.addr()) });
    }
    let Some((new, flags)) = tables.alloc()? else { return Ok(Err(cur)) };
    // AcqRel: Release publishes the zeroed table before a walker (the
    // hardware one included) can reach it; Acquire for a competitor's table.
    match entry.compare_exchange(RawEntry::EMPTY, RawEntry::new(new, flags), Ordering::AcqRel) {
        Ok(_) => Ok(Ok(new)),
        Err(other) => {
            // Another walker filled it first (a table, or a huge leaf).
            tables.free_unused(new);
            Ok(if other.is_present() && !other.is_huge() { Ok(other.addr()) } else { Err(other) })
        }
    }
}

/// A position in a page-table tree: the table of [`level`](Cursor::level)
/// that holds the entry of one virtual address. The one way software
/// walkers step down a tree ([`translate`], [`map`], `pgtable`'s walk to a
/// pmd, which the faults, fork, the range code, KSM's lookup and
/// khugepaged use, the benchmarks through `translate`, the tlb suite through
/// [`entry_at`]); what they read with
/// which ordering, whether they fill empty entries and how a table frame is
/// reached is the [`Tables`] they pass. GUP-fast does not walk with a
/// cursor: it reads each level's entry exactly once, locklessly, and hands
/// the value down its Linux-shaped recursion (`gup::fast`), over the same
/// [`Level`], [`Entry`], [`RawEntry`] and [`PageTable`] types.
#[derive(Clone, Copy)]
pub(crate) struct Cursor {
    va: u64,
    level: Level,
    table_pa: PhysAddr,
    table: &'static PageTable,
}

impl Cursor {
    /// At the root of the tree whose top-level table is the frame `root`.
    #[inline(always)]
    pub(crate) fn new<T: Tables>(tables: &T, root: PhysAddr, va: VirtAddr) -> Cursor {
        Cursor { va: va.as_u64(), level: Level::Pml4, table_pa: root, table: tables.table(root) }
    }

    /// The level of the current table.
    #[inline(always)]
    pub(crate) fn level(&self) -> Level {
        self.level
    }

    /// The frame of the current table (its `Page` holds the table's lock).
    #[inline(always)]
    pub(crate) fn table_addr(&self) -> PhysAddr {
        self.table_pa
    }

    /// The entry of the address in the current table.
    #[inline(always)]
    pub(crate) fn entry(&self) -> &'static Entry {
        self.table.entry(self.level.index(self.va))
    }

    /// Steps down to the table of `target` through [`follow`]. `Ok(None)`:
    /// arrived. `Ok(Some(entry))`: stopped above `target` at an entry with
    /// no table below (empty and not filled, or a huge leaf), which the
    /// cursor stays at.
    #[inline(always)]
    pub(crate) fn descend<T: Tables>(&mut self, target: Level, tables: &T) -> Result<Option<RawEntry>, T::Error> {
        while self.level != target {
            let Some(next) = self.level.next() else { panic!("a walk below the pte level") };
            match follow(self.entry(), tables)? {
                Ok(pa) => {
                    self.level = next;
                    self.table_pa = pa;
                    self.table = tables.table(pa);
                }
                Err(stopped) => return Ok(Some(stopped)),
            }
        }
        Ok(None)
    }
}

/// Tables that exist already, reached through the direct map, never
/// filled: [`translate`]'s and [`entry_at`]'s walks (reports, set-up, tests).
struct Existing;

impl Tables for Existing {
    type Error = core::convert::Infallible;

    fn table(&self, pa: PhysAddr) -> &'static PageTable {
        // SAFETY: `translate`'s and `entry_at`'s callers pass the root of a
        // tree of page tables, and a walk only follows present non-leaf
        // entries of it.
        unsafe { PageTable::at(pa) }
    }

    fn alloc(&self) -> Result<Option<(PhysAddr, PteFlags)>, Self::Error> {
        Ok(None)
    }

    fn free_unused(&self, _: PhysAddr) {}
}

/// The kernel's own tables (and the tlb suite's hand-built ones), filled
/// by [`map`] with frames from the allocator. Intermediate entries get
/// PRESENT | WRITABLE (| USER when the leaf has it).
struct Kernel {
    user: bool,
}

impl Tables for Kernel {
    type Error = MapError;

    fn table(&self, pa: PhysAddr) -> &'static PageTable {
        // SAFETY: `map`'s contract: `root` is a page-table root owned by the
        // caller's context; the walk only follows present non-leaf entries.
        unsafe { PageTable::at(pa) }
    }

    fn alloc(&self) -> Result<Option<(PhysAddr, PteFlags)>, MapError> {
        let new = frame::alloc_zeroed(0).ok_or(MapError::OutOfFrames)?;
        let mut f = PteFlags::PRESENT | PteFlags::WRITABLE;
        if self.user {
            f |= PteFlags::USER;
        }
        Ok(Some((new.start_address(), f)))
    }

    fn free_unused(&self, pa: PhysAddr) {
        // SAFETY: a zeroed order-0 frame from `alloc` that no entry points to.
        unsafe { frame::free(x86_64::structures::paging::PhysFrame::containing_address(pa), 0) };
    }
}

/// Where a virtual address leads in the tables rooted at `root`.
#[derive(Clone, Copy, Debug)]
pub struct Translation {
    /// Physical address `va` maps to.
    pub phys: PhysAddr,
    /// The leaf entry.
    pub leaf: RawEntry,
    /// The size of the page the leaf maps.
    pub size: PageSize,
}

/// Walks the tables rooted at `root` for `va` (no locks: atomic reads only).
pub fn translate(root: PhysAddr, va: VirtAddr) -> Option<Translation> {
    if super::phys_offset() == 0 {
        return None;
    }
    let mut c = Cursor::new(&Existing, root, va);
    let leaf = match c.descend(Level::Pt, &Existing) {
        Ok(None) => c.entry().load(Ordering::Acquire),
        Ok(Some(stopped)) => stopped,
    };
    if !leaf.is_present() {
        return None;
    }
    let size = c.level().leaf_size()?;
    let offset = va.as_u64() & (size.bytes() - 1);
    let base = size.align_down(leaf.addr().as_u64());
    Some(Translation { phys: PhysAddr::new(base + offset), leaf, size })
}

/// The entry at `level` on `va`'s path in the existing tables rooted at
/// `root` (no locks, nothing filled), or where the walk stopped above it: the
/// level and the entry (empty, or a huge leaf) with no table below.
///
/// # Safety
/// `root` must be the root of a tree of page tables that outlives the
/// returned entry, and the caller must own whatever it changes through the
/// entry (a test's own address space, its flushes done by the test).
pub unsafe fn entry_at(root: PhysAddr, va: VirtAddr, level: Level) -> Result<&'static Entry, (Level, RawEntry)> {
    let mut c = Cursor::new(&Existing, root, va);
    match c.descend(level, &Existing) {
        Ok(None) => Ok(c.entry()),
        Ok(Some(stopped)) => Err((c.level(), stopped)),
    }
}

/// The root of the active tables (CR3 without its flag bits).
pub fn active_root() -> PhysAddr {
    PhysAddr::new(crate::arch::cpu::cr3() & ADDR_MASK)
}

/// Whether `va` is a mapped kernel address in the active tables (for crash
/// reports, which must not fault while reading a suspect pointer).
pub(crate) fn is_kernel_readable(va: u64) -> bool {
    va >= super::layout::KERNEL_HALF_START
        && VirtAddr::try_new(va).is_ok()
        && translate(active_root(), VirtAddr::new(va)).is_some()
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame for an intermediate table.
    OutOfFrames,
    /// Something is already mapped there.
    AlreadyMapped,
    /// A huge page covers the address.
    HugePageInTheWay,
}

/// Maps a page of `size` at `va` to `pa` in the tables at
/// `root`, allocating intermediate tables. Intermediate entries get PRESENT |
/// WRITABLE (| USER if `flags` has it): permissions are decided at the leaf.
///
/// New mappings need no TLB flush (x86 does not cache not-present entries).
///
/// # Safety
/// `root` must be a page-table root owned by the caller's context (the kernel
/// tables under their lock), and mapping `va` must not break memory safety
/// (nothing else may rely on `va` being unmapped or mapped elsewhere).
pub unsafe fn map(
    root: PhysAddr,
    va: VirtAddr,
    pa: PhysAddr,
    size: PageSize,
    flags: PteFlags,
) -> Result<(), MapError> {
    let tables = Kernel { user: flags.contains(PteFlags::USER) };
    let mut c = Cursor::new(&tables, root, va);
    if let Some(stopped) = c.descend(size.level(), &tables)? {
        // `Kernel` fills every empty entry, so the walk stopped at a leaf.
        debug_assert!(stopped.is_huge());
        return Err(MapError::HugePageInTheWay);
    }
    let entry = c.entry();
    if entry.load(Ordering::Relaxed).is_present() {
        return Err(MapError::AlreadyMapped);
    }
    let mut f = flags | PteFlags::PRESENT;
    if size != PageSize::Size4K {
        f |= PteFlags::HUGE;
    }
    // Release: whatever the caller wrote to the frame is visible before a
    // walker reaches it through this entry.
    entry.store(RawEntry::new(pa, f), Ordering::Release);
    Ok(())
}

/// What every entry of a freed page table holds: PRESENT (bit 0) clear, so
/// the hardware walker never follows it; otherwise Linux's slab poison byte
/// 0x6b, easy to spot in a dump and far from any real entry.
pub const POISON_ENTRY: u64 = 0x6b6b_6b6b_6b6b_6b6a;
const _: () = assert!(POISON_ENTRY & 1 == 0, "the poison entry must not be present");
