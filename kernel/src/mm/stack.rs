//! Kernel stacks with guard pages.
//!
//! Each stack gets a 1 MiB slot of the stack region; the stack occupies the top
//! of its slot and everything below it stays unmapped, so an overflow faults on
//! the page just below the stack (the guard page) instead of silently
//! overwriting a neighbour. The fault handler asks [`guard_page_owner`] to turn
//! such a fault into a "kernel stack overflow" report naming the stack; that
//! lookup reads only atomics, so it is safe from any context.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use x86_64::{PhysAddr, VirtAddr};

use super::layout::{STACK_SLOT_SIZE, STACK_SLOTS, STACKS_START};
use super::paging::{self, PageSize, PteFlags};
use super::{PAGE_SIZE, frame, kernel_map};
use crate::sync::ThreadLock;

/// Per slot: the lowest mapped address of its stack (0 = slot free).
static BOTTOM: [AtomicU64; STACK_SLOTS] = [const { AtomicU64::new(0) }; STACK_SLOTS];
/// Per slot: the stack's name (pointer and length of a `&'static str`).
static NAME_PTR: [AtomicUsize; STACK_SLOTS] = [const { AtomicUsize::new(0) }; STACK_SLOTS];
static NAME_LEN: [AtomicUsize; STACK_SLOTS] = [const { AtomicUsize::new(0) }; STACK_SLOTS];
/// Serialises slot allocation (thread context only: stacks are allocated when
/// CPUs start and threads are spawned, never from an interrupt handler).
static SLOTS_LOCK: ThreadLock<()> = ThreadLock::new("kernel stack slots", ());

/// A mapped kernel stack. Stacks live as long as the kernel (CPU stacks, the
/// boot stack); thread stacks that are freed will need a cross-CPU flush first.
#[derive(Debug)]
pub struct KernelStack {
    bottom: u64,
    top: u64,
}

impl KernelStack {
    /// The initial stack pointer (one past the highest byte).
    pub(crate) fn top(&self) -> VirtAddr {
        VirtAddr::new(self.top)
    }

    /// The lowest mapped byte.
    pub fn bottom(&self) -> VirtAddr {
        VirtAddr::new(self.bottom)
    }

}

/// Allocates and maps a stack of `size` bytes (rounded up to pages; at most the
/// slot size minus one guard page) named `name` for reports.
pub fn alloc(name: &'static str, size: usize) -> KernelStack {
    let size = (size as u64).next_multiple_of(PAGE_SIZE);
    assert!(size > 0 && size <= STACK_SLOT_SIZE - PAGE_SIZE, "stack size {size} out of range");
    let slot = {
        let _guard = SLOTS_LOCK.lock();
        let slot = (0..STACK_SLOTS)
            .find(|&i| BOTTOM[i].load(Ordering::Relaxed) == 0)
            .expect("out of kernel stack slots");
        let top = STACKS_START + (slot as u64 + 1) * STACK_SLOT_SIZE;
        NAME_PTR[slot].store(name.as_ptr() as usize, Ordering::Relaxed);
        NAME_LEN[slot].store(name.len(), Ordering::Relaxed);
        // Release: a fault handler that sees the bottom also sees the name.
        BOTTOM[slot].store(top - size, Ordering::Release);
        slot
    };
    let top = STACKS_START + (slot as u64 + 1) * STACK_SLOT_SIZE;
    let bottom = top - size;
    let mut va = bottom;
    while va < top {
        let f = frame::alloc_zeroed(0).expect("out of memory for a kernel stack");
        kernel_map::map_kernel(
            VirtAddr::new(va),
            f.start_address(),
            PageSize::Size4K,
            PteFlags::WRITABLE | PteFlags::NO_EXECUTE | PteFlags::GLOBAL,
        )
        .expect("stack slot already mapped");
        va += PAGE_SIZE;
    }
    KernelStack { bottom, top }
}

/// If `addr` lies in the unmapped space below a live stack, that stack's name.
pub fn guard_page_owner(addr: u64) -> Option<&'static str> {
    if addr < STACKS_START || addr >= STACKS_START + STACK_SLOTS as u64 * STACK_SLOT_SIZE {
        return None;
    }
    let slot = ((addr - STACKS_START) / STACK_SLOT_SIZE) as usize;
    let bottom = BOTTOM[slot].load(Ordering::Acquire);
    if bottom == 0 || addr >= bottom {
        return None;
    }
    let ptr = NAME_PTR[slot].load(Ordering::Relaxed) as *const u8;
    let len = NAME_LEN[slot].load(Ordering::Relaxed);
    // SAFETY: the pointer and length were taken from a `&'static str` before the
    // Release store of BOTTOM that the Acquire load above observed.
    Some(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) })
}

/// Whether `[bottom, top)` of a stack is all mapped (a self-check for tests).
pub fn is_fully_mapped(stack: &KernelStack) -> bool {
    let root = PhysAddr::new(kernel_map::kernel_root().as_u64());
    (stack.bottom..stack.top)
        .step_by(PAGE_SIZE as usize)
        .all(|va| paging::translate(root, VirtAddr::new(va)).is_some())
}

/// Where a live stack lies.
#[derive(Clone, Copy, Debug)]
pub struct StackInfo {
    /// Its name.
    pub name: &'static str,
    /// Lowest mapped byte.
    pub bottom: u64,
    /// One past the highest byte.
    pub top: u64,
}

/// The live stack whose slot contains `addr`, if any.
pub fn lookup(addr: u64) -> Option<StackInfo> {
    if addr < STACKS_START || addr >= STACKS_START + STACK_SLOTS as u64 * STACK_SLOT_SIZE {
        return None;
    }
    let slot = ((addr - STACKS_START) / STACK_SLOT_SIZE) as usize;
    let bottom = BOTTOM[slot].load(Ordering::Acquire);
    if bottom == 0 {
        return None;
    }
    let top = STACKS_START + (slot as u64 + 1) * STACK_SLOT_SIZE;
    let name = guard_page_owner(bottom - 1)?;
    Some(StackInfo { name, bottom, top })
}
