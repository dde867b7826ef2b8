//! The ksm-vs-gupfast scenario (controls.md): on every CPU but ksmd's a
//! user process (`ksmrace`) repeatedly refills its mergeable buffer with
//! equal contents, pins pages of it by direct read (GUP-fast, then the slow
//! path) and checks the data when the read completes, and writes and probes
//! another page; ksmd merges the same pages at full speed (by default 64
//! pages a batch, no sleep between batches, only a yield: `ksm.pages_to_scan`,
//! `ksm.sleep_us`).
//!
//! Placement on N CPUs: with 3 or more, worker `i` on CPU `i` for `i < N-1`
//! and ksmd on the last CPU, alone with the DMA agent (`dma.cpu`); with 2,
//! a worker on each CPU, ksmd sharing CPU 1 with its worker (a merge on CPU 1
//! races a pin on CPU 0, and the worker on CPU 1 only when ksmd is switched
//! out). ksmd is the slow side of this race (every merge waits for two
//! flushes): a CPU of its own and a small working set (per worker 2 pinned
//! pages, 1 written page, 1 idle page) let it come round to a pinned page
//! more often; Linux's ksmd too scans the registered areas in order, and
//! `pages_to_scan` is sized to the workload.
//!
//! The run itself (oracles, quarantine, overlap counting, verdict, output) is
//! the shared [`harness`](super::harness); this module is the writer: ksmd.

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::ScenarioError;
use super::expected::{KSM, Row};
use super::harness::{Tally, Writer};
use crate::ksm::{self, Tunables};
use crate::race::RaceConfig;

/// ksmd as the scenario's writer.
pub(crate) struct Ksm;

/// ksmd's `(pages_scanned, full_scans)` when the run started.
static SCANNED0: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

impl Writer for Ksm {
    fn name(&self) -> &'static str {
        "ksm-vs-gupfast"
    }

    fn table(&self) -> &'static [Row] {
        KSM
    }

    fn done_label(&self) -> (&'static str, &'static str) {
        ("merges", "KSM merges")
    }

    fn workers(&self, cpus: usize) -> Vec<(&'static str, usize)> {
        let n = if cpus >= 3 { cpus - 1 } else { cpus };
        (0..n).map(|cpu| ("ksmrace", cpu)).collect()
    }

    fn start(&mut self, cfg: &RaceConfig, cpus: usize) -> Result<(), ScenarioError> {
        let t = Tunables { pages_to_scan: cfg.ksm_pages_to_scan, sleep_us: cfg.ksm_sleep_us };
        let s = ksm::stats();
        // Relaxed: read back by this thread after the run.
        SCANNED0[0].store(s.pages_scanned, Ordering::Relaxed);
        SCANNED0[1].store(s.full_scans, Ordering::Relaxed);
        ksm::start_ksmd(cpus - 1, t).map_err(|e| ScenarioError::Setup(e.into()))
    }

    fn stop(&mut self) -> Result<(), ScenarioError> {
        ksm::stop_ksmd().map_err(ScenarioError::Setup)
    }

    fn settle(&mut self) {
        ksm::prune();
    }

    fn extra(&self) -> String {
        let s = ksm::stats();
        alloc::format!(
            " pages_scanned={} full_scans={}",
            s.pages_scanned - SCANNED0[0].load(Ordering::Relaxed),
            s.full_scans - SCANNED0[1].load(Ordering::Relaxed)
        )
    }

    /// One page: every write page is merged again after each checked
    /// write (its COW copy holds the common contents again), two flushes
    /// each; a second page only halves how often ksmd comes round to the
    /// pinned pages, and one is enough to catch `ksm.no_flush`.
    fn write_pages(&self) -> u64 {
        1
    }

    fn done_counter(&self) -> fn() -> u64 {
        || ksm::stats().merges
    }

    fn tally(&self) -> Tally {
        let s = ksm::stats();
        Tally {
            refused_pinned: s.refused_pinned,
            refused: alloc::vec![
                ("changed", s.refused_changed),
                ("busy", s.refused_busy),
                ("content", s.refused_content)
            ],
        }
    }
}

/// Runs the scenario; `Ok(true)` when the verdict is ok.
pub(crate) fn run(cfg: &RaceConfig) -> Result<bool, ScenarioError> {
    super::harness::run(cfg, &mut Ksm)
}
