//! User page tables: walking, allocating and freeing the tables below an
//! address space's root, building user entries, splitting a huge pmd, and
//! freeing the tables of an unmapped range ([`free_pgtables`]).
//!
//! Locking (Linux's split page-table locks): an entry of a pte table is
//! changed only under that table's lock, a pmd only under the lock of the
//! pmd table that holds it ([`super::page::Page::ptl`]). Upper levels are
//! filled in (compare-exchange from empty) under the mmap lock for reading
//! and cleared only under it for writing (munmap's [`free_pgtables`], exit),
//! so a walker holding the mmap lock may follow them without locks. Lockless walkers (GUP-fast, the hardware) read each entry
//! once with an atomic load.
//!
//! Invariant: a present leaf entry (or a PROTNONE one) holds one reference
//! on its folio and counts one in the page's mapcount (pte) or the folio's
//! entire mapcount (pmd).

use core::sync::atomic::Ordering;
use x86_64::{PhysAddr, VirtAddr};

use super::addr_space::AddressSpace;
use crate::tlb::Gather;
use super::page::{self, Page, PageRef};
use super::paging::{self, Cursor, Entry, Level, PageSize, PageTable, PteFlags, RawEntry, Tables};
use super::frame;
use super::user_addr::UserAddr;
use crate::sync::ThreadLockGuard;

/// Flags of a user table entry above the leaves (Linux _PAGE_TABLE):
/// permissions are decided at the leaf. ACCESSED is set from the start, as
/// Linux does, so that the hardware's page walk never writes the entry: it
/// would otherwise set the bit on the first walk through it, and a GUP-fast
/// that read the pmd before and re-reads it after (its re-check) would see a
/// change and bail out for nothing. DIRTY is ignored by the CPU in a
/// non-leaf entry and set as in _PAGE_TABLE.
pub(crate) const TABLE_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER)
    .union(PteFlags::ACCESSED)
    .union(PteFlags::DIRTY);

pub use super::paging::POISON_ENTRY;

/// User page-table frames currently allocated (roots included).
static LIVE_TABLES: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// User page-table frames currently allocated (roots included), for leak checks.
pub fn live_tables() -> usize {
    LIVE_TABLES.load(Ordering::Relaxed)
}

/// Out of memory for a page table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoMemory;

/// The table in frame `pa`.
pub(crate) fn table(pa: PhysAddr) -> &'static PageTable {
    debug_assert!(page::page_of(pa).has(page::PageFlags::PAGETABLE) || pa == super::kernel_map::kernel_root());
    // SAFETY: user tables are frames marked PAGETABLE that stay allocated while
    // any walker that may reach them runs (see the module docs and `free_table`).
    unsafe { PageTable::at(pa) }
}

/// Whether a lockless walker (GUP-fast) may read `pa` as a page table: a
/// frame inside physical memory that is a page table now. A table is marked
/// before it is installed (Release) and unmarked when freed, so a walker
/// that read the entry pointing to it (Acquire) and finds no mark followed a
/// stale or garbage entry: the table was freed (and maybe reused) under it,
/// which is reported as a use after free. Never panics, whatever `pa` is.
pub(crate) fn lockless_table_ok(pa: PhysAddr) -> bool {
    match page::try_page(pa.as_u64() / super::PAGE_SIZE) {
        Some(p) if p.has(page::PageFlags::PAGETABLE) => true,
        _ => {
            page::report_uaf(format_args!("a lockless walk followed an entry to {pa:#x}, which is no page table"));
            false
        }
    }
}

/// The page a leaf entry read by a lockless walker points to (`pfn`, the
/// subpage's frame number), or `None`, reported as a use after free, when
/// the frame number is outside physical memory: garbage read from a freed
/// and reused table. Never panics.
pub(crate) fn lockless_leaf_page(pfn: u64) -> Option<&'static Page> {
    let p = page::try_page(pfn);
    if p.is_none() {
        page::report_uaf(format_args!("a lockless walk read a leaf entry to frame {pfn:#x}, outside memory"));
    }
    p
}

/// The table in frame `pa` for a lockless walker (GUP-fast), which may
/// reach a table that is being freed: no PAGETABLE check (the walker asks
/// [`lockless_table_ok`] first, which reports a freed table instead of
/// panicking). Panics for a frame outside physical memory, which
/// [`lockless_table_ok`] has refused already.
pub(crate) fn table_lockless(pa: PhysAddr) -> &'static PageTable {
    assert!(page::exists(pa.as_u64() / super::PAGE_SIZE), "page table at {pa:#x} outside physical memory");
    // SAFETY: `pa` is a frame of RAM (checked), which the direct map covers
    // for the kernel's life, and a `PageTable` is 512 atomic entries, valid
    // over any contents. Under the protocol the table cannot be freed while
    // the walker runs with interrupts off; under a negative control it can,
    // but its frame is poisoned and quarantined, not unmapped, so reading it is a
    // logic error the walker detects (POISON_ENTRY, or a frame that is no
    // table), never a memory-safety one.
    unsafe { PageTable::at(pa) }
}

/// A zeroed frame marked as a page table.
pub fn alloc_table() -> Result<PhysAddr, NoMemory> {
    let f = frame::alloc_zeroed(0).ok_or(NoMemory)?;
    page::set_pagetable(f.start_address());
    LIVE_TABLES.fetch_add(1, Ordering::Relaxed);
    Ok(f.start_address())
}

/// Poisons and frees a page-table frame nothing can reach any more (no
/// lockless walker either: teardown of an unloaded address space, or a table
/// that lost an installation race and was never reachable).
pub fn free_table(pa: PhysAddr) {
    // SAFETY: the caller's contract: a detached order-0 table nobody uses.
    crate::tlb::poison_and_free_table(unsafe { DetachedTable::new(pa) });
}

/// A page-table frame that no entry of a live tree points to any more, owned
/// by this value (Linux: the table handed to pte_free_tlb() or
/// tlb_remove_table()). Only the page-table code that detached the frame
/// makes one, so freeing it (`tlb::poison_and_free_table`, a gather's
/// `free_table`, `tlb::remove_table_one`) is safe to call: the frame is a
/// page table, and it is freed once. When it may be freed (after which
/// flush, which synchronisation with lockless walkers) is the protocol's
/// business, not memory safety's: a freed table stays in the direct map,
/// poisoned, and walkers read it atomically.
#[must_use = "a detached table is freed through tlb (a gather or remove_table_one)"]
pub struct DetachedTable {
    pa: PhysAddr,
}

impl DetachedTable {
    /// Takes ownership of the detached table in frame `pa`.
    ///
    /// # Safety
    /// `pa` must be an order-0 page-table frame (from [`alloc_table`] or
    /// `paging::map`) that no entry points to any more, except entries of
    /// tables detached with it (a detached subtree), and for which no other
    /// `DetachedTable` exists: it will be poisoned and freed.
    pub unsafe fn new(pa: PhysAddr) -> DetachedTable {
        DetachedTable { pa }
    }

    /// Fills the table with `POISON_ENTRY`, unmarks it and returns its frame
    /// to the allocator, or to the quarantine while a race scenario runs (so
    /// a late lockless walker reads the poison, not a reused frame). The
    /// freeing step of `tlb::poison_and_free_table`, which decides when.
    pub(crate) fn poison_and_free(self) {
        // Not `table()`: tables built by `paging::map` carry no PAGETABLE mark.
        // SAFETY: `new`'s contract: a page-table frame (512 atomic entries in
        // the direct map) owned by this value.
        let t = unsafe { PageTable::at(self.pa) };
        for i in 0..512 {
            // Relaxed: a late walker reads either the old entry or the
            // poison; the free below publishes nothing it could rely on.
            t.entry(i).store(RawEntry::POISON, Ordering::Relaxed);
        }
        note_table_freed(self.pa);
        let pfn = self.pa.as_u64() / super::PAGE_SIZE;
        if !super::quarantine::hold(pfn, 0, super::quarantine::Poison::Table) {
            // SAFETY: `new`'s contract: an order-0 frame that nothing points
            // to, owned by this value, which is consumed here.
            unsafe { frame::free(x86_64::structures::paging::PhysFrame::containing_address(self.pa), 0) };
        }
    }
}

/// Accounting for a page-table frame going back to the allocator (called by
/// the one freeing function, `tlb::poison_and_free_table`).
pub(crate) fn note_table_freed(pa: PhysAddr) {
    if page::page_of(pa).has(page::PageFlags::PAGETABLE) {
        page::clear_pagetable(pa);
        LIVE_TABLES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// User page tables for a [`Cursor`] walk: frames marked PAGETABLE, filled
/// (when `alloc`) with [`alloc_table`] and [`TABLE_FLAGS`].
struct UserTables {
    alloc: bool,
}

impl Tables for UserTables {
    type Error = NoMemory;

    #[inline(always)]
    fn table(&self, pa: PhysAddr) -> &'static PageTable {
        table(pa)
    }

    #[inline(always)]
    fn alloc(&self) -> Result<Option<(PhysAddr, PteFlags)>, NoMemory> {
        if self.alloc { Ok(Some((alloc_table()?, TABLE_FLAGS))) } else { Ok(None) }
    }

    fn free_unused(&self, pa: PhysAddr) {
        free_table(pa);
    }
}

/// The next table below `entry`, allocating it if `alloc`. `None` when the
/// entry is empty (and not allocating) or a huge leaf.
fn next_table(entry: &Entry, alloc: bool) -> Result<Option<PhysAddr>, NoMemory> {
    Ok(paging::follow(entry, &UserTables { alloc })?.ok())
}

/// The pmd entry of `va` and the pmd table's page (for its lock).
#[derive(Clone, Copy)]
pub struct Pmd {
    /// The entry.
    pub entry: &'static Entry,
    /// The page of the table holding it.
    pub table: &'static Page,
}

impl Pmd {
    /// Takes the pmd table's lock (Linux pmd_lock()).
    pub(crate) fn lock(&self) -> ThreadLockGuard<'static, ()> {
        self.table.ptl()
    }

    /// The entry's current value.
    pub fn get(&self) -> RawEntry {
        self.entry.load(Ordering::Acquire)
    }
}

/// Walks to the pmd of `va`, allocating the upper tables if `alloc`.
pub fn pmd(mm: &AddressSpace, va: UserAddr, alloc: bool) -> Result<Option<Pmd>, NoMemory> {
    // The user half's end has no entry (it is the kernel half's start).
    if va == UserAddr::END {
        return Ok(None);
    }
    let va = VirtAddr::from(va);
    let tables = UserTables { alloc };
    let mut c = Cursor::new(&tables, mm.root(), va);
    if c.descend(Level::Pd, &tables)?.is_some() {
        return Ok(None);
    }
    Ok(Some(Pmd { entry: c.entry(), table: page::page_of(c.table_addr()) }))
}

/// A pte table, located through its pmd.
#[derive(Clone, Copy)]
pub struct PteTable {
    /// The table.
    pub table: &'static PageTable,
    /// Its page (for the lock).
    pub page: &'static Page,
}

impl PteTable {
    /// The entry of `va`.
    pub fn entry(&self, va: UserAddr) -> &'static Entry {
        self.table.entry(Level::Pt.index(va.as_u64()))
    }

    /// Takes the table's lock (Linux pte_offset_map_lock()).
    pub fn lock(&self) -> ThreadLockGuard<'static, ()> {
        self.page.ptl()
    }
}

/// The pte table under `pmd`, allocating it if empty and `alloc`. `None` if
/// the pmd is a huge leaf (or empty and not allocating).
pub fn pte_table(pmd: Pmd, alloc: bool) -> Result<Option<PteTable>, NoMemory> {
    Ok(next_table(pmd.entry, alloc)?.map(|pa| PteTable { table: table(pa), page: page::page_of(pa) }))
}

/// The leaf entry for a user page of `size` (a pte or a huge pmd): present,
/// user, accessed, no-execute unless `exec`, writable (and dirty) if `write`.
pub(crate) fn leaf(pa: PhysAddr, write: bool, exec: bool, size: PageSize) -> RawEntry {
    let mut f = PteFlags::PRESENT | PteFlags::USER | PteFlags::ACCESSED;
    if write {
        f |= PteFlags::WRITABLE | PteFlags::DIRTY;
    }
    if !exec {
        f |= PteFlags::NO_EXECUTE;
    }
    match size {
        PageSize::Size4K => {}
        PageSize::Size2M => f |= PteFlags::HUGE,
        PageSize::Size1G => panic!("a 1 GiB user page"),
    }
    RawEntry::new(pa, f)
}

/// The marker a writer leaves in a pte it cleared while it sleeps (see
/// [`PteFlags::MARKER`]); it keeps the page's address for reports.
pub(crate) fn marker(pa: PhysAddr) -> RawEntry {
    RawEntry::new(pa, PteFlags::MARKER)
}

/// Whether `e` is a writer's marker.
pub fn is_marker(e: RawEntry) -> bool {
    !e.is_present() && e.flags().contains(PteFlags::MARKER)
}

/// Clears a pte (Linux ptep_get_and_clear()) and hands back what it held:
/// the old entry and, when it mapped a page, the reference that mapping
/// held (the caller lowers the page's mapcount and drops the reference
/// after the flush). The caller holds the table's lock; the atomic swap
/// gives the old value, and so its reference, to exactly one clearer.
pub(crate) fn ptep_get_and_clear(pte: &Entry) -> (RawEntry, Option<PageRef>) {
    let old = pte.swap(RawEntry::EMPTY, Ordering::AcqRel);
    // SAFETY: an entry that maps a page holds one reference on it (page.rs
    // counting rules); the swap removed the entry, so that reference is ours.
    let r = maps_page(old).then(|| unsafe { PageRef::from_mapping(page::page_of(old.addr())) });
    (old, r)
}

/// `e` made inaccessible (PROT_NONE: not present, not writable, the
/// software PROTNONE bit keeps the mapping and its reference), as
/// mprotect(PROT_NONE) leaves a pte and as Linux's mk_pte() with a
/// PROT_NONE area's vm_page_prot makes one.
pub(crate) fn protnone(e: RawEntry) -> RawEntry {
    RawEntry::new(e.addr(), (e.flags() - PteFlags::PRESENT - PteFlags::WRITABLE) | PteFlags::PROTNONE)
}

/// Whether an entry maps a page (present, or made inaccessible by PROT_NONE).
pub fn maps_page(e: RawEntry) -> bool {
    e.is_present() || e.flags().contains(PteFlags::PROTNONE)
}

/// Splits the huge pmd of `va` into a table of 512 ptes mapping the same
/// folio with the same permissions (Linux __split_huge_pmd()). The folio
/// stays one large folio, now mapped by ptes. No-op if the pmd is no longer
/// huge. The flush of the old 2 MiB entry goes into `batch`.
pub(crate) fn split_huge_pmd(pmd: Pmd, va: UserAddr, batch: &mut Gather<'_>) -> Result<(), NoMemory> {
    if !pmd.get().is_huge() {
        return Ok(());
    }
    let new = alloc_table()?;
    let _ptl = pmd.lock();
    let old = pmd.get();
    if !old.is_present() || !old.is_huge() {
        drop(_ptl);
        free_table(new);
        return Ok(());
    }
    let t = table(new);
    let flags = old.flags() - PteFlags::HUGE;
    let head = page::page_of(old.addr());
    for i in 0..512u64 {
        let sub = page::page(head.pfn() + i);
        sub.map_pte();
        // Relaxed: the table is not reachable until the exchange below (Release).
        t.entry(i as usize).store(RawEntry::new(sub.phys(), flags), Ordering::Relaxed);
    }
    // One pmd reference becomes 512 pte references.
    head.get_many(511);
    // Release: the filled table is visible before a walker can reach it. The
    // exchange (not a plain store) makes a lockless walker's re-check of the
    // pmd see the change.
    pmd.entry.swap(RawEntry::new(new, TABLE_FLAGS), Ordering::AcqRel);
    head.unmap_pmd();
    batch.huge(va.into());
    Ok(())
}

/// A pte table a collapse has unlinked from its pmd (Linux: the `pgtable_t`
/// of `pmd_pgtable(_pmd)` between pmdp_collapse_flush() and either
/// pmd_populate() or its free). It is reachable only through this value:
/// it must go back ([`pmd_populate`]) or be freed ([`pte_free`]).
#[must_use = "a detached pte table must be put back or freed"]
pub struct DetachedPteTable {
    old: RawEntry,
}

impl DetachedPteTable {
    fn into_detached(self) -> DetachedTable {
        // SAFETY: the pmd that pointed to the table was cleared by
        // pmdp_collapse_flush, and this value was its only handle.
        unsafe { DetachedTable::new(self.old.addr()) }
    }

    /// The table, for the isolate step (its lock, its entries).
    pub(crate) fn table(&self) -> PteTable {
        PteTable { table: table(self.old.addr()), page: page::page_of(self.old.addr()) }
    }

    /// The pmd value that pointed to it.
    pub fn pmd_value(&self) -> RawEntry {
        self.old
    }

    /// Clears every entry that maps a page and returns the references
    /// those mappings held, each page's mapcount lowered (the tail of Linux
    /// __collapse_huge_page_copy_succeeded(): ptep_clear() and
    /// folio_remove_rmap_pte()). The caller has flushed the range, so the
    /// references may be dropped at once.
    pub(crate) fn take_mappings(&self) -> alloc::vec::Vec<PageRef> {
        let pt = self.table();
        let _ptl = pt.lock();
        let mut refs = alloc::vec::Vec::new();
        for i in 0..512 {
            let e = pt.table.entry(i).swap(RawEntry::EMPTY, Ordering::AcqRel);
            if !maps_page(e) {
                continue;
            }
            let p = page::page_of(e.addr());
            p.unmap_pte();
            // SAFETY: the cleared entry held this reference (it mapped `p`).
            refs.push(unsafe { PageRef::from_mapping(p) });
        }
        refs
    }
}

/// Clears the pmd of `haddr` that points to a pte table and returns the
/// detached table with the flush owed for the 2 MiB it mapped (Linux
/// pmdp_collapse_flush(): pmdp_huge_get_and_clear() + flush_tlb_range()).
/// The caller holds the mmap lock for writing and `pmd`'s lock. `None` if
/// the pmd does not point to a pte table.
pub fn pmdp_collapse_flush<'a>(mm: &'a AddressSpace, pmd: Pmd, haddr: UserAddr) -> Option<(DetachedPteTable, crate::tlb::TlbFlush<'a>)> {
    use crate::tlb::TlbFlush;
    assert!(haddr.is_aligned(PageSize::Size2M), "pmd collapse at unaligned {haddr:#x}");
    let cur = pmd.get();
    if !cur.is_present() || cur.is_huge() {
        return None;
    }
    // An atomic exchange, not a store: a GUP-fast that read the old pmd
    // and then took a reference (SeqCst RMW) re-reads the pmd (SeqCst load)
    // and sees the change (Dekker with the writer's exchange, then its fence
    // before the reference checks); x86's locked exchange is itself a full
    // barrier.
    let old = pmd.entry.swap(RawEntry::EMPTY, Ordering::AcqRel);
    debug_assert_eq!(old, cur, "a pmd changed under its lock");
    let flush = TlbFlush::pmd_collapse(mm.tlb(), haddr.into());
    Some((DetachedPteTable { old }, flush))
}

/// Puts a detached pte table back under its pmd (Linux pmd_populate() on
/// the rollback path of collapse_huge_page()). The caller holds `pmd`'s
/// lock; the pmd must still be empty.
pub fn pmd_populate(pmd: Pmd, t: DetachedPteTable) {
    let cur = pmd.get();
    assert_eq!(cur, RawEntry::EMPTY, "pmd_populate over a non-empty pmd");
    // Release: whatever the isolate step did to the table (nothing but
    // reads and page locks) is visible before walkers reach it again.
    pmd.entry.store(t.old, Ordering::Release);
}

/// When a detached pte table may be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PteFree {
    /// Now: the caller flushed the range and ran the table sync (Linux
    /// tlb_remove_table_sync_one()), so no lockless walker is inside.
    Synced,
    /// After an RCU grace period (MMU_GATHER_RCU_TABLE_FREE's call_rcu).
    Rcu,
    /// Now, with no sync at all: the negative control
    /// `collapse.no_table_sync` (bug G). A walker still inside reads the
    /// poison, which GUP-fast reports as a use after free.
    UnsyncedForNegativeControl,
}

/// Poisons and frees a detached pte table, now or after a grace period
/// (Linux pte_free() / tlb_remove_table_one()). Its entries must all be
/// empty (the collapse moved their pages out).
pub(crate) fn pte_free(t: DetachedPteTable, when: PteFree) {
    let pa = t.old.addr();
    let tbl = table(pa);
    for i in 0..512 {
        if maps_page(tbl.entry(i).load(Ordering::Acquire)) {
            page::report_invariant(format_args!("pte table {pa:#x} freed with entry {i} still mapping a page"));
        }
    }
    let detached = t.into_detached();
    match when {
        // The table is detached (its pmd was cleared and the range flushed).
        // With `Synced` no lockless walker can be inside any more; under the
        // negative control one may be, which is the bug modelled: the frame
        // stays in the direct map, so such a walker reads the poison entries
        // (atomically), never unmapped memory.
        PteFree::Synced | PteFree::UnsyncedForNegativeControl => crate::tlb::poison_and_free_table(detached),
        // After a grace period: every interrupts-off walker that could have
        // reached the table has finished.
        PteFree::Rcu => crate::rcu::call_rcu(move || crate::tlb::poison_and_free_table(detached)),
    }
}

/// Frees every table and drops every mapping of the user half of a root no
/// CPU has loaded (Linux exit_mmap()/free_pgtables() at teardown).
pub(crate) fn teardown(root: PhysAddr) {
    let pml4 = table(root);
    for i in 0..256 {
        let e = pml4.entry(i).swap(RawEntry::EMPTY, Ordering::AcqRel);
        if e.is_present() {
            teardown_table(e.addr(), Level::Pdpt);
        }
    }
}

fn teardown_table(pa: PhysAddr, level: Level) {
    let t = table(pa);
    for i in 0..512 {
        let e = t.entry(i).swap(RawEntry::EMPTY, Ordering::AcqRel);
        if !maps_page(e) {
            continue;
        }
        match level {
            Level::Pt => {
                let p = page::page_of(e.addr());
                p.unmap_pte();
                p.put();
            }
            Level::Pd if e.is_huge() => {
                let p = page::page_of(e.addr());
                p.unmap_pmd();
                p.put();
            }
            _ => teardown_table(e.addr(), level.next().expect("a table below a pte table")),
        }
    }
    free_table(pa);
}

/// Detaches the page tables that only translated `[start, end)`, an
/// unmapped range (its leaves already zapped), and hands them to `batch`,
/// which frees them after its flush and the `ptfree` synchronisation (Linux
/// free_pgtables() / free_pgd_range() after unmap_vmas() in munmap). A
/// table is detached when everything it covers lies in `[floor, ceiling)`,
/// the gap between the areas around the range (Linux's floor and ceiling:
/// the previous area's end, the next one's start), so no area still needs
/// it. The caller holds the mmap lock for writing: no fault fills a table
/// meanwhile, and every walker that takes no mmap lock is lockless (GUP-fast,
/// the hardware), which the gather's flush and `ptfree` keep safe.
pub(crate) fn free_pgtables(mm: &AddressSpace, start: UserAddr, end: UserAddr, floor: UserAddr, ceiling: UserAddr, batch: &mut Gather<'_>) {
    debug_assert!(floor <= start && end <= ceiling, "the unmapped range is not inside its gap");
    // The walk below computes table boundaries (up to the user half's end).
    let (start, end, floor, ceiling) = (start.as_u64(), end.as_u64(), floor.as_u64(), ceiling.as_u64());
    free_range(mm.root(), Level::Pml4, 0, start, end, floor, ceiling, batch);
}

/// [`free_pgtables`] below the table `pa` of `level`, which covers from `base`.
#[allow(clippy::too_many_arguments)]
fn free_range(pa: PhysAddr, level: Level, base: u64, start: u64, end: u64, floor: u64, ceiling: u64, batch: &mut Gather<'_>) {
    let Some(next) = level.next() else { return };
    let t = table(pa);
    let size = level.entry_size();
    // The user half only: the kernel half's entries of the root are shared.
    let last = if level == Level::Pml4 { 256 } else { 512 };
    let first = ((start.max(base) - base) / size) as usize;
    for i in first..last {
        let cb = base + i as u64 * size;
        if cb >= end {
            break;
        }
        let e = t.entry(i).load(Ordering::Acquire);
        if !e.is_present() || e.is_huge() {
            continue;
        }
        free_range(e.addr(), next, cb, start, end, floor, ceiling, batch);
        if cb < floor || cb + size > ceiling || !table_is_empty(e.addr()) {
            continue;
        }
        let old = {
            // A pmd changes under its pmd table's lock (module docs); the
            // upper levels only under the mmap lock we hold for writing.
            let _ptl = (level == Level::Pd).then(|| page::page_of(pa).ptl());
            t.entry(i).swap(RawEntry::EMPTY, Ordering::AcqRel)
        };
        debug_assert_eq!(old, e, "a table entry changed under the mmap write lock");
        // SAFETY: the entry that pointed to the table was cleared above and
        // nothing else points to it (its own entries are all empty).
        batch.free_table(unsafe { DetachedTable::new(old.addr()) }, VirtAddr::new(cb));
    }
}

/// Whether every entry of the table `pa` is empty.
fn table_is_empty(pa: PhysAddr) -> bool {
    let t = table(pa);
    (0..512).all(|i| t.entry(i).load(Ordering::Acquire) == RawEntry::EMPTY)
}

/// Detaches every page table of the user half (its leaves already zapped)
/// and hands them to `batch`, which frees them after its flush and the
/// `ptfree` synchronisation (Linux free_pgtables() at exit).
pub(crate) fn free_user_tables(mm: &AddressSpace, batch: &mut Gather<'_>) {
    let pml4 = table(mm.root());
    for i in 0..256u64 {
        let e = pml4.entry(i as usize).swap(RawEntry::EMPTY, Ordering::AcqRel);
        if e.is_present() {
            detach_below(e.addr(), Level::Pdpt, UserAddr::from_const(i << 39), batch);
        }
    }
}

fn detach_below(pa: PhysAddr, level: Level, base: UserAddr, batch: &mut Gather<'_>) {
    if let Some(next) = level.next() {
        let t = table(pa);
        for i in 0..512u64 {
            let e = t.entry(i as usize).load(Ordering::Acquire);
            if e.is_present() && !e.is_huge() {
                detach_below(e.addr(), next, base + (i << level.shift()), batch);
            } else if maps_page(e) {
                page::report_invariant(format_args!("a mapping at {base:#x} survived the unmap of everything"));
            }
        }
    }
    // SAFETY: the table hangs only below the detached top-level entry (a
    // detached subtree), visited once by this walk.
    batch.free_table(unsafe { DetachedTable::new(pa) }, base.into());
}

