//! The TLB flushes the user page-table code owes, in one place: a batch
//! ([`Batch`], Linux's mmu_gather as far as page-table code sees it) that
//! collects the range whose entries changed and the references to drop once
//! no CPU can use the old entries any more.
//!
//! Invariant: a page whose mapping was removed keeps the mapping's reference
//! until the flush that follows has returned; only then is it put. This is
//! what lets a writer compare a page's references with its mappings after
//! "clear, flush" (the order of the seed message).

use alloc::vec::Vec;

use super::addr_space::AddressSpace;
use super::page::PageRef;
use super::{HUGE_PAGE_SIZE, PAGE_SIZE};

/// A TLB flush owed for a range of one address space, plus the references
/// that may only be dropped after it.
#[must_use = "changed page-table entries must be flushed"]
pub struct Batch<'a> {
    mm: &'a AddressSpace,
    start: u64,
    end: u64,
    huge_only: bool,
    release: Vec<PageRef>,
    tables: Vec<x86_64::PhysAddr>,
}

impl<'a> Batch<'a> {
    /// An empty batch for `mm` (Linux tlb_gather_mmu(): marks a flush pending).
    pub fn new(mm: &'a AddressSpace) -> Batch<'a> {
        Batch { mm, start: u64::MAX, end: 0, huge_only: true, release: Vec::new(), tables: Vec::new() }
    }

    /// Records that the 4 KiB entry of `va` changed.
    pub fn page(&mut self, va: u64) {
        self.add(va & !(PAGE_SIZE - 1), PAGE_SIZE, false);
    }

    /// Records that the 2 MiB entry of `va` changed.
    pub fn huge(&mut self, va: u64) {
        self.add(va & !(HUGE_PAGE_SIZE - 1), HUGE_PAGE_SIZE, true);
    }

    fn add(&mut self, base: u64, size: u64, huge: bool) {
        self.start = self.start.min(base);
        self.end = self.end.max(base + size);
        self.huge_only &= huge;
    }

    /// Drops `page` only after the flush (Linux tlb_remove_page()).
    pub fn release(&mut self, page: PageRef) {
        self.release.push(page);
    }

    /// Frees a detached page-table frame once no walker can reach it.
    pub fn free_table(&mut self, table: x86_64::PhysAddr) {
        self.tables.push(table);
    }

    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Flushes what changed on every CPU that may cache it, then drops the
    /// references (Linux tlb_finish_mmu()).
    pub fn finish(self) {
        let Batch { mm, start, end, huge_only, release, tables } = self;
        if start < end || !tables.is_empty() {
            let stride = if huge_only { HUGE_PAGE_SIZE } else { PAGE_SIZE };
            shootdown(mm, start, end.max(start), stride);
        }
        for t in tables {
            super::pgtable::free_table(t);
        }
        // References only after the flush returned: see the module docs.
        drop(release);
    }
}

/// Interim shootdown until the TLB subsystem lands: local INVLPG or full
/// flush, and a waiting IPI call to the other CPUs of the mm.
fn shootdown(mm: &AddressSpace, start: u64, end: u64, stride: u64) {
    use crate::smp::percpu;
    let me = percpu::cpu_index();
    let full = (end - start) / stride > 33;
    let flush = move || {
        if full {
            x86_64::instructions::tlb::flush_all();
        } else {
            let mut va = start;
            while va < end {
                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));
                va += stride;
            }
        }
    };
    let mut targets = mm.cpus();
    if targets.contains(me) {
        flush();
    }
    targets.remove(me);
    if !targets.is_empty() {
        crate::smp::call::call(targets, flush)
            .wait(crate::smp::call::call_timeout_ns())
            .unwrap_or_else(|e| panic!("TLB shootdown: {e}"));
    }
}
