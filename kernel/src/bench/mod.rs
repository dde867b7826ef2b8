//! In-kernel benchmarks, run by the main kernel after boot when the boot
//! option `bench=` lists them (`bench=ipi,rcu`), each a file next to
//! [`ipi`]: `rcu`, `tlb`, `gup`, `ksm`, `collapse`; [`shootdown`] times from a user
//! program, which reports its lines through [`user`]).
//!
//! Each benchmark prints one machine-readable line per configuration,
//! `RESULT <bench> op=<op> <id keys> n=N median_ns=N p99_ns=N ...`, in the
//! schema of the Linux peer (`../shared/peer/linux/README.md`), so
//! `compare.sh` can line the two kernels up. Figures are measured, never
//! adjusted: under TCG with more vCPUs than host cores they are noisy.
//!
//! Adding a benchmark: a variant in [`Bench`] (its name in [`Bench::name`],
//! parsed by `boot_options`), a file with a `run() -> Result<(), BenchError>`,
//! and a line in [`run`]. [`Sampler`] and [`Stats`] give every benchmark the
//! same warm-up, sample bound, time budget and percentiles.

#![deny(unsafe_code)]

pub(crate) mod collapse;
pub(crate) mod console;
pub(crate) mod gup;
pub(crate) mod ksm;
pub(crate) mod ipi;
pub(crate) mod rcu;
pub(crate) mod shootdown;
pub(crate) mod tlb;
pub(crate) mod user;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::time::{Deadline, now_ns};

/// A benchmark the `bench=` boot option can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bench {
    /// Round-trip latency of waiting cross-CPU calls, by IPI and by NMI.
    Ipi,
    /// RCU grace-period latency.
    Rcu,
    /// Cost of a TLB shootdown by number of remote CPUs.
    Tlb,
    /// One-page mprotect / MADV_DONTNEED from user space by remote CPUs.
    Shootdown,
    /// Per-page cost of GUP-fast and the slow path, gets and pins.
    Gup,
    /// How fast ksmd merges 64 MiB of identical pages.
    Ksm,
    /// MADV_COLLAPSE of 512 small pages, by number of remote CPUs.
    Collapse,
    /// Lines printed on the framebuffer console, with and without its shadow.
    Console,
}

impl Bench {
    /// Every benchmark, in the order [`run`] runs them.
    pub(crate) const ALL: [Bench; 8] =
        [Bench::Ipi, Bench::Rcu, Bench::Tlb, Bench::Shootdown, Bench::Gup, Bench::Ksm, Bench::Collapse, Bench::Console];

    /// The name used in `bench=` and in RESULT lines.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Bench::Ipi => "ipi",
            Bench::Rcu => "rcu",
            Bench::Tlb => "tlb",
            Bench::Shootdown => "shootdown",
            Bench::Gup => "gup",
            Bench::Ksm => "ksm",
            Bench::Collapse => "collapse",
            Bench::Console => "console",
        }
    }

    /// The benchmark called `name`, if any.
    pub(crate) fn from_name(name: &str) -> Option<Bench> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A set of benchmarks (a bitset: the boot-option parser allocates nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchSet(u32);

impl BenchSet {
    /// No benchmark.
    pub(crate) const EMPTY: BenchSet = BenchSet(0);

    /// Adds `b`.
    pub(crate) fn insert(&mut self, b: Bench) {
        self.0 |= b.bit();
    }

    /// Whether `b` is in the set.
    pub(crate) fn contains(&self, b: Bench) -> bool {
        self.0 & b.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// Why a benchmark could not finish.
#[derive(Debug)]
pub struct BenchError {
    /// The benchmark.
    pub(crate) bench: Bench,
    /// What went wrong.
    pub(crate) message: String,
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bench {}: {}", self.bench.name(), self.message)
    }
}

/// Runs the benchmarks in `set`, in [`Bench::ALL`] order; stops at the first
/// that fails.
pub fn run(set: BenchSet) -> Result<(), BenchError> {
    for b in Bench::ALL.into_iter().filter(|b| set.contains(*b)) {
        log::info!("bench {}: start", b.name());
        let start = now_ns();
        match b {
            Bench::Ipi => ipi::run()?,
            Bench::Rcu => rcu::run()?,
            Bench::Tlb => tlb::run()?,
            Bench::Shootdown => shootdown::run()?,
            Bench::Gup => gup::run()?,
            Bench::Ksm => ksm::run()?,
            Bench::Collapse => collapse::run()?,
            Bench::Console => console::run()?,
        }
        log::info!("bench {}: done in {} ms", b.name(), (now_ns() - start) / 1_000_000);
    }
    Ok(())
}

/// Sampling bounds for one configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Untimed runs first (caches, TLBs, the emulator's translated code).
    pub(crate) warmup: usize,
    /// Most timed samples.
    pub(crate) samples: usize,
    /// Stop sampling after this long, even with fewer samples (at least one
    /// sample is always taken).
    pub(crate) budget_ns: u64,
}

impl Plan {
    /// 2000 samples after 100 warm-up runs, at most 2 s of sampling.
    pub(crate) const DEFAULT: Plan = Plan { warmup: 100, samples: 2000, budget_ns: 2_000_000_000 };
}

/// Collects samples by `plan`: `op` returns one sample in ns, or an error that
/// ends the benchmark.
pub(crate) fn sample<E>(plan: Plan, mut op: impl FnMut() -> Result<u64, E>) -> Result<Stats, E> {
    let warm = Deadline::after_ns(plan.budget_ns / 4);
    for _ in 0..plan.warmup {
        op()?;
        if warm.expired() {
            break;
        }
    }
    let mut samples = Vec::with_capacity(plan.samples);
    let budget = Deadline::after_ns(plan.budget_ns);
    while samples.len() < plan.samples && (samples.is_empty() || !budget.expired()) {
        samples.push(op()?);
    }
    Ok(Stats::from_samples(samples))
}

/// Order statistics of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Number of samples.
    pub(crate) n: usize,
    /// The median (the lower one for an even count).
    pub(crate) median: u64,
    /// The 99th percentile (nearest rank).
    pub(crate) p99: u64,
    /// The 10th percentile (nearest rank).
    pub(crate) p10: u64,
    /// The 90th percentile (nearest rank).
    pub(crate) p90: u64,
    /// The smallest sample.
    pub(crate) min: u64,
    /// The largest sample.
    pub(crate) max: u64,
}

impl Stats {
    /// Statistics of `samples` (which it sorts); all zero when empty.
    pub(crate) fn from_samples(mut samples: Vec<u64>) -> Stats {
        samples.sort_unstable();
        let n = samples.len();
        if n == 0 {
            return Stats { n, median: 0, p99: 0, p10: 0, p90: 0, min: 0, max: 0 };
        }
        // Nearest rank: the smallest value with at least p% of samples <= it.
        let rank = |p: usize| samples[((n * p).div_ceil(100)).max(1) - 1];
        Stats {
            n,
            median: samples[(n - 1) / 2],
            p99: rank(99),
            p10: rank(10),
            p90: rank(90),
            min: samples[0],
            max: samples[n - 1],
        }
    }
}
