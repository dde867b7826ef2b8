//! The main job (`cargo run`, `./run-qemu.sh` with no options): after boot,
//! every row of every scenario's table, one after the other in the same boot
//! (the switches are set between runs: every protocol switch, the TLB modes
//! included, is an atomic read at its decision point, so none needs a
//! reboot), under the default exploration policy with a short bound; then
//! one table (expected, seen, corruptions by kind, time to the first
//! corruption, overlaps) and one verdict line, on serial and on the screen.
//!
//! Bounds: a safe row ends once it has shown [`ENOUGH_OVERLAPS`] overlaps
//! (the evidence its verdict rests on, with the writer's work), or at its
//! bound (its verdict then needs one overlap, as any safe run's); a caught
//! row ends at its first corruption or use after free, or at its bound.
//! Each scenario may set its bounds ([`Writer::job_secs`]). `secs=`
//! overrides every bound and makes safe rows run their whole bound (the
//! race matrix: time without a corruption is what a safe row measures
//! there); `seed=` and `explore=` apply to every row.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::ScenarioError;
use super::expected::{Expected, Row};
use super::harness::{self, Report, Writer};
use crate::race::{self, RaceConfig};
use crate::tlb::{FlushMode, PtFree, TlbConfig};

/// What the main kernel does when no scenario, program or benchmark is
/// asked for (`job=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// The main job: every row of every scenario (default).
    Races,
    /// Boot only.
    None,
    /// Print every scenario's rows, one `RESULT row` line each (the host's
    /// race matrix reads them: the kernel's tables are the one source).
    List,
    /// Print every boot key with its values, default and help
    /// (`boot_options::print_keys`: the tables the parser checks keys
    /// against).
    Keys,
}

/// Prints `RESULT row index=I scenario=NAME config=CONFIG expected=...` for
/// every row of every scenario in `writers` (`index`: what `job.rows=`
/// takes).
pub(crate) fn list(writers: &[&mut dyn Writer]) {
    let mut index = 0;
    for w in writers {
        for row in w.table() {
            crate::println!(
                "RESULT row index={index} scenario={} config={} expected={}",
                w.name(),
                row.config,
                row.expected.as_str()
            );
            index += 1;
        }
    }
}

/// Default bound of a safe row, seconds.
pub(crate) const SAFE_SECS: u64 = 6;
/// A safe row of the main job ends once this many overlaps were counted
/// (2-4 s as a rule on 4 vCPUs here; a row that shows fewer runs its bound).
pub(crate) const ENOUGH_OVERLAPS: u64 = 3;
/// Default bound of a caught row, seconds (it ends at its first corruption,
/// within a few seconds as a rule: the bound only caps a row that fails).
pub(crate) const CAUGHT_SECS: u64 = 20;

/// The boot's switches, to restore after the job.
struct Saved {
    race: RaceConfig,
    tlb: TlbConfig,
}

/// Installs the switches of `race` and `tlb` (between runs: no writer or
/// walker is running).
fn install(race_cfg: &RaceConfig, tlb: TlbConfig) {
    crate::tlb::init(tlb);
    race::init(race_cfg);
    crate::gup::set_controls(crate::gup::Controls::of(race_cfg));
}

/// The configuration of a row: the boot's run parameters (seed,
/// exploration, widenings, tunables) with every protocol switch at its
/// default, then the row's `key:value` parts applied (the TLB's by hand, the
/// others by `race::config::apply`, the boot options' own parser).
pub(crate) fn row_config(row: &Row, boot: &RaceConfig, boot_tlb: TlbConfig) -> Result<(RaceConfig, TlbConfig), String> {
    // Every protocol switch at its default (new switches too); the run's
    // parameters from the boot.
    let mut c = RaceConfig {
        widen: boot.widen,
        explore: boot.explore,
        secs: boot.secs,
        iterations: boot.iterations,
        seed: boot.seed,
        cpus: boot.cpus,
        prep_us: boot.prep_us,
        ksm_pages_to_scan: boot.ksm_pages_to_scan,
        ksm_sleep_us: boot.ksm_sleep_us,
        ..RaceConfig::DEFAULT
    };
    let mut t = TlbConfig { mode: FlushMode::Ipi, nowait: false, ptfree: PtFree::Ipi, ..boot_tlb };
    if row.config != "default" {
        for part in row.config.split(',') {
            let (k, v) = part.split_once(':').ok_or_else(|| format!("row {}: '{part}' is not key:value", row.config))?;
            match (k, v) {
                ("tlb", "ipi") => t.mode = FlushMode::Ipi,
                ("tlb", "nmi") => t.mode = FlushMode::Nmi,
                ("tlb.nowait", v) => t.nowait = v == "on",
                ("ptfree", "ipi") => t.ptfree = PtFree::Ipi,
                ("ptfree", "rcu") => t.ptfree = PtFree::Rcu,
                _ => match race::config::apply(&mut c, k, v) {
                    Some(Ok(())) => {}
                    _ => return Err(format!("row {}: cannot apply '{part}'", row.config)),
                },
            }
        }
    }
    Ok((c, t))
}

/// One row's place in the job's table.
struct Line {
    scenario: &'static str,
    report: Result<Report, String>,
}

/// Runs every row of every scenario in `writers` (only those of `only`,
/// `job.rows=`, when given: bit `i` is row `i` in [`list`]'s order); prints
/// the table and the verdict; `Ok(true)` when every row met its
/// expectation, `Err` when `only` names a row the tables do not have.
pub(crate) fn run(boot: &RaceConfig, writers: &mut [&mut dyn Writer], only: Option<u128>) -> Result<bool, ScenarioError> {
    let boot_tlb = crate::tlb::config();
    let saved = Saved { race: *boot, tlb: boot_tlb };
    let online = crate::smp::online_count();
    let total: usize = writers.iter().map(|w| w.table().len()).sum();
    let all = if total >= 128 { u128::MAX } else { (1u128 << total) - 1 };
    let only = only.unwrap_or(all);
    if only & !all != 0 {
        return Err(ScenarioError::Option(format!(
            "job.rows: row {} does not exist: the tables have {total} rows (0..={}, job=list numbers them)",
            (only & !all).trailing_zeros(),
            total.saturating_sub(1)
        )));
    }
    let rows = only.count_ones();
    let mut bounds = String::new();
    for w in writers.iter() {
        let (safe, caught) = w.job_secs();
        let safe = match boot.secs {
            Some(s) => format!("{s} s"),
            None => format!("until {ENOUGH_OVERLAPS} overlaps, up to {safe} s"),
        };
        bounds.push_str(&format!("; {}: safe rows {safe}, caught rows up to {} s each", w.name(), boot.secs.unwrap_or(caught)));
    }
    log::info!(
        "main job: {rows} rows of {} scenario(s) on {online} CPUs, seed {}, explore {}{bounds}",
        writers.len(),
        boot.seed,
        if boot.exploring() { "auto" } else { "off" },
    );
    let mut lines = Vec::new();
    let mut index = 0;
    for w in writers.iter_mut() {
        for row in w.table() {
            index += 1;
            if only & (1u128 << (index - 1)) == 0 {
                continue;
            }
            let report = row_config(row, boot, boot_tlb).and_then(|(mut c, t)| {
                let (safe_secs, caught_secs) = w.job_secs();
                let secs = if row.expected == Expected::Caught { caught_secs } else { safe_secs };
                c.secs = Some(boot.secs.unwrap_or(secs));
                install(&c, t);
                let evidence = if boot.secs.is_none() { Some(ENOUGH_OVERLAPS) } else { None };
                harness::run_report(&c, &mut **w, evidence).map_err(|e: ScenarioError| format!("{e}"))
            });
            lines.push(Line { scenario: w.name(), report });
        }
    }
    install(&saved.race, saved.tlb);
    Ok(print_table(&lines, online, boot))
}

/// What a run showed: `caught` (a corruption or uaf), `safe` (none, with
/// overlaps and the writer's work), or `untested` (neither: nothing shown).
fn seen(r: &Report) -> &'static str {
    let o = &r.outcome;
    if o.corruptions + o.uaf > 0 {
        "caught"
    } else if o.overlaps > 0 && o.writes > 0 && o.invariant_errors == 0 {
        "safe"
    } else {
        "untested"
    }
}

fn print_table(lines: &[Line], cpus: usize, boot: &RaceConfig) -> bool {
    let mut out = String::new();
    out.push_str(&format!(
        "\nMAIN JOB: the seed's protocol held and broken ({cpus} CPUs, seed {}, explore {})\n",
        boot.seed,
        if boot.exploring() { "auto" } else { "off" }
    ));
    // Columns as wide as their longest entry.
    let sw = lines.iter().map(|l| l.scenario.len()).max().unwrap_or(0).max("scenario".len());
    let cw = lines.iter().filter_map(|l| l.report.as_ref().ok()).map(|r| r.config.len()).max().unwrap_or(0).max("configuration".len());
    out.push_str(&format!(
        "{:<sw$} {:<cw$} {:<8} {:<8} {:>11} {:>5} {:>9} {:>8} {:>7} {}\n",
        "scenario", "configuration", "expected", "seen", "DMA/write", "uaf", "catch ms", "overlaps", "writes", "verdict"
    ));
    let (mut ok, mut failed) = (0, 0);
    let mut failures = String::new();
    for l in lines {
        match &l.report {
            Ok(r) => {
                let o = &r.outcome;
                let good = r.verdict.is_ok();
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                    failures.push_str(&format!(" {}/{}", l.scenario, r.config));
                }
                out.push_str(&format!(
                    "{:<sw$} {:<cw$} {:<8} {:<8} {:>11} {:>5} {:>9} {:>8} {:>7} {}\n",
                    l.scenario,
                    r.config,
                    r.expected.as_str(),
                    seen(r),
                    format!("{}/{}", o.corrupt_dma, o.corrupt_write),
                    o.uaf,
                    o.catch_ms.map_or(String::from("-"), |ms| format!("{ms}")),
                    o.overlaps,
                    o.writes,
                    match (r.verdict, r.expected) {
                        (_, Expected::Unlisted) => "none",
                        (Ok(()), _) => "ok",
                        (Err(_), _) => "FAIL",
                    }
                ));
            }
            Err(e) => {
                failed += 1;
                failures.push_str(&format!(" {}", l.scenario));
                out.push_str(&format!("{:<sw$} error: {e}\n", l.scenario));
            }
        }
    }
    let pass = failed == 0 && ok > 0;
    if pass {
        out.push_str(&format!(
            "VERDICT: ok: all {ok} rows as controls.md expects: every defence held where it is in place, every broken one was caught\n"
        ));
    } else {
        out.push_str(&format!("VERDICT: FAIL: {failed} of {} rows not as expected:{failures}\n", ok + failed));
    }
    crate::console::print_everywhere(format_args!("{out}"));
    crate::println!("RESULT job rows={} ok={ok} failed={failed} verdict={}", ok + failed, if pass { "ok" } else { "FAIL" });
    pass
}
