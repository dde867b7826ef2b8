//! khugepaged statistics, with Linux's names where Linux has them
//! (/sys/kernel/mm/transparent_hugepage/khugepaged/: `pages_collapsed`,
//! `full_scans`, plus `pages_scanned`), the MADV_COLLAPSE successes, and the
//! collapses refused, by reason.

use core::sync::atomic::{AtomicU64, Ordering};

use super::Refusal;

const REASONS: usize = 8;

static PAGES_COLLAPSED: AtomicU64 = AtomicU64::new(0);
static MADVISE_COLLAPSED: AtomicU64 = AtomicU64::new(0);
static FULL_SCANS: AtomicU64 = AtomicU64::new(0);
static PAGES_SCANNED: AtomicU64 = AtomicU64::new(0);
static REFUSED: [AtomicU64; REASONS] = [const { AtomicU64::new(0) }; REASONS];

/// A snapshot of the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Huge pages made by collapses, khugepaged's and MADV_COLLAPSE's
    /// (Linux pages_collapsed counts khugepaged's only; `madvise_collapsed`
    /// says how many of these were MADV_COLLAPSE's).
    pub pages_collapsed: u64,
    /// Of `pages_collapsed`, those done by MADV_COLLAPSE.
    pub madvise_collapsed: u64,
    /// khugepaged's passes over every registered address space (Linux
    /// full_scans).
    pub full_scans: u64,
    /// Ptes khugepaged examined.
    pub pages_scanned: u64,
    /// Refused: references beyond the mappings (a pin, a GUP reference).
    pub refused_pinned: u64,
    /// Refused: too many empty ptes, or none mapped.
    pub refused_none_ptes: u64,
    /// Refused: too many pages mapped elsewhere too.
    pub refused_shared: u64,
    /// Refused: not anonymous (or KSM, or PROT_NONE).
    pub(crate) refused_not_anon: u64,
    /// Refused: a page lock was busy.
    pub refused_locked: u64,
    /// Refused: the area or pmd changed under the collapse.
    pub(crate) refused_changed: u64,
    /// Refused: no writable pte.
    pub(crate) refused_read_only: u64,
    /// Failed: no huge folio.
    pub(crate) alloc_failed: u64,
}

fn slot(r: Refusal) -> usize {
    match r {
        Refusal::Pinned => 0,
        Refusal::NonePtes => 1,
        Refusal::Shared => 2,
        Refusal::NotAnon => 3,
        Refusal::Locked => 4,
        Refusal::Changed => 5,
        Refusal::ReadOnly => 6,
        Refusal::NoMemory => 7,
    }
}

// Relaxed everywhere: statistics, read at quiescent points or as
// approximations.
pub(super) fn note_collapsed(madvise: bool) {
    PAGES_COLLAPSED.fetch_add(1, Ordering::Relaxed);
    if madvise {
        MADVISE_COLLAPSED.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) fn note_full_scan() {
    FULL_SCANS.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn note_scanned(n: u64) {
    PAGES_SCANNED.fetch_add(n, Ordering::Relaxed);
}

pub(super) fn note_refused(r: Refusal) {
    REFUSED[slot(r)].fetch_add(1, Ordering::Relaxed);
}

/// The statistics now.
pub fn stats() -> Stats {
    let r = |x: Refusal| REFUSED[slot(x)].load(Ordering::Relaxed);
    Stats {
        pages_collapsed: PAGES_COLLAPSED.load(Ordering::Relaxed),
        madvise_collapsed: MADVISE_COLLAPSED.load(Ordering::Relaxed),
        full_scans: FULL_SCANS.load(Ordering::Relaxed),
        pages_scanned: PAGES_SCANNED.load(Ordering::Relaxed),
        refused_pinned: r(Refusal::Pinned),
        refused_none_ptes: r(Refusal::NonePtes),
        refused_shared: r(Refusal::Shared),
        refused_not_anon: r(Refusal::NotAnon),
        refused_locked: r(Refusal::Locked),
        refused_changed: r(Refusal::Changed),
        refused_read_only: r(Refusal::ReadOnly),
        alloc_failed: r(Refusal::NoMemory),
    }
}
