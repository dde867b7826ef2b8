//! Physical frames: a buddy allocator over the boot memory map.
//!
//! Blocks of 2^order frames, order 0 (4 KiB) to [`MAX_ORDER`] (4 MiB); order 9 is
//! a 2 MiB huge page. Free blocks are kept on one doubly-linked list per order;
//! the list nodes live inside the free frames themselves (through the direct
//! map), and one byte per frame records whether the frame heads a free block and
//! of which order, which is all that coalescing needs (Linux keeps the same fact
//! in struct page: PageBuddy and the order).
//!
//! Never handed out: frame 0, all memory below 1 MiB (the AP start-up trampoline
//! lives there, see [`LOW_MEMORY_END`]), and whatever the memory map does not
//! call usable (the kernel image, the bootloader's tables, the boot info).
//!
//! Invariants: a frame is in at most one free block; a free block is aligned to
//! its size; two free buddies of equal order never coexist (they are merged).
//! [`stats`] lets tests assert that nothing leaked.
//!
//! The same boot-time carve-out holds the per-frame metadata ([`super::page`]).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::PhysAddr;
use x86_64::structures::paging::{PhysFrame, Size4KiB};

use super::{PAGE_SIZE, phys_to_virt};
use crate::sync::SpinLock;

/// The largest block order.
pub(crate) const MAX_ORDER: usize = 10;
/// Memory below this is never given to the allocator.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

const NONE: u64 = u64::MAX;
/// `state` value of a frame that does not head a free block.
const NOT_FREE_HEAD: u8 = 0;

/// A usable range of physical memory from the boot memory map.
#[derive(Clone, Copy, Debug)]
pub struct UsableRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// List node stored in the first bytes of every free block.
#[repr(C)]
struct FreeNode {
    next: u64,
    prev: u64,
}

struct Buddy {
    /// Per frame: NOT_FREE_HEAD, or 1 + order when the frame heads a free block.
    state: &'static mut [u8],
    heads: [u64; MAX_ORDER + 1],
    free_blocks: [usize; MAX_ORDER + 1],
    free_frames: usize,
    total_frames: usize,
}

fn node(pfn: u64) -> *mut FreeNode {
    phys_to_virt(PhysAddr::new(pfn * PAGE_SIZE)).as_mut_ptr::<FreeNode>()
}

impl Buddy {
    fn push(&mut self, pfn: u64, order: usize) {
        let head = self.heads[order];
        // SAFETY: `pfn` heads a free block, which nothing else uses; the direct
        // map covers it; `head`, if any, is another free block.
        unsafe {
            node(pfn).write(FreeNode { next: head, prev: NONE });
            if head != NONE {
                (*node(head)).prev = pfn;
            }
        }
        self.heads[order] = pfn;
        self.state[pfn as usize] = 1 + order as u8;
        self.free_blocks[order] += 1;
    }

    fn remove(&mut self, pfn: u64, order: usize) {
        // SAFETY: `pfn` heads a free block of `order` (state says so), so its
        // node is valid, and so are its neighbours'.
        unsafe {
            let FreeNode { next, prev } = node(pfn).read();
            if prev == NONE {
                self.heads[order] = next;
            } else {
                (*node(prev)).next = next;
            }
            if next != NONE {
                (*node(next)).prev = prev;
            }
        }
        self.state[pfn as usize] = NOT_FREE_HEAD;
        self.free_blocks[order] -= 1;
    }

    fn alloc(&mut self, order: usize) -> Option<u64> {
        let mut k = (order..=MAX_ORDER).find(|&k| self.heads[k] != NONE)?;
        let pfn = self.heads[k];
        self.remove(pfn, k);
        // Split: keep the lower half, free the upper halves.
        while k > order {
            k -= 1;
            self.push(pfn + (1 << k), k);
        }
        self.free_frames -= 1 << order;
        Some(pfn)
    }

    fn free(&mut self, mut pfn: u64, mut order: usize) {
        assert!(pfn.is_multiple_of(1 << order), "freeing a misaligned block: pfn {pfn:#x} order {order}");
        assert!(
            self.state[pfn as usize] == NOT_FREE_HEAD,
            "double free of frame {:#x}",
            pfn * PAGE_SIZE
        );
        self.free_frames += 1 << order;
        while order < MAX_ORDER {
            let buddy = pfn ^ (1 << order);
            if buddy as usize >= self.state.len() || self.state[buddy as usize] != 1 + order as u8 {
                break;
            }
            self.remove(buddy, order);
            pfn = pfn.min(buddy);
            order += 1;
        }
        self.push(pfn, order);
    }
}

static BUDDY: SpinLock<Option<Buddy>> = SpinLock::new("frame allocator", None);
/// Frames ever handed out (for statistics).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Builds the allocator from the usable ranges of the memory map. The per-frame
/// state array is carved out of the first usable range large enough for it.
pub(crate) fn init(usable: &[UsableRange]) {
    let max_end = usable.iter().map(|r| r.end).max().unwrap_or(0);
    let frames = (max_end / PAGE_SIZE) as usize;
    // The buddy's state bytes, then the page metadata array (struct page).
    let state_only = (frames as u64).next_multiple_of(64);
    let state_bytes = (state_only + super::page::array_bytes(frames) as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let state_range = usable
        .iter()
        .map(|r| (r.start.max(LOW_MEMORY_END).next_multiple_of(PAGE_SIZE), r.end & !(PAGE_SIZE - 1)))
        .find(|(s, e)| e > s && e - s >= state_bytes)
        .expect("no usable memory range can hold the frame state and page metadata arrays");
    let state_start = state_range.0;
    // SAFETY: this range is usable RAM nobody else owns yet (it is excluded from
    // the allocator below), and the direct map covers it.
    let state = unsafe {
        core::slice::from_raw_parts_mut(phys_to_virt(PhysAddr::new(state_start)).as_mut_ptr::<u8>(), frames)
    };
    state.fill(NOT_FREE_HEAD);
    let meta = phys_to_virt(PhysAddr::new(state_start + state_only)).as_mut_ptr::<super::page::Page>();
    // SAFETY: the metadata array follows the state bytes inside the reserved
    // range, 64-byte aligned, and is never used for anything else.
    unsafe { super::page::init(meta, frames) };
    let mut buddy =
        Buddy { state, heads: [NONE; MAX_ORDER + 1], free_blocks: [0; MAX_ORDER + 1], free_frames: 0, total_frames: 0 };
    let state_end = state_start + state_bytes;
    for r in usable {
        // Cut out low memory and the state array, then free in aligned blocks.
        let pieces = [(r.start, r.end.min(state_start)), (r.start.max(state_end), r.end)];
        for (s, e) in pieces {
            let s = s.max(LOW_MEMORY_END).div_ceil(PAGE_SIZE);
            let e = (e & !(PAGE_SIZE - 1)) / PAGE_SIZE;
            let mut pfn = s;
            while pfn < e {
                let order = (0..=MAX_ORDER)
                    .rev()
                    .find(|&k| pfn.is_multiple_of(1 << k) && pfn + (1 << k) <= e)
                    .unwrap_or(0);
                for f in pfn..pfn + (1 << order) {
                    super::page::page(f).clear(super::page::PageFlags::RESERVED);
                }
                buddy.free(pfn, order);
                buddy.total_frames += 1 << order;
                pfn += 1 << order;
            }
        }
    }
    *BUDDY.lock() = Some(buddy);
}

fn with<R>(f: impl FnOnce(&mut Buddy) -> R) -> R {
    // An irqsave lock: frames are freed from interrupt context too (a dropped
    // address space, RCU-deferred page-table frees).
    let mut guard = BUDDY.lock();
    f(guard.as_mut().expect("frame allocator used before mm::frame::init"))
}

/// Allocates 2^order contiguous, naturally aligned frames (contents undefined).
pub fn alloc(order: usize) -> Option<PhysFrame<Size4KiB>> {
    assert!(order <= MAX_ORDER, "order {order} > MAX_ORDER");
    let pfn = with(|b| b.alloc(order))?;
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    Some(PhysFrame::containing_address(PhysAddr::new(pfn * PAGE_SIZE)))
}

/// Allocates 2^order zeroed frames.
pub fn alloc_zeroed(order: usize) -> Option<PhysFrame<Size4KiB>> {
    let frame = alloc(order)?;
    let bytes = (PAGE_SIZE << order) as usize;
    // SAFETY: the block was just allocated to us and the direct map covers it.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(), 0, bytes) };
    Some(frame)
}

/// Returns a block to the allocator.
///
/// # Safety
/// `frame` must head a block of `order` obtained from [`alloc`] with the same
/// order, and nothing may use it (or reach it through a mapping) any more.
pub unsafe fn free(frame: PhysFrame<Size4KiB>, order: usize) {
    let pfn = frame.start_address().as_u64() / PAGE_SIZE;
    with(|b| b.free(pfn, order));
}

/// A snapshot of the allocator's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames managed by the allocator.
    pub total: usize,
    /// Frames currently free.
    pub free: usize,
    /// Free blocks per order.
    pub free_blocks: [usize; MAX_ORDER + 1],
}

/// Current counters.
pub fn stats() -> FrameStats {
    with(|b| FrameStats { total: b.total_frames, free: b.free_frames, free_blocks: b.free_blocks })
}
