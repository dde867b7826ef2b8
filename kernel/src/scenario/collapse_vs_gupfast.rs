//! The collapse-vs-gupfast scenario (controls.md): on every CPU a user
//! process (`collrace`) keeps a 2 MiB-aligned range mapped by 512 ptes, pins
//! random subpages of it by direct read (GUP-fast, then the slow path) and
//! checks the DMA data through its mapping, and writes and probes other
//! random subpages, while the range is collapsed at full speed by
//! * `scenario.collapser=khugepaged` (default): the khugepaged thread (the
//!   boot's `khugepaged.*` tunables, except that the default 10 s sleep
//!   between batches becomes 0: it only yields), on CPU 0, or on the last
//!   CPU when the DMA agent runs on CPU 0: a collapse holds its CPU for
//!   milliseconds, which the agent must not wait behind;
//! * `scenario.collapser=madvise`: a thread of each worker process, on the
//!   CPU after the worker's, calling `MADV_COLLAPSE` again and again while
//!   the worker's pins and probes run on the range and it is not huge.
//!
//! The device is slow ([`DEVICE_DELAY_US`]), see there.
//!
//! The worker rebuilds a collapsed range at once and cheaply: `MADV_DONTNEED`
//! of one random subpage splits the huge pmd into 512 ptes mapping the huge
//! folio's subpages and clears that one pte, and a write faults a small page
//! back in (see `collrace`). So a range is collapsible again a few
//! microseconds after each collapse, and every pin targets a subpage of the
//! range being collapsed.
//!
//! Collapses key their overlap windows and widening points by the pte table
//! of the 2 MiB range (`khugepaged::collapse`); GUP-fast records and arrives
//! with the table it walks as well as the page, so overlaps and forced
//! interleavings cover the whole range, from the pmd clear to the isolate
//! check (and to the free of the old table: `collapse.post_free`).
//!
//! What catches what: a pin that slips in after the isolate check
//! (`collapse.check_before_clear`; bug F, `gup.pmd_recheck=off` with a flush
//! that does not wait for the walk) keeps the old subpage, whose device
//! write the collapse has already copied past: a DMA loss. A walker that
//! reads the old table after the collapse freed it (bug G,
//! `collapse.no_table_sync`) reads the poison of the quarantined table: a
//! use after free.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::expected::{COLLAPSE, Row};
use super::harness::{Tally, Writer};
use super::{SHARED, ScenarioError};
use crate::khugepaged;
use crate::race::RaceConfig;
use crate::race::config::Collapser;

/// The scenario's collapser.
pub(crate) struct Collapse {
    collapser: Collapser,
    /// The DMA delay to restore after the run, if the scenario changed it.
    dma_delay: Option<(crate::dma::DelayMode, u64)>,
    /// khugepaged's tunables to restore after the run (the boot's, from
    /// `khugepaged.*=`), if the scenario started khugepaged.
    tunables: Option<khugepaged::Tunables>,
}

impl Collapse {
    /// The scenario with `collapser` collapsing.
    pub(crate) fn new(collapser: Collapser) -> Collapse {
        Collapse { collapser, dma_delay: None, tunables: None }
    }
}

/// The main job's bounds of this scenario's rows, seconds: a safe row ends
/// at its evidence (`job::ENOUGH_OVERLAPS`), within 3 s as a rule on 2 to 4
/// vCPUs, but one showed no overlap in 3 s on 4 vCPUs under load; a caught
/// row ends at its first catch (within a few seconds as a rule, but
/// up to 30 s was seen on 4 vCPUs for `collapse.check_before_clear` and bug
/// G: the bound caps a row that fails).
const JOB_SECS: (u64, u64) = (6, 20);

/// The scenario's device: a random 0-30 ms per transfer (unless `dma.delay`
/// or `dma.delay_us` say otherwise), slower than the rest of a collapse
/// after its isolate step (the flushes wait for other vCPUs and the 2 MiB
/// copy takes milliseconds under TCG), so that a device write through a pin
/// that slipped past the isolate step lands after the copy of its subpage
/// and is lost, as it would be on a real machine with a slow device.
const DEVICE_DELAY_US: u64 = 30_000;

/// khugepaged's CPU: 0, unless the DMA agent runs there.
fn khugepaged_cpu(cpus: usize) -> usize {
    if crate::dma::config().cpu == Some(0) { cpus - 1 } else { 0 }
}

impl Writer for Collapse {
    fn name(&self) -> &'static str {
        "collapse-vs-gupfast"
    }

    fn table(&self) -> &'static [Row] {
        COLLAPSE
    }

    fn done_label(&self) -> (&'static str, &'static str) {
        ("collapses", "collapses")
    }

    fn workers(&self, cpus: usize) -> Vec<(&'static str, usize)> {
        (0..cpus).map(|cpu| ("collrace", cpu)).collect()
    }

    fn start(&mut self, _cfg: &RaceConfig, cpus: usize) -> Result<(), ScenarioError> {
        let code = match self.collapser {
            Collapser::Madvise => abi::race::COLLAPSER_MADVISE,
            Collapser::Khugepaged => abi::race::COLLAPSER_KHUGEPAGED,
        };
        // Relaxed: the workers are spawned after this store, which orders
        // it before their reads.
        SHARED.collapser.store(code, Ordering::Relaxed);
        let d = crate::dma::config();
        let default = crate::dma::DmaConfig::DEFAULT;
        if (d.delay, d.delay_us) == (default.delay, default.delay_us) {
            crate::dma::set_delay(crate::dma::DelayMode::Random, DEVICE_DELAY_US);
            self.dma_delay = Some((d.delay, d.delay_us));
        }
        if self.collapser == Collapser::Khugepaged {
            let boot = khugepaged::tunables();
            self.tunables = Some(boot);
            let mut t = boot;
            if t.scan_sleep_us == khugepaged::Tunables::DEFAULT.scan_sleep_us {
                t.scan_sleep_us = 0;
            }
            khugepaged::start_khugepaged(khugepaged_cpu(cpus), t).map_err(|e| ScenarioError::Setup(e.into()))?;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), ScenarioError> {
        if let Some((mode, us)) = self.dma_delay.take() {
            crate::dma::set_delay(mode, us);
        }
        if self.collapser == Collapser::Khugepaged {
            khugepaged::stop_khugepaged().map_err(ScenarioError::Setup)?;
        }
        if let Some(t) = self.tunables.take() {
            khugepaged::set_tunables(t);
        }
        Ok(())
    }

    /// Old pte tables whose free `ptfree=rcu` deferred to a grace period
    /// are freed before the leak check.
    fn settle(&mut self) {
        for _ in 0..100 {
            crate::rcu::synchronize_rcu();
            if crate::rcu::pending_callbacks() == 0 {
                return;
            }
        }
        log::error!("scenario: RCU callbacks still pending after 100 grace periods");
    }

    fn done_counter(&self) -> fn() -> u64 {
        || khugepaged::stats().pages_collapsed
    }

    fn tally(&self) -> Tally {
        let s = khugepaged::stats();
        Tally {
            refused_pinned: s.refused_pinned,
            refused: alloc::vec![
                ("none_ptes", s.refused_none_ptes),
                ("shared", s.refused_shared),
                ("not_anon", s.refused_not_anon),
                ("locked", s.refused_locked),
                ("changed", s.refused_changed),
                ("read_only", s.refused_read_only),
                ("no_memory", s.alloc_failed),
            ],
        }
    }

    fn job_secs(&self) -> (u64, u64) {
        JOB_SECS
    }

    fn extra(&self) -> alloc::string::String {
        alloc::format!(
            " collapser={}",
            match self.collapser {
                Collapser::Madvise => "madvise",
                Collapser::Khugepaged => "khugepaged",
            }
        )
    }
}

/// Runs the scenario; `Ok(true)` when the verdict is ok.
pub(crate) fn run(cfg: &RaceConfig) -> Result<bool, ScenarioError> {
    super::harness::run(cfg, &mut Collapse::new(cfg.collapser))
}
