//! The khugepaged thread (Linux khugepaged(), khugepaged_do_scan(),
//! hpage_collapse_scan_pmd()).
//!
//! Address spaces are registered when an area of theirs gets
//! `MADV_HUGEPAGE` (Linux khugepaged_enter_vma()). The thread walks every
//! registered address space's areas that may hold huge pages (under the
//! THP policy, `mm::fault::thp_mode`) 2 MiB block by block, `pages_to_scan` ptes per batch,
//! sleeping `scan_sleep_us` between batches. For each block mapped by a pte
//! table it counts, with the mmap lock held for reading, the empty ptes
//! (more than `max_ptes_none`: refused) and the present ones, then drops
//! the lock and calls [`collapse_huge_page`], which decides under the
//! write lock. Blocks mapped huge or not at all are skipped.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::collapse::{Control, collapse_huge_page, vma_suitable};
use super::{Refusal, Tunables, stats};
use crate::mm::addr_space::AddressSpace;
use crate::mm::paging::RawEntry;
use crate::mm::scan::{MmCursor, Position};
use crate::mm::{HUGE_PAGE_SIZE, pgtable};
use crate::mm::{PageSize, UserAddr};
use crate::race;
use crate::sched;
use crate::sched::daemon::{Daemon, lock_yielding};

static PAGES_TO_SCAN: AtomicU64 = AtomicU64::new(Tunables::DEFAULT.pages_to_scan);
static SLEEP_US: AtomicU64 = AtomicU64::new(Tunables::DEFAULT.scan_sleep_us);
static MAX_PTES_NONE: AtomicU32 = AtomicU32::new(Tunables::DEFAULT.max_ptes_none);
static MAX_PTES_SHARED: AtomicU32 = AtomicU32::new(Tunables::DEFAULT.max_ptes_shared);
static KHUGEPAGED: Daemon = Daemon::new("khugepaged", "khugepaged is already running", "khugepaged: no such CPU");

/// The registered address spaces and the scan cursor, under a
/// sleeping-safe lock (not a spinlock: the cursor's holder takes mmap
/// locks, which may sleep), taken by [`lock_scanner`].
static SCANNER: spin::Mutex<MmCursor<()>> = spin::Mutex::new(MmCursor::new());

fn lock_scanner() -> spin::MutexGuard<'static, MmCursor<()>> {
    lock_yielding(&SCANNER)
}

// Tunables: Relaxed, each read on its own; a batch may see an old and a new
// value mixed, as with Linux's sysfs writes.
/// Sets khugepaged's tunables (effective at its next block).
pub fn set_tunables(t: Tunables) {
    PAGES_TO_SCAN.store(t.pages_to_scan.max(1), Ordering::Relaxed);
    SLEEP_US.store(t.scan_sleep_us, Ordering::Relaxed);
    MAX_PTES_NONE.store(t.max_ptes_none.min(511), Ordering::Relaxed);
    MAX_PTES_SHARED.store(t.max_ptes_shared.min(511), Ordering::Relaxed);
}

/// The tunables in force.
pub(crate) fn tunables() -> Tunables {
    Tunables {
        pages_to_scan: PAGES_TO_SCAN.load(Ordering::Relaxed),
        scan_sleep_us: SLEEP_US.load(Ordering::Relaxed),
        max_ptes_none: MAX_PTES_NONE.load(Ordering::Relaxed),
        max_ptes_shared: MAX_PTES_SHARED.load(Ordering::Relaxed),
    }
}

/// Registers `mm` for scanning (Linux __khugepaged_enter()); once.
pub(crate) fn register(mm: &Arc<AddressSpace>) {
    let mut s = lock_scanner();
    s.retain_live();
    s.register(Arc::downgrade(mm), || ());
}

/// fork's hook (Linux khugepaged_fork()): a child that inherited
/// `MADV_HUGEPAGE` areas is scanned too.
pub(crate) fn fork(child: &Arc<AddressSpace>) {
    if child.vmas.read().iter().any(|v| v.flags.contains(crate::mm::vma::VmFlags::HUGEPAGE)) {
        register(child);
    }
}

/// Whether khugepaged runs.
pub(crate) fn khugepaged_running() -> bool {
    KHUGEPAGED.running()
}

/// Starts khugepaged on `cpu` with `t`. An error if it runs.
pub fn start_khugepaged(cpu: usize, t: Tunables) -> Result<(), &'static str> {
    let batch = || {
        scan_ptes(PAGES_TO_SCAN.load(Ordering::Relaxed));
    };
    KHUGEPAGED.start(cpu, || set_tunables(t), batch, || SLEEP_US.load(Ordering::Relaxed))
}

/// Stops khugepaged and waits for it (at most 10 s; an error names the CPU).
pub fn stop_khugepaged() -> Result<(), alloc::string::String> {
    KHUGEPAGED.stop()
}

/// What the read-locked look at a block found.
enum Block {
    /// Not mapped by a pte table (empty, or huge already): nothing to do.
    Skip,
    /// A candidate for collapse_huge_page.
    Candidate,
}

/// Linux hpage_collapse_scan_pmd(): a cheap look under the read lock.
fn scan_pmd(mm: &AddressSpace, haddr: UserAddr) -> Result<Block, Refusal> {
    let Some(pmd) = pgtable::pmd(mm, haddr, false).ok().flatten() else { return Ok(Block::Skip) };
    let v = pmd.get();
    if !v.is_present() || v.is_huge() {
        return Ok(Block::Skip);
    }
    let Some(pt) = pgtable::pte_table(pmd, false).ok().flatten() else { return Ok(Block::Skip) };
    let _ptl = pt.lock();
    let max_none = MAX_PTES_NONE.load(Ordering::Relaxed);
    let none = (0..512).filter(|&i| pt.table.entry(i).load(Ordering::Acquire) == RawEntry::EMPTY).count() as u32;
    if none == 512 {
        return Ok(Block::Skip);
    }
    if none > max_none {
        return Err(Refusal::NonePtes);
    }
    Ok(Block::Candidate)
}

/// Scans about `n` ptes (one khugepaged batch; a 2 MiB block counts 512).
/// Returns the blocks examined. Tests call it with khugepaged stopped.
pub fn scan_ptes(n: u64) -> u64 {
    let mut budget = n as i64;
    let mut blocks = 0;
    let mut passes = 0;
    while budget > 0 {
        // The next block, from the cursor (the scanner lock is never held
        // across a collapse).
        let next = {
            let mut s = lock_scanner();
            steered_block(&s).or_else(|| next_block(&mut s, &mut passes))
        };
        let Some((mm, haddr)) = next else { break };
        budget -= 512;
        blocks += 1;
        stats::note_scanned(512);
        let look = {
            let vmas = mm.vmas.read();
            match vmas.find(haddr) {
                Some(v) if vma_suitable(v, haddr, Control::Khugepaged) => scan_pmd(&mm, haddr),
                _ => Ok(Block::Skip),
            }
        };
        match look {
            Ok(Block::Candidate) => {
                // Refusals are counted by collapse_huge_page.
                let _ = collapse_huge_page(&mm, haddr, Control::Khugepaged);
            }
            Ok(Block::Skip) => {}
            Err(r) => stats::note_refused(r),
        }
        sched::cond_resched();
    }
    blocks
}

/// The 2 MiB block a walker paused by the exploration policy walks in, if
/// one does and it is in a registered address space's area that may be
/// collapsed (`race::steer`: a scheduling choice of the exploration, off
/// outside scenario runs with `explore=auto`). The cursor stays where it is.
fn steered_block(s: &MmCursor<()>) -> Option<(Arc<AddressSpace>, UserAddr)> {
    if !race::steer::pending() {
        return None;
    }
    race::steer::take(|mm_id, addr| {
        let mm = s.live().find(|m| m.id == mm_id)?;
        let haddr = UserAddr::new(addr)?.align_down(PageSize::Size2M);
        let ok = mm.vmas.read().find(haddr).is_some_and(|v| vma_suitable(v, haddr, Control::Khugepaged));
        ok.then_some((mm, haddr))
    })
}

/// Moves the cursor to the next 2 MiB block of an area that may hold huge
/// pages; counts a full scan when it wraps. `None` when there is nothing
/// to scan (no address space, or a whole pass found no block).
fn next_block(s: &mut MmCursor<()>, passes: &mut u32) -> Option<(Arc<AddressSpace>, UserAddr)> {
    loop {
        let mm = match s.position() {
            Position::At(mm) => mm,
            Position::PassEnd => {
                if !s.is_empty() {
                    stats::note_full_scan();
                }
                *passes += 1;
                if s.is_empty() || *passes > 1 {
                    return None;
                }
                continue;
            }
        };
        let found = {
            let vmas = mm.vmas.read();
            vmas.iter()
                .filter(|v| v.end > s.addr && vma_suitable_any(v))
                .find_map(|v| {
                    let mut a = s.addr.max(v.start).align_up(PageSize::Size2M)?;
                    while a.checked_add(HUGE_PAGE_SIZE).is_some_and(|e| e <= v.end) {
                        if vma_suitable(v, a, Control::Khugepaged) {
                            return Some(a);
                        }
                        a += HUGE_PAGE_SIZE;
                    }
                    None
                })
        };
        match found {
            Some(a) => {
                s.addr = a + HUGE_PAGE_SIZE;
                *passes = 0;
                return Some((mm, a));
            }
            None => s.next_mm(),
        }
    }
}

fn vma_suitable_any(v: &crate::mm::vma::Vma) -> bool {
    !v.flags.contains(crate::mm::vma::VmFlags::NOHUGEPAGE)
}
