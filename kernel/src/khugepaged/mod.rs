//! khugepaged and MADV_COLLAPSE: collapsing a 2 MiB range mapped by 512
//! small anonymous pages into one transparent huge page (Linux
//! mm/khugepaged.c). The seed's second writer.
//!
//! * [`collapse`]: collapse_huge_page() in Linux's order: allocate the huge
//!   folio with no lock held, take the mmap lock for writing, revalidate the
//!   area and the pmd, clear the pmd and flush the 2 MiB
//!   (pmdp_collapse_flush), the table sync, and only then
//!   __collapse_huge_page_isolate() checks every page's references on the
//!   detached table; the copy, the huge pmd, and the old pages and table
//!   released. The negative controls of controls.md
//!   (`collapse.check_before_clear`, `collapse.no_table_sync`) each change
//!   one decision point there.
//! * [`madvise`]: `madvise(MADV_COLLAPSE)`, synchronous, with Linux's errnos.
//! * [`scan`]: the khugepaged thread over `MADV_HUGEPAGE` areas, with
//!   Linux's tunables (`pages_to_scan`, `scan_sleep_millisecs` in
//!   microseconds here, `max_ptes_none`, `max_ptes_shared`).
//! * [`stats`]: `pages_collapsed`, `full_scans` (Linux's names) and the
//!   refusals by reason.
//!
//! Invariants: a collapse holds the mmap lock for writing from the
//! revalidation to the huge pmd (faults, GUP's slow path and KSM are kept
//! out; only lockless walkers and devices holding pins remain); the pmd is
//! empty between the clear and either the huge pmd or the old table put
//! back; a page is copied only after the reference check proved that
//! nothing but its mappings holds it, and it is put only after the flush.

#![deny(unsafe_code)]

pub(crate) mod collapse;
mod keys;
pub(crate) mod madvise;
pub mod scan;
pub(crate) mod stats;

pub use collapse::{Collapsed, Control, collapse_huge_page};
pub(crate) use keys::{KEYS, apply_key};
pub(crate) use madvise::madvise_collapse;
pub(crate) use scan::{fork, khugepaged_running, register, tunables};
pub use scan::{set_tunables, start_khugepaged, stop_khugepaged};
pub use stats::{Stats, stats};

/// Why a range was not collapsed (Linux's `enum scan_result`, the reasons
/// this kernel can meet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A page holds references beyond its mappings: a pin, a GUP reference
    /// (SCAN_PAGE_COUNT, controls.md `refused_pinned`).
    Pinned,
    /// More empty ptes than `max_ptes_none` (SCAN_EXCEED_NONE_PTE), or none
    /// mapped at all.
    NonePtes,
    /// More pages mapped elsewhere too than `max_ptes_shared`
    /// (SCAN_EXCEED_SHARED_PTE).
    Shared,
    /// A page that is not anonymous, or a KSM page, or a pte that maps no
    /// page (PROT_NONE) (SCAN_PAGE_ANON, SCAN_PTE_NON_PRESENT).
    NotAnon,
    /// A page lock taken by someone else (SCAN_PAGE_LOCK).
    Locked,
    /// The area or the pmd changed between the scan and the collapse
    /// (SCAN_VMA_CHECK, SCAN_PMD_NULL after revalidation), or a writer's
    /// marker sits in a pte.
    Changed,
    /// No pte of the range is writable (SCAN_PAGE_RO).
    ReadOnly,
    /// No huge folio could be allocated (SCAN_ALLOC_HUGE_PAGE_FAIL).
    NoMemory,
}

/// khugepaged's tunables (Linux
/// /sys/kernel/mm/transparent_hugepage/khugepaged/).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunables {
    /// Ptes scanned per batch (Linux pages_to_scan).
    pub pages_to_scan: u64,
    /// Sleep between batches in microseconds (Linux scan_sleep_millisecs);
    /// 0 only yields the CPU.
    pub scan_sleep_us: u64,
    /// Empty ptes accepted in a range khugepaged collapses (MADV_COLLAPSE
    /// ignores it, as Linux).
    pub max_ptes_none: u32,
    /// Ptes of pages also mapped elsewhere accepted (khugepaged only).
    pub max_ptes_shared: u32,
}

impl Tunables {
    /// Linux's defaults: 4096 ptes every 10 s, 511 none, 256 shared.
    pub const DEFAULT: Tunables = Tunables { pages_to_scan: 4096, scan_sleep_us: 10_000_000, max_ptes_none: 511, max_ptes_shared: 256 };
}
