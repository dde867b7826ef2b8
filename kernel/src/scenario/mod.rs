//! Race scenarios (controls.md): a writer and GUP-fast pinners run on every
//! CPU with the configured modes, switches and widenings; the oracles count
//! what went wrong; one `RESULT scenario ...` line and a summary table report
//! it, with the verdict against the outcome controls.md expects for the
//! configuration.
//!
//! The oracles:
//! * corruptions: (a) DMA loss: after a direct read completes, the worker
//!   reads its buffer through its mapping and compares it with the pattern
//!   the DMA engine wrote (sequence number and offset); (b) user-write loss:
//!   after writing an iteration-unique value, the worker asks the kernel to
//!   read the frame its page table maps now ([`probe`], through the direct
//!   map, never through the writer's possibly stale TLB);
//! * uaf: a pinned frame reaching the free path, a walker reading a poisoned
//!   table, or a freed frame written while in quarantine (`mm::page`);
//! * invariant errors: the page-metadata checks, and frames or page tables
//!   leaked at the end of the run;
//! * overlaps (`race::overlap`), refusals and GUP-fast bail-outs, apart.
//!
//! Workers are user processes (`ksmrace` or `collrace`, one per CPU); they talk to the
//! scenario through the `race` syscall ([`syscall`]). The run is shared by
//! every scenario ([`harness`]); each scenario provides its writer
//! ([`harness::Writer`]) and its table of expected outcomes ([`expected`]).

#![deny(unsafe_code)]

pub(crate) mod expected;
pub(crate) mod collapse_vs_gupfast;
pub(crate) mod harness;
pub mod job;
pub mod ksm_vs_gupfast;
pub(crate) mod syscall;
pub(crate) mod uprobe_vs_pin;

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64};

pub(crate) use expected::Expected;

use crate::race::RaceConfig;
use crate::sync::SpinLock;

/// The counters workers report into, and the run's parameters.
pub(crate) struct Shared {
    pub(crate) running: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) stop_on_catch: AtomicBool,
    pub(crate) deadline_ns: AtomicU64,
    /// A safe run ends once this many overlaps were counted (0: it runs its
    /// whole bound): the main job's evidence rule.
    pub(crate) enough_overlaps: AtomicU64,
    /// The writer's count of writes done ([`harness::Writer::done_counter`])
    /// and its value when the run started: an early end also wants the
    /// writer's work (a safe verdict needs it; the exploration's steering
    /// can show the overlaps before the first write, on pages still pinned).
    pub(crate) done_counter: SpinLock<Option<fn() -> u64>>,
    pub(crate) done0: AtomicU64,
    pub(crate) iterations: AtomicU64,
    pub(crate) seed: AtomicU64,
    pub(crate) prep_us: AtomicU64,
    /// Pages each worker writes and probes per iteration (the writer's
    /// [`harness::Writer::write_pages`]).
    pub(crate) write_pages: AtomicU64,
    pub(crate) collapser: AtomicU64,
    pub(crate) next_worker: AtomicU64,
    pub(crate) workers: AtomicU64,
    pub(crate) done_iterations: AtomicU64,
    pub(crate) dma_checks: AtomicU64,
    pub(crate) write_checks: AtomicU64,
    pub(crate) corrupt_dma: AtomicU64,
    pub(crate) corrupt_write: AtomicU64,
    /// When the first corruption was reported (`time::now_ns`), 0 before.
    pub(crate) first_catch_ns: AtomicU64,
    /// `mm::page::uaf_events()` when the run started (a use after free
    /// ends a caught run early too).
    pub(crate) uaf0: AtomicU64,
}

pub(crate) static SHARED: Shared = Shared {
    running: AtomicBool::new(false),
    stop: AtomicBool::new(false),
    stop_on_catch: AtomicBool::new(false),
    deadline_ns: AtomicU64::new(0),
    enough_overlaps: AtomicU64::new(0),
    done_counter: SpinLock::new("scenario done counter", None),
    done0: AtomicU64::new(0),
    iterations: AtomicU64::new(0),
    seed: AtomicU64::new(0),
    prep_us: AtomicU64::new(0),
    write_pages: AtomicU64::new(syscall::WRITE_PAGES),
    collapser: AtomicU64::new(0),
    next_worker: AtomicU64::new(0),
    workers: AtomicU64::new(0),
    done_iterations: AtomicU64::new(0),
    dma_checks: AtomicU64::new(0),
    write_checks: AtomicU64::new(0),
    corrupt_dma: AtomicU64::new(0),
    corrupt_write: AtomicU64::new(0),
    first_catch_ns: AtomicU64::new(0),
    uaf0: AtomicU64::new(0),
};

/// Why a scenario could not run.
#[derive(Debug)]
pub enum ScenarioError {
    /// `cpus=` asks for more CPUs than are online, or fewer than 2.
    Cpus {
        /// CPUs asked for.
        asked: usize,
        /// CPUs online.
        online: usize,
    },
    /// Something the run needs failed (named).
    Setup(alloc::string::String),
    /// A boot option that only the scenarios' tables can check (`job.rows=`
    /// naming a row that does not exist): a usage error.
    Option(alloc::string::String),
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Cpus { asked, online } => {
                write!(f, "cpus={asked}: a race needs at least 2 CPUs and at most the {online} online")
            }
            ScenarioError::Setup(s) => write!(f, "scenario setup: {s}"),
            ScenarioError::Option(s) => write!(f, "{s}"),
        }
    }
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    /// Worker iterations, summed.
    pub(crate) iterations: u64,
    /// Overlapping GUP-fast / writer windows.
    pub(crate) overlaps: u64,
    /// Merges refused for extra references or pins.
    pub(crate) refused_pinned: u64,
    /// GUP-fast bail-outs after a changed entry.
    pub(crate) gup_bailouts: u64,
    /// Pages GUP-fast left to the slow path.
    pub(crate) slow_falls: u64,
    /// DMA losses + user-write losses.
    pub(crate) corruptions: u64,
    /// DMA losses.
    pub(crate) corrupt_dma: u64,
    /// User-write losses.
    pub(crate) corrupt_write: u64,
    /// Use-after-free events.
    pub(crate) uaf: u64,
    /// Invariant errors, leaks included.
    pub(crate) invariant_errors: u64,
    /// DMA buffers checked.
    pub(crate) dma_checks: u64,
    /// User writes checked.
    pub(crate) write_checks: u64,
    /// The writer's work done: KSM merges, collapses.
    pub(crate) writes: u64,
    /// Run time.
    pub(crate) elapsed_ms: u64,
    /// Time from the start to the first corruption reported, if any.
    pub(crate) catch_ms: Option<u64>,
    /// Whether the exploration policy ran (`explore=auto`).
    pub(crate) explore: bool,
    /// The exploration's forced waits, GUP-fast's and the writer's:
    /// (started, met the other side).
    pub(crate) explore_waits: [(u64, u64); 2],
    /// The exploration's steering hints (`race::steer`): (taken by a
    /// daemon, published by paused walkers).
    pub(crate) explore_steer: (u64, u64),
}

/// Whether an outcome meets an expectation (and why not).
pub(crate) fn verdict(expected: Expected, o: &Outcome) -> Result<(), &'static str> {
    match expected {
        Expected::Safe if o.corruptions > 0 => Err("corruptions in a safe configuration"),
        Expected::Safe if o.uaf > 0 => Err("use after free in a safe configuration"),
        Expected::Safe if o.invariant_errors > 0 => Err("invariant errors in a safe configuration"),
        Expected::Safe if o.overlaps == 0 => Err("no overlap: the race was never exercised, so 'safe' proves nothing"),
        Expected::Safe if o.writes == 0 => Err("the writer did nothing (no merge or collapse), so 'safe' proves nothing"),
        Expected::Caught if o.corruptions + o.uaf == 0 => Err("a broken configuration was not caught"),
        _ => Ok(()),
    }
}

/// The main job: every row of every scenario's table, or those of `rows`
/// (`job.rows=`; see [`job`]); `job=list` only lists the rows.
pub fn run_job(boot: &RaceConfig, what: job::Job, rows: Option<u128>) -> Result<bool, ScenarioError> {
    let (mut ksm, mut uprobe) = (ksm_vs_gupfast::Ksm, uprobe_vs_pin::Tracer);
    let mut collapse = collapse_vs_gupfast::Collapse::new(crate::race::config::Collapser::Khugepaged);
    let mut writers: [&mut dyn harness::Writer; 3] = [&mut ksm, &mut collapse, &mut uprobe];
    match what {
        job::Job::Races => job::run(boot, &mut writers, rows),
        job::Job::List => {
            job::list(&writers);
            Ok(true)
        }
        // Printed by the boot options, which own the key tables.
        job::Job::None | job::Job::Keys => Ok(true),
    }
}

/// Runs the configured scenario; `Ok(true)` when its verdict is ok.
pub fn run(cfg: &RaceConfig) -> Result<bool, ScenarioError> {
    match cfg.scenario {
        Some(crate::race::config::ScenarioName::KsmVsGupfast) => ksm_vs_gupfast::run(cfg),
        Some(crate::race::config::ScenarioName::UprobeVsPin) => uprobe_vs_pin::run(cfg),
        Some(crate::race::config::ScenarioName::CollapseVsGupfast) => collapse_vs_gupfast::run(cfg),
        None => Ok(true),
    }
}
