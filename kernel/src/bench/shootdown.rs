//! `bench=shootdown`: the cost of one-page mprotect and MADV_DONTNEED calls
//! timed in user space, by number of remote CPUs running the process, as
//! the Linux peer measures them (`../shared/peer/linux/bench/shootdown.c`).
//!
//! The measuring is the user program `shootdown`
//! (`kernel/user/src/bin/shootdown.rs`), started here on this (the boot)
//! CPU: it times the calls with `rdtsc` between spinner setups for
//! K = 0 .. online-1 and reports each line through the `bench_result`
//! syscall ([`super::user`]), which prints it as
//! `RESULT shootdown op=mprotect_ro|mprotect_rw|madv_dontneed remote_cpus=K n=N mean_ns=N median_ns=N p10_ns=N p90_ns=N min_ns=N [delta_median_ns=N]`
//! (plus ` flush=nmi` under `tlb=nmi`). This driver checks that the program
//! ended with status 0 and reported the three operations for every K.

use alloc::format;

use super::{Bench, BenchError};
use crate::process;
use crate::smp;

/// The operations the program times.
const OPS: u64 = 3;

fn err(message: alloc::string::String) -> BenchError {
    BenchError { bench: Bench::Shootdown, message }
}

/// Runs the program and checks that it reported every configuration.
pub(crate) fn run() -> Result<(), BenchError> {
    let before = super::user::reported();
    crate::stamps::reset();
    let cpu = smp::cpu_index();
    let pid = process::spawn("shootdown", cpu).map_err(|e| err(format!("cannot start the program: {e}")))?;
    let info = process::wait_info(pid).map_err(|e| err(format!("wait for the program: {e}")))?;
    if let Some(k) = info.killed {
        return Err(err(format!("the program was killed: vector {} at {:#x} (rip {:#x})", k.vector, k.addr, k.rip)));
    }
    if info.status != 0 {
        return Err(err(format!("the program exited with status {}", info.status)));
    }
    let lines = super::user::reported() - before;
    let expected = OPS * smp::online_count() as u64;
    if lines != expected {
        return Err(err(format!("{lines} RESULT lines, expected {expected} (3 ops x {} CPUs)", smp::online_count())));
    }
    Ok(())
}
