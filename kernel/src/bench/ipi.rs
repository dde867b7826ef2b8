//! `bench=ipi`: round-trip latency of a waiting cross-CPU call, by number of
//! targets and by delivery (Linux: smp_call_function_many() with wait=1; the
//! peer's `shootdown` bench measures the same IPI inside a TLB flush).
//!
//! The boot CPU calls an empty function on the K lowest other online CPUs
//! (K = 1 .. online-1) and waits for every acknowledgement. One sample, timed
//! with the TSC clock on the sender, includes: allocating and queueing the
//! request (one lock-free push per target), the ICR write per target (an MMIO
//! store in xAPIC mode, a WRMSR in x2APIC mode), delivery, the target's
//! wake-up from `hlt` and interrupt entry, its handler (list swap, the empty
//! function, the acknowledging atomic), the sender's spinning until it
//! observes every acknowledgement, and freeing the request. The targets are
//! idle (halted with interrupts on), as in the peer's spinner-free K=0 case
//! plus the cost of waking a halted CPU.
//!
//! Output, one line per (op, K):
//! `RESULT ipi op=call_wait|nmi_wait targets=K cpus=N n=N median_ns=N p99_ns=N min_ns=N max_ns=N`
//! (`call_wait`: fixed-vector IPI delivery; `nmi_wait`: NMI delivery).

use alloc::format;

use super::{Bench, BenchError, Plan, sample};
use crate::smp::call::{self, Delivery};
use crate::smp::{self, CpuSet};
use crate::time::now_ns;

/// Runs every configuration and prints its RESULT line.
pub(crate) fn run() -> Result<(), BenchError> {
    let me = smp::cpu_index();
    let others: alloc::vec::Vec<usize> = smp::online_cpus().iter().filter(|&c| c != me).collect();
    let cpus = smp::online_count();
    if others.is_empty() {
        log::warn!("bench ipi: needs at least 2 online CPUs; nothing measured");
        return Ok(());
    }
    if !crate::arch::cpu::interrupts_enabled() {
        return Err(BenchError { bench: Bench::Ipi, message: "must run with interrupts enabled".into() });
    }
    let timeout_ns = call::call_timeout_ns();
    for (op, delivery) in [("call_wait", Delivery::Ipi), ("nmi_wait", Delivery::Nmi)] {
        for k in 1..=others.len() {
            let mut targets = CpuSet::EMPTY;
            for &cpu in &others[..k] {
                targets.insert(cpu);
            }
            let stats = sample(Plan::DEFAULT, || {
                let start = now_ns();
                call::call_with(targets, delivery, || {})
                    .wait(timeout_ns)
                    .map_err(|e| BenchError { bench: Bench::Ipi, message: format!("op={op} targets={k}: {e}") })?;
                Ok(now_ns() - start)
            })?;
            crate::println!(
                "RESULT ipi op={op} targets={k} cpus={cpus} n={} median_ns={} p99_ns={} min_ns={} max_ns={}",
                stats.n,
                stats.median,
                stats.p99,
                stats.min,
                stats.max
            );
        }
    }
    Ok(())
}
