//! Deferred, batched flushes, page-table freeing and deferred reference
//! drops (Linux: struct mmu_gather with tlb_gather_mmu()/tlb_finish_mmu(),
//! tlb_remove_page(), pte_free_tlb(), and mm->tlb_flush_pending with
//! inc/dec_tlb_flush_pending()); plus the table synchronisation a writer may
//! need on its own ([`table_sync_one`], [`remove_table_one`]).
//!
//! A [`Gather`] belongs to one address space. While it exists the address
//! space's pending count is raised, so a reader that sees a page-table change
//! made under the gather also sees that its flush may not have happened yet
//! ([`flush_pending`], what KSM's write_protect_page() checks). The gather
//! accumulates the range to flush, the page tables detached from the tree and
//! the page references the removed entries held. [`Gather::finish`], in this
//! order:
//! 1. flushes the range on every CPU that may cache it;
//! 2. frees the tables once lockless walkers cannot be using them (`ptfree=`);
//! 3. drops the page references;
//! 4. lowers the pending count.
//!
//! Invariants:
//! * A page whose mapping was removed keeps the mapping's reference until the
//!   flush has returned: a writer that compares a page's references with its
//!   mappings after "clear, flush" (the order of the seed message) sees no
//!   reference that a stale TLB entry could still use.
//! * A table given to [`Gather::free_table`] is detached (no entry points to
//!   it) and is freed only after the flush *and* after the `ptfree`
//!   synchronisation: an IPI call every other CPU acknowledged (a CPU inside
//!   an interrupts-off walk answers only after it), or an RCU grace period
//!   (which such a walk holds off).
//! * Every freed table is filled with [`POISON_ENTRY`] first, so a walker that
//!   reads a freed table sees a recognisable, not-present entry.
//! * The pending count is lowered exactly once per gather, last (also when the
//!   gather is dropped without `finish`): a reader that sees it low sees the
//!   flush done and the references dropped.

use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use x86_64::VirtAddr;

use super::flush::{TlbFlush, flush_range};
use crate::mm::PageSize;
use super::{GLOBAL, MmTlbState, PtFree, config, count};
use crate::mm::page::PageRef;
use crate::mm::pgtable::DetachedTable;
use crate::smp::{self, call};

pub use crate::mm::paging::POISON_ENTRY;

/// A batch of page-table changes of one address space, flushed together.
#[must_use = "a gather must be finished (its flush and table frees are owed)"]
pub struct Gather<'a> {
    mm: &'a MmTlbState,
    /// `[start, end)` and the smallest stride seen, if anything was added.
    range: Option<(u64, u64, PageSize)>,
    tables: Vec<DetachedTable>,
    /// References to drop after the flush (Linux: the gather's page batch).
    release: Vec<PageRef>,
    /// A flush added with a detached table (`TlbFlush::pmd_collapse`).
    freed_tables: bool,
    finished: bool,
}

impl<'a> Gather<'a> {
    /// Starts a batch for `mm` and raises its pending count (Linux:
    /// tlb_gather_mmu() -> inc_tlb_flush_pending()).
    pub fn new(mm: &'a MmTlbState) -> Self {
        // Relaxed increment, then a Release fence: the increment is ordered
        // before every later store of this CPU, in particular the page-table
        // changes the caller makes under this gather. A reader that sees such
        // a change and then executes an Acquire fence (`flush_pending`) sees
        // the increment. (Linux relies on the page-table lock for the same
        // order; this kernel's callers may use lockless exchanges.)
        mm.pending.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        Gather { mm, range: None, tables: Vec::new(), release: Vec::new(), freed_tables: false, finished: false }
    }

    /// Records that the 4 KiB entry of `va` changed.
    pub fn page(&mut self, va: VirtAddr) {
        let base = va.align_down(PageSize::Size4K.bytes());
        self.add_range(base, base + PageSize::Size4K.bytes(), PageSize::Size4K);
    }

    /// Records that the 2 MiB entry of `va` changed.
    pub(crate) fn huge(&mut self, va: VirtAddr) {
        let base = va.align_down(PageSize::Size2M.bytes());
        self.add_range(base, base + PageSize::Size2M.bytes(), PageSize::Size2M);
    }

    /// Drops `page` only after the flush (Linux tlb_remove_page()): the
    /// reference a removed entry held.
    pub fn release(&mut self, page: PageRef) {
        self.release.push(page);
    }

    /// Adds `[start, end)` (leaves of size `stride` changed) to the flush.
    pub(crate) fn add_range(&mut self, start: VirtAddr, end: VirtAddr, stride: PageSize) {
        let (s, e) = (start.as_u64(), end.as_u64());
        self.range = Some(match self.range {
            None => (s, e, stride),
            Some((s0, e0, st0)) => (s0.min(s), e0.max(e), st0.min(stride)),
        });
    }

    /// Defers a flush owed by page-table code into this batch.
    pub fn add(&mut self, flush: TlbFlush<'a>) {
        let (mm, start, end, stride, freed_tables) = flush.into_parts();
        assert!(core::ptr::eq(mm, self.mm), "a flush of another address space added to a gather");
        self.freed_tables |= freed_tables;
        self.add_range(VirtAddr::new(start), VirtAddr::new(end), stride);
    }

    /// Queues a detached page table for freeing after the flush (Linux:
    /// pte_free_tlb()/pmd_free_tlb()); `va` is an address it translated,
    /// added to the flush so that paging-structure caches drop it. `table`
    /// is a table of this address space (the token says it is detached and
    /// owned); after `finish` it is poisoned and freed.
    pub fn free_table(&mut self, table: DetachedTable, va: VirtAddr) {
        let page = va.align_down(PageSize::Size4K.bytes());
        self.add_range(page, page + PageSize::Size4K.bytes(), PageSize::Size4K);
        self.tables.push(table);
        count(Some(self.mm), |c| &c.tables_queued, 1);
    }

    /// Flushes, frees the queued tables per `ptfree`, drops the released
    /// references, lowers the pending count: the order of the module docs
    /// (Linux: tlb_finish_mmu()). A flush or synchronisation timeout panics.
    pub fn finish(mut self) {
        self.complete();
    }

    fn complete(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        // 1. The flush.
        if let Some((start, end, stride)) = self.range {
            // Lazy CPUs too when tables are freed (flush.rs, step 2).
            let freed = self.freed_tables || !self.tables.is_empty();
            flush_range(self.mm, VirtAddr::new(start), VirtAddr::new(end), stride, freed);
        }
        // 2. The tables.
        let tables = core::mem::take(&mut self.tables);
        if !tables.is_empty() {
            match config().ptfree {
                PtFree::Ipi => {
                    table_sync_one();
                    // The tables are flushed from every TLB and no
                    // interrupts-off walker that started before the sync can
                    // still be inside them.
                    tables.into_iter().for_each(poison_and_free_table);
                }
                // As above, after a grace period instead of the sync.
                PtFree::Rcu => crate::rcu::call_rcu(move || tables.into_iter().for_each(poison_and_free_table)),
            }
        }
        // 3. The references, only after the flush returned (module docs).
        drop(core::mem::take(&mut self.release));
        // 4. Release: the flush (whose acknowledgements the wait observed with
        // Acquire) and the reference drops happen before the decrement; a
        // reader that sees the count drop (Acquire) sees both. Under
        // `tlb.nowait` the flush may still be in flight: that is the negative
        // control.
        self.mm.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Gather<'_> {
    fn drop(&mut self) {
        self.complete();
    }
}

/// Waits until every other online CPU has taken an empty IPI call (Linux:
/// tlb_remove_table_sync_one()): a CPU in an interrupts-off lockless walk
/// answers only after the walk, so when this returns no walker that read an
/// entry before the caller's change is still walking. Always by IPI, whatever
/// `tlb=` says; not an RCU grace period. Callable on its own: collapse calls
/// it right after its pmd flush, before it isolates the pages under the
/// detached table. A CPU that does not answer in time is fatal (named).
pub fn table_sync_one() {
    let mut others = smp::online_cpus();
    others.remove(smp::cpu_index());
    if others.is_empty() {
        return;
    }
    if let Err(e) = call::call_and_wait(others, || {}) {
        panic!("page-table free synchronisation not acknowledged: {e}; the tables cannot be freed safely");
    }
}

/// Frees one detached page table once no lockless walker can be inside it,
/// per `ptfree` (Linux tlb_remove_table_one()): `ipi`, [`table_sync_one`]
/// then the poisoning free; `rcu`, the poisoning free after a grace period.
/// The caller flushed the TLBs that could cache the table first (e.g. the
/// [`TlbFlush::pmd_collapse`] of the pmd that pointed to it).
pub fn remove_table_one(table: DetachedTable) {
    count(None, |c| &c.tables_queued, 1);
    match config().ptfree {
        PtFree::Ipi => {
            table_sync_one();
            poison_and_free_table(table);
        }
        PtFree::Rcu => crate::rcu::call_rcu(move || poison_and_free_table(table)),
    }
}

/// Fills a page table with [`POISON_ENTRY`] and returns it to the frame
/// allocator. For gathers, and for negative controls that free a table at
/// once (`collapse.no_table_sync`). The caller decides whether lockless
/// walkers were excluded; one still inside reads [`POISON_ENTRY`] (while a
/// race scenario runs the poisoned table is held back from reuse, so it
/// reads the poison, not a reused frame).
pub fn poison_and_free_table(table: DetachedTable) {
    table.poison_and_free();
    // Relaxed: statistics.
    GLOBAL.tables_freed.fetch_add(1, Ordering::Relaxed);
}

/// Whether a gather of `mm` is in progress, so a page-table change seen by
/// the caller may not be flushed yet (Linux: mm_tlb_flush_pending()).
pub fn flush_pending(mm: &MmTlbState) -> bool {
    // Acquire fence: the caller's earlier page-table reads are ordered before
    // the count's load (pairs with the Release fence in `Gather::new`).
    fence(Ordering::Acquire);
    mm.pending.load(Ordering::Acquire) > 0
}
