//! Threads on chosen CPUs, with stacks from a fixed static pool (there is no
//! user memory allocator yet).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::sys;
use abi::Errno;

/// Threads a program may have at once (besides the main thread).
pub const MAX_THREADS: usize = 16;
/// Stack size of each thread.
pub const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// What a new thread runs: `func(arg)`, its return value is the thread's exit status.
#[derive(Clone, Copy)]
struct Start {
    func: fn(usize) -> i32,
    arg: usize,
}

static mut STACKS: [Stack; MAX_THREADS] = [const { Stack([0; STACK_SIZE]) }; MAX_THREADS];
static mut STARTS: [Start; MAX_THREADS] = [const { Start { func: |_| 0, arg: 0 } }; MAX_THREADS];
static USED: [AtomicBool; MAX_THREADS] = [const { AtomicBool::new(false) }; MAX_THREADS];

/// A started thread.
pub struct Thread {
    tid: usize,
    slot: usize,
}

impl Thread {
    /// The thread id.
    pub fn tid(&self) -> usize {
        self.tid
    }

    /// Waits for the thread and returns its exit status; its stack slot is
    /// free again afterwards.
    pub fn join(self) -> Result<i32, Errno> {
        let r = sys::thread_join(self.tid);
        if r.is_ok() {
            // Release: the next user of the slot sees the stack unused.
            USED[self.slot].store(false, Ordering::Release);
        }
        r
    }
}

/// Starts `func(arg)` in a new thread on `cpu`. EAGAIN when every stack slot is
/// in use; the kernel's errors (EINVAL for an offline CPU) otherwise.
pub fn spawn(cpu: usize, func: fn(usize) -> i32, arg: usize) -> Result<Thread, Errno> {
    let slot = (0..MAX_THREADS)
        .find(|&i| USED[i].compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())
        .ok_or(Errno::EAGAIN)?;
    // SAFETY: slot `slot` is ours (claimed above); no thread uses its stack or
    // start record until the spawn below.
    let (top, start) = unsafe {
        let stack = core::ptr::addr_of_mut!(STACKS[slot]);
        let start = core::ptr::addr_of_mut!(STARTS[slot]);
        start.write(Start { func, arg });
        (stack as usize + STACK_SIZE, start as usize)
    };
    // SAFETY: the entry never returns (it ends with thread_exit) and the stack
    // slot is reserved for this thread until it is joined.
    match unsafe { sys::thread_spawn(thread_entry as *const () as usize, top, start, cpu) } {
        Ok(tid) => Ok(Thread { tid, slot }),
        Err(e) => {
            USED[slot].store(false, Ordering::Release);
            Err(e)
        }
    }
}

#[unsafe(naked)]
extern "C" fn thread_entry() -> ! {
    core::arch::naked_asm!("xor ebp, ebp", "and rsp, -16", "call {run}", "ud2", run = sym thread_run)
}

extern "C" fn thread_run(start: usize) -> ! {
    // SAFETY: `spawn` passed the address of its slot's start record, written
    // before the thread was created.
    let Start { func, arg } = unsafe { (start as *const Start).read() };
    sys::thread_exit(func(arg))
}
