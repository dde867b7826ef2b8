//! The run every race scenario shares: workers doing direct-I/O pins by
//! GUP-fast and checked user writes (user programs talking through the `race`
//! syscall), the oracles, overlap counting, the verdict against the
//! scenario's table, the `RESULT scenario` line and the summary. What differs
//! between scenarios is the writer ([`Writer`]): KSM's ksmd, khugepaged or
//! the workers' own `MADV_COLLAPSE`.
//!
//! Order of a run: baselines of every counter; the parameters published to
//! the workers (`SHARED`, then `running` with Release); the quarantine of
//! freed frames and overlap counting on; the writer started; the worker
//! processes spawned and waited for; the writer stopped; lazily held address
//! spaces dropped and the writer's leftovers released ([`Writer::settle`]);
//! then the leak check (live folios and page tables back to their
//! baselines) and the figures.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::expected::{self, Expected, Row};
use super::{Outcome, SHARED, ScenarioError, verdict};
use crate::mm::{page, pgtable};
use crate::race::{RaceConfig, overlap};

/// A writer's cumulative counters (the harness reports the difference over
/// the run).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    /// Attempts refused for extra references or pins.
    pub(crate) refused_pinned: u64,
    /// Other refusals, by reason (`refused_<reason>=` in the RESULT line).
    pub(crate) refused: Vec<(&'static str, u64)>,
}

/// The writer side of a scenario.
pub(crate) trait Writer {
    /// The scenario's name (`scenario=`, `name=`).
    fn name(&self) -> &'static str;
    /// The scenario's table of expected outcomes.
    fn table(&self) -> &'static [Row];
    /// The RESULT key and the summary label of the writes done
    /// ([`Writer::done_counter`])
    /// (`("merges", "KSM merges")`).
    fn done_label(&self) -> (&'static str, &'static str);
    /// The worker processes to spawn: `(program, cpu)`.
    fn workers(&self, cpus: usize) -> Vec<(&'static str, usize)>;
    /// Starts the writer's kernel side (a kernel thread), if any.
    fn start(&mut self, cfg: &RaceConfig, cpus: usize) -> Result<(), ScenarioError>;
    /// Stops what [`Writer::start`] started.
    fn stop(&mut self) -> Result<(), ScenarioError>;
    /// Releases what the writer keeps after the workers exited (KSM's
    /// stable pages), before the leak check.
    fn settle(&mut self) {}
    /// The writer's counters now.
    fn tally(&self) -> Tally;
    /// The writer's cumulative count of writes done (merges, collapses,
    /// probe installs and removals: the RESULT line's `writes`), as a plain
    /// function the workers can read too: a safe row of the main job ends
    /// early only once the writer has worked *and* the overlaps were shown
    /// (`syscall::should_stop`).
    fn done_counter(&self) -> fn() -> u64;
    /// The main job's bounds of a safe and of a caught row of this
    /// scenario, seconds (`secs=` overrides both).
    fn job_secs(&self) -> (u64, u64) {
        (super::job::SAFE_SECS, super::job::CAUGHT_SECS)
    }
    /// Pages each worker writes and probes per iteration (lost user
    /// writes); [`super::syscall::WRITE_PAGES`] unless the writer sizes it.
    fn write_pages(&self) -> u64 {
        super::syscall::WRITE_PAGES
    }
    /// Extra `key=value` words for the RESULT line (after the common ones).
    fn extra(&self) -> String {
        String::new()
    }
}

/// What one run found (the figures of its RESULT line).
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// The `config=` string.
    pub(crate) config: String,
    /// What the scenario's table expects of the configuration.
    pub(crate) expected: Expected,
    /// The figures.
    pub(crate) outcome: Outcome,
    /// The verdict: `Ok` when the outcome meets the expectation (always
    /// for an unlisted configuration, whose verdict is `none`).
    pub(crate) verdict: Result<(), &'static str>,
}

impl Report {
    /// `ok`, `FAIL`, or `none` for a configuration the table does not list.
    pub(crate) fn verdict_word(&self) -> &'static str {
        match (self.expected, self.verdict) {
            (Expected::Unlisted, _) => "none",
            (_, Ok(())) => "ok",
            (_, Err(_)) => "FAIL",
        }
    }
}

/// Runs the scenario `w`; `Ok(true)` when the verdict is ok (or none).
pub(crate) fn run(cfg: &RaceConfig, w: &mut dyn Writer) -> Result<bool, ScenarioError> {
    run_report(cfg, w, None).map(|r| r.verdict.is_ok())
}

/// Runs the scenario `w` and returns its figures (also printed: the summary
/// and the RESULT line). A caught row ends at its first corruption or use
/// after free; a safe row runs its whole bound, or, with `enough_overlaps`,
/// until that many overlaps were counted and the writer did at least one
/// write (the evidence its verdict rests on; the verdict is the same either
/// way).
pub(crate) fn run_report(cfg: &RaceConfig, w: &mut dyn Writer, enough_overlaps: Option<u64>) -> Result<Report, ScenarioError> {
    let name = w.name();
    let online = crate::smp::online_count();
    let cpus = cfg.cpus.unwrap_or(online);
    if cpus < 2 || cpus > online {
        return Err(ScenarioError::Cpus { asked: cpus, online });
    }
    let tlb = crate::tlb::config();
    let config = format!("{}", cfg.describe(&tlb));
    let row = expected::lookup(w.table(), &config);
    let expected = row.map_or(Expected::Unlisted, |r| r.expected);
    let secs = cfg.secs.unwrap_or(if cfg.iterations.is_some() { 3600 } else { 5 });
    log::info!(
        "scenario {name}: config={config} cpus={cpus} seed={} secs<={secs} iterations<={} expected={}{}",
        cfg.seed,
        cfg.iterations.map_or(String::from("unbounded"), |n| format!("{n}")),
        expected.as_str(),
        row.map_or(String::new(), |r| format!(" ({})", r.why)),
    );

    // Baselines for the oracles.
    let folios0 = page::live_folios();
    let tables0 = pgtable::live_tables();
    let uaf0 = page::uaf_events();
    let inv0 = page::invariant_errors();
    let bail0 = crate::gup::fast::bailouts();
    let slow0 = crate::gup::fast::slow_falls();
    let tally0 = w.tally();
    let done_counter = w.done_counter();
    let done0 = done_counter();

    for c in [
        &SHARED.done_iterations,
        &SHARED.dma_checks,
        &SHARED.write_checks,
        &SHARED.corrupt_dma,
        &SHARED.corrupt_write,
        &SHARED.next_worker,
        &SHARED.first_catch_ns,
    ] {
        c.store(0, Ordering::Relaxed);
    }
    SHARED.uaf0.store(uaf0, Ordering::Relaxed);
    SHARED.workers.store(cpus as u64, Ordering::Relaxed);
    SHARED.seed.store(cfg.seed, Ordering::Relaxed);
    SHARED.prep_us.store(cfg.prep_us, Ordering::Relaxed);
    SHARED.write_pages.store(w.write_pages(), Ordering::Relaxed);
    SHARED.iterations.store(cfg.iterations.unwrap_or(u64::MAX), Ordering::Relaxed);
    SHARED.stop.store(false, Ordering::Relaxed);
    SHARED.stop_on_catch.store(expected == Expected::Caught, Ordering::Relaxed);
    let enough = if expected == Expected::Safe { enough_overlaps.unwrap_or(0) } else { 0 };
    SHARED.enough_overlaps.store(enough, Ordering::Relaxed);
    SHARED.done0.store(done0, Ordering::Relaxed);
    *SHARED.done_counter.lock() = Some(done_counter);
    let start = crate::time::now_ns();
    SHARED.deadline_ns.store(start + secs * 1_000_000_000, Ordering::Relaxed);
    page::set_quarantine(true);
    overlap::enable(true);
    let explore = cfg.exploring();
    crate::race::widen::set_explore(explore, cfg.seed);
    // Release: the parameters above before any worker's Acquire of `running`.
    SHARED.running.store(true, Ordering::Release);

    let result = w.start(cfg, cpus).and_then(|()| run_workers(&w.workers(cpus)));

    SHARED.running.store(false, Ordering::Release);
    SHARED.stop.store(true, Ordering::Relaxed);
    let elapsed_ms = (crate::time::now_ns() - start) / 1_000_000;
    let overlaps = overlap::count();
    overlap::enable(false);
    let explore_waits = crate::race::widen::explore_waits();
    let explore_steer = crate::race::steer::counts();
    crate::race::widen::set_explore(false, cfg.seed);
    w.stop()?;
    let workers = result?;
    // A CPU that ran a worker last may still hold its address space lazily
    // (its tables stay loaded until the CPU switches): let go of them so the
    // leak check sees the final state.
    crate::sched::leave_lazy_mm_everywhere()
        .map_err(|cpu| ScenarioError::Setup(format!("cpu{cpu} did not drop its lazy address space within 5 s")))?;
    w.settle();
    page::set_quarantine(false);

    let tally1 = w.tally();
    let done1 = done_counter();
    let mut invariant_errors = page::invariant_errors() - inv0;
    let (folios1, tables1) = (page::live_folios(), pgtable::live_tables());
    if folios1 != folios0 || tables1 != tables0 {
        log::error!("scenario: leak: live folios {folios0} -> {folios1}, page tables {tables0} -> {tables1}");
        invariant_errors += folios1.abs_diff(folios0) as u64 + tables1.abs_diff(tables0) as u64;
    }
    for (i, x) in workers.iter().enumerate() {
        if let Some(k) = &x.killed {
            log::error!("scenario: worker {i} was killed: {k:?}");
            invariant_errors += 1;
        } else if x.status != 0 {
            log::error!("scenario: worker {i} exited with status {}", x.status);
            invariant_errors += 1;
        }
    }
    let corrupt_dma = SHARED.corrupt_dma.load(Ordering::Relaxed);
    let corrupt_write = SHARED.corrupt_write.load(Ordering::Relaxed);
    let o = Outcome {
        iterations: SHARED.done_iterations.load(Ordering::Relaxed),
        overlaps,
        refused_pinned: tally1.refused_pinned - tally0.refused_pinned,
        gup_bailouts: crate::gup::fast::bailouts() - bail0,
        slow_falls: crate::gup::fast::slow_falls() - slow0,
        corruptions: corrupt_dma + corrupt_write,
        corrupt_dma,
        corrupt_write,
        uaf: page::uaf_events() - uaf0,
        invariant_errors,
        dma_checks: SHARED.dma_checks.load(Ordering::Relaxed),
        write_checks: SHARED.write_checks.load(Ordering::Relaxed),
        writes: done1 - done0,
        elapsed_ms,
        catch_ms: match SHARED.first_catch_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t.saturating_sub(start) / 1_000_000),
        },
        explore,
        explore_waits,
        explore_steer: (explore_steer.1, explore_steer.0),
    };
    // Refusals by reason over the run (the writer lists the same reasons in
    // the same order every time).
    let refused: Vec<(&'static str, u64)> = tally1
        .refused
        .iter()
        .map(|&(k, n)| (k, n - tally0.refused.iter().find(|(k0, _)| *k0 == k).map_or(0, |&(_, n0)| n0)))
        .collect();
    let v = verdict(expected, &o);
    let (done_key, done_label) = w.done_label();
    summary(name, &config, cpus, &o, expected, &v, done_label, &refused);
    let mut refusals = String::new();
    for (k, n) in &refused {
        refusals.push_str(&format!(" refused_{k}={n}"));
    }
    let report = Report { config, expected, outcome: o, verdict: v };
    let config = &report.config;
    let catch = o.catch_ms.map_or(String::new(), |ms| format!(" catch_ms={ms}"));
    crate::println!(
        "RESULT scenario name={name} config={config} cpus={cpus} seed={} iterations={} overlaps={} refused_pinned={} gup_bailouts={} corruptions={} uaf={} invariant_errors={} expected={} verdict={} elapsed_ms={} explore={}{catch} explore_gup={}/{} explore_writer={}/{} explore_steer={}/{} dma_lost={} write_lost={} dma_checks={} write_checks={} {done_key}={} slow_falls={}{refusals}{}",
        cfg.seed,
        o.iterations,
        o.overlaps,
        o.refused_pinned,
        o.gup_bailouts,
        o.corruptions,
        o.uaf,
        o.invariant_errors,
        expected.as_str(),
        report.verdict_word(),
        o.elapsed_ms,
        if o.explore { "auto" } else { "off" },
        o.explore_waits[0].1,
        o.explore_waits[0].0,
        o.explore_waits[1].1,
        o.explore_waits[1].0,
        o.explore_steer.0,
        o.explore_steer.1,
        o.corrupt_dma,
        o.corrupt_write,
        o.dma_checks,
        o.write_checks,
        o.writes,
        o.slow_falls,
        w.extra(),
    );
    if let Err(why) = v {
        log::error!("scenario {name} ({config}): verdict FAIL: {why}");
    }
    Ok(report)
}

/// Spawns the worker processes and waits for them.
fn run_workers(workers: &[(&'static str, usize)]) -> Result<Vec<crate::process::ExitInfo>, ScenarioError> {
    let mut pids = Vec::new();
    for &(program, cpu) in workers {
        match crate::process::spawn(program, cpu) {
            Ok(pid) => pids.push(pid),
            Err(e) => {
                SHARED.stop.store(true, Ordering::Relaxed);
                for pid in pids {
                    let _ = crate::process::wait_info(pid);
                }
                return Err(ScenarioError::Setup(format!("spawning {program} on cpu{cpu}: {e:?}")));
            }
        }
    }
    let mut out = Vec::new();
    for pid in pids {
        out.push(crate::process::wait_info(pid).map_err(|e| ScenarioError::Setup(format!("waiting for worker {pid}: {e:?}")))?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn summary(
    name: &str,
    config: &str,
    cpus: usize,
    o: &Outcome,
    expected: Expected,
    v: &Result<(), &'static str>,
    done_label: &str,
    refused: &[(&'static str, u64)],
) {
    log::info!(
        "+-- {name}, config {config}, {cpus} CPUs, {} ms, explore {}{}",
        o.elapsed_ms,
        if o.explore { "auto" } else { "off" },
        o.catch_ms.map_or(String::new(), |ms| format!(", first corruption at {ms} ms"))
    );
    log::info!("| worker iterations {:>10} | DMA reads checked {:>8} | user writes checked {:>8}", o.iterations, o.dma_checks, o.write_checks);
    log::info!("| overlaps          {:>10} | GUP-fast bail-outs {:>7} | slow-path pages     {:>8}", o.overlaps, o.gup_bailouts, o.slow_falls);
    let mut others = String::new();
    for (k, n) in refused {
        others.push_str(&format!(" {k} {n:>6}"));
    }
    log::info!("| {done_label:<17} {:>10} | refused: pinned {:>10} |{others}", o.writes, o.refused_pinned);
    log::info!("| corruptions       {:>10} | DMA lost {:>17} | user writes lost    {:>8}", o.corruptions, o.corrupt_dma, o.corrupt_write);
    log::info!("| uaf               {:>10} | invariant errors {:>9} |", o.uaf, o.invariant_errors);
    match v {
        _ if expected == Expected::Unlisted => log::info!("+-- expected none (not in the table): verdict none"),
        Ok(()) => log::info!("+-- expected {}: verdict ok", expected.as_str()),
        Err(why) => log::info!("+-- expected {}: verdict FAIL ({why})", expected.as_str()),
    }
}
