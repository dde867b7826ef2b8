//! Locks for a kernel with interrupt handlers and several CPUs.
//!
//! * [`SpinLock`]: a fair ticket lock that disables interrupts while held and
//!   restores the previous state when released (Linux `spin_lock_irqsave()` /
//!   `spin_unlock_irqrestore()`). Usable in thread and interrupt context; not
//!   in an NMI handler (an NMI can land while its own CPU holds the lock).
//! * [`ThreadLock`]: the same ticket lock without touching interrupts (Linux
//!   `spin_lock()`). Cheaper, but never to be taken in interrupt context: an
//!   interrupt handler spinning on a lock its own CPU's thread holds would spin
//!   forever.
//! * [`RwSpinLock`]: a writer-preferring reader-writer lock, irqsave like
//!   `SpinLock` (Linux `read_lock_irqsave()` / `write_lock_irqsave()`).
//!
//! Every lock has a `&'static str` name and records the CPU holding it, so a
//! report can say who holds what. Guards are `!Send`: a lock is released on the
//! CPU that took it (the saved interrupt state belongs to that CPU).
//!
//! Debug checks (`debug_assertions` builds; each panics naming the lock):
//! * a blocking acquisition of a lock this CPU already holds ("recursive
//!   locking of 'name' on cpuN"): it would spin forever;
//! * a `ThreadLock` taken in interrupt or NMI context, or while this CPU holds a
//!   `SpinLock` that was taken in interrupt context;
//! * any irqsave lock taken in NMI context;
//! * a waiter that spins longer than the spin limit (5 s of TSC time by
//!   default, [`set_spin_limit_ms`]): a deadlock or a holder that never lets
//!   go; the report names the holder's CPU.
//!
//! In release builds waits are unbounded: a ticket waiter's wait is the sum of
//! the critical sections ahead of it, which are bounded by construction of the
//! code using the lock; the debug detector exists to catch the code that is not.
//! The `try_*` acquisitions never wait, so they are not checked for recursion
//! or context (a failed try cannot deadlock).

mod rwlock;
pub mod rwsem;
mod spinlock;
mod ticket;

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::smp::cpuset::MAX_CPUS;
use crate::smp::percpu;
pub use rwlock::{RwSpinLock, RwSpinLockReadGuard, RwSpinLockWriteGuard};
pub use spinlock::{SpinLock, SpinLockGuard, ThreadLock, ThreadLockGuard};

/// The debug deadlock detector's limit, in nanoseconds of TSC time.
static SPIN_LIMIT_NS: AtomicU64 = AtomicU64::new(5_000_000_000);

/// Registers the scheduler's yield (once, at boot): see [`yield_now`].
pub(crate) fn set_yield_hook(hook: fn()) {
    YIELD_HOOK.call_once(|| hook);
}

/// Gives the CPU away: the scheduler's `yield_now` once it registered it
/// ([`set_yield_hook`]), else a spin-loop hint. For waits below the
/// scheduler's layer (the page lock, RCU grace periods), which must not call
/// up into `sched`.
pub(crate) fn yield_now() {
    match YIELD_HOOK.get() {
        Some(hook) => hook(),
        None => core::hint::spin_loop(),
    }
}

static YIELD_HOOK: spin::Once<fn()> = spin::Once::new();

/// Sets how long a lock waiter may spin before the debug deadlock detector
/// panics (default 5000 ms). Affects waits that start afterwards.
pub fn set_spin_limit_ms(ms: u64) {
    SPIN_LIMIT_NS.store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
}

/// Per CPU: how many `SpinLock` guards taken in interrupt context this CPU
/// holds. Only its own CPU changes a slot (Relaxed: no other data hangs on it).
static IRQ_SPINLOCKS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// This CPU's index, as used in lock records.
fn this_cpu() -> u32 {
    percpu::cpu_index() as u32
}

/// Checks (debug builds) that an irqsave lock may be taken here: not in NMI.
#[track_caller]
fn check_irqsave_context(kind: &str, name: &str) {
    if cfg!(debug_assertions) && percpu::in_nmi() {
        panic!("{kind} '{name}' taken in NMI context on cpu{}", this_cpu());
    }
}

/// Checks (debug builds) that a `ThreadLock` may be taken here.
#[track_caller]
fn check_thread_context(name: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let cpu = this_cpu();
    if percpu::in_interrupt() || percpu::in_nmi() {
        panic!("ThreadLock '{name}' taken in interrupt context on cpu{cpu}");
    }
    if IRQ_SPINLOCKS[cpu as usize].load(Ordering::Relaxed) > 0 {
        panic!("ThreadLock '{name}' taken on cpu{cpu} while holding a SpinLock taken in interrupt context");
    }
}

/// Notes that this CPU took a `SpinLock` in interrupt context (returns whether
/// it did, for the guard to undo).
fn note_irq_acquire() -> bool {
    let in_irq = percpu::in_interrupt();
    if in_irq {
        IRQ_SPINLOCKS[this_cpu() as usize].fetch_add(1, Ordering::Relaxed);
    }
    in_irq
}

/// Undoes [`note_irq_acquire`] when its guard is dropped.
fn note_irq_release(in_irq: bool) {
    if in_irq {
        IRQ_SPINLOCKS[this_cpu() as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Spins until `ready()` returns true. In debug builds, once the clock runs,
/// a wait longer than the spin limit panics with `kind`, `name` and what
/// `holder()` says about who holds the lock.
#[track_caller]
fn spin_until<H: fmt::Display>(kind: &str, name: &str, mut ready: impl FnMut() -> bool, holder: impl Fn() -> H) {
    if ready() {
        return;
    }
    // Before the TSC is calibrated a deadline cannot be computed (0 kHz would
    // make it expire at once); early boot is single-CPU, where a contended
    // lock is recursion, which the recursion check reports first.
    let limit = SPIN_LIMIT_NS.load(Ordering::Relaxed);
    let detect = cfg!(debug_assertions) && crate::arch::tsc::khz() != 0;
    let start = crate::time::now_ns();
    let deadline = crate::time::Deadline::after_ns(limit);
    let mut spins = 0u32;
    while !ready() {
        core::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if detect && spins % 64 == 0 && deadline.expired() {
            panic!(
                "{kind} '{name}': cpu{} spun for {} ms; {} (deadlock?)",
                this_cpu(),
                (crate::time::now_ns() - start) / 1_000_000,
                holder()
            );
        }
    }
}

/// A recorded holder CPU for reports (`None`: released meanwhile, or a
/// reader-held lock).
struct HeldBy(Option<u32>);

impl fmt::Display for HeldBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(cpu) => write!(f, "held by cpu{cpu}"),
            None => f.write_str("holder not recorded (released meanwhile)"),
        }
    }
}
