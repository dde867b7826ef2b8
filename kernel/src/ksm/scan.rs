//! ksmd and its indexes (Linux ksm_do_scan(), cmp_and_merge_page(),
//! stable_tree_search(), unstable_tree_search_insert()).
//!
//! The scanner walks every registered address space's mergeable areas page
//! by page, `pages_to_scan` pages per batch, sleeping `sleep_us` between
//! batches (Linux's `pages_to_scan` and `sleep_millisecs`). For each page,
//! with the mmap lock held for reading and one reference taken:
//! 1. equal to a KSM page of the stable index? merge into it;
//! 2. else, checksum changed since the last visit? remember it, skip (a
//!    volatile page would only churn);
//! 3. else, equal to a page of the unstable index? make that pair a new KSM
//!    page (this page becomes the KSM page, the other is merged into it; if
//!    the second half fails, the first gets its private copy back);
//! 4. else enter the unstable index.
//!
//! The scanner state is owned by whoever scans (ksmd, or a test calling
//! [`scan_pages`] with ksmd stopped); the stable index has its own short
//! lock because statistics read it.

use crate::stamps::{self, Step};
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::merge::{identical, try_to_merge_one_page};
use super::rmap_list::{Order, RmapList};
use super::stats;
use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind};
use crate::mm::page::{self, Page, PageFlags, PageRef};
use crate::mm::scan::{MmCursor, Position};
use crate::mm::vma::{VmFlags, VmaSet};
use crate::mm::{PAGE_SIZE, frame_io, pgtable};
use crate::mm::{PageSize, UserAddr};
use crate::race;
use crate::sched::daemon::{Daemon, lock_yielding};
use crate::sync::SpinLock;

/// ksmd's tunables (Linux /sys/kernel/mm/ksm/pages_to_scan and
/// sleep_millisecs, here in microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunables {
    /// Pages per batch.
    pub pages_to_scan: u64,
    /// Sleep between batches; 0 only yields the CPU.
    pub sleep_us: u64,
}

impl Tunables {
    /// Linux's defaults: 100 pages every 20 ms.
    pub const DEFAULT: Tunables = Tunables { pages_to_scan: 100, sleep_us: 20_000 };
}

/// What the scanner keeps per address space: the last checksum seen per
/// page address (Linux rmap_item->oldchecksum).
type Checksums = RmapList;

struct UnstableEntry {
    mm: Weak<AddressSpace>,
    mm_id: u64,
    addr: UserAddr,
}

struct Scanner {
    cursor: MmCursor<Checksums>,
    unstable: BTreeMap<u64, UnstableEntry>,
}

/// Address spaces that asked for KSM since the scanner last looked.
static NEW: SpinLock<Vec<Weak<AddressSpace>>> = SpinLock::new("ksm new mms", Vec::new());
static SCANNER: spin::Mutex<Scanner> =
    spin::Mutex::new(Scanner { cursor: MmCursor::new(), unstable: BTreeMap::new() });
/// KSM pages by content hash; each entry holds one reference.
static STABLE: SpinLock<BTreeMap<u64, Vec<PageRef>>> = SpinLock::new("ksm stable index", BTreeMap::new());

static PAGES_TO_SCAN: AtomicU64 = AtomicU64::new(Tunables::DEFAULT.pages_to_scan);
static SLEEP_US: AtomicU64 = AtomicU64::new(Tunables::DEFAULT.sleep_us);
static KSMD: Daemon = Daemon::new("ksmd", "ksmd is already running", "ksmd: no such CPU");

/// Registers `mm` for scanning (Linux __ksm_enter()).
pub(super) fn register(mm: &Arc<AddressSpace>) {
    NEW.lock().push(Arc::downgrade(mm));
}

/// Linux's default `max_page_sharing`.
pub const MAX_PAGE_SHARING_DEFAULT: u64 = 256;
/// Most ptes one KSM page may have (Linux /sys/kernel/mm/ksm/max_page_sharing).
static MAX_PAGE_SHARING: AtomicU64 = AtomicU64::new(MAX_PAGE_SHARING_DEFAULT);

/// Sets `max_page_sharing` (boot option `ksm.max_page_sharing=`; Linux
/// refuses values below 2, so does this). A full KSM page takes no more
/// mappings: the next equal page pairs up in the unstable index and becomes
/// a new KSM page of the same contents (Linux's stable_node chain of dups),
/// which keeps each KSM page's rmap walk bounded.
pub fn set_max_page_sharing(n: u64) {
    MAX_PAGE_SHARING.store(n.max(2), Ordering::Relaxed);
}

/// The `max_page_sharing` in force.
pub fn max_page_sharing() -> u64 {
    MAX_PAGE_SHARING.load(Ordering::Relaxed)
}

/// Sets ksmd's tunables (effective at its next batch). `pages_to_scan` 0
/// is accepted as Linux accepts it: ksmd then wakes up and scans nothing.
pub fn set_tunables(t: Tunables) {
    PAGES_TO_SCAN.store(t.pages_to_scan, Ordering::Relaxed);
    SLEEP_US.store(t.sleep_us, Ordering::Relaxed);
}

/// The tunables in force.
pub fn tunables() -> Tunables {
    Tunables { pages_to_scan: PAGES_TO_SCAN.load(Ordering::Relaxed), sleep_us: SLEEP_US.load(Ordering::Relaxed) }
}

/// Whether ksmd runs (Linux `run` reads 1).
pub fn ksmd_running() -> bool {
    KSMD.running()
}

/// Starts the scan over from the first address space with nothing
/// remembered: no checksums, an empty unstable index (Linux: after
/// KSM_RUN_UNMERGE every rmap_item is gone and ksm_scan restarts).
pub(super) fn reset_scan() {
    let mut s = lock_scanner();
    s.cursor.rewind();
    s.unstable.clear();
    for checksums in s.cursor.data_mut() {
        checksums.clear();
    }
}

/// Every live address space registered with KSM (scanned, or waiting for
/// the scanner to pick it up).
pub(super) fn registered() -> Vec<Arc<AddressSpace>> {
    let mut out: Vec<Arc<AddressSpace>> = lock_scanner().cursor.live().collect();
    for mm in NEW.lock().iter().filter_map(Weak::upgrade) {
        if !out.iter().any(|x| Arc::ptr_eq(x, &mm)) {
            out.push(mm);
        }
    }
    out
}

/// Starts ksmd on `cpu` with `t` (Linux: echo 1 > run). An error if it runs.
pub fn start_ksmd(cpu: usize, t: Tunables) -> Result<(), &'static str> {
    let batch = || {
        scan_pages(PAGES_TO_SCAN.load(Ordering::Relaxed));
    };
    KSMD.start(cpu, || set_tunables(t), batch, || SLEEP_US.load(Ordering::Relaxed))
}

/// Stops ksmd and waits for it (at most 10 s; an error names the CPU).
pub fn stop_ksmd() -> Result<(), alloc::string::String> {
    KSMD.stop()
}

/// A 64-bit hash of a page's contents (Linux calc_checksum(), xxhash there).
/// The caller holds a reference on `p`; concurrent writes only change the
/// hash, which the merge re-checks.
fn checksum(p: &Page) -> u64 {
    let t = stamps::start();
    let sum = frame_io::checksum(p);
    stamps::end(Step::KsmChecksum, t);
    sum
}

/// What a pte lookup found.
pub(super) enum Followed {
    /// A present 4 KiB pte's page, with a reference of ours.
    Page(PageRef),
    /// A huge pmd (this KSM does not split THPs).
    Huge,
    /// Nothing mapped, or not present.
    None,
}

/// The page mapped by a pte at `addr`, with a reference (Linux
/// follow_page()).
pub(super) fn follow_pte(mm: &AddressSpace, addr: UserAddr) -> Followed {
    let Some(pmd) = pgtable::pmd(mm, addr, false).ok().flatten() else { return Followed::None };
    if pmd.get().is_huge() {
        return Followed::Huge;
    }
    let Some(pt) = pgtable::pte_table(pmd, false).ok().flatten() else { return Followed::None };
    let _ptl = pt.lock();
    let e = pt.entry(addr).load(Ordering::Acquire);
    // PROT_NONE ptes too: Linux's KSM looks pages up without minding the
    // area's protection (folio_walk_start(), formerly follow_page() without
    // FOLL_HONOR_NUMA_FAULT), so PROT_NONE pages merge and unmerge.
    if pgtable::maps_page(e) { Followed::Page(PageRef::new_ref(page::page_of(e.addr()))) } else { Followed::None }
}

/// [`follow_pte`] for the scanner: a huge pmd counts as a refusal.
fn follow(mm: &AddressSpace, addr: UserAddr) -> Option<PageRef> {
    match follow_pte(mm, addr) {
        Followed::Page(p) => Some(p),
        Followed::Huge => {
            stats::note_refused(super::Refusal::Large);
            None
        }
        Followed::None => None,
    }
}

/// A KSM page equal to `p` that has room for one more mapping (fewer than
/// `max_page_sharing`, Linux stable_node_dup()), if the stable index has
/// one, with a reference of ours (so a concurrent [`prune`] cannot free it
/// under the merge).
fn stable_lookup(sum: u64, p: &Page) -> Option<PageRef> {
    let t = stamps::start();
    let max = max_page_sharing();
    let stable = STABLE.lock();
    let found = stable
        .get(&sum)?
        .iter()
        // Newest first: the KSM pages before it are full (each new one is
        // made when the others had no room), so the one with room is found
        // without walking past every full one.
        .rev()
        .map(PageRef::page)
        .find(|k| (k.total_mapcount().max(0) as u64) < max && identical(k, p))
        .map(PageRef::new_ref);
    stamps::end(Step::KsmStableLookup, t);
    found
}

/// (pages_shared, pages_sharing) from the stable index.
pub(super) fn sharing() -> (u64, u64) {
    let stable = STABLE.lock();
    let mut shared = 0;
    let mut sharing = 0;
    for k in stable.values().flatten() {
        let m = k.page().total_mapcount().max(0) as u64;
        if m > 0 {
            shared += 1;
            sharing += m - 1;
        }
    }
    (shared, sharing)
}

/// Drops the stable index's KSM pages that nothing maps any more (Linux
/// removes stale stable nodes lazily); returns how many.
pub fn prune() -> usize {
    let mut dropped = Vec::new();
    {
        let mut stable = STABLE.lock();
        for nodes in stable.values_mut() {
            let (keep, gone): (Vec<_>, Vec<_>) = core::mem::take(nodes).into_iter().partition(|k| k.page().total_mapcount() > 0);
            *nodes = keep;
            dropped.extend(gone);
        }
        stable.retain(|_, v| !v.is_empty());
    }
    // References are put outside the lock (a put may free and poison).
    let n = dropped.len();
    drop(dropped);
    n
}

fn lock_scanner() -> spin::MutexGuard<'static, Scanner> {
    lock_yielding(&SCANNER)
}

/// Scans up to `n` pages (one ksmd batch). Returns the pages examined.
pub fn scan_pages(n: u64) -> u64 {
    let mut s = lock_scanner();
    for mm in NEW.lock().drain(..) {
        s.cursor.register(mm, RmapList::new);
    }
    let mut done = 0;
    // Pages done when the current pass began: a pass that adds none ends
    // the batch (nothing mergeable is left to scan).
    let mut at_pass_start = 0;
    let mut passes = 0;
    while done < n {
        if race::steer::pending() && scan_steered(&mut s) {
            done += 1;
            continue;
        }
        let mm = match s.cursor.position() {
            Position::At(mm) => mm,
            Position::PassEnd => {
                // A full scan ended (Linux: ksm_scan.seqnr++, the unstable
                // tree is rebuilt from scratch).
                s.unstable.clear();
                stats::note_full_scan();
                prune();
                passes += 1;
                if s.cursor.is_empty() || (passes > 1 && done == at_pass_start) {
                    break;
                }
                at_pass_start = done;
                continue;
            }
        };
        let vmas = mm.vmas.read();
        let budget = n - done;
        let (scanned, mm_done) = scan_mm(&mut s, &mm, &vmas, budget);
        done += scanned;
        if mm_done {
            s.cursor.next_mm();
        }
    }
    done
}

/// The page a walker paused by the exploration policy walks, if one does in
/// a registered address space's mergeable area: scanned now, out of the
/// cursor's order, which then goes on where it stood (`race::steer`: a
/// scheduling choice of the exploration, off outside scenario runs with
/// `explore=auto`). Whether a page was scanned.
fn scan_steered(s: &mut Scanner) -> bool {
    let Some((slot, mm, addr)) = race::steer::take(|mm_id, addr| {
        let (slot, mm) = s.cursor.find(mm_id)?;
        Some((slot, mm, UserAddr::new(addr)?.align_down(PageSize::Size4K)))
    }) else {
        return false;
    };
    let vmas = mm.vmas.read();
    if !vmas.find(addr).is_some_and(|v| v.flags.contains(VmFlags::MERGEABLE)) {
        return false;
    }
    let saved = s.cursor.visit(slot, addr);
    scan_page(s, &mm, &vmas, addr, Order::Steered);
    s.cursor.restore(saved);
    true
}

/// Scans up to `budget` mergeable pages of `mm` from the cursor on; returns
/// how many, and whether the address space is done. It stops early, after
/// one page at least, when a walker paused by the exploration asks for a
/// visit ([`scan_steered`]).
fn scan_mm(s: &mut Scanner, mm: &Arc<AddressSpace>, vmas: &VmaSet, budget: u64) -> (u64, bool) {
    let mut done = 0;
    let areas: Vec<(UserAddr, UserAddr)> =
        vmas.iter().filter(|v| v.flags.contains(VmFlags::MERGEABLE) && v.end > s.cursor.addr).map(|v| (v.start, v.end)).collect();
    for (start, end) in areas {
        let mut addr = s.cursor.addr.max(start);
        while addr < end {
            if done == budget || (done > 0 && race::steer::pending()) {
                s.cursor.addr = addr;
                return (done, false);
            }
            scan_page(s, mm, vmas, addr, Order::InOrder);
            done += 1;
            addr += PAGE_SIZE;
            crate::sched::cond_resched();
        }
    }
    s.cursor.data().end_pass();
    s.cursor.addr = UserAddr::END;
    (done, true)
}

/// One page (Linux cmp_and_merge_page()).
fn scan_page(s: &mut Scanner, mm: &Arc<AddressSpace>, vmas: &VmaSet, addr: UserAddr, order: Order) {
    let t = stamps::start();
    scan_page_inner(s, mm, vmas, addr, order);
    stamps::end(Step::KsmScanPage, t);
}

fn scan_page_inner(s: &mut Scanner, mm: &Arc<AddressSpace>, vmas: &VmaSet, addr: UserAddr, order: Order) {
    stats::note_scanned();
    let t = stamps::start();
    let followed = follow(mm, addr);
    stamps::end(Step::KsmFollow, t);
    let t = stamps::start();
    // The page's item (Linux get_next_rmap_item()); a page with nothing
    // mapped keeps none.
    let old = s.cursor.data().take(addr, order);
    stamps::end(Step::KsmRmapItem, t);
    let Some(page) = followed else { return };
    // A page merged or left alone keeps the checksum it had (Linux leaves
    // oldchecksum as it was unless the stable search failed).
    let keep = |s: &mut Scanner| {
        if let Some(sum) = old {
            s.cursor.data().put(addr, sum);
        }
    };
    let p = page.page();
    if !p.has(PageFlags::ANON) || p.is_large() || p.has(PageFlags::KSM) {
        keep(s);
        return;
    }
    let sum = checksum(p);
    if let Some(k) = stable_lookup(sum, p) {
        match try_to_merge_one_page(mm, addr, &page, Some(k.page())) {
            Ok(()) => stats::note_merge(),
            Err(r) => stats::note_refused(r),
        }
        keep(s);
        return;
    }
    s.cursor.data().put(addr, sum);
    if old != Some(sum) {
        return; // volatile (or first visit): not into the unstable index yet
    }
    let partner = match s.unstable.get(&sum) {
        Some(e) if !(e.mm_id == mm.id && e.addr == addr) => s.unstable.remove(&sum),
        Some(_) => None,
        None => {
            s.unstable.insert(sum, UnstableEntry { mm: Arc::downgrade(mm), mm_id: mm.id, addr });
            None
        }
    };
    if let Some(e) = partner {
        merge_pair(mm, vmas, addr, &page, sum, e);
    }
}

/// Makes `page` and the unstable-index page `e` one KSM page (Linux
/// try_to_merge_two_pages()).
fn merge_pair(mm: &Arc<AddressSpace>, vmas: &VmaSet, addr: UserAddr, page: &PageRef, sum: u64, e: UnstableEntry) {
    let Some(tmm) = e.mm.upgrade() else { return };
    // The partner's mmap lock: ours already if the same address space; a
    // try for another one (never wait for a second mmap lock while holding
    // one).
    let other;
    let tvmas: &VmaSet = if Arc::ptr_eq(&tmm, mm) {
        vmas
    } else {
        match tmm.vmas.try_read() {
            Some(g) => {
                other = g;
                &other
            }
            None => return,
        }
    };
    if !tvmas.find(e.addr).is_some_and(|v| v.flags.contains(VmFlags::MERGEABLE)) {
        return;
    }
    let Some(tree) = follow(&tmm, e.addr) else { return };
    let t = tree.page();
    if core::ptr::eq(t, page.page()) || t.has(PageFlags::KSM) || !identical(t, page.page()) {
        return;
    }
    if let Err(r) = try_to_merge_one_page(mm, addr, page, None) {
        stats::note_refused(r);
        return;
    }
    match try_to_merge_one_page(&tmm, e.addr, &tree, Some(page.page())) {
        Ok(()) => {
            stats::note_merge();
            STABLE.lock().entry(sum).or_default().push(PageRef::new_ref(page.page()));
        }
        Err(r) => {
            stats::note_refused(r);
            // A KSM page mapped once saves nothing: give the page back its
            // private copy (Linux break_cow(), an unshare fault; its failure
            // only leaves the read-only KSM page in place, as Linux).
            let _ = fault::handle_locked(mm, vmas, addr, Access { kind: AccessKind::Unshare, user: false });
        }
    }
}
