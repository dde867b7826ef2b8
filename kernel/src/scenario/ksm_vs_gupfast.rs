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
//! While it runs, freed 4 KiB frames go through the quarantine (a stale TLB
//! write under `ksm.no_flush` lands in a held frame and is reported, instead
//! of damaging the frame's next owner), and overlap counting is on.

use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{Expected, Outcome, SHARED, ScenarioError, expected_ksm, verdict};
use crate::ksm::{self, Tunables};
use crate::mm::{page, pgtable};
use crate::race::{RaceConfig, overlap};

/// Runs the scenario; `Ok(true)` when the verdict is ok.
pub fn run(cfg: &RaceConfig) -> Result<bool, ScenarioError> {
    let online = crate::smp::online_count();
    let cpus = cfg.cpus.unwrap_or(online);
    if cpus < 2 || cpus > online {
        return Err(ScenarioError::Cpus { asked: cpus, online });
    }
    let tlb = crate::tlb::config();
    let config = format!("{}", cfg.describe(&tlb));
    let expected = expected_ksm(&config);
    let secs = cfg.secs.unwrap_or(if cfg.iterations.is_some() { 3600 } else { 5 });
    log::info!(
        "scenario ksm-vs-gupfast: config={config} cpus={cpus} seed={} secs<={secs} iterations<={} expected={}",
        cfg.seed,
        cfg.iterations.map_or(alloc::string::String::from("unbounded"), |n| format!("{n}")),
        expected.as_str()
    );

    // Baselines for the oracles.
    let folios0 = page::live_folios();
    let tables0 = pgtable::live_tables();
    let uaf0 = page::uaf_events();
    let inv0 = page::invariant_errors();
    let bail0 = crate::gup::fast::bailouts();
    let slow0 = crate::gup::fast::slow_falls();
    let ksm0 = ksm::stats();

    for c in [
        &SHARED.done_iterations,
        &SHARED.dma_checks,
        &SHARED.write_checks,
        &SHARED.corrupt_dma,
        &SHARED.corrupt_write,
        &SHARED.next_worker,
    ] {
        c.store(0, Ordering::Relaxed);
    }
    SHARED.workers.store(cpus as u64, Ordering::Relaxed);
    SHARED.seed.store(cfg.seed, Ordering::Relaxed);
    SHARED.prep_us.store(cfg.prep_us, Ordering::Relaxed);
    SHARED.iterations.store(cfg.iterations.unwrap_or(u64::MAX), Ordering::Relaxed);
    SHARED.stop.store(false, Ordering::Relaxed);
    SHARED.stop_on_catch.store(expected == Expected::Caught, Ordering::Relaxed);
    let start = crate::time::now_ns();
    SHARED.deadline_ns.store(start + secs * 1_000_000_000, Ordering::Relaxed);
    page::set_quarantine(true);
    overlap::enable(true);
    // Release: the parameters above before any worker's Acquire of `running`.
    SHARED.running.store(true, Ordering::Release);

    let result = run_workers(cpus, Tunables { pages_to_scan: cfg.ksm_pages_to_scan, sleep_us: cfg.ksm_sleep_us });

    SHARED.running.store(false, Ordering::Release);
    SHARED.stop.store(true, Ordering::Relaxed);
    let elapsed_ms = (crate::time::now_ns() - start) / 1_000_000;
    let overlaps = overlap::count();
    overlap::enable(false);
    if let Err(e) = ksm::stop_ksmd() {
        return Err(ScenarioError::Setup(e));
    }
    let workers = result?;
    // A CPU that ran a worker last may still hold its address space lazily
    // (its tables stay loaded until the CPU switches): let go of them so the
    // leak check sees the final state.
    crate::sched::leave_lazy_mm_everywhere()
        .map_err(|cpu| ScenarioError::Setup(format!("cpu{cpu} did not drop its lazy address space within 5 s")))?;
    ksm::prune();
    page::set_quarantine(false);

    let ksm1 = ksm::stats();
    let mut invariant_errors = page::invariant_errors() - inv0;
    let (folios1, tables1) = (page::live_folios(), pgtable::live_tables());
    if folios1 != folios0 || tables1 != tables0 {
        log::error!("scenario: leak: live folios {folios0} -> {folios1}, page tables {tables0} -> {tables1}");
        invariant_errors += folios1.abs_diff(folios0) as u64 + tables1.abs_diff(tables0) as u64;
    }
    for (i, w) in workers.iter().enumerate() {
        if let Some(k) = &w.killed {
            log::error!("scenario: worker {i} was killed: {k:?}");
            invariant_errors += 1;
        } else if w.status != 0 {
            log::error!("scenario: worker {i} exited with status {}", w.status);
            invariant_errors += 1;
        }
    }
    let corrupt_dma = SHARED.corrupt_dma.load(Ordering::Relaxed);
    let corrupt_write = SHARED.corrupt_write.load(Ordering::Relaxed);
    let o = Outcome {
        iterations: SHARED.done_iterations.load(Ordering::Relaxed),
        overlaps,
        refused_pinned: ksm1.refused_pinned - ksm0.refused_pinned,
        gup_bailouts: crate::gup::fast::bailouts() - bail0,
        slow_falls: crate::gup::fast::slow_falls() - slow0,
        corruptions: corrupt_dma + corrupt_write,
        corrupt_dma,
        corrupt_write,
        uaf: page::uaf_events() - uaf0,
        invariant_errors,
        dma_checks: SHARED.dma_checks.load(Ordering::Relaxed),
        write_checks: SHARED.write_checks.load(Ordering::Relaxed),
        merges: ksm1.merges - ksm0.merges,
        elapsed_ms,
    };
    let v = verdict(expected, &o);
    summary(&config, cpus, &o, expected, &v, &ksm1, &ksm0);
    crate::println!(
        "RESULT scenario name=ksm-vs-gupfast config={config} cpus={cpus} seed={} iterations={} overlaps={} refused_pinned={} gup_bailouts={} corruptions={} uaf={} invariant_errors={} expected={} verdict={} elapsed_ms={} dma_lost={} write_lost={} dma_checks={} write_checks={} merges={} slow_falls={}",
        cfg.seed,
        o.iterations,
        o.overlaps,
        o.refused_pinned,
        o.gup_bailouts,
        o.corruptions,
        o.uaf,
        o.invariant_errors,
        expected.as_str(),
        if v.is_ok() { "ok" } else { "FAIL" },
        o.elapsed_ms,
        o.corrupt_dma,
        o.corrupt_write,
        o.dma_checks,
        o.write_checks,
        o.merges,
        o.slow_falls,
    );
    if let Err(why) = v {
        log::error!("scenario ksm-vs-gupfast ({config}): verdict FAIL: {why}");
    }
    Ok(v.is_ok())
}

/// Starts ksmd and one worker per CPU, waits for the workers.
fn run_workers(cpus: usize, tunables: Tunables) -> Result<Vec<crate::process::ExitInfo>, ScenarioError> {
    ksm::start_ksmd(cpus - 1, tunables)
        .map_err(|e| ScenarioError::Setup(e.into()))?;
    let mut pids = Vec::new();
    for cpu in 0..cpus {
        match crate::process::spawn("ksmrace", cpu) {
            Ok(pid) => pids.push(pid),
            Err(e) => {
                SHARED.stop.store(true, Ordering::Relaxed);
                for pid in pids {
                    let _ = crate::process::wait_info(pid);
                }
                return Err(ScenarioError::Setup(format!("spawning worker on cpu{cpu}: {e:?}")));
            }
        }
    }
    let mut out = Vec::new();
    for pid in pids {
        out.push(crate::process::wait_info(pid).map_err(|e| ScenarioError::Setup(format!("waiting for worker {pid}: {e:?}")))?);
    }
    Ok(out)
}

fn summary(
    config: &str,
    cpus: usize,
    o: &Outcome,
    expected: Expected,
    v: &Result<(), &'static str>,
    k1: &ksm::Stats,
    k0: &ksm::Stats,
) {
    log::info!("+-- ksm-vs-gupfast, config {config}, {cpus} CPUs, {} ms", o.elapsed_ms);
    log::info!("| worker iterations {:>10} | DMA reads checked {:>8} | user writes checked {:>8}", o.iterations, o.dma_checks, o.write_checks);
    log::info!("| overlaps          {:>10} | GUP-fast bail-outs {:>7} | slow-path pages     {:>8}", o.overlaps, o.gup_bailouts, o.slow_falls);
    log::info!(
        "| KSM merges        {:>10} | refused: pinned {:>10} | changed {:>6} busy {:>6} content {:>6}",
        o.merges,
        o.refused_pinned,
        k1.refused_changed - k0.refused_changed,
        k1.refused_busy - k0.refused_busy,
        k1.refused_content - k0.refused_content
    );
    log::info!("| corruptions       {:>10} | DMA lost {:>17} | user writes lost    {:>8}", o.corruptions, o.corrupt_dma, o.corrupt_write);
    log::info!("| uaf               {:>10} | invariant errors {:>9} |", o.uaf, o.invariant_errors);
    match v {
        Ok(()) => log::info!("+-- expected {}: verdict ok", expected.as_str()),
        Err(why) => log::info!("+-- expected {}: verdict FAIL ({why})", expected.as_str()),
    }
}
