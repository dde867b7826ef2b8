//! Flush primitives: invalidate a range of one address space (or of the
//! kernel half) on this CPU and on every other CPU that may cache it.
//!
//! Shape (Linux flush_tlb_mm_range() in its 2016 form: local part, then
//! smp_call_function_many() to the others with wait=1):
//! 1. A full fence (Linux: the atomic inc_mm_tlb_gen(), "also a barrier that
//!    synchronizes with switch_mm()"): the caller's page-table change is
//!    globally visible before the CPU set is read, so a CPU that is not in
//!    the set when it is read loads the new entries after its CR3 write.
//! 2. Targets: the address space's CPU set (mm_cpumask) minus this CPU,
//!    minus its lazy CPUs (a kernel thread running on the borrowed tables)
//!    unless page tables are being freed (Linux 6.1 flush_tlb_multi(): lazy
//!    CPUs only when `freed_tables`). A lazy CPU uses no user translation
//!    until it runs a task of the address space again, and then it reloads
//!    CR3: `sched::flush_may_skip` marks it (a Dekker pair with the
//!    scheduler's switch, in place of Linux's tlb_gen). With tables freed
//!    (a gather's tables, a pmd collapse) lazy CPUs are flushed too: their
//!    paging-structure caches may still point into the freed tables.
//! 3. The request is sent first, then this CPU flushes its own TLB (if the
//!    address space is loaded here), then the initiator waits for every
//!    target's acknowledgement. A target acknowledges *after* its handler ran
//!    (`smp::call` clears the target's pending bit after the function
//!    returns), so when the wait ends no CPU can use a stale translation.
//! 4. A wait that times out is fatal: a CPU that did not flush may write
//!    through a stale translation into a frame that is about to be reused,
//!    and nothing can undo that. The panic names the silent CPUs.
//!
//! The local operation, on initiator and targets alike: INVLPG per stride
//! (4 KiB or 2 MiB) when the range has at most `tlb.ceiling` strides,
//! otherwise a whole flush — a CR3 reload (non-global entries) for an address
//! space, a CR4.PGE toggle (global entries too) for kernel ranges. Without
//! PCID, INVLPG also drops every paging-structure-cache entry (SDM 4.10.4.1),
//! so a range flush covers freed page tables too.
//!
//! The remote handler is NMI-safe (it may run from the NMI handler under
//! `tlb=nmi`): no lock, no allocation, no log; only INVLPG/CR3/CR4 and relaxed
//! counters. Its request holds plain values only.
//!
//! Ordering of the request before the kick: `smp::call` publishes the request
//! with a Release push, and `apic::send_ipi` orders the ICR write after
//! earlier stores (xAPIC: an uncached MMIO store, not reordered with earlier
//! stores under x86 TSO; x2APIC: WRMSR is not serialising, so it issues
//! `mfence; lfence` first, Linux's weak_wrmsr_fence()).

use core::sync::atomic::{Ordering, fence};
use x86_64::VirtAddr;
use x86_64::instructions::interrupts;

use crate::arch::cpu;
use super::{Counters, FlushMode, GLOBAL, MmTlbState, config, count};
use crate::mm::layout::{KERNEL_HALF_START, USER_END};
use crate::mm::paging::{self, PageSize};
use crate::smp::call::{self, Delivery, PendingCall};
use crate::smp::{self, CpuSet};
use crate::stamps::{self, Step};

/// What one CPU does: INVLPG a stride-aligned range, or flush everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LocalOp {
    Pages { start: u64, end: u64, stride: PageSize },
    All,
}

impl LocalOp {
    /// The operation for `[start, end)` under the ceiling (Linux:
    /// get_flush_tlb_info() turning long ranges into TLB_FLUSH_ALL).
    pub(crate) fn for_range(start: u64, end: u64, stride: PageSize) -> LocalOp {
        let start = start & !(stride.bytes() - 1);
        let end = end.next_multiple_of(stride.bytes());
        if end <= start {
            return LocalOp::Pages { start, end: start, stride };
        }
        if (end - start) >> stride.shift() > config().ceiling { LocalOp::All } else { LocalOp::Pages { start, end, stride } }
    }

    /// Runs the operation on this CPU; `global` flushes global entries too
    /// when flushing everything. Returns the pages invalidated one by one.
    /// NMI-safe.
    fn run(self, global: bool) -> u64 {
        match self {
            LocalOp::Pages { start, end, stride } => {
                let mut va = start;
                while va < end {
                    cpu::flush_tlb_page(VirtAddr::new(va));
                    va += stride.bytes();
                }
                (end - start) >> stride.shift()
            }
            LocalOp::All if global => {
                cpu::flush_tlb_global();
                0
            }
            LocalOp::All => {
                // A CR3 reload: drops every non-global translation (no PCID).
                cpu::flush_tlb_nonglobal();
                0
            }
        }
    }
}

fn delivery() -> Delivery {
    match config().mode {
        FlushMode::Ipi => Delivery::Ipi,
        FlushMode::Nmi => Delivery::Nmi,
    }
}

/// The whole shootdown (module docs, steps 1-4). `mm`: an address space
/// (`None`: kernel mappings, on every online CPU).
fn shootdown(mm: Option<&MmTlbState>, op: LocalOp, freed_tables: bool) {
    let t_all = stamps::start();
    // Step 1: the caller's entry change before the read of the CPU set.
    fence(Ordering::SeqCst);
    let me = smp::cpu_index();
    count(mm, |c: &Counters| &c.flushes, 1);
    let (mut targets, here) = match mm {
        // Here: this CPU runs on the address space's tables (Linux: mm ==
        // cpu_tlbstate.loaded_mm); a CPU cannot switch tables under its own
        // running code (the kernel is not preemptible).
        Some(mm) => (mm.cpus(), paging::active_root() == mm.root()),
        None => (smp::online_cpus(), true),
    };
    targets.remove(me);
    if mm.is_some() && !freed_tables {
        // Lazy CPUs are left out when no table is freed (module docs, step 2).
        let candidates = targets;
        for cpu in candidates.iter() {
            if crate::sched::flush_may_skip(cpu) {
                targets.remove(cpu);
                count(mm, |c| &c.lazy_skipped, 1);
            }
        }
    }
    let pending = (!targets.is_empty()).then(|| {
        count(mm, |c| &c.remote_requests, 1);
        count(mm, |c| &c.remote_targets, targets.len() as u64);
        let global = mm.is_none();
        call::call_with(targets, delivery(), move || {
            op.run(global);
            // Relaxed: statistics; the acknowledgement (Release) follows.
            GLOBAL.remote_handled.fetch_add(1, Ordering::Relaxed);
        })
    });
    if here {
        let t = stamps::start();
        let pages = interrupts::without_interrupts(|| op.run(mm.is_none()));
        stamps::end(Step::FlushLocal, t);
        count(mm, |c| &c.local_invlpg_pages, pages);
        if op == LocalOp::All {
            count(mm, |c| &c.local_full_flushes, 1);
        }
    }
    if let Some(pending) = pending {
        finish_remote(pending, targets, mm.is_none());
    }
    stamps::end(Step::Shootdown, t_all);
}

/// Waits for the targets' acknowledgements — unless `tlb.nowait` is on for an
/// address-space flush: **the one decision point of that negative control**.
/// The dropped call is parked by `smp::call` until its targets ran it, so the
/// request is never freed under a late target.
fn finish_remote(pending: PendingCall, targets: CpuSet, kernel: bool) {
    if !kernel && config().nowait {
        drop(pending);
        return;
    }
    if let Err(e) = pending.wait(call::call_timeout_ns()) {
        panic!("TLB shootdown to {targets} not acknowledged: {e}; a missed TLB flush cannot be recovered");
    }
}

/// Flushes `[start, end)` of `mm` on every CPU that may cache it (Linux:
/// flush_tlb_mm_range()). `stride`: the size of the leaves that changed.
pub fn flush_tlb_mm_range(mm: &MmTlbState, start: VirtAddr, end: VirtAddr, stride: PageSize) {
    flush_range(mm, start, end, stride, false);
}

/// [`flush_tlb_mm_range`]; `freed_tables`: page tables of the range are
/// about to be freed, so lazy CPUs are flushed too (their paging-structure
/// caches may point into the tables).
pub(crate) fn flush_range(mm: &MmTlbState, start: VirtAddr, end: VirtAddr, stride: PageSize, freed_tables: bool) {
    assert!(end.as_u64() <= USER_END && start <= end, "flush of {start:?}..{end:?}: not a user range");
    shootdown(Some(mm), LocalOp::for_range(start.as_u64(), end.as_u64(), stride), freed_tables);
}

/// Flushes one 4 KiB page of `mm` (Linux: flush_tlb_page(), the flush of
/// ptep_clear_flush()).
pub fn flush_tlb_page(mm: &MmTlbState, va: VirtAddr) {
    let start = va.align_down(PageSize::Size4K.bytes());
    flush_tlb_mm_range(mm, start, start + PageSize::Size4K.bytes(), PageSize::Size4K);
}

/// Flushes `[start, end)` of the kernel half on every online CPU (Linux:
/// flush_tlb_kernel_range()); global entries included. Always waits (see the
/// module docs of `tlb`).
pub fn flush_tlb_kernel_range(start: VirtAddr, end: VirtAddr) {
    assert!(start.as_u64() >= KERNEL_HALF_START && start <= end, "kernel flush of {start:?}..{end:?}: not kernel");
    shootdown(None, LocalOp::for_range(start.as_u64(), end.as_u64(), PageSize::Size4K), true);
}

/// A TLB flush owed after a change to `mm`'s page tables (removing or
/// weakening a translation). Page-table code returns one; dropping it is a
/// compiler warning. [`flush`](TlbFlush::flush) does it now;
/// [`Gather::add`](super::Gather::add) defers it; [`merge`](TlbFlush::merge)
/// combines two.
#[must_use = "a changed translation must be flushed from every TLB"]
pub struct TlbFlush<'a> {
    mm: &'a MmTlbState,
    start: u64,
    end: u64,
    stride: PageSize,
    /// A page table is detached with the flush (lazy CPUs are flushed too).
    freed_tables: bool,
}

impl core::fmt::Debug for TlbFlush<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TlbFlush(mm {} {:#x}..{:#x} {:?})", self.mm.id(), self.start, self.end, self.stride)
    }
}

impl<'a> TlbFlush<'a> {
    /// The flush of `[start, end)` with `stride`.
    pub(crate) fn range(mm: &'a MmTlbState, start: VirtAddr, end: VirtAddr, stride: PageSize) -> Self {
        assert!(end.as_u64() <= USER_END && start <= end, "flush of {start:?}..{end:?}: not a user range");
        TlbFlush { mm, start: start.as_u64(), end: end.as_u64(), stride, freed_tables: false }
    }

    /// The flush of the 4 KiB page holding `va`.
    pub fn page(mm: &'a MmTlbState, va: VirtAddr) -> Self {
        let start = va.align_down(PageSize::Size4K.bytes());
        Self::range(mm, start, start + PageSize::Size4K.bytes(), PageSize::Size4K)
    }

    /// The flush of the 2 MiB leaf at `haddr`.
    pub fn huge(mm: &'a MmTlbState, haddr: VirtAddr) -> Self {
        let start = haddr.align_down(PageSize::Size2M.bytes());
        Self::range(mm, start, start + PageSize::Size2M.bytes(), PageSize::Size2M)
    }

    /// The flush after a pmd that pointed to a pte table was cleared (Linux:
    /// pmdp_collapse_flush() -> flush_tlb_range(vma, haddr, haddr + HPAGE_PMD_SIZE)):
    /// the 2 MiB at `haddr` were mapped by 4 KiB ptes, so 512 strides — beyond
    /// any sane ceiling, a whole flush. It also drops the paging-structure
    /// caches' entries for the detached pte table.
    pub fn pmd_collapse(mm: &'a MmTlbState, haddr: VirtAddr) -> Self {
        assert!(haddr.is_aligned(PageSize::Size2M.bytes()), "pmd collapse flush at unaligned {haddr:?}");
        TlbFlush { freed_tables: true, ..Self::range(mm, haddr, haddr + PageSize::Size2M.bytes(), PageSize::Size4K) }
    }

    /// One flush covering both (same address space): the union of the ranges
    /// at the smaller stride (Linux's mmu_gather accumulates the same way).
    pub fn merge(self, other: TlbFlush<'a>) -> TlbFlush<'a> {
        assert!(core::ptr::eq(self.mm, other.mm), "merging flushes of different address spaces");
        TlbFlush {
            mm: self.mm,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            stride: self.stride.min(other.stride),
            freed_tables: self.freed_tables || other.freed_tables,
        }
    }

    /// The range `[start, end)` and stride.
    pub fn bounds(&self) -> (VirtAddr, VirtAddr, PageSize) {
        (VirtAddr::new(self.start), VirtAddr::new(self.end), self.stride)
    }

    /// Flushes now, on every CPU that may cache the range.
    pub fn flush(self) {
        flush_range(self.mm, VirtAddr::new(self.start), VirtAddr::new(self.end), self.stride, self.freed_tables);
    }

    /// Drops the flush without doing it. Only for negative controls that
    /// skip a flush on purpose (e.g. `ksm.no_flush`): stale translations stay.
    pub(crate) fn skip_for_negative_control(self) {}

    pub(crate) fn into_parts(self) -> (&'a MmTlbState, u64, u64, PageSize, bool) {
        (self.mm, self.start, self.end, self.stride, self.freed_tables)
    }
}
