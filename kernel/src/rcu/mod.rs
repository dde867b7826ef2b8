//! RCU for a non-preemptible kernel: grace periods end when every online CPU
//! has passed a quiescent state (Linux: Tree/Tiny RCU without preemption).
//!
//! Read side: with no involuntary preemption of kernel code (see `sched`),
//! every stretch of kernel code between two quiescent states is a read-side
//! critical section, and in particular **every interrupts-off section is one**:
//! a CPU with interrupts off can neither switch tasks, nor idle, nor reach a
//! voluntary preemption point. This is the "RCU version" of the seed's
//! argument: instead of an IPI that GUP-fast's interrupts-off walk holds back,
//! the writer waits for a grace period that the same walk holds back.
//!
//! Quiescent states are reported at a context switch, in the idle loop, at
//! `sched::cond_resched()` and `yield_now()` (and, with user mode, on return to
//! user). A grace period is a sequence number (`seq`, odd while one runs, as
//! Linux's rcu_seq) plus the set of CPUs that still owe a report; starting one
//! sends every other CPU a reschedule IPI so that idle CPUs report at once.
//!
//! Ordering: the GP lock is taken (a locked instruction: a full barrier on
//! x86) to start a GP, to report and to complete. So an updater's writes before
//! `synchronize_rcu()` are visible to every reader that starts after its CPU's
//! report, and a reader's accesses before its CPU's report happen before the
//! completion that the waiter observes with Acquire.
//!
//! Waits are bounded: a grace period older than the stall limit
//! (`rcu.stall_ms`) is reported with the CPUs that have not passed a quiescent
//! state, and those CPUs are dumped by NMI; past ten times the limit the kernel
//! panics with the same names.

#![deny(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::{apic, vectors};
use crate::smp::{self, AtomicCpuSet, CpuSet, percpu};
use crate::sync::SpinLock;

struct GpState {
    /// Grace-period sequence: odd while one is in progress.
    seq: u64,
    /// CPUs that still owe a quiescent state for the GP in progress.
    pending: CpuSet,
    /// When the GP in progress started (ns since boot).
    started_ns: u64,
    /// Whether this GP's stall was reported already.
    stall_reported: bool,
}

static GP: SpinLock<GpState> =
    SpinLock::new("rcu grace period", GpState { seq: 0, pending: CpuSet::EMPTY, started_ns: 0, stall_reported: false });
/// Mirror of `GpState::seq` for lock-free readers.
static SEQ: AtomicU64 = AtomicU64::new(0);
/// Mirror of `GpState::pending` for the quiescent-state fast path.
static NEEDS_QS: AtomicCpuSet = AtomicCpuSet::new();
/// CPUs with a task waiting in `synchronize_rcu` (woken at completion).
static WAITERS: AtomicCpuSet = AtomicCpuSet::new();
/// Grace periods completed.
static COMPLETED: AtomicU64 = AtomicU64::new(0);
/// Stall report limit in ns.
static STALL_NS: AtomicU64 = AtomicU64::new(5_000_000_000);

type Callback = Box<dyn FnOnce() + Send>;
static CALLBACKS: SpinLock<VecDeque<(u64, Callback)>> = SpinLock::new("rcu callbacks", VecDeque::new());

/// Sets the stall limit (boot option `rcu.stall_ms`).
pub(crate) fn set_stall_ms(ms: u64) {
    STALL_NS.store(ms * 1_000_000, Ordering::Relaxed);
}

fn with_gp<R>(f: impl FnOnce(&mut GpState) -> R) -> R {
    f(&mut GP.lock())
}

/// The sequence value at which a GP that starts after now has completed
/// (Linux: rcu_seq_snap()).
fn snapshot(seq: u64) -> u64 {
    (seq + 3) & !1
}

/// Starts a GP if none is in progress. Returns the CPUs to nudge.
fn start_locked(gp: &mut GpState) -> CpuSet {
    if gp.seq & 1 == 1 {
        return CpuSet::EMPTY;
    }
    gp.seq += 1;
    gp.pending = smp::online_cpus();
    gp.started_ns = crate::time::now_ns();
    gp.stall_reported = false;
    NEEDS_QS.store(gp.pending, Ordering::Release);
    SEQ.store(gp.seq, Ordering::Release);
    gp.pending
}

/// Sends a reschedule IPI to `cpus` except this one: an idle CPU wakes up and
/// reports from its idle loop; a busy one reports at its next quiescent state.
fn nudge(cpus: CpuSet) {
    let me = percpu::cpu_index();
    for cpu in cpus.iter().filter(|&c| c != me) {
        if let Some(block) = percpu::cpu(cpu) {
            let _ = apic::send_ipi(apic::Destination::Apic(block.apic_id), apic::Delivery::Fixed(vectors::RESCHEDULE));
        }
    }
}

/// Reports that this CPU is in a quiescent state (it is not inside a read-side
/// critical section). Cheap when nothing is owed.
pub(crate) fn quiescent_state() {
    let me = percpu::cpu_index();
    if !NEEDS_QS.contains(me, Ordering::Acquire) {
        return;
    }
    let (completed, next) = with_gp(|gp| {
        if gp.seq & 1 == 0 || !gp.pending.contains(me) {
            return (false, CpuSet::EMPTY);
        }
        gp.pending.remove(me);
        NEEDS_QS.remove(me, Ordering::Release);
        if !gp.pending.is_empty() {
            return (false, CpuSet::EMPTY);
        }
        gp.seq += 1;
        // Release: everything before every CPU's report is visible to whoever
        // sees the new sequence with Acquire.
        SEQ.store(gp.seq, Ordering::Release);
        COMPLETED.fetch_add(1, Ordering::Relaxed);
        // More work queued for a later GP: start it right away.
        let more = CALLBACKS.try_lock().is_some_and(|c| c.back().is_some_and(|(target, _)| *target > gp.seq));
        (true, if more { start_locked(gp) } else { CpuSet::EMPTY })
    });
    if completed {
        nudge(WAITERS.load(Ordering::Acquire));
        nudge(next);
    }
}

/// Whether a task waits in [`synchronize_rcu`] for a grace period that `cpu`
/// has not yet reported for: `cpu`, if it runs with interrupts off, holds
/// that waiter back. A hint (the race module's forced waits end on it).
pub fn waiter_held_by(cpu: usize) -> bool {
    NEEDS_QS.contains(cpu, Ordering::Acquire) && !WAITERS.load(Ordering::Acquire).is_empty()
}

/// Grace periods completed since boot.
pub fn completed() -> u64 {
    COMPLETED.load(Ordering::Relaxed)
}

/// Waits until every read-side critical section that was running when it was
/// called has ended (Linux: synchronize_rcu()). Must not be called from a
/// read-side section (interrupts off), which would wait for itself.
pub fn synchronize_rcu() {
    assert!(crate::arch::cpu::interrupts_enabled(), "synchronize_rcu() with interrupts off would wait for itself");
    let me = percpu::cpu_index();
    let (target, nudged) = with_gp(|gp| {
        let target = snapshot(gp.seq);
        (target, start_locked(gp))
    });
    nudge(nudged);
    WAITERS.insert(me, Ordering::Release);
    wait_for(target);
    WAITERS.remove(me, Ordering::Release);
    run_callbacks();
}

/// Waits until the sequence reaches `target`, reporting this CPU's own
/// quiescent states, restarting GPs as needed and reporting stalls.
fn wait_for(target: u64) {
    loop {
        // The waiter itself is quiescent: it is not in a read-side section.
        quiescent_state();
        if SEQ.load(Ordering::Acquire) >= target {
            return;
        }
        let (nudged, stall) = with_gp(|gp| {
            let nudged = start_locked(gp);
            let age = crate::time::now_ns().saturating_sub(gp.started_ns);
            let limit = STALL_NS.load(Ordering::Relaxed);
            let stall = if gp.seq & 1 == 1 && age > limit && !gp.stall_reported {
                gp.stall_reported = true;
                Some((gp.pending, age, false))
            } else if gp.seq & 1 == 1 && age > 10 * limit {
                Some((gp.pending, age, true))
            } else {
                None
            };
            (nudged, stall)
        });
        nudge(nudged);
        if let Some((late, age, fatal)) = stall {
            if fatal {
                panic!("RCU grace period did not end in {} ms: no quiescent state from {late}", age / 1_000_000);
            }
            log::error!("RCU stall: grace period running for {} ms; no quiescent state from {late}", age / 1_000_000);
            let _ = smp::nmi::dump_cpus(late);
        }
        crate::sync::yield_now();
    }
}

/// Runs `f` after a grace period (Linux: call_rcu()). `f` runs in thread
/// context on some CPU (an idle loop or a `synchronize_rcu` caller).
pub fn call_rcu(f: impl FnOnce() + Send + 'static) {
    let nudged = with_gp(|gp| {
        let target = snapshot(gp.seq);
        CALLBACKS.lock().push_back((target, Box::new(f)));
        start_locked(gp)
    });
    nudge(nudged);
}

/// Runs the callbacks whose grace period has completed. Thread context only.
pub fn run_callbacks() {
    loop {
        let seq = SEQ.load(Ordering::Acquire);
        let ready = {
            let mut cbs = CALLBACKS.lock();
            if cbs.front().is_some_and(|(target, _)| *target <= seq) { cbs.pop_front() } else { None }
        };
        match ready {
            Some((_, f)) => f(),
            None => return,
        }
    }
}

/// Callbacks not yet run.
pub(crate) fn pending_callbacks() -> usize {
    CALLBACKS.lock().len()
}
