//! KSM statistics, with Linux's names where Linux has them
//! (/sys/kernel/mm/ksm/: `pages_shared`, `pages_sharing`, `full_scans`,
//! `pages_scanned`), plus merge attempts refused by reason.

use core::sync::atomic::{AtomicU64, Ordering};

use super::Refusal;

static PAGES_SCANNED: AtomicU64 = AtomicU64::new(0);
static FULL_SCANS: AtomicU64 = AtomicU64::new(0);
static MERGES: AtomicU64 = AtomicU64::new(0);
static WRITE_PROTECTED: AtomicU64 = AtomicU64::new(0);
static REFUSED: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

/// A snapshot of the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// KSM pages in use (Linux pages_shared).
    pub pages_shared: u64,
    /// Mappings of KSM pages beyond the first of each (Linux pages_sharing:
    /// how many pages are saved).
    pub pages_sharing: u64,
    /// Passes over every mergeable area (Linux full_scans).
    pub full_scans: u64,
    /// Pages examined (Linux pages_scanned).
    pub pages_scanned: u64,
    /// Pages merged into a KSM page (replace_page done).
    pub merges: u64,
    /// write_protect_page successes.
    pub write_protected: u64,
    /// Refused: extra references or a DMA pin (controls.md `refused_pinned`).
    pub refused_pinned: u64,
    /// Refused: the pte changed under the merge.
    pub refused_changed: u64,
    /// Refused: page lock busy.
    pub refused_busy: u64,
    /// Refused: large folio.
    pub refused_large: u64,
    /// Refused: not anonymous.
    pub refused_not_anon: u64,
    /// Refused: contents differed at the final comparison.
    pub refused_content: u64,
}

fn slot(r: Refusal) -> usize {
    match r {
        Refusal::Pinned => 0,
        Refusal::Changed => 1,
        Refusal::Busy => 2,
        Refusal::Large => 3,
        Refusal::NotAnon => 4,
        Refusal::Content => 5,
    }
}

// Relaxed everywhere: statistics, read at quiescent points or as
// approximations.
pub(super) fn note_scanned() {
    PAGES_SCANNED.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn note_full_scan() {
    FULL_SCANS.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn note_merge() {
    MERGES.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn note_write_protected() {
    WRITE_PROTECTED.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn note_refused(r: Refusal) {
    REFUSED[slot(r)].fetch_add(1, Ordering::Relaxed);
}

/// The statistics now (`pages_shared`/`pages_sharing` from the stable index).
pub fn stats() -> Stats {
    let (shared, sharing) = super::scan::sharing();
    let r = |x: Refusal| REFUSED[slot(x)].load(Ordering::Relaxed);
    Stats {
        pages_shared: shared,
        pages_sharing: sharing,
        full_scans: FULL_SCANS.load(Ordering::Relaxed),
        pages_scanned: PAGES_SCANNED.load(Ordering::Relaxed),
        merges: MERGES.load(Ordering::Relaxed),
        write_protected: WRITE_PROTECTED.load(Ordering::Relaxed),
        refused_pinned: r(Refusal::Pinned),
        refused_changed: r(Refusal::Changed),
        refused_busy: r(Refusal::Busy),
        refused_large: r(Refusal::Large),
        refused_not_anon: r(Refusal::NotAnon),
        refused_content: r(Refusal::Content),
    }
}
