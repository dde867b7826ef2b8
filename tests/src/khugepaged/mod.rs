//! khugepaged and MADV_COLLAPSE tests (Linux's selftests/mm/khugepaged.c
//! cases for anonymous memory: full, empty, single pte, max_ptes_none,
//! already huge, fork; plus what those lack: a range with a pinned subpage
//! is refused and the pin stays coherent with the mapping).
//!
//! Ranges of 512 small pages are made by writing every page of a fresh
//! 2 MiB area before it gets `MADV_HUGEPAGE` (under the THP policy `madvise`
//! the faults map small pages). Every test runs under [`collapse_no_leaks`]:
//! no folio or page table leaked, no oracle fired, defaults restored.

pub mod collapse;
pub mod daemon;
pub mod protocol;
pub mod table_sync;

use alloc::sync::Arc;
use kernel::khugepaged::{self, Tunables};
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::PageSize;
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use kernel::race::{self, CollapseSwitches};

use crate::mm::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, translate, write};
use kernel::mm::UserAddr;

/// The value [`populate`] writes in page `i`.
pub fn word(i: u64) -> u64 {
    0xc011_a95e_0000_0000 | i
}

/// A fresh address space with a 2 MiB-aligned area whose pages `pages`
/// are written with [`word`] (small pages: no MADV_HUGEPAGE yet).
pub fn populated(pages: impl Iterator<Item = u64> + Send + 'static) -> (Arc<AddressSpace>, UserAddr) {
    let mm = new_mm();
    let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
    assert!(a.is_aligned(PageSize::Size2M), "a 2 MiB mmap is not 2 MiB-aligned");
    in_mm(&mm, move || {
        for i in pages {
            write(a + i * PAGE_SIZE, word(i));
        }
    });
    (mm, a)
}

/// The size of the page mapping `addr` (`None`: not mapped).
pub fn mapped_size(mm: &AddressSpace, addr: UserAddr) -> Option<PageSize> {
    translate(mm, addr).map(|t| t.size)
}

/// Asserts page `i` of the area at `a` reads [`word`]`(i)` for `i` in
/// `written`, zero elsewhere, through the mapping.
pub fn check_contents(mm: &Arc<AddressSpace>, a: UserAddr, written: impl Fn(u64) -> bool + Send + 'static) {
    in_mm(mm, move || {
        for i in 0..512 {
            let want = if written(i) { word(i) } else { 0 };
            assert_eq!(read(a + i * PAGE_SIZE), want, "page {i} of the range changed");
        }
    });
}

/// Runs `f` and checks no leak and no oracle event; restores khugepaged's
/// tunables and the collapse switches.
pub fn collapse_no_leaks<R>(f: impl FnOnce() -> R) -> R {
    let r = assert_no_leaks(f);
    khugepaged::set_tunables(Tunables::DEFAULT);
    race::set_collapse_switches(CollapseSwitches::default());
    r
}
