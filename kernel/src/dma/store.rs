//! The DMA device's medium: `abi::dio::DEVICE_SIZE` bytes of kernel memory
//! (two 2 MiB frames from the buddy allocator, zeroed, never freed), read and
//! written only by the agent thread, one request at a time, so it needs no
//! lock. Allocated on first use, so kernels that never do DMA do not pay for
//! it.

use alloc::vec::Vec;
use x86_64::structures::paging::PhysFrame;

use crate::mm::{HUGE_PAGE_SIZE, frame, phys_to_virt};
use abi::dio::DEVICE_SIZE;

/// The store: chunks of 2 MiB, in offset order.
pub struct Store {
    chunks: Vec<PhysFrame>,
}

impl Store {
    /// Allocates and zeroes the store; `None` without memory.
    pub fn new() -> Option<Store> {
        let mut chunks = Vec::new();
        for _ in 0..DEVICE_SIZE / HUGE_PAGE_SIZE {
            match frame::alloc_zeroed(frame::HUGE_ORDER) {
                Some(f) => chunks.push(f),
                None => {
                    for f in chunks {
                        // SAFETY: allocated just above with this order, never shared.
                        unsafe { frame::free(f, frame::HUGE_ORDER) };
                    }
                    return None;
                }
            }
        }
        Some(Store { chunks })
    }

    /// Pointer to the 8 bytes at `offset` (a multiple of 8 below DEVICE_SIZE).
    fn word(&self, offset: u64) -> *mut u64 {
        assert!(offset < DEVICE_SIZE && offset.is_multiple_of(8), "store offset {offset:#x} out of range");
        let chunk = self.chunks[(offset / HUGE_PAGE_SIZE) as usize];
        phys_to_virt(chunk.start_address() + offset % HUGE_PAGE_SIZE).as_mut_ptr::<u64>()
    }

    /// Reads the word at `offset`.
    pub fn read(&self, offset: u64) -> u64 {
        // SAFETY: inside a frame this store owns for the kernel's life,
        // through the direct map; only the agent thread accesses it.
        unsafe { self.word(offset).read_volatile() }
    }

    /// Writes the word at `offset`.
    pub fn write(&self, offset: u64, v: u64) {
        // SAFETY: as in `read`.
        unsafe { self.word(offset).write_volatile(v) }
    }
}
