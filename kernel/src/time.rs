//! Time since boot, from the TSC.
//!
//! `now_ns()` is monotonic on one CPU; across CPUs it relies on the TSCs being
//! synchronised (true under QEMU and on CPUs with an invariant TSC, which the SMP
//! bring-up checks).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::tsc;

/// TSC value at boot (after calibration).
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

/// Calibrates the TSC and starts the clock. Called once on the boot CPU.
pub fn init() {
    tsc::calibrate();
    BOOT_TSC.store(tsc::rdtsc(), Ordering::Relaxed);
}

/// Nanoseconds since [`init`] (0 before it).
pub fn now_ns() -> u64 {
    let boot = BOOT_TSC.load(Ordering::Relaxed);
    if boot == 0 {
        return 0;
    }
    tsc::ticks_to_ns(tsc::rdtsc().saturating_sub(boot))
}

/// A deadline `ns` nanoseconds from now, for bounded waits.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(u64);

impl Deadline {
    /// A deadline `ns` from now.
    pub fn after_ns(ns: u64) -> Self {
        Deadline(tsc::rdtsc().saturating_add(tsc::ns_to_ticks(ns)))
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        tsc::rdtsc() >= self.0
    }
}
