//! The DMA device's medium: `abi::dio::DEVICE_SIZE` bytes of kernel memory
//! (2 MiB frames from the buddy allocator, zeroed, never freed), read and
//! written only by the agent thread, one request at a time, so it needs no
//! lock. Allocated on first use, so kernels that never do DMA do not pay for
//! it.

use alloc::vec::Vec;

use crate::mm::PageSize;
use crate::mm::frame_io::OwnedFrames;
use crate::mm::HUGE_PAGE_SIZE;
use abi::dio::DEVICE_SIZE;

/// The store: chunks of 2 MiB, in offset order.
pub(crate) struct Store {
    chunks: Vec<OwnedFrames>,
}

impl Store {
    /// Allocates and zeroes the store; `None` without memory (what was
    /// allocated is freed again).
    pub(crate) fn new() -> Option<Store> {
        let chunks = (0..DEVICE_SIZE / HUGE_PAGE_SIZE).map(|_| OwnedFrames::alloc_zeroed(PageSize::Size2M.order())).collect::<Option<Vec<_>>>()?;
        Some(Store { chunks })
    }

    /// The chunk and the offset in it of store byte `offset` (a multiple of
    /// 8 below DEVICE_SIZE).
    fn locate(&self, offset: u64) -> (&OwnedFrames, u64) {
        assert!(offset < DEVICE_SIZE && offset.is_multiple_of(8), "store offset {offset:#x} out of range");
        (&self.chunks[(offset / HUGE_PAGE_SIZE) as usize], offset % HUGE_PAGE_SIZE)
    }

    /// Reads the word at `offset`.
    pub(crate) fn read(&self, offset: u64) -> u64 {
        let (chunk, off) = self.locate(offset);
        chunk.read_word(off)
    }

    /// Writes the word at `offset`.
    pub(crate) fn write(&self, offset: u64, v: u64) {
        let (chunk, off) = self.locate(offset);
        chunk.write_word(off, v)
    }
}
