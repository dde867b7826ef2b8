//! Locks (`kernel::sync`): mutual exclusion under stress on every CPU, ticket
//! fairness, irqsave semantics, locks in interrupt handlers, the reader-writer
//! lock, and the debug checks (which panic, so they are `should_panic` tests).
//!
//! Tests that need a second CPU report themselves `ignored` on one; the debug
//! checks report themselves `ignored` in release builds (compiled out there).

pub mod checks;
pub mod rw;
pub mod spin;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use kernel::smp::{self, work};
use kernel::time::Deadline;

/// Bound on any one wait of these tests.
const WAIT_NS: u64 = 30_000_000_000;

pub(crate) use crate::util::{other_cpu, others};

/// Whether the debug lock checks are compiled in; skips the test if not.
fn debug_checks() -> bool {
    if !cfg!(debug_assertions) {
        kernel::testing::skip("the lock debug checks are compiled out of release builds");
    }
    cfg!(debug_assertions)
}

/// Spins until `cond()` (bounded: panics with `what` after [`WAIT_NS`]).
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let d = Deadline::after_ns(WAIT_NS);
    while !cond() {
        assert!(!d.expired(), "timed out waiting until {what}");
        core::hint::spin_loop();
    }
}

/// Runs `f(cpu, participants)` on every online CPU at once: on each other CPU
/// as idle-loop work (thread context, interrupts on) and on this CPU itself.
/// All start together (a start barrier) so they contend; returns when all are
/// done (bounded).
fn on_all_cpus(f: impl Fn(usize, usize) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let cpus = smp::online_count();
    let arrived = Arc::new(AtomicUsize::new(0));
    let barrier = move |arrived: &AtomicUsize| {
        // AcqRel/Acquire: nothing is published through the barrier; it only
        // lines the CPUs up, but the stronger ordering costs nothing here.
        arrived.fetch_add(1, Ordering::AcqRel);
        wait_until("every CPU reached the start barrier", || arrived.load(Ordering::Acquire) == cpus);
    };
    let mut handles = Vec::new();
    for cpu in others() {
        let (f, arrived) = (f.clone(), arrived.clone());
        let h = work::run_on(cpu, move || {
            barrier(&arrived);
            f(cpu, cpus);
        });
        handles.push(h.expect("cannot place work on an online CPU"));
    }
    barrier(&arrived);
    f(smp::cpu_index(), cpus);
    for h in &handles {
        h.join(WAIT_NS).unwrap_or_else(|cpu| panic!("cpu{cpu} did not finish its part"));
    }
}

/// Increments `*v` with a wide read-modify-write window (read, spin a little,
/// write back + 1), so a broken lock shows as lost updates.
fn slow_increment(v: &mut u64) {
    // SAFETY: `v` is a valid, exclusive reference; volatile keeps the compiler
    // from merging the read and the write into one instruction.
    let old = unsafe { core::ptr::read_volatile(v) };
    for _ in 0..20 {
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(v, old + 1) };
}

/// A stop flag shared with work on other CPUs.
fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}
