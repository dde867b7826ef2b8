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
use x86_64::VirtAddr;

use super::addr_space::AddressSpace;
use super::page::PageRef;
use super::{HUGE_PAGE_SIZE, PAGE_SIZE};
use crate::tlb::{Gather, Stride};

/// A TLB flush owed for a range of one address space, plus the references
/// that may only be dropped after it.
#[must_use = "changed page-table entries must be flushed"]
pub struct Batch<'a> {
    gather: Gather<'a>,
    release: Vec<PageRef>,
}

impl<'a> Batch<'a> {
    /// An empty batch for `mm` (Linux tlb_gather_mmu(): marks a flush pending).
    pub fn new(mm: &'a AddressSpace) -> Batch<'a> {
        Batch { gather: Gather::new(mm), release: Vec::new() }
    }

    /// Records that the 4 KiB entry of `va` changed.
    pub fn page(&mut self, va: u64) {
        let base = va & !(PAGE_SIZE - 1);
        self.gather.add_range(VirtAddr::new(base), VirtAddr::new(base + PAGE_SIZE), Stride::Page4K);
    }

    /// Records that the 2 MiB entry of `va` changed.
    pub fn huge(&mut self, va: u64) {
        let base = va & !(HUGE_PAGE_SIZE - 1);
        self.gather.add_range(VirtAddr::new(base), VirtAddr::new(base + HUGE_PAGE_SIZE), Stride::Huge2M);
    }

    /// Drops `page` only after the flush (Linux tlb_remove_page()).
    pub fn release(&mut self, page: PageRef) {
        self.release.push(page);
    }

    /// Frees a page table detached from the tree at `va` once no walker can
    /// reach it (Linux pte_free_tlb()).
    ///
    /// # Safety
    /// `table` is a user page-table frame no entry points to any more.
    pub unsafe fn free_table(&mut self, table: x86_64::PhysAddr, va: u64) {
        let frame = x86_64::structures::paging::PhysFrame::containing_address(table);
        // SAFETY: the caller's contract (detached, order 0).
        unsafe { self.gather.free_table(frame, VirtAddr::new(va)) };
    }

    /// Flushes what changed on every CPU that may cache it, frees detached
    /// tables, then drops the references (Linux tlb_finish_mmu()).
    pub fn finish(self) {
        let Batch { gather, release } = self;
        gather.finish();
        // References only after the flush returned: see the module docs.
        drop(release);
    }
}
