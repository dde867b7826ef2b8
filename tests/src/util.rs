//! Helpers shared by the test suites.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::smp;
use kernel::time::Deadline;

/// The online CPUs other than this one, in order.
pub fn others() -> Vec<usize> {
    let me = smp::cpu_index();
    smp::online_cpus().iter().filter(|&c| c != me).collect()
}

/// The lowest online CPU other than this one; if there is none, marks the
/// running test as skipped ("needs at least 2 online CPUs") and returns `None`.
pub fn other_cpu() -> Option<usize> {
    let other = others().first().copied();
    if other.is_none() {
        kernel::testing::skip("needs at least 2 online CPUs");
    }
    other
}

/// Busy-waits for `ns` nanoseconds (no scheduling point).
pub fn spin_ns(ns: u64) {
    let d = Deadline::after_ns(ns);
    while !d.expired() {
        core::hint::spin_loop();
    }
}

/// Spins until `flag` is set, at most 5 s (then the test fails).
pub fn wait_for(flag: &AtomicBool) {
    let d = Deadline::after_ns(5_000_000_000);
    while !flag.load(Ordering::Acquire) {
        assert!(!d.expired(), "the other CPU never reached its section");
        core::hint::spin_loop();
    }
}

/// A small xorshift generator for the model tests (a fixed seed gives the
/// same calls every run, so a failure names a reproducible step).
pub struct Rng(pub u64);

impl Rng {
    /// The next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
