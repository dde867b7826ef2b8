//! Processes and user threads.
//!
//! A [`Process`] is an address space, a program image, its threads, a parent
//! and an exit status. A user [`Thread`] is a scheduler task pinned to one CPU
//! whose code enters ring 3 (`arch::usermode::run_user`) and comes back when
//! the thread ends; the task then does the bookkeeping ([`thread_finished`]).
//!
//! **Ending.** `exit` (or a fatal fault) marks the process exiting with its
//! status. Every thread checks that on each return to user mode
//! (`exit_pending`, asked by [`return_work`], which the entry code calls), and a thread in
//! user mode enters the kernel at least every timer tick, so all of them
//! end promptly; interruptible waits in syscalls (sleep, wait, join) notice
//! it too and return EINTR. The last thread to end releases the pins the
//! process held across calls (`gup::held`), tears the address space's
//! user half down (`loader::unload`), records the status and wakes the
//! waiters. A zombie stays in the table until `wait` reaps it; children of an
//! ended process become orphans, reaped as soon as they end.
//!
//! **Reference cycles.** A process holds its threads (for `thread_join`) and
//! each thread its process: the cycle is broken when the process is reaped.
//! A running thread's task holds the thread.

#![deny(unsafe_code)]

pub mod elf;
pub(crate) mod fault;
pub mod loader;
pub mod programs;

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use crate::arch::idt::TrapFrame;
use crate::arch::usermode;
use crate::mm::addr_space::AddressSpace;
use crate::mm::layout::USER_STACK_TOP;
use crate::sched::{self, WaitQueue};
use crate::sync::SpinLock;
use abi::Errno;
use loader::UserImage;

/// A process id.
pub(crate) type Pid = u64;
/// A thread id (unique across processes).
pub(crate) type Tid = u64;

/// Who waits for a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parent {
    /// Kernel code (tests, `init=`): `process::wait` from a kernel thread.
    Kernel,
    /// Another process.
    Process(Pid),
    /// Its parent ended: reaped as soon as it ends.
    Orphan,
}

/// Why a process was killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillReport {
    /// The thread that faulted.
    pub tid: Tid,
    /// The exception vector.
    pub vector: u8,
    /// The fault address (CR2) for page faults, else 0.
    pub addr: u64,
    /// The user RIP.
    pub rip: u64,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit status.
    pub status: i32,
    /// Set when it was killed by a fault.
    pub killed: Option<KillReport>,
}

/// A process.
pub struct Process {
    /// Process id.
    pub pid: Pid,
    /// The program it runs.
    pub name: &'static str,
    /// Its address space.
    pub mm: Arc<AddressSpace>,
    /// Pins and GUP references it holds across system calls (`gup_test`);
    /// released when it ends.
    pub held: crate::gup::held::HeldTable,
    parent: SpinLock<Parent>,
    image: SpinLock<Option<UserImage>>,
    threads: SpinLock<Vec<Arc<Thread>>>,
    /// Threads whose task has not finished.
    live_threads: AtomicUsize,
    /// Set by `exit` or a fatal fault: every thread ends at its next return to user.
    exiting: AtomicBool,
    exit_status: AtomicI32,
    killed: SpinLock<Option<KillReport>>,
    /// Set (Release) once the last thread ended and the image is freed.
    done: AtomicBool,
    final_status: AtomicI32,
    waiters: WaitQueue,
}

/// A user thread.
pub(crate) struct Thread {
    /// Thread id.
    pub tid: Tid,
    /// Its process.
    pub process: Arc<Process>,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// `thread_exit` was called: ends at the next return to user.
    exit_requested: AtomicBool,
    exit_request_status: AtomicI32,
    /// Set (Release) when the thread has ended; `status` is valid then.
    exited: AtomicBool,
    status: AtomicI32,
    waiters: WaitQueue,
}

static PROCESSES: SpinLock<BTreeMap<Pid, Arc<Process>>> = SpinLock::new("process table", BTreeMap::new());
static NEXT_PID: AtomicU64 = AtomicU64::new(1);
static NEXT_TID: AtomicU64 = AtomicU64::new(1);

impl Process {
    fn new(name: &'static str, mm: Arc<AddressSpace>, image: Option<UserImage>, parent: Parent) -> Arc<Process> {
        Arc::new(Process {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            name,
            mm,
            held: crate::gup::held::HeldTable::new(abi::gup_test::MAX_HELD),
            parent: SpinLock::new("process parent", parent),
            image: SpinLock::new("process image", image),
            threads: SpinLock::new("process threads", Vec::new()),
            live_threads: AtomicUsize::new(0),
            exiting: AtomicBool::new(false),
            exit_status: AtomicI32::new(0),
            killed: SpinLock::new("process kill report", None),
            done: AtomicBool::new(false),
            final_status: AtomicI32::new(0),
            waiters: WaitQueue::new(),
        })
    }

    /// Marks the process exiting with `status` (the first request wins).
    pub fn request_exit(&self, status: i32) {
        // The status is written before the flag (Release), so whoever sees
        // the flag (Acquire) reads this status. A second caller loses the
        // compare-exchange and does not overwrite it.
        if self.exiting.load(Ordering::Acquire) {
            return;
        }
        static EXIT_LOCK: SpinLock<()> = SpinLock::new("process exit request", ());
        let _g = EXIT_LOCK.lock();
        if !self.exiting.load(Ordering::Acquire) {
            self.exit_status.store(status, Ordering::Relaxed);
            self.exiting.store(true, Ordering::Release);
        }
    }

    /// Whether `exit` (or a kill) was requested.
    pub(crate) fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// Threads not yet ended.
    pub fn live_threads(&self) -> usize {
        self.live_threads.load(Ordering::Acquire)
    }

    /// The thread `tid` of this process.
    pub(crate) fn thread(&self, tid: Tid) -> Option<Arc<Thread>> {
        self.threads.lock().iter().find(|t| t.tid == tid).cloned()
    }

    fn parent(&self) -> Parent {
        *self.parent.lock()
    }
}

impl Thread {
    /// Whether the thread has ended.
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Asks the thread to end with `status` at its next return to user.
    pub(crate) fn request_exit(&self, status: i32) {
        self.exit_request_status.store(status, Ordering::Relaxed);
        // Release: pairs with the Acquire in exit_pending.
        self.exit_requested.store(true, Ordering::Release);
    }
}

/// The user thread the current task runs, if any.
pub(crate) fn current_thread() -> Option<Arc<Thread>> {
    user_thread(&sched::current_task())
}

/// The user thread `task` runs, if any (`Task::user_thread`, typed as `Any` so
/// `sched` need not know `process`).
fn user_thread(task: &sched::Task) -> Option<Arc<Thread>> {
    task.user_thread.get().cloned().and_then(|t| t.downcast::<Thread>().ok())
}

/// The status the current thread must end with, if it must end now (its own
/// `thread_exit`, or its process exiting). Called before every return to user.
pub(crate) fn exit_pending() -> Option<i32> {
    let task = sched::current_task();
    let thread = user_thread(&task)?;
    if thread.process.exiting.load(Ordering::Acquire) {
        return Some(thread.process.exit_status.load(Ordering::Relaxed));
    }
    if thread.exit_requested.load(Ordering::Acquire) {
        return Some(thread.exit_request_status.load(Ordering::Relaxed));
    }
    None
}

/// The work before every return to ring 3, called by the entry code
/// (`arch::usermode::prepare_return`, registered at boot) with interrupts
/// off until it answers `Done` (Linux: exit_to_user_mode_loop): end the
/// thread if it or its process is exiting, report an RCU quiescent state
/// (user mode holds no kernel references), switch if the tick asked for it
/// (a return to user is a preemption point).
pub(crate) fn return_work() -> usermode::ReturnWork {
    if let Some(status) = exit_pending() {
        return usermode::ReturnWork::Exit(status);
    }
    crate::rcu::quiescent_state();
    if sched::need_resched() {
        sched::schedule();
        return usermode::ReturnWork::Again;
    }
    usermode::ReturnWork::Done
}

/// Starts a new thread of `process` on `cpu`, entering user mode with `frame`.
fn start_thread(process: &Arc<Process>, cpu: usize, frame: TrapFrame) -> Result<Arc<Thread>, Errno> {
    let thread = Arc::new(Thread {
        tid: NEXT_TID.fetch_add(1, Ordering::Relaxed),
        process: process.clone(),
        cpu,
        exit_requested: AtomicBool::new(false),
        exit_request_status: AtomicI32::new(0),
        exited: AtomicBool::new(false),
        status: AtomicI32::new(0),
        waiters: WaitQueue::new(),
    });
    process.threads.lock().push(thread.clone());
    process.live_threads.fetch_add(1, Ordering::AcqRel);
    let t = thread.clone();
    let spawned = sched::spawn_in(cpu, process.name, Some(process.mm.clone()), move || {
        let status = {
            let task = sched::current_task();
            task.user_thread.call_once(|| t.clone() as Arc<dyn core::any::Any + Send + Sync>);
            usermode::run_user(&frame, &task.user_entry_rsp)
        };
        thread_finished(&t, status);
    });
    match spawned {
        // Detached: the thread's own bookkeeping reports its end.
        Ok(handle) => {
            drop(handle);
            Ok(thread)
        }
        Err(sched::SpawnError::NoSuchCpu(_)) => {
            process.threads.lock().retain(|x| !Arc::ptr_eq(x, &thread));
            process.live_threads.fetch_sub(1, Ordering::AcqRel);
            Err(Errno::EINVAL)
        }
    }
}

/// Runs in a user thread's task after it left user mode for good.
fn thread_finished(thread: &Arc<Thread>, status: i32) {
    thread.status.store(status, Ordering::Relaxed);
    // Release: a joiner that sees `exited` reads the status.
    thread.exited.store(true, Ordering::Release);
    thread.waiters.wake_all();
    let process = &thread.process;
    if process.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
        let status = if process.is_exiting() { process.exit_status.load(Ordering::Relaxed) } else { status };
        process_finished(process, status);
    }
}

/// The last thread of `process` ended: free its memory, hand its children
/// over, record the status and wake its waiter.
fn process_finished(process: &Arc<Process>, status: i32) {
    // Pins and references held across calls go with the process (Linux:
    // the gup_test file's release when its last descriptor closes).
    process.held.release_all();
    let image = process.image.lock().take();
    loader::unload(&process.mm, image);
    crate::uprobes::forget_mm(process.mm.id);
    // Children: ended ones nobody will wait for are reaped, live ones orphaned.
    let mut reaped = Vec::new();
    {
        let mut table = PROCESSES.lock();
        let children: Vec<Pid> =
            table.values().filter(|p| p.parent() == Parent::Process(process.pid)).map(|p| p.pid).collect();
        for pid in children {
            let child = &table[&pid];
            if child.done.load(Ordering::Acquire) {
                reaped.extend(table.remove(&pid));
            } else {
                *child.parent.lock() = Parent::Orphan;
            }
        }
    }
    for child in reaped {
        child.threads.lock().clear();
    }
    process.final_status.store(status, Ordering::Relaxed);
    log::debug!("process {} ({}) ended with status {status}", process.pid, process.name);
    // The orphan check and `done` under the table lock: a parent ending at the
    // same time either sees `done` (and reaps) or has orphaned us already.
    let orphan = {
        let table = PROCESSES.lock();
        // Release: a waiter that sees `done` sees the status and the freed image.
        process.done.store(true, Ordering::Release);
        drop(table);
        process.parent() == Parent::Orphan
    };
    if orphan {
        reap(process.pid);
    }
    process.waiters.wake_all();
}

/// Removes an ended process from the table and breaks its reference cycles.
fn reap(pid: Pid) -> Option<Arc<Process>> {
    let p = PROCESSES.lock().remove(&pid)?;
    p.threads.lock().clear();
    Some(p)
}

/// Starts built-in program `name` as a new process whose first thread runs on
/// `cpu`; its parent is the calling process (or the kernel, from a kernel
/// thread). EINVAL for an unknown program or an offline CPU, ENOMEM when
/// memory runs out.
pub fn spawn(name: &str, cpu: usize) -> Result<Pid, Errno> {
    let parent = match current_thread() {
        Some(t) => Parent::Process(t.process.pid),
        None => Parent::Kernel,
    };
    spawn_with_parent(name, cpu, parent)
}

fn spawn_with_parent(name: &str, cpu: usize, parent: Parent) -> Result<Pid, Errno> {
    let (name, bytes) = programs::PROGRAMS.iter().find(|(n, _)| *n == name).copied().ok_or(Errno::EINVAL)?;
    if !crate::smp::online_cpus().contains(cpu) || !sched::ready(cpu) {
        return Err(Errno::EINVAL);
    }
    let program = elf::parse(bytes).map_err(|e| {
        log::warn!("spawn {name}: bad ELF: {e}");
        Errno::EINVAL
    })?;
    let mm = Arc::new(AddressSpace::new().map_err(|_| Errno::ENOMEM)?);
    let image = loader::load(&mm, &program)?;
    let process = Process::new(name, mm, Some(image), parent);
    let pid = process.pid;
    PROCESSES.lock().insert(pid, process.clone());
    let frame = usermode::initial_frame(program.entry, USER_STACK_TOP, 0);
    if let Err(e) = start_thread(&process, cpu, frame) {
        let image = process.image.lock().take();
        loader::unload(&process.mm, image);
        reap(pid);
        return Err(e);
    }
    Ok(pid)
}

/// Starts a thread of the current process at `rip` with `rsp` and `rdi = arg`.
pub(crate) fn spawn_thread(rip: u64, rsp: u64, arg: u64, cpu: usize) -> Result<Tid, Errno> {
    let me = current_thread().ok_or(Errno::EPERM)?;
    if me.process.is_exiting() {
        return Err(Errno::EINTR);
    }
    start_thread(&me.process, cpu, usermode::initial_frame(rip, rsp, arg)).map(|t| t.tid)
}

/// The fork plumbing: a child process with a copy of the caller's address
/// space (`mm::fork::fork_mm`) and one thread on `cpu` resuming from a copy
/// of `frame` with rax = 0. Returns the child's pid.
pub(crate) fn fork(frame: &TrapFrame, cpu: usize) -> Result<Pid, Errno> {
    let me = current_thread().ok_or(Errno::EPERM)?;
    if !crate::smp::online_cpus().contains(cpu) {
        return Err(Errno::EINVAL);
    }
    let mm = crate::mm::fork::fork_mm(&me.process.mm).map_err(|_| Errno::ENOMEM)?;
    let process = Process::new(me.process.name, mm, None, Parent::Process(me.process.pid));
    let pid = process.pid;
    PROCESSES.lock().insert(pid, process.clone());
    let mut child = *frame;
    child.rax = 0;
    if let Err(e) = start_thread(&process, cpu, child) {
        loader::unload(&process.mm, None);
        reap(pid);
        return Err(e);
    }
    Ok(pid)
}

/// Waits for child `pid` to end, reaps it and returns how it ended. ECHILD if
/// it is not the caller's child (or was reaped already); EINTR if the calling
/// process is told to exit meanwhile.
pub fn wait_info(pid: Pid) -> Result<ExitInfo, Errno> {
    let me = current_thread();
    let caller = me.as_ref().map_or(Parent::Kernel, |t| Parent::Process(t.process.pid));
    let child = PROCESSES.lock().get(&pid).cloned().ok_or(Errno::ECHILD)?;
    if child.parent() != caller {
        return Err(Errno::ECHILD);
    }
    match &me {
        None => child.waiters.wait_until(|| child.done.load(Ordering::Acquire)),
        Some(t) => wait_interruptible(&t.process, || child.done.load(Ordering::Acquire))?,
    }
    let child = reap(pid).ok_or(Errno::ECHILD)?;
    let killed = *child.killed.lock();
    Ok(ExitInfo { status: child.final_status.load(Ordering::Relaxed), killed })
}

/// [`wait_info`], the status only.
pub fn wait(pid: Pid) -> Result<i32, Errno> {
    wait_info(pid).map(|i| i.status)
}

/// Waits for thread `tid` of the current process; returns its status.
pub(crate) fn join_thread(tid: Tid) -> Result<i32, Errno> {
    let me = current_thread().ok_or(Errno::EPERM)?;
    if tid == me.tid {
        return Err(Errno::EINVAL);
    }
    let thread = me.process.thread(tid).ok_or(Errno::ESRCH)?;
    wait_interruptible(&me.process, || thread.has_exited())?;
    me.process.threads.lock().retain(|t| t.tid != tid);
    Ok(thread.status.load(Ordering::Relaxed))
}

/// Polls `cond` from a user thread's syscall until it holds (Ok) or the
/// process is told to exit (EINTR). Polling (halting between ticks) instead
/// of a wait queue: an `exit` from another thread must end this wait too,
/// and it needs no list of every wait a process is in.
pub(crate) fn wait_interruptible(process: &Process, cond: impl Fn() -> bool) -> Result<(), Errno> {
    loop {
        if cond() {
            return Ok(());
        }
        if process.is_exiting() {
            return Err(Errno::EINTR);
        }
        sched::yield_now();
    }
}

/// Records why the current thread's process is killed and makes it exit
/// with `abi::status::KILLED_BY_FAULT` (every thread ends at its next return
/// to user).
pub(crate) fn kill_current(report: KillReport) {
    if let Some(t) = current_thread() {
        t.process.killed.lock().get_or_insert(report);
        t.process.request_exit(abi::status::KILLED_BY_FAULT);
    }
}

/// Processes in the table (running or zombie).
pub fn count() -> usize {
    PROCESSES.lock().len()
}

/// The process `pid`, if it is in the table.
pub fn get(pid: Pid) -> Option<Arc<Process>> {
    PROCESSES.lock().get(&pid).cloned()
}
