//! Memory management.
//!
//! * physical memory: the buddy allocator ([`frame`]) and per-frame metadata
//!   ([`page`]: refcount, mapcount, pins, flags, page lock);
//! * the kernel's own mappings: page tables ([`paging`], [`kernel_map`]),
//!   kernel stacks with guard pages ([`stack`]), the heap ([`heap`]), MMIO;
//! * user addresses as a type ([`UserAddr`], [`UserRange`]: made once from a
//!   raw number where it comes in, then passed as is);
//! * user address spaces ([`addr_space`]): areas ([`vma`]), page tables
//!   ([`pgtable`]), faults ([`fault`]), the page cache of program text
//!   ([`filemap`]), range operations ([`range`]), the
//!   memory calls ([`mmap`]), fork's copy ([`fork`]) and the split of a
//!   transparent huge page into small folios ([`huge_memory`]); the TLB flushes they
//!   owe go through `tlb` (a `TlbFlush` token or a `Gather`).
//!
//! Physical memory is reached through the direct map: all of it mapped at
//! [`phys_offset`] (chosen by the bootloader, kept when the kernel builds its own
//! tables). The virtual layout is in [`layout`].

pub mod addr_space;
pub mod fault;
pub mod filemap;
pub mod fork;
pub mod frame;
pub mod frame_io;
pub mod heap;
pub mod huge_memory;
pub(crate) mod hooks;
pub mod kernel_map;
pub mod layout;
pub mod mmap;
pub mod mmio;
pub mod page;
pub mod paging;
pub mod pgtable;
pub(crate) mod quarantine;
pub(crate) mod range;
pub(crate) mod scan;
pub mod stack;
pub mod user_addr;
pub mod vma;
pub mod uaccess;

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::{PhysAddr, VirtAddr};

/// Virtual address of physical address 0 in the direct map (0 = not set yet).
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Records the direct-map offset. Called once at boot, before any `phys_to_virt`.
pub(crate) fn set_phys_offset(offset: u64) {
    PHYS_OFFSET.store(offset, Ordering::Relaxed);
}

/// The direct-map offset (0 before boot set it).
pub(crate) fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// The direct-map address of a physical address.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(phys_offset() + phys.as_u64())
}

pub use paging::PageSize;
pub use user_addr::{UserAddr, UserRange};

/// Size of a small page, in bytes ([`PageSize::Size4K`]).
pub const PAGE_SIZE: u64 = PageSize::Size4K.bytes();
/// Size of a huge (pmd-level) page, in bytes ([`PageSize::Size2M`]).
pub const HUGE_PAGE_SIZE: u64 = PageSize::Size2M.bytes();
