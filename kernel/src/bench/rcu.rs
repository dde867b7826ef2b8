//! RCU grace-period latency: how long `synchronize_rcu()` takes with every
//! other CPU idle (halted, woken by the grace period's nudge IPI) and, as a
//! second configuration, with every other CPU busy in a kernel thread that
//! reaches a quiescent state (`cond_resched`) every 100 us.
//!
//! `RESULT rcu op=synchronize load=idle|busy cpus=N n=N median_us=N p99_us=N`
//! (microseconds, as Linux's RCU figures are usually given). Each sample is
//! one call, from the caller's start of a grace period to its observation of
//! the end, including the IPIs to idle CPUs and each CPU's report.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{Bench, BenchError, Plan, sample};
use crate::smp;
use crate::time::{Deadline, now_ns};

const PLAN: Plan = Plan { warmup: 10, samples: 300, budget_ns: 2_000_000_000 };

fn measure(load: &str) -> Result<(), BenchError> {
    let stats = sample(PLAN, || {
        let t0 = now_ns();
        crate::rcu::synchronize_rcu();
        Ok::<u64, BenchError>(now_ns() - t0)
    })?;
    crate::println!(
        "RESULT rcu op=synchronize load={load} cpus={} n={} median_us={} p99_us={}",
        smp::online_count(),
        stats.n,
        stats.median / 1000,
        stats.p99 / 1000
    );
    Ok(())
}

/// Runs both configurations.
pub(crate) fn run() -> Result<(), BenchError> {
    measure("idle")?;
    let me = smp::cpu_index();
    let stop = Arc::new(AtomicBool::new(false));
    let mut busy = Vec::new();
    for cpu in smp::online_cpus().iter().filter(|&c| c != me) {
        let stop = stop.clone();
        let spawned = crate::sched::spawn_on(cpu, "rcu-bench-busy", move || {
            while !stop.load(Ordering::Acquire) {
                let d = Deadline::after_ns(100_000);
                while !d.expired() {
                    core::hint::spin_loop();
                }
                crate::sched::cond_resched();
            }
        });
        busy.push(spawned.map_err(|e| BenchError { bench: Bench::Rcu, message: alloc::format!("{e:?}") })?);
    }
    let result = measure("busy");
    stop.store(true, Ordering::Release);
    for h in busy {
        h.join();
    }
    result
}
