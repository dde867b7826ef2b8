//! The ksm-vs-gupfast scenario (controls.md): on every CPU a user process
//! (`ksmrace`) repeatedly refills its mergeable buffer with equal contents,
//! pins pages of it by direct read (GUP-fast, then the slow path) and checks
//! the data when the read completes, and writes and probes other pages; ksmd
//! merges the same pages at full speed (by default 64 pages a batch, no
//! sleep between batches: `ksm.pages_to_scan`, `ksm.sleep_us`).
//!
//! Placement on N CPUs: worker `i` on CPU `i`; ksmd on the last CPU, where it
//! shares the CPU with that CPU's worker and the DMA agent (`dma.cpu`). With
//! 2 CPUs, a merge on CPU 1 races a pin by the worker on CPU 0 (and the
//! worker on CPU 1 only when ksmd is switched out).
//!
//! The run itself (oracles, quarantine, overlap counting, verdict, output) is
//! the shared [`harness`](super::harness); this module is the writer: ksmd.

use alloc::vec::Vec;

use super::ScenarioError;
use super::expected::{KSM, Row};
use super::harness::{Tally, Writer};
use crate::ksm::{self, Tunables};
use crate::race::RaceConfig;

/// ksmd as the scenario's writer.
pub struct Ksm;

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
        (0..cpus).map(|cpu| ("ksmrace", cpu)).collect()
    }

    fn start(&mut self, cfg: &RaceConfig, cpus: usize) -> Result<(), ScenarioError> {
        let t = Tunables { pages_to_scan: cfg.ksm_pages_to_scan, sleep_us: cfg.ksm_sleep_us };
        ksm::start_ksmd(cpus - 1, t).map_err(|e| ScenarioError::Setup(e.into()))
    }

    fn stop(&mut self) -> Result<(), ScenarioError> {
        ksm::stop_ksmd().map_err(ScenarioError::Setup)
    }

    fn settle(&mut self) {
        ksm::prune();
    }

    fn tally(&self) -> Tally {
        let s = ksm::stats();
        Tally {
            done: s.merges,
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
pub fn run(cfg: &RaceConfig) -> Result<bool, ScenarioError> {
    super::harness::run(cfg, &mut Ksm)
}
