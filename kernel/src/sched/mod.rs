//! The scheduler: per-CPU run queues of kernel threads, each pinned to one CPU.
//!
//! Preemption model: the kernel is **not preemptible in its own code** (Linux's
//! PREEMPT_NONE). The timer tick only marks `need_resched` when a task used up
//! its time slice and another waits; the switch happens at the next
//! [`cond_resched`], [`yield_now`], blocking wait, task exit, or (later) return
//! to user mode. So an interrupts-off section, or any kernel code between two
//! such points, runs without a context switch — which is what makes those
//! sections RCU read-side critical sections (`rcu`) and lets an IPI wait
//! for them.
//!
//! Each CPU has an idle task (on an AP, its boot context) that runs when the
//! queue is empty: it reports an RCU quiescent state and halts until an
//! interrupt. A wake-up from another CPU queues the task and sends that CPU a
//! reschedule IPI.
//!
//! Address spaces: a context switch writes CR3 only when the next task has an
//! address space other than the one loaded. A kernel thread (no address space
//! of its own, the idle task included) runs on whatever is loaded: the CPU
//! stays "lazy" in the previous address space and in its CPU set, as on Linux
//! x86, so switching back to a task of that space costs no CR3 write. The
//! scheduler holds a reference to the loaded address space, so it cannot be
//! freed while any CPU has it loaded; [`leave_lazy_mm`] drops a lazy one.

pub mod daemon;
pub(crate) mod task;
pub(crate) mod wait;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::idt::TrapFrame;
use crate::arch::{apic, timer, vectors};
use crate::smp::{self, MAX_CPUS, percpu};
use crate::sync::SpinLock;
use crate::time::Deadline;
pub(crate) use task::{MmContext, State, Task};
pub use wait::WaitQueue;

/// Ticks a task may run before it should yield to a waiting one.
const TIME_SLICE_TICKS: u64 = 2;

/// A CPU's scheduler state. The locks are irqsave `SpinLock`s (the tick and
/// wake-ups from other CPUs take them); no guard is ever held across a
/// context switch, since a guard restores the interrupt state of the CPU and
/// stack that drop it.
struct RunQueue {
    queue: SpinLock<VecDeque<Arc<Task>>>,
    current: SpinLock<Option<Arc<Task>>>,
    idle: spin::Once<Arc<Task>>,
    /// The task switched away from, released by the task switched to
    /// (Linux: finish_task_switch).
    previous: SpinLock<Option<Arc<Task>>>,
    need_resched: AtomicBool,
    ticks: AtomicU64,
    switches: AtomicU64,
    /// The address space in CR3 (`None`: the kernel tables).
    loaded_mm: SpinLock<Option<Arc<dyn MmContext>>>,
    /// Whether a kernel thread runs on a borrowed (lazily kept) address space.
    lazy: AtomicBool,
    /// A TLB flush skipped this CPU while it was lazy ([`flush_may_skip`]):
    /// it reloads CR3 before it runs a task of the address space again.
    flush_owed: AtomicBool,
    cr3_writes: AtomicU64,
}

static RQ: [RunQueue; MAX_CPUS] = [const {
    RunQueue {
        queue: SpinLock::new("run queue", VecDeque::new()),
        current: SpinLock::new("current task", None),
        idle: spin::Once::new(),
        previous: SpinLock::new("previous task", None),
        need_resched: AtomicBool::new(false),
        ticks: AtomicU64::new(0),
        switches: AtomicU64::new(0),
        loaded_mm: SpinLock::new("loaded address space", None),
        lazy: AtomicBool::new(false),
        flush_owed: AtomicBool::new(false),
        cr3_writes: AtomicU64::new(0),
    }
}; MAX_CPUS];

static READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Registers the tick and reschedule handlers and calibrates the timer.
/// Called once on the boot CPU, before the APs start (they enter the
/// scheduler as soon as they are online). Returns the timer mode.
pub(crate) fn init_global() -> &'static str {
    crate::arch::idt::register_handler(vectors::TIMER, tick);
    crate::arch::idt::register_handler(vectors::RESCHEDULE, reschedule_ipi);
    crate::sync::set_yield_hook(yield_now);
    timer::init_global()
}

/// Makes the boot context of the boot CPU the task "main", gives the boot CPU
/// an idle task and starts its tick. Called once, before the kernel's main.
pub(crate) fn init_boot_cpu() {
    let me = percpu::cpu_index();
    *RQ[me].current.lock() = Some(Arc::new(Task::for_running_context("main", me, false)));
    let idle = Arc::new(Task::new("idle", me, true, None, Box::new(|| idle_loop())));
    RQ[me].idle.call_once(|| idle);
    READY[me].store(true, Ordering::Release);
    timer::start_this_cpu();
}

/// Makes this AP's boot context its idle task and runs the idle loop.
pub(crate) fn start_ap() -> ! {
    let me = percpu::cpu_index();
    let idle = Arc::new(Task::for_running_context("idle", me, true));
    *RQ[me].current.lock() = Some(idle.clone());
    RQ[me].idle.call_once(|| idle);
    READY[me].store(true, Ordering::Release);
    timer::start_this_cpu();
    idle_loop()
}

/// Whether `cpu` has a scheduler.
pub(crate) fn ready(cpu: usize) -> bool {
    cpu < MAX_CPUS && READY[cpu].load(Ordering::Acquire)
}

/// The task running on this CPU.
pub(crate) fn current_task() -> Arc<Task> {
    let me = percpu::cpu_index();
    // The slot's SpinLock disables interrupts while it is held.
    RQ[me].current.lock().clone().expect("no current task: scheduler not started on this CPU")
}

/// The current task's address space, if it has one (Linux: `current->mm`):
/// the slot's lock and one reference on the address space, without the
/// task's reference that [`current_task`] takes and drops, nor a second
/// save and restore of the interrupt flag (every system call and user fault
/// asks; bench=shootdown, six interleaved pairs: mprotect_ro without a
/// remote CPU 3.31-3.45 -> 3.17-3.34 us).
pub(crate) fn current_mm() -> Option<Arc<dyn MmContext>> {
    let me = percpu::cpu_index();
    RQ[me].current.lock().as_ref().expect("no current task: scheduler not started on this CPU").mm.clone()
}

/// The idle loop: report a quiescent state, run queued work, halt.
fn idle_loop() -> ! {
    let me = percpu::cpu_index();
    loop {
        x86_64::instructions::interrupts::disable();
        crate::rcu::quiescent_state();
        if !RQ[me].queue.lock().is_empty() {
            schedule();
            continue;
        }
        if crate::rcu::pending_callbacks() > 0 {
            x86_64::instructions::interrupts::enable();
            crate::rcu::run_callbacks();
            continue;
        }
        // `sti; hlt` as a pair: a wake-up IPI after the check above still
        // ends the halt (sti's one-instruction shadow).
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// Switches to the next runnable task of this CPU (or its idle task). The
/// current task is requeued if it is still Running; a Blocked or Dead one is
/// not. Returns when the current task runs again.
pub(crate) fn schedule() {
    let me = percpu::cpu_index();
    let rq = &RQ[me];
    let were_enabled = crate::arch::cpu::interrupts_enabled();
    x86_64::instructions::interrupts::disable();
    crate::rcu::quiescent_state();
    rq.need_resched.store(false, Ordering::Relaxed);
    let prev = rq.current.lock().clone().expect("schedule() before the scheduler started");
    if prev.transition(State::Running, State::Runnable) && !prev.is_idle {
        rq.queue.lock().push_back(prev.clone());
    }
    let next = rq.queue.lock().pop_front().unwrap_or_else(|| rq.idle.get().expect("no idle task").clone());
    if Arc::ptr_eq(&next, &prev) {
        prev.set_state(State::Running);
        if were_enabled {
            x86_64::instructions::interrupts::enable();
        }
        return;
    }
    next.set_state(State::Running);
    next.ticks.store(0, Ordering::Relaxed);
    next.on_cpu.store(true, Ordering::Relaxed);
    rq.switches.fetch_add(1, Ordering::Relaxed);
    switch_mm(me, &next);
    let entry = next.user_entry_rsp.load(Ordering::Relaxed);
    if entry != 0 {
        // A user thread: its ring-3 entries land on its own kernel stack.
        crate::arch::usermode::set_entry_stack(entry);
    }
    let save = prev.saved_rsp.get();
    // SAFETY: `next` is not running (it is this CPU's and was queued or idle);
    // its saved rsp was written by its last switch-out or `initial_stack`.
    let next_rsp = unsafe { *next.saved_rsp.get() };
    *rq.current.lock() = Some(next);
    *rq.previous.lock() = Some(prev);
    // SAFETY: interrupts are off; `save` points into `prev`, which `previous`
    // keeps alive until the task we switch to releases it in finish_switch().
    unsafe { crate::arch::context::switch_to(save, next_rsp) };
    finish_switch();
    if were_enabled {
        x86_64::instructions::interrupts::enable();
    }
}

/// Loads `next`'s address space if it is not the loaded one (interrupts off).
fn switch_mm(me: usize, next: &Task) {
    let rq = &RQ[me];
    let Some(mm) = next.mm.as_ref() else {
        // A kernel thread borrows whatever is loaded (Linux: enter_lazy_tlb).
        rq.lazy.store(rq.loaded_mm.lock().is_some(), Ordering::Relaxed);
        return;
    };
    // SeqCst: the store before the read of `flush_owed` below, the
    // switcher's half of the Dekker pair with flush_may_skip() (Linux:
    // is_lazy = false, smp_mb(), then the tlb_gen check).
    let was_lazy = rq.lazy.swap(false, Ordering::SeqCst);
    let mut loaded = rq.loaded_mm.lock();
    if loaded.as_ref().is_some_and(|l| Arc::ptr_eq(l, mm)) {
        if was_lazy && rq.flush_owed.swap(false, Ordering::SeqCst) {
            // A flush skipped this CPU while it was lazy: the CR3 write
            // drops every non-global translation (no PCID).
            load_root(mm.root());
            rq.cr3_writes.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    // Join the CPU set before the CR3 write (Linux switch_mm_irqs_off()
    // sets the mm_cpumask bit first): a shootdown that cleared an entry and
    // then read the set either sees this CPU (and flushes it) or ran its read
    // before our insertion (a locked RMW, a full barrier), so our table walks
    // after the CR3 write see the cleared entry.
    mm.note_loaded(me);
    load_root(mm.root());
    rq.flush_owed.store(false, Ordering::Relaxed);
    rq.cr3_writes.fetch_add(1, Ordering::Relaxed);
    if let Some(old) = loaded.replace(mm.clone()) {
        old.note_unloaded(me);
    }
}

fn load_root(root: x86_64::PhysAddr) {
    // SAFETY: `root` is an address space's top-level table (or the kernel's),
    // whose kernel half is the kernel's own, so the code, stack and data in use
    // stay mapped across the write. Without PCID the write flushes the
    // non-global TLB entries, which is what a new user half needs.
    unsafe { crate::arch::cpu::load_page_table_root(root) };
}

/// For a TLB flush of an address space that frees no page tables (Linux
/// 6.1 flush_tlb_multi() with tlb_is_not_lazy()): whether `cpu` only
/// borrows it lazily (a kernel thread runs on its tables), so the flush may
/// leave it out. A lazy CPU uses no user translation until it switches to a
/// task of the address space, and then it reloads CR3 because this marks it
/// (`flush_owed`). Dekker pair with switch_mm(): mark, then re-read `lazy`
/// (SeqCst both); the switcher clears `lazy`, then reads the mark (SeqCst):
/// either this sees the CPU no longer lazy (and the flush includes it) or
/// the switcher sees the mark (and flushes). Returns `false` for a CPU that
/// is not lazy.
pub fn flush_may_skip(cpu: usize) -> bool {
    let rq = &RQ[cpu];
    if !rq.lazy.load(Ordering::SeqCst) {
        return false;
    }
    rq.flush_owed.store(true, Ordering::SeqCst);
    rq.lazy.load(Ordering::SeqCst)
}

/// Stops borrowing a lazily kept address space on this CPU: loads the kernel
/// tables and leaves the address space's CPU set (Linux: leave_mm()). A no-op
/// unless a kernel thread runs lazily.
pub fn leave_lazy_mm() {
    let me = percpu::cpu_index();
    x86_64::instructions::interrupts::without_interrupts(|| {
        let rq = &RQ[me];
        if !rq.lazy.load(Ordering::Relaxed) {
            return;
        }
        load_root(crate::mm::kernel_map::kernel_root());
        rq.flush_owed.store(false, Ordering::Relaxed);
        rq.cr3_writes.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = rq.loaded_mm.lock().take() {
            old.note_unloaded(me);
        }
        rq.lazy.store(false, Ordering::Relaxed);
    });
}

/// Makes every online CPU drop a lazily kept address space (a work item on
/// each, this CPU included), so that the address spaces of ended processes
/// are freed before a leak check. `Err(cpu)`: that CPU did not run the work
/// within 5 s.
pub fn leave_lazy_mm_everywhere() -> Result<(), usize> {
    for cpu in smp::online_cpus().iter() {
        let w = crate::smp::work::run_on(cpu, leave_lazy_mm).map_err(|_| cpu)?;
        w.join(5_000_000_000)?;
    }
    Ok(())
}

/// CR3 writes by the scheduler on `cpu` so far.
pub fn cr3_writes(cpu: usize) -> u64 {
    RQ[cpu].cr3_writes.load(Ordering::Relaxed)
}

/// The id of the address space loaded on `cpu` and whether it is only
/// borrowed by a kernel thread (lazy).
pub fn loaded_mm(cpu: usize) -> (Option<u64>, bool) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        (RQ[cpu].loaded_mm.lock().as_ref().map(|m| m.id()), RQ[cpu].lazy.load(Ordering::Relaxed))
    })
}

/// Runs right after a switch, on the new task's stack: the previous task is
/// now off its CPU and may be dropped (its stack recycled).
fn finish_switch() {
    let me = percpu::cpu_index();
    if let Some(prev) = RQ[me].previous.lock().take() {
        // Release: a joiner that sees `on_cpu` false may free the stack.
        prev.on_cpu.store(false, Ordering::Release);
    }
}

/// First code of a new task (the entry `arch::context::initial_stack` gets).
pub(super) extern "C" fn task_main() -> ! {
    finish_switch();
    let me = current_task();
    let entry = me.entry.lock().take().expect("task started twice");
    x86_64::instructions::interrupts::enable();
    entry();
    me.exited.store(true, Ordering::Release);
    me.exit_waiters.wake_all();
    x86_64::instructions::interrupts::disable();
    me.set_state(State::Dead);
    drop(me);
    schedule();
    unreachable!("a dead task was scheduled again")
}

/// Makes a Blocked task runnable on its CPU.
pub(crate) fn wake(task: &Arc<Task>) {
    if !task.transition(State::Blocked, State::Runnable) {
        return;
    }
    x86_64::instructions::interrupts::without_interrupts(|| RQ[task.cpu].queue.lock().push_back(task.clone()));
    kick(task.cpu);
}

/// Makes `cpu` look at its run queue soon.
fn kick(cpu: usize) {
    if cpu == percpu::cpu_index() {
        RQ[cpu].need_resched.store(true, Ordering::Relaxed);
        return;
    }
    if let Some(block) = percpu::cpu(cpu)
        && let Err(e) = apic::send_ipi(apic::Destination::Apic(block.apic_id), apic::Delivery::Fixed(vectors::RESCHEDULE))
    {
        log::error!("reschedule IPI to cpu{cpu} failed: {e:?}");
    }
}

/// A thread started with [`spawn_on`].
pub struct JoinHandle<T> {
    task: Arc<Task>,
    result: Arc<spin::Mutex<Option<T>>>,
}

/// Why a thread could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The CPU is offline or has no scheduler.
    NoSuchCpu(usize),
}

/// Starts a kernel thread named `name` on `cpu`, running `f`.
pub fn spawn_on<T: Send + 'static>(
    cpu: usize,
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    spawn_task(cpu, name, None, f)
}

/// Starts a thread named `name` on `cpu` in address space `mm` (`None`: a
/// kernel thread), running `f`.
pub fn spawn_in<T: Send + 'static, M: MmContext>(
    cpu: usize,
    name: &'static str,
    mm: Option<Arc<M>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    spawn_task(cpu, name, mm.map(|m| m as Arc<dyn MmContext>), f)
}

fn spawn_task<T: Send + 'static>(
    cpu: usize,
    name: &'static str,
    mm: Option<Arc<dyn MmContext>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, SpawnError> {
    if !smp::online_cpus().contains(cpu) || !ready(cpu) {
        return Err(SpawnError::NoSuchCpu(cpu));
    }
    let result = Arc::new(spin::Mutex::new(None));
    let r = result.clone();
    let task = Arc::new(Task::new(name, cpu, false, mm, Box::new(move || *r.lock() = Some(f()))));
    x86_64::instructions::interrupts::without_interrupts(|| RQ[cpu].queue.lock().push_back(task.clone()));
    kick(cpu);
    Ok(JoinHandle { task, result })
}

/// A join that did not finish in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinTimeout {
    /// The thread's CPU.
    pub cpu: usize,
}

impl<T> JoinHandle<T> {
    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.task.has_exited()
    }

    /// The thread's task.
    pub(crate) fn task(&self) -> &Arc<Task> {
        &self.task
    }

    /// Waits for the thread (blocking) and returns its result.
    pub fn join(self) -> T {
        let task = self.task.clone();
        task.exit_waiters.wait_until(|| task.has_exited());
        self.result.lock().take().expect("thread result missing")
    }

    /// Waits at most `timeout_ns`; on a timeout the thread keeps running and
    /// the error names its CPU.
    pub fn join_timeout(self, timeout_ns: u64) -> Result<T, (JoinTimeout, Self)> {
        let deadline = Deadline::after_ns(timeout_ns);
        while !self.task.has_exited() {
            if deadline.expired() {
                return Err((JoinTimeout { cpu: self.task.cpu }, self));
            }
            yield_now();
        }
        Ok(self.result.lock().take().expect("thread result missing"))
    }
}

/// Gives the CPU to another runnable task of this CPU, if any; otherwise
/// waits for the next interrupt (a cheap pause for polling loops).
pub fn yield_now() {
    let me = percpu::cpu_index();
    if !ready(me) {
        core::hint::spin_loop();
        return;
    }
    let others = x86_64::instructions::interrupts::without_interrupts(|| !RQ[me].queue.lock().is_empty());
    if others {
        schedule();
    } else if crate::arch::cpu::interrupts_enabled() {
        crate::rcu::quiescent_state();
        x86_64::instructions::hlt();
    } else {
        core::hint::spin_loop();
    }
}

/// A voluntary preemption point: reports an RCU quiescent state and switches
/// if the tick asked for it (Linux: cond_resched()).
pub fn cond_resched() {
    let me = percpu::cpu_index();
    if !ready(me) {
        return;
    }
    // Inside an interrupts-off section this is not a quiescent state: that
    // section is an RCU read-side critical section (and, under tlb=ipi, what
    // holds a shootdown back). Reporting here would end it early.
    assert!(
        crate::arch::cpu::interrupts_enabled(),
        "cond_resched() with interrupts disabled on cpu{me}: it would end an RCU read-side section"
    );
    crate::rcu::quiescent_state();
    if RQ[me].need_resched.load(Ordering::Relaxed) {
        schedule();
    }
}

/// Whether the tick or a wake-up asked this CPU to reschedule (checked on
/// every return to user mode).
pub(crate) fn need_resched() -> bool {
    RQ[percpu::cpu_index()].need_resched.load(Ordering::Relaxed)
}

/// Sleeps for at least `ns` (tick granularity: the CPU halts between ticks).
pub fn sleep_ns(ns: u64) {
    let deadline = Deadline::after_ns(ns);
    while !deadline.expired() {
        yield_now();
    }
}

/// Context switches so far on `cpu`.
pub fn switches(cpu: usize) -> u64 {
    RQ[cpu].switches.load(Ordering::Relaxed)
}

/// Timer ticks so far on `cpu`.
pub fn ticks(cpu: usize) -> u64 {
    RQ[cpu].ticks.load(Ordering::Relaxed)
}

/// The timer interrupt.
fn tick(_: &mut TrapFrame) {
    timer::rearm();
    apic::eoi();
    let me = percpu::cpu_index();
    let rq = &RQ[me];
    rq.ticks.fetch_add(1, Ordering::Relaxed);
    let Some(current) = rq.current.try_lock().and_then(|c| c.clone()) else { return };
    let used = current.ticks.fetch_add(1, Ordering::Relaxed) + 1;
    if used >= TIME_SLICE_TICKS && rq.queue.try_lock().is_some_and(|q| !q.is_empty()) {
        rq.need_resched.store(true, Ordering::Relaxed);
    }
}

/// The reschedule IPI: the woken CPU looks at its queue at its next
/// scheduling point (the idle loop right after its `hlt`).
fn reschedule_ipi(_: &mut TrapFrame) {
    apic::eoi();
    RQ[percpu::cpu_index()].need_resched.store(true, Ordering::Relaxed);
}
