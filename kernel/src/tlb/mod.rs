//! TLB maintenance for address spaces and kernel mappings: flushes on this CPU
//! and on the other CPUs that may cache a translation (shootdowns), and
//! deferred, batched flushes with page-table freeing (Linux: arch/x86/mm/tlb.c
//! and mm/mmu_gather.c).
//!
//! The one flush path. Code that clears or weakens a user entry owes a flush,
//! and pays it in exactly one of two ways:
//! * a `#[must_use]` [`TlbFlush`] token returned by the helper that changed
//!   the entry (e.g. `mm::pgtable::pmdp_collapse_flush`, KSM's pte clear):
//!   [`TlbFlush::flush`] does it now, [`Gather::add`] defers it, and only a
//!   negative control may [`TlbFlush::skip_for_negative_control`];
//! * a [`Gather`] (Linux's mmu_gather) for range operations (munmap,
//!   mprotect, madvise, fork's write-protect, COW, teardown): it collects the
//!   range, the detached page tables and the page references the removed
//!   entries held, and [`Gather::finish`] flushes, frees the tables per
//!   `ptfree`, drops the references, then lowers the address space's pending
//!   count ([`flush_pending`], what KSM's gate reads).
//!
//! Nothing else flushes a user translation. The flush functions
//! ([`flush::flush_tlb_mm_range`] and friends) take the address space's
//! [`MmTlbState`] (root, CPU set, pending count, counters), so this module
//! needs nothing from the layers above it. Writers that detach a page table
//! outside a gather (collapse) use [`table_sync_one`] (Linux
//! tlb_remove_table_sync_one, right after their pmd flush) and
//! [`remove_table_one`] (free one table per `ptfree`).
//!
//! * [`flush`]: the primitives (Linux flush_tlb_mm_range, flush_tlb_mm,
//!   flush_tlb_page, flush_tlb_kernel_range) and the [`TlbFlush`] token.
//! * [`gather`]: [`Gather`], [`table_sync_one`], [`remove_table_one`] and the
//!   poisoning table free.
//!
//! Configuration ([`TlbConfig`], read once at boot from the boot options and
//! fixed afterwards; see `../shared/reference/controls.md`):
//! * `tlb=ipi|nmi`: how remote CPUs are reached. `ipi` (default): a
//!   fixed-vector IPI, so a target inside an interrupts-off section holds the
//!   flush back until it re-enables interrupts (what GUP-fast relied on in
//!   2016). `nmi`: an NMI, taken even inside interrupts-off sections: TLBs are
//!   coherent when the flush returns but nothing is serialised (a model of
//!   INVLPGB / arm64 TLBI broadcast). The remote handler is NMI-safe in both
//!   modes: it only executes INVLPG or a CR3 reload and bumps relaxed counters.
//! * `tlb.nowait=on` — a **negative control**: a shootdown sends its IPI (or
//!   NMI) and returns without waiting for the acknowledgements. It changes
//!   exactly one decision point (`flush::finish_remote`): whether the
//!   initiator waits. Stale translations then survive the flush's return for
//!   about one interrupt-delivery time. Kernel-range flushes always wait (a
//!   stale kernel translation would corrupt the kernel, not the experiment).
//! * `tlb.ceiling=N` (default 33, Linux's tlb_single_page_flush_ceiling): a
//!   range of more than N strides is flushed whole (CR3 reload) instead of
//!   page by page.
//! * `ptfree=ipi|rcu`: how a [`Gather`] protects lockless walkers before it
//!   frees detached page tables: an empty waiting IPI call to every other CPU
//!   (Linux tlb_remove_table_sync_one), or a free after an RCU grace period
//!   (MMU_GATHER_RCU_TABLE_FREE). Both wait for interrupts-off walkers.
//!
//! Counters ([`counts`], [`mm_counts`]): relaxed atomics, for tests and
//! benchmarks; they order nothing.

#![deny(unsafe_code)]

pub(crate) mod flush;
pub(crate) mod gather;

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use x86_64::PhysAddr;

use crate::smp::{AtomicCpuSet, CpuSet};

pub use flush::{
    TlbFlush, flush_tlb_kernel_range, flush_tlb_mm_range, flush_tlb_page,
};
pub use gather::{Gather, POISON_ENTRY, flush_pending, poison_and_free_table, remove_table_one, table_sync_one};

/// How remote CPUs are asked to flush (`tlb=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushMode {
    /// A fixed-vector IPI: held back by interrupts-off sections.
    Ipi,
    /// An NMI: runs inside interrupts-off sections.
    Nmi,
}

/// How detached page tables are protected before they are freed (`ptfree=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtFree {
    /// A waiting empty IPI call to every other online CPU, then the free.
    Ipi,
    /// The free runs after an RCU grace period.
    Rcu,
}

/// The default `tlb.ceiling` (Linux: tlb_single_page_flush_ceiling).
pub(crate) const DEFAULT_CEILING: u64 = 33;
/// The largest accepted `tlb.ceiling`: 1 GiB of 4 KiB pages. More would mean
/// seconds of INVLPG for a range a CR3 reload flushes in microseconds.
pub(crate) const MAX_CEILING: u64 = 512 * 512;

/// The TLB configuration in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbConfig {
    /// `tlb=`.
    pub mode: FlushMode,
    /// `tlb.nowait=`: shootdowns do not wait for acknowledgements.
    pub nowait: bool,
    /// `tlb.ceiling=`: most strides flushed one by one.
    pub ceiling: u64,
    /// `ptfree=`.
    pub ptfree: PtFree,
}

impl TlbConfig {
    /// The defaults: `tlb=ipi tlb.nowait=off tlb.ceiling=33 ptfree=ipi`.
    pub(crate) const DEFAULT: TlbConfig =
        TlbConfig { mode: FlushMode::Ipi, nowait: false, ceiling: DEFAULT_CEILING, ptfree: PtFree::Ipi };
}

impl fmt::Display for TlbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            FlushMode::Ipi => "ipi",
            FlushMode::Nmi => "nmi",
        };
        let ptfree = match self.ptfree {
            PtFree::Ipi => "ipi",
            PtFree::Rcu => "rcu",
        };
        let nowait = if self.nowait { "on" } else { "off" };
        write!(f, "tlb={mode} tlb.nowait={nowait} tlb.ceiling={} ptfree={ptfree}", self.ceiling)
    }
}

// The configuration, written once by `init` before any other CPU flushes
// (the APs start later) and only read afterwards: Relaxed everywhere.
static MODE_NMI: AtomicBool = AtomicBool::new(false);
static NOWAIT: AtomicBool = AtomicBool::new(false);
static CEILING: AtomicU64 = AtomicU64::new(DEFAULT_CEILING);
static PTFREE: AtomicU8 = AtomicU8::new(0);

/// Installs the configuration (boot, once, before the APs start).
pub(crate) fn init(config: TlbConfig) {
    assert!((1..=MAX_CEILING).contains(&config.ceiling), "tlb.ceiling {} out of range", config.ceiling);
    MODE_NMI.store(config.mode == FlushMode::Nmi, Ordering::Relaxed);
    NOWAIT.store(config.nowait, Ordering::Relaxed);
    CEILING.store(config.ceiling, Ordering::Relaxed);
    PTFREE.store(u8::from(config.ptfree == PtFree::Rcu), Ordering::Relaxed);
}

/// The configuration in force (for reports and tests).
pub fn config() -> TlbConfig {
    TlbConfig {
        mode: if MODE_NMI.load(Ordering::Relaxed) { FlushMode::Nmi } else { FlushMode::Ipi },
        nowait: NOWAIT.load(Ordering::Relaxed),
        ceiling: CEILING.load(Ordering::Relaxed),
        ptfree: if PTFREE.load(Ordering::Relaxed) == 1 { PtFree::Rcu } else { PtFree::Ipi },
    }
}

/// A snapshot of flush counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbCounts {
    /// Flush operations started (one per primitive call or finished gather
    /// with something to flush).
    pub flushes: u64,
    /// Pages (strides) invalidated one by one with INVLPG on the initiating CPU.
    pub local_invlpg_pages: u64,
    /// Whole flushes (CR3 reload, or CR4.PGE toggle for kernel ranges) on
    /// the initiating CPU.
    pub local_full_flushes: u64,
    /// Flushes that needed remote CPUs (a cross-CPU call was sent).
    pub remote_requests: u64,
    /// Remote CPUs asked, summed over requests.
    pub remote_targets: u64,
    /// Remote flush handlers run (global counter only; counted by targets).
    pub remote_handled: u64,
    /// Lazy CPUs left out of flushes that freed no page table.
    pub lazy_skipped: u64,
    /// Page tables queued for freeing by gathers (global counter only).
    pub tables_queued: u64,
    /// Page tables poisoned and freed (global counter only).
    pub tables_freed: u64,
}

/// Relaxed counters (one set global, one per address space).
#[derive(Default)]
pub(crate) struct Counters {
    flushes: AtomicU64,
    local_invlpg_pages: AtomicU64,
    local_full_flushes: AtomicU64,
    remote_requests: AtomicU64,
    remote_targets: AtomicU64,
    remote_handled: AtomicU64,
    lazy_skipped: AtomicU64,
    tables_queued: AtomicU64,
    tables_freed: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            flushes: AtomicU64::new(0),
            local_invlpg_pages: AtomicU64::new(0),
            local_full_flushes: AtomicU64::new(0),
            remote_requests: AtomicU64::new(0),
            remote_targets: AtomicU64::new(0),
            remote_handled: AtomicU64::new(0),
            lazy_skipped: AtomicU64::new(0),
            tables_queued: AtomicU64::new(0),
            tables_freed: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> TlbCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TlbCounts {
            flushes: r(&self.flushes),
            local_invlpg_pages: r(&self.local_invlpg_pages),
            local_full_flushes: r(&self.local_full_flushes),
            remote_requests: r(&self.remote_requests),
            remote_targets: r(&self.remote_targets),
            remote_handled: r(&self.remote_handled),
            lazy_skipped: r(&self.lazy_skipped),
            tables_queued: r(&self.tables_queued),
            tables_freed: r(&self.tables_freed),
        }
    }
}

/// Adds `n` to a global counter and, if given, the address space's.
fn count(mm: Option<&MmTlbState>, field: fn(&Counters) -> &AtomicU64, n: u64) {
    // Relaxed: statistics only (NMI-safe: a lock-free RMW).
    field(&GLOBAL).fetch_add(n, Ordering::Relaxed);
    if let Some(mm) = mm {
        field(&mm.counters).fetch_add(n, Ordering::Relaxed);
    }
}

static GLOBAL: Counters = Counters::new();

/// The global counters.
pub fn counts() -> TlbCounts {
    GLOBAL.snapshot()
}

/// The counters of one address space (flushes it initiated).
pub fn mm_counts(mm: &MmTlbState) -> TlbCounts {
    mm.counters.snapshot()
}

/// What the flush path needs of an address space (a field of
/// `mm::addr_space::AddressSpace`, reached with `AddressSpace::tlb()`): its
/// root, the CPUs that have it loaded (Linux mm_cpumask), the gathers in
/// progress (mm->tlb_flush_pending) and its flush counters. The flush
/// functions take this, not the address space, so `tlb` needs nothing of
/// the layers above it.
pub struct MmTlbState {
    /// The address space's id (for reports).
    id: u64,
    root: PhysAddr,
    /// CPUs with this root loaded (active or lazy).
    cpus: AtomicCpuSet,
    /// Gathers in progress (Linux: mm->tlb_flush_pending); see [`gather`].
    pending: AtomicU64,
    counters: Counters,
}

impl MmTlbState {
    /// The state of a new address space `id` whose top-level table is `root`.
    pub(crate) fn new(id: u64, root: PhysAddr) -> Self {
        MmTlbState { id, root, cpus: AtomicCpuSet::new(), pending: AtomicU64::new(0), counters: Counters::new() }
    }

    /// The address space's id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The physical address of the top-level table (what CR3 holds).
    pub(crate) fn root(&self) -> PhysAddr {
        self.root
    }

    /// The CPUs that have this address space loaded.
    pub(crate) fn cpus(&self) -> CpuSet {
        // Acquire: pairs with the insertion in `note_loaded`.
        self.cpus.load(Ordering::Acquire)
    }

    /// Records that `cpu` is loading this root (the scheduler, just before
    /// the CR3 write, with interrupts off).
    pub(crate) fn note_loaded(&self, cpu: usize) {
        // SeqCst: a full barrier between joining the set and the table walks
        // that follow the CR3 write (see sched::switch_mm); pairs with the
        // flush's fence before it reads the set (flush.rs, step 1).
        self.cpus.insert(cpu, Ordering::SeqCst);
    }

    /// Records that `cpu` loaded another root.
    pub(crate) fn note_unloaded(&self, cpu: usize) {
        self.cpus.remove(cpu, Ordering::Release);
    }
}
