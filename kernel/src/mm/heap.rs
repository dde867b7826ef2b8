//! The kernel heap: `linked_list_allocator` in a region that grows on demand,
//! with usage statistics.
//!
//! The heap starts at [`INITIAL_SIZE`] and, when an allocation fails, maps more
//! frames at its top (up to `layout::HEAP_MAX`) and retries. Statistics count
//! bytes in use, the peak, allocations, frees and failures, so tests can assert
//! that a piece of code gives back what it took.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use linked_list_allocator::Heap;
use x86_64::VirtAddr;

use super::layout::{HEAP_MAX, HEAP_START};
use super::paging::{PageSize, PteFlags};
use super::{PAGE_SIZE, frame, kernel_map};

/// Bytes mapped at boot.
pub const INITIAL_SIZE: u64 = 8 << 20;
/// Smallest growth step.
const GROW_STEP: u64 = 4 << 20;

/// The heap's lock is a plain test-and-set `spin::Mutex` taken with interrupts
/// off, not a `sync::SpinLock`: it is the hottest lock in the kernel, and a fair
/// ticket lock hands it to waiters in order even when the next waiter's vCPU is
/// not running (QEMU with more vCPUs than host cores), stalling every CPU
/// behind it for a host time slice. Unfair test-and-set does not.
struct KernelHeap {
    heap: spin::Mutex<Heap>,
    mapped: AtomicU64,
    allocations: AtomicU64,
    frees: AtomicU64,
    failures: AtomicU64,
    peak: AtomicU64,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    heap: spin::Mutex::new(Heap::empty()),
    mapped: AtomicU64::new(0),
    allocations: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    failures: AtomicU64::new(0),
    peak: AtomicU64::new(0),
};

/// Maps `bytes` more at the heap's top. Returns false when out of frames or space.
fn map_more(bytes: u64) -> bool {
    let start = HEAP_START + HEAP.mapped.load(Ordering::Relaxed);
    if start + bytes > HEAP_START + HEAP_MAX {
        return false;
    }
    let mut va = start;
    while va < start + bytes {
        let Some(f) = frame::alloc(0) else { return false };
        if kernel_map::map_kernel(
            VirtAddr::new(va),
            f.start_address(),
            PageSize::Size4K,
            PteFlags::WRITABLE | PteFlags::NO_EXECUTE | PteFlags::GLOBAL,
        )
        .is_err()
        {
            return false;
        }
        va += PAGE_SIZE;
        HEAP.mapped.fetch_add(PAGE_SIZE, Ordering::Relaxed);
    }
    true
}

/// Maps the initial heap. Called once, after the kernel tables are active.
pub(crate) fn init() {
    assert!(map_more(INITIAL_SIZE), "cannot map the initial kernel heap");
    // SAFETY: the range was just mapped, is used by nothing else, and stays
    // mapped for the kernel's life.
    unsafe { HEAP.heap.lock().init(HEAP_START as *mut u8, INITIAL_SIZE as usize) };
}

// SAFETY: all state is behind the spin lock or atomics; allocations come from the
// linked-list heap, which hands out disjoint, correctly aligned blocks.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut heap = self.heap.lock();
            let mut result = heap.allocate_first_fit(layout);
            if result.is_err() {
                // Grow by at least the request plus slack for the allocator's
                // own headers, then retry once.
                let want = (layout.size() as u64 + layout.align() as u64 + PAGE_SIZE).max(GROW_STEP);
                let want = want.next_multiple_of(PAGE_SIZE);
                if map_more(want) {
                    // SAFETY: the pages just mapped directly follow the heap's top.
                    unsafe { heap.extend(want as usize) };
                    result = heap.allocate_first_fit(layout);
                }
            }
            match result {
                Ok(ptr) => {
                    self.allocations.fetch_add(1, Ordering::Relaxed);
                    self.peak.fetch_max(heap.used() as u64, Ordering::Relaxed);
                    ptr.as_ptr()
                }
                Err(()) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    core::ptr::null_mut()
                }
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        x86_64::instructions::interrupts::without_interrupts(|| {
            // SAFETY: the caller passes a pointer from `alloc` with its layout.
            unsafe { self.heap.lock().deallocate(NonNull::new_unchecked(ptr), layout) };
            self.frees.fetch_add(1, Ordering::Relaxed);
        })
    }
}

/// Heap usage counters.
#[derive(Clone, Copy, Debug)]
pub struct HeapStats {
    /// Bytes mapped for the heap.
    pub size: u64,
    /// Bytes handed out now.
    pub used: u64,
    /// Most bytes ever handed out at once.
    pub peak: u64,
    /// Successful allocations so far.
    pub allocations: u64,
    /// Frees so far.
    pub frees: u64,
    /// Failed allocations so far.
    pub failures: u64,
}

/// Current heap counters.
pub fn stats() -> HeapStats {
    let used = x86_64::instructions::interrupts::without_interrupts(|| HEAP.heap.lock().used() as u64);
    HeapStats {
        size: HEAP.mapped.load(Ordering::Relaxed),
        used,
        peak: HEAP.peak.load(Ordering::Relaxed),
        allocations: HEAP.allocations.load(Ordering::Relaxed),
        frees: HEAP.frees.load(Ordering::Relaxed),
        failures: HEAP.failures.load(Ordering::Relaxed),
    }
}
