//! Tasks: kernel threads with their own guarded stacks.
//!
//! A task is pinned to one CPU for its life (the race scenarios place every
//! thread on a chosen CPU; no load balancing). Its state moves Runnable ->
//! Running -> (Blocked -> Runnable ->)* ... -> Dead; transitions out of Blocked
//! are compare-exchanges, so exactly one waker requeues a task.
//!
//! Stacks are recycled through a pool rather than unmapped: a mapping that never
//! changes needs no TLB shootdown, and a task is dropped only after its CPU has
//! switched away from its stack (`on_cpu` false).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use alloc::sync::Arc;

use super::wait::WaitQueue;
use crate::mm::stack::{self, KernelStack};
use crate::sync::SpinLock;

/// Size of a kernel thread's stack.
pub(crate) const THREAD_STACK_SIZE: usize = 64 * 1024;

/// What the scheduler needs of an address space to run a task in it
/// (Linux: the mm_struct fields switch_mm_irqs_off() touches). Defined here
/// and implemented by `mm::addr_space::AddressSpace`, so the scheduler does
/// not reach up into the address-space layer.
pub trait MmContext: core::any::Any + Send + Sync {
    /// The top-level page table (what CR3 holds).
    fn root(&self) -> x86_64::PhysAddr;
    /// Unique id (for reports).
    fn id(&self) -> u64;
    /// `cpu` is about to load [`MmContext::root`] (interrupts off, before
    /// the CR3 write: a shootdown that reads the CPU set afterwards targets
    /// this CPU).
    fn note_loaded(&self, cpu: usize);
    /// `cpu` loaded another root.
    fn note_unloaded(&self, cpu: usize);
    /// The same object as `Any`, for the layer that knows its type
    /// (`mm::fault::current_mm`).
    fn into_any(self: Arc<Self>) -> Arc<dyn core::any::Any + Send + Sync>;
}

/// Task states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// In its CPU's run queue (or about to be).
    Runnable = 0,
    /// On its CPU now.
    Running = 1,
    /// Waiting to be woken.
    Blocked = 2,
    /// Finished; never runs again.
    Dead = 3,
}

/// A kernel thread.
pub(crate) struct Task {
    /// Name, for reports.
    pub name: &'static str,
    /// The CPU it runs on.
    pub cpu: usize,
    /// Whether this is its CPU's idle task (never queued).
    pub is_idle: bool,
    /// Its address space; `None` for a kernel thread, which runs on whatever
    /// root its CPU has loaded (lazy TLB).
    pub mm: Option<Arc<dyn MmContext>>,
    state: AtomicU8,
    /// True from the moment it is switched to until its CPU has switched away
    /// from its stack (Linux: task_struct.on_cpu).
    pub(super) on_cpu: AtomicBool,
    /// Saved stack pointer while not running.
    pub(super) saved_rsp: UnsafeCell<u64>,
    stack: Option<KernelStack>,
    pub(super) entry: spin::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Set (Release) when the entry function has returned.
    pub(super) exited: AtomicBool,
    /// Woken when the task exits.
    pub(super) exit_waiters: WaitQueue,
    /// Ticks this task has been running since it was last switched to.
    pub(super) ticks: AtomicU64,
    /// A user thread's entry stack (see `arch::usermode`), loaded into the
    /// per-CPU block and TSS when the task is switched to; 0 for a task that
    /// never entered ring 3. Written by the task itself (Relaxed: only its
    /// own CPU reads it, at switches, which are ordered with it).
    pub user_entry_rsp: AtomicU64,
    /// The user thread this task runs, if any (set by the task itself).
    pub user_thread: spin::Once<Arc<dyn core::any::Any + Send + Sync>>,
}

// SAFETY: `saved_rsp` is written only by the task's own CPU with interrupts off
// while switching away from it, and read only by that CPU when switching to it;
// everything else is atomic or locked.
unsafe impl Sync for Task {}
// SAFETY: as above; the stack is plain memory owned by the task.
unsafe impl Send for Task {}

static STACK_POOL: SpinLock<Vec<KernelStack>> = SpinLock::new("thread stack pool", Vec::new());

impl Task {
    /// A task for a context that is already running (a CPU's boot context).
    pub(super) fn for_running_context(name: &'static str, cpu: usize, is_idle: bool) -> Task {
        Task {
            name,
            cpu,
            is_idle,
            mm: None,
            state: AtomicU8::new(State::Running as u8),
            on_cpu: AtomicBool::new(true),
            saved_rsp: UnsafeCell::new(0),
            stack: None,
            entry: spin::Mutex::new(None),
            exited: AtomicBool::new(false),
            exit_waiters: WaitQueue::new(),
            ticks: AtomicU64::new(0),
            user_entry_rsp: AtomicU64::new(0),
            user_thread: spin::Once::new(),
        }
    }

    /// A new task that will run `entry` on `cpu`.
    pub(super) fn new(
        name: &'static str,
        cpu: usize,
        is_idle: bool,
        mm: Option<Arc<dyn MmContext>>,
        entry: Box<dyn FnOnce() + Send>,
    ) -> Task {
        // The pool's guard must be gone before a fresh stack is mapped.
        let pooled = STACK_POOL.lock().pop();
        let stack = pooled.unwrap_or_else(|| stack::alloc("kernel thread", THREAD_STACK_SIZE));
        // SAFETY: the stack is mapped and unused (fresh or returned to the pool
        // by a dead task that no CPU runs on any more).
        let rsp = unsafe { crate::arch::context::initial_stack(stack.top().as_u64(), super::task_main) };
        Task {
            name,
            cpu,
            is_idle,
            mm,
            state: AtomicU8::new(State::Runnable as u8),
            on_cpu: AtomicBool::new(false),
            saved_rsp: UnsafeCell::new(rsp),
            stack: Some(stack),
            entry: spin::Mutex::new(Some(entry)),
            exited: AtomicBool::new(false),
            exit_waiters: WaitQueue::new(),
            ticks: AtomicU64::new(0),
            user_entry_rsp: AtomicU64::new(0),
            user_thread: spin::Once::new(),
        }
    }

    pub(super) fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if the task is in `from`.
    pub(super) fn transition(&self, from: State, to: State) -> bool {
        self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Whether the task has finished.
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        debug_assert!(!self.on_cpu.load(Ordering::Acquire), "task {} dropped while on its CPU", self.name);
        if let Some(stack) = self.stack.take() {
            STACK_POOL.lock().push(stack);
        }
    }
}
