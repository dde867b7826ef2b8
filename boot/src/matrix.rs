//! The race matrix (`testbed matrix`): every row of every scenario's table
//! (the kernel lists them: `job=list`), for the CPU counts, seeds and
//! exploration modes asked. One QEMU boot per (CPU count, exploration,
//! seed) runs all the selected rows one after the other, as the main job
//! does (`job.rows=`: the kernel sets the switches between rows), each row
//! bounded by `secs=`; `--boot-per-row` boots once per run instead (each
//! run on a fresh kernel, for a reproduction whose row must not follow
//! another). Every boot has a wall-clock bound (a hung or crashed boot
//! gives each row it did not finish a run with the reason, never a hung
//! matrix). Shows progress while it runs (indicatif), prints one table
//! (comfy-table), and writes the runs as CSV, the summary as JSON, and an
//! SVG plot of the time to the first corruption per control, exploration on
//! and off side by side (plotters).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cli::{KernelChoice, RunOptions, UsageError, usage};
use crate::qemu::Verdict;

/// `testbed matrix` options.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixOptions {
    /// CPU counts (`--smp 2,3,4`).
    pub smp: Vec<u32>,
    /// Seeds per row and CPU count (`--seeds N`: seeds `first_seed..first_seed+N`).
    pub seeds: u32,
    /// The first seed (`--first-seed`, default 1000: not the tests' seeds).
    pub first_seed: u64,
    /// Each run's bound in seconds (`--secs`); a caught run ends at its first
    /// corruption.
    pub secs: u64,
    /// Only this scenario (`--scenario NAME`).
    pub scenario: Option<String>,
    /// Only these configurations (`--config A;B`, each as in the RESULT
    /// line, e.g. `gup.recheck:off,tlb:nmi`; the option may repeat).
    pub configs: Vec<String>,
    /// Only rows expecting this (`--rows caught|safe|all`).
    pub rows: RowFilter,
    /// Exploration modes (`--explore auto,off`): `true` = auto.
    pub explore: Vec<bool>,
    /// Where the CSV, JSON and SVG go (`--out DIR`).
    pub out: Option<PathBuf>,
    /// Memory per run, MiB (`--mem`).
    pub mem_mib: u32,
    /// The kernel ELF to boot (`--kernel PATH`; default the main kernel of
    /// this build): a saved kernel measures a before/after pair.
    pub kernel: Option<PathBuf>,
    /// One boot per run (`--boot-per-row`) instead of one per (CPU count,
    /// exploration, seed).
    pub boot_per_row: bool,
}

/// Which rows of the tables run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFilter {
    All,
    Caught,
    Safe,
}

impl Default for MatrixOptions {
    fn default() -> Self {
        MatrixOptions {
            smp: vec![2],
            seeds: 3,
            first_seed: 1000,
            secs: 10,
            scenario: None,
            configs: Vec::new(),
            rows: RowFilter::All,
            explore: vec![true],
            out: None,
            mem_mib: 256,
            kernel: None,
            boot_per_row: false,
        }
    }
}

/// The options of `matrix` that take a value.
const OPTIONS: &[&str] = &["--smp", "--seeds", "--first-seed", "--secs", "--mem", "--scenario", "--config", "--rows", "--explore", "--out", "--kernel"];
/// The options of `matrix` without a value.
const FLAGS: &[&str] = &["--boot-per-row"];

/// Parses the words after `matrix`.
pub fn parse(args: &[String]) -> Result<MatrixOptions, UsageError> {
    let mut o = MatrixOptions::default();
    for (name, v) in crate::cli::subcommand_options("matrix", OPTIONS, FLAGS, args)? {
        match name {
            "--boot-per-row" => o.boot_per_row = true,
            "--smp" => {
                o.smp = v
                    .split(',')
                    .map(|s| match s.parse::<u32>() {
                        Ok(n) if (2..=64).contains(&n) => Ok(n),
                        _ => usage(format!("matrix: --smp: '{s}' is not a CPU count in 2..=64 (a race needs 2 CPUs)")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seeds" => {
                o.seeds = match v.parse() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return usage(format!("matrix: --seeds: '{v}' is not a count in 1..=1000")),
                }
            }
            "--first-seed" => {
                o.first_seed = v.parse().map_err(|_| UsageError(format!("matrix: --first-seed: '{v}' is not a number")))?;
            }
            "--secs" => {
                o.secs = match v.parse() {
                    Ok(n) if (1..=3600).contains(&n) => n,
                    _ => return usage(format!("matrix: --secs: '{v}' is not in 1..=3600")),
                }
            }
            "--mem" => o.mem_mib = crate::cli::parse_mem(&v)?,
            "--scenario" => o.scenario = Some(v),
            "--config" => o.configs.extend(v.split(';').filter(|c| !c.is_empty()).map(str::to_string)),
            "--rows" => {
                o.rows = match v.as_str() {
                    "all" => RowFilter::All,
                    "caught" => RowFilter::Caught,
                    "safe" => RowFilter::Safe,
                    _ => return usage(format!("matrix: --rows: '{v}' is not one of all, caught, safe")),
                }
            }
            "--explore" => {
                o.explore = v
                    .split(',')
                    .map(|s| match s {
                        "auto" => Ok(true),
                        "off" => Ok(false),
                        _ => usage(format!("matrix: --explore: '{s}' is not auto or off")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--out" => o.out = Some(PathBuf::from(v)),
            "--kernel" => {
                let p = PathBuf::from(v);
                if !p.is_file() {
                    return usage(format!("matrix: --kernel: {} is not a file", p.display()));
                }
                o.kernel = Some(p);
            }
            _ => unreachable!("option table and match disagree on {name}"),
        }
    }
    Ok(o)
}

/// One row of a scenario's table, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Its place in the kernel's list (`job.rows=` takes it).
    pub index: usize,
    pub scenario: String,
    pub config: String,
    pub expected: String,
}

impl Row {
    /// The boot options of the row's switches (`gup.recheck:off,tlb:nmi` ->
    /// `gup.recheck=off tlb=nmi`; `default` -> none).
    pub fn switches(&self) -> Vec<String> {
        if self.config == "default" {
            return Vec::new();
        }
        self.config.split(',').map(|p| p.replacen(':', "=", 1)).collect()
    }
}

/// Parses the kernel's `RESULT row scenario=... config=... expected=...` lines.
pub fn parse_rows(results: &[String]) -> Vec<Row> {
    results
        .iter()
        .filter(|l| l.starts_with("RESULT row "))
        .enumerate()
        .filter_map(|(i, l)| {
            let f = |k: &str| crate::testkit::result_field(l, k).map(str::to_string);
            Some(Row {
                index: crate::testkit::result_value(l, "index").unwrap_or(i),
                scenario: f("scenario")?,
                config: f("config")?,
                expected: f("expected")?,
            })
        })
        .collect()
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub scenario: String,
    pub config: String,
    pub expected: String,
    pub cpus: u32,
    pub seed: u64,
    pub explore: bool,
    /// The kernel's verdict (`ok`, `FAIL`, `none`), or why there is none
    /// (`timeout`, `crash`, `no RESULT`, ...).
    pub verdict: String,
    pub iterations: u64,
    pub overlaps: u64,
    pub corruptions: u64,
    pub dma_lost: u64,
    pub write_lost: u64,
    pub uaf: u64,
    pub invariant_errors: u64,
    pub elapsed_ms: u64,
    /// Time to the first corruption, if caught by one.
    pub catch_ms: Option<u64>,
}

impl Run {
    /// Caught: a corruption or a use after free.
    pub fn caught(&self) -> bool {
        self.corruptions + self.uaf > 0
    }

    /// Whether the run met the row's expectation.
    pub fn ok(&self) -> bool {
        self.verdict == "ok"
    }
}

/// Figures of one (row, CPU count, exploration) cell over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub scenario: String,
    pub config: String,
    pub expected: String,
    pub cpus: u32,
    pub explore: bool,
    pub runs: usize,
    /// Runs whose verdict was ok.
    pub ok: usize,
    /// Runs caught (a corruption or uaf).
    pub caught: usize,
    pub median_catch_ms: Option<u64>,
    pub p90_catch_ms: Option<u64>,
    pub overlaps_per_s: f64,
    pub iterations_per_s: f64,
    /// Corruption kinds seen: `dma`, `write`, `uaf`.
    pub kinds: Vec<String>,
    /// Runs that ended without a RESULT line, with their reasons.
    pub failures: Vec<String>,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// Summarises runs into cells (in first-seen order).
pub fn summarise(runs: &[Run]) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    for r in runs {
        let i = match cells
            .iter()
            .position(|c| c.scenario == r.scenario && c.config == r.config && c.cpus == r.cpus && c.explore == r.explore)
        {
            Some(i) => i,
            None => {
                cells.push(Cell {
                    scenario: r.scenario.clone(),
                    config: r.config.clone(),
                    expected: r.expected.clone(),
                    cpus: r.cpus,
                    explore: r.explore,
                    runs: 0,
                    ok: 0,
                    caught: 0,
                    median_catch_ms: None,
                    p90_catch_ms: None,
                    overlaps_per_s: 0.0,
                    iterations_per_s: 0.0,
                    kinds: Vec::new(),
                    failures: Vec::new(),
                });
                cells.len() - 1
            }
        };
        let c = &mut cells[i];
        c.runs += 1;
        c.ok += usize::from(r.ok());
        c.caught += usize::from(r.caught());
        for (k, n) in [("dma", r.dma_lost), ("write", r.write_lost), ("uaf", r.uaf)] {
            if n > 0 && !c.kinds.iter().any(|x| x == k) {
                c.kinds.push(k.to_string());
            }
        }
        if !matches!(r.verdict.as_str(), "ok" | "FAIL" | "none") {
            c.failures.push(format!("seed {}: {}", r.seed, r.verdict));
        }
    }
    for c in &mut cells {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.scenario == c.scenario && r.config == c.config && r.cpus == c.cpus && r.explore == c.explore)
            .collect();
        let mut catches: Vec<u64> = mine.iter().filter(|r| r.caught()).map(|r| r.catch_ms.unwrap_or(r.elapsed_ms)).collect();
        catches.sort_unstable();
        c.median_catch_ms = percentile(&catches, 50.0);
        c.p90_catch_ms = percentile(&catches, 90.0);
        let secs: f64 = mine.iter().map(|r| r.elapsed_ms as f64 / 1000.0).sum();
        if secs > 0.0 {
            c.overlaps_per_s = mine.iter().map(|r| r.overlaps as f64).sum::<f64>() / secs;
            c.iterations_per_s = mine.iter().map(|r| r.iterations as f64).sum::<f64>() / secs;
        }
    }
    cells
}

fn ms(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v}"))
}

/// The summary table.
pub fn table(cells: &[Cell]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::ASCII_MARKDOWN);
    t.set_header(vec![
        "scenario", "configuration", "cpus", "explore", "expected", "as expected", "caught", "median catch ms",
        "p90 catch ms", "overlaps/s", "iterations/s", "kinds", "no result",
    ]);
    for c in cells {
        t.add_row(vec![
            c.scenario.clone(),
            c.config.clone(),
            c.cpus.to_string(),
            if c.explore { "auto" } else { "off" }.to_string(),
            c.expected.clone(),
            format!("{}/{}", c.ok, c.runs),
            format!("{}/{}", c.caught, c.runs),
            ms(c.median_catch_ms),
            ms(c.p90_catch_ms),
            format!("{:.1}", c.overlaps_per_s),
            format!("{:.1}", c.iterations_per_s),
            c.kinds.join(","),
            c.failures.join("; "),
        ]);
    }
    t
}

/// The runs as CSV (one line per run).
pub fn csv(runs: &[Run]) -> String {
    let mut s = String::from(
        "scenario,config,expected,cpus,seed,explore,verdict,iterations,overlaps,corruptions,dma_lost,write_lost,uaf,invariant_errors,elapsed_ms,catch_ms\n",
    );
    for r in runs {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.scenario,
            r.config.replace(',', ";"),
            r.expected,
            r.cpus,
            r.seed,
            if r.explore { "auto" } else { "off" },
            r.verdict.replace(',', ";"),
            r.iterations,
            r.overlaps,
            r.corruptions,
            r.dma_lost,
            r.write_lost,
            r.uaf,
            r.invariant_errors,
            r.elapsed_ms,
            r.catch_ms.map_or(String::new(), |v| v.to_string()),
        );
    }
    s
}

/// Draws the time to the first corruption of every caught-row run, one
/// column per (control, CPU count), exploration on (blue) and off (red)
/// side by side; runs not caught within the bound are drawn as crosses at
/// the bound.
pub fn plot(runs: &[Run], secs: u64, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let mut columns: Vec<(String, u32)> = Vec::new();
    for r in runs.iter().filter(|r| r.expected == "caught") {
        if !columns.iter().any(|(c, n)| *c == r.config && *n == r.cpus) {
            columns.push((r.config.clone(), r.cpus));
        }
    }
    let width = 200 + 140 * columns.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let top = (secs * 1000).max(10) as f64 * 1.5;
    let labels = columns.clone();
    let mut chart = ChartBuilder::on(&root)
        .caption("time to the first corruption per control (blue: explore=auto, red: explore=off, x: not caught)", ("sans-serif", 16))
        .margin(15)
        .x_label_area_size(150)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(columns.len().max(1) as f64 - 0.5), (1f64..top).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(columns.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels.get(i as usize).map_or(String::new(), |(c, n)| format!("{c} ({n} CPUs)"))
        })
        .x_label_style(("sans-serif", 11).into_font().transform(FontTransform::Rotate90))
        .y_desc("ms (log)")
        .draw()
        .map_err(|x| e(&x))?;
    for (explore, colour, dx) in [(true, BLUE, -0.15), (false, RED, 0.15)] {
        let mut caught = Vec::new();
        let mut missed = Vec::new();
        for r in runs.iter().filter(|r| r.expected == "caught" && r.explore == explore) {
            let Some(i) = columns.iter().position(|(c, n)| *c == r.config && *n == r.cpus) else { continue };
            let x = i as f64 + dx;
            if r.caught() {
                caught.push((x, r.catch_ms.unwrap_or(r.elapsed_ms).max(1) as f64));
            } else {
                missed.push((x, (secs * 1000).max(1) as f64));
            }
        }
        chart
            .draw_series(caught.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(|x| e(&x))?;
        chart.draw_series(missed.into_iter().map(|p| Cross::new(p, 5, colour.stroke_width(2)))).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

fn field_u64(line: &str, key: &str) -> u64 {
    crate::testkit::result_value(line, key).unwrap_or(0)
}

/// The kernel a matrix boots, and its memory.
#[derive(Debug, Clone, Default)]
pub struct Kernel {
    /// The ELF (`None`: the main kernel of this build).
    pub path: Option<PathBuf>,
    /// Memory per run, MiB.
    pub mem_mib: u32,
}

/// One boot of the kernel with `options`; `Err(reason)` when QEMU
/// could not even start.
fn boot(smp: u32, k: &Kernel, options: Vec<String>, timeout_s: u64) -> Result<crate::RunReport, String> {
    let opts = RunOptions {
        smp,
        mem_mib: k.mem_mib,
        kernel: k.path.clone().map_or(KernelChoice::Main, KernelChoice::Path),
        timeout: Some(Duration::from_secs(timeout_s)),
        boot_options: options,
        ..Default::default()
    };
    crate::run(&opts, false).map_err(|e| e.message)
}

/// The rows of every scenario's table, from the kernel (`job=list`).
pub fn list_rows(k: &Kernel) -> Result<Vec<Row>, String> {
    let r = boot(2, k, vec!["job=list".to_string()], 120)?;
    let rows = parse_rows(&r.output.console.results);
    if r.exit_code() != 0 || rows.is_empty() {
        return Err(format!("the kernel did not list its scenarios' rows:\n{}", r.message()));
    }
    Ok(rows)
}

/// A run of `row` with no figures yet.
fn blank(row: &Row, cpus: u32, seed: u64, explore: bool) -> Run {
    Run {
        scenario: row.scenario.clone(),
        config: row.config.clone(),
        expected: row.expected.clone(),
        cpus,
        seed,
        explore,
        verdict: String::new(),
        iterations: 0,
        overlaps: 0,
        corruptions: 0,
        dma_lost: 0,
        write_lost: 0,
        uaf: 0,
        invariant_errors: 0,
        elapsed_ms: 0,
        catch_ms: None,
    }
}

/// The figures of a `RESULT scenario` line.
fn fill(run: &mut Run, line: &str) {
    run.verdict = crate::testkit::result_field(line, "verdict").unwrap_or("?").to_string();
    if run.config != crate::testkit::result_field(line, "config").unwrap_or("") {
        run.verdict = format!("kernel ran config {}", crate::testkit::result_field(line, "config").unwrap_or("?"));
    }
    run.iterations = field_u64(line, "iterations");
    run.overlaps = field_u64(line, "overlaps");
    run.corruptions = field_u64(line, "corruptions");
    run.dma_lost = field_u64(line, "dma_lost");
    run.write_lost = field_u64(line, "write_lost");
    run.uaf = field_u64(line, "uaf");
    run.invariant_errors = field_u64(line, "invariant_errors");
    run.elapsed_ms = field_u64(line, "elapsed_ms");
    run.catch_ms = crate::testkit::result_value(line, "catch_ms");
}

/// Why a boot ended without a row's RESULT line.
fn reason(report: &crate::RunReport) -> String {
    match report.verdict {
        Verdict::Timeout => format!("timeout ({} s bound)", report.timeout.map_or(0, |t| t.as_secs())),
        Verdict::Failed { fatal: true } => "crash".to_string(),
        Verdict::Usage => "usage error".to_string(),
        _ => format!("no RESULT line (exit {})", report.exit_code()),
    }
}

/// The wall-clock bound of a boot running `rows` rows of at most `secs`
/// each: the rows, each row's setup and teardown, and a slow boot.
pub fn boot_bound(rows: usize, secs: u64) -> u64 {
    120 + rows as u64 * (secs + 15)
}

/// Runs `rows` in one boot (`job.rows=`: the main job's machinery, the
/// switches set between rows); one [`Run`] per row whatever happens: a row
/// the boot did not finish gets the reason (timeout, crash) and the rows
/// after it "not run" with that reason.
pub fn run_rows(rows: &[&Row], cpus: u32, seed: u64, explore: bool, secs: u64, k: &Kernel) -> Vec<Run> {
    let indices: Vec<String> = rows.iter().map(|r| r.index.to_string()).collect();
    let options = vec![
        format!("job.rows={}", indices.join(",")),
        format!("secs={secs}"),
        format!("seed={seed}"),
        format!("explore={}", if explore { "auto" } else { "off" }),
    ];
    let mut runs: Vec<Run> = rows.iter().map(|r| blank(r, cpus, seed, explore)).collect();
    let report = match boot(cpus, k, options, boot_bound(rows.len(), secs)) {
        Ok(r) => r,
        Err(e) => {
            for run in &mut runs {
                run.verdict = format!("not run: {e}");
            }
            return runs;
        }
    };
    let lines: Vec<&str> =
        report.output.console.results.iter().map(String::as_str).filter(|l| l.starts_with("RESULT scenario name=")).collect();
    assign(rows, &mut runs, &lines, &reason(&report), report.exit_code());
    runs
}

/// Gives each run of `rows` (one boot's, in order) its `RESULT scenario`
/// line from `lines`, or a reason: `why` (how the boot ended) for the first
/// row after the last one reported, "not run" for the rows after that, and
/// "the job could not run the row" for a row skipped by a job that went on.
fn assign(rows: &[&Row], runs: &mut [Run], lines: &[&str], why: &str, exit: i32) {
    // Each row takes the next line of its scenario and configuration (a row
    // the job could not set up has none; the rows after it go on).
    let mut next = 0;
    let mut last_done = None;
    for (i, (row, run)) in rows.iter().zip(runs.iter_mut()).enumerate() {
        let mine = |l: &&str| {
            crate::testkit::result_field(l, "name") == Some(row.scenario.as_str())
                && crate::testkit::result_field(l, "config") == Some(row.config.as_str())
        };
        if let Some(p) = lines[next..].iter().position(mine) {
            fill(run, lines[next + p]);
            next += p + 1;
            last_done = Some(i);
        }
    }
    let first_missing = last_done.map_or(0, |i| i + 1);
    for (i, run) in runs.iter_mut().enumerate() {
        if !run.verdict.is_empty() {
            continue;
        }
        run.verdict = if i < first_missing {
            // The job went on after this row: it could not run it.
            format!("no RESULT line (the job could not run the row; exit {exit})")
        } else if i == first_missing {
            why.to_string()
        } else {
            format!("not run: {why} in row {}", rows[first_missing].config)
        };
    }
}

/// Runs one row in a boot of its own (`scenario=`); every way a run can end
/// gives a [`Run`].
pub fn run_one(row: &Row, cpus: u32, seed: u64, explore: bool, secs: u64, k: &Kernel) -> Run {
    let mut options = vec![
        format!("scenario={}", row.scenario),
        format!("secs={secs}"),
        format!("seed={seed}"),
        format!("explore={}", if explore { "auto" } else { "off" }),
    ];
    options.extend(row.switches());
    let mut run = blank(row, cpus, seed, explore);
    let report = match boot(cpus, k, options, boot_bound(1, secs)) {
        Ok(r) => r,
        Err(e) => {
            run.verdict = format!("not run: {e}");
            return run;
        }
    };
    let prefix = format!("RESULT scenario name={} ", row.scenario);
    match report.output.console.results.iter().find(|l| l.starts_with(&prefix)) {
        Some(line) => fill(&mut run, line),
        None => run.verdict = reason(&report),
    }
    run
}

/// What a matrix produced.
pub struct MatrixReport {
    pub runs: Vec<Run>,
    pub cells: Vec<Cell>,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
}

/// Runs the matrix; `progress`: draw a progress bar (on stderr).
pub fn run(o: &MatrixOptions, progress: bool) -> Result<MatrixReport, String> {
    let k = Kernel { path: o.kernel.clone(), mem_mib: o.mem_mib };
    let all = list_rows(&k)?;
    if let Some(s) = &o.scenario
        && !all.iter().any(|r| &r.scenario == s)
    {
        let mut names: Vec<&str> = all.iter().map(|r| r.scenario.as_str()).collect();
        names.dedup();
        return Err(format!("matrix: no scenario '{s}' (the kernel has: {})", names.join(", ")));
    }
    let rows: Vec<&Row> = all
        .iter()
        .filter(|r| o.scenario.as_ref().is_none_or(|s| &r.scenario == s))
        .filter(|r| o.configs.is_empty() || o.configs.contains(&r.config))
        .filter(|r| match o.rows {
            RowFilter::All => true,
            RowFilter::Caught => r.expected == "caught",
            RowFilter::Safe => r.expected == "safe",
        })
        .collect();
    if rows.is_empty() {
        return Err("matrix: no row of the kernel's tables matches the filters".to_string());
    }
    let total = rows.len() * o.smp.len() * o.explore.len() * o.seeds as usize;
    let bar = if progress { indicatif::ProgressBar::new(total as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} runs, eta {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut runs = Vec::new();
    let show = |r: &Run| {
        let line = format!(
            "{} {} cpus={} explore={} seed={}: {} (corruptions {}, uaf {}, overlaps {}, {} ms{})",
            r.scenario,
            r.config,
            r.cpus,
            if r.explore { "auto" } else { "off" },
            r.seed,
            r.verdict,
            r.corruptions,
            r.uaf,
            r.overlaps,
            r.elapsed_ms,
            r.catch_ms.map_or(String::new(), |c| format!(", first corruption at {c} ms")),
        );
        // Without a terminal the bar is hidden and drops its lines: print
        // them plainly (a log of the runs).
        if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            bar.println(line);
        } else {
            eprintln!("{line}");
        }
        bar.inc(1);
    };
    let explore_word = |e: bool| if e { "auto" } else { "off" };
    if o.boot_per_row {
        for row in &rows {
            for &cpus in &o.smp {
                for &explore in &o.explore {
                    for i in 0..u64::from(o.seeds) {
                        let seed = o.first_seed + i;
                        bar.set_message(format!(
                            "{} {} cpus={cpus} explore={} seed={seed}",
                            row.scenario,
                            row.config,
                            explore_word(explore)
                        ));
                        let r = run_one(row, cpus, seed, explore, o.secs, &k);
                        show(&r);
                        runs.push(r);
                    }
                }
            }
        }
    } else {
        for &cpus in &o.smp {
            for &explore in &o.explore {
                for i in 0..u64::from(o.seeds) {
                    let seed = o.first_seed + i;
                    bar.set_message(format!("{} rows, cpus={cpus} explore={} seed={seed}", rows.len(), explore_word(explore)));
                    for r in run_rows(&rows, cpus, seed, explore, o.secs, &k) {
                        show(&r);
                        runs.push(r);
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    let cells = summarise(&runs);
    let out = o.out.clone().unwrap_or_else(|| crate::default_testbed_dir().join("matrix"));
    std::fs::create_dir_all(&out).map_err(|e| format!("matrix: creating {}: {e}", out.display()))?;
    let (csv_path, json_path, svg_path) = (out.join("runs.csv"), out.join("summary.json"), out.join("time-to-catch.svg"));
    std::fs::write(&csv_path, csv(&runs)).map_err(|e| format!("matrix: {}: {e}", csv_path.display()))?;
    let json = serde_json::json!({ "options": format!("{o:?}"), "cells": cells, "runs": runs });
    std::fs::write(&json_path, serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?)
        .map_err(|e| format!("matrix: {}: {e}", json_path.display()))?;
    plot(&runs, o.secs, &svg_path)?;
    Ok(MatrixReport { runs, cells, csv: csv_path, json: json_path, svg: svg_path })
}

/// `testbed matrix ...`: runs, prints the table and where the files are.
/// Exit status 0 when every run met its row's expectation, 1 otherwise, 2
/// for a usage error.
pub fn main(o: &MatrixOptions) -> i32 {
    match run(o, true) {
        Ok(m) => {
            println!("{}", table(&m.cells));
            let bad = m.runs.iter().filter(|r| !r.ok()).count();
            println!(
                "{} runs, {} as expected, {bad} not; runs: {}; summary: {}; plot: {}",
                m.runs.len(),
                m.runs.len() - bad,
                m.csv.display(),
                m.json.display(),
                m.svg.display()
            );
            i32::from(bad > 0)
        }
        Err(e) => {
            eprintln!("testbed: {e}");
            if e.starts_with("matrix:") { 2 } else { 1 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_reject() {
        let o = parse(&["--smp", "2,3,4", "--seeds", "5", "--secs=3", "--explore", "auto,off", "--scenario", "ksm-vs-gupfast"]
            .map(String::from))
        .unwrap();
        assert_eq!(o.smp, vec![2, 3, 4]);
        assert_eq!(o.seeds, 5);
        assert_eq!(o.secs, 3);
        assert_eq!(o.explore, vec![true, false]);
        assert_eq!(o.scenario.as_deref(), Some("ksm-vs-gupfast"));
        assert!(!o.boot_per_row);
        let o = parse(&["--boot-per-row", "--config", "gup.recheck:off,tlb:nmi;ksm.no_flush:on", "--config=default", "--kernel", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")].map(String::from));
        let o = o.unwrap();
        assert_eq!(o.configs, vec!["gup.recheck:off,tlb:nmi", "ksm.no_flush:on", "default"]);
        assert!(o.kernel.is_some() && o.boot_per_row);
        for bad in [
            &["--smp", "1"][..],
            &["--seeds", "0"],
            &["--explore", "maybe"],
            &["--rows", "some"],
            &["--bogus"],
            &["--secs"],
            &["--kernel", "/no/such/kernel"],
        ] {
            assert!(parse(&bad.iter().map(|s| s.to_string()).collect::<Vec<_>>()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_and_switches() {
        let rows = parse_rows(&[
            "RESULT row index=0 scenario=ksm-vs-gupfast config=default expected=safe".to_string(),
            "RESULT row index=1 scenario=ksm-vs-gupfast config=gup.recheck:off,tlb:nmi expected=caught".to_string(),
            "RESULT scenario name=x".to_string(),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].index, rows[1].index), (0, 1));
        assert!(rows[0].switches().is_empty());
        assert_eq!(rows[1].switches(), vec!["gup.recheck=off", "tlb=nmi"]);
    }

    #[test]
    fn one_boot_gives_every_row_a_run_or_a_reason() {
        let row = |i: usize, c: &str| Row { index: i, scenario: "s".into(), config: c.into(), expected: "caught".into() };
        let rows = [row(0, "a"), row(3, "b"), row(4, "c"), row(7, "d"), row(9, "e")];
        let rows: Vec<&Row> = rows.iter().collect();
        let mut runs: Vec<Run> = rows.iter().map(|r| blank(r, 2, 5, true)).collect();
        let lines = [
            "RESULT scenario name=s config=a verdict=ok corruptions=1 catch_ms=12 elapsed_ms=40",
            "RESULT scenario name=other config=b verdict=ok",
            "RESULT scenario name=s config=c verdict=FAIL corruptions=0 elapsed_ms=10000",
        ];
        assign(&rows, &mut runs, &lines, "timeout (520 s bound)", 3);
        assert_eq!((runs[0].verdict.as_str(), runs[0].catch_ms, runs[0].corruptions), ("ok", Some(12), 1));
        assert!(runs[1].verdict.contains("could not run the row"), "{}", runs[1].verdict);
        assert_eq!((runs[2].verdict.as_str(), runs[2].elapsed_ms), ("FAIL", 10000));
        assert_eq!(runs[3].verdict, "timeout (520 s bound)");
        assert_eq!(runs[4].verdict, "not run: timeout (520 s bound) in row d");
        let cells = summarise(&runs);
        assert_eq!(cells.iter().map(|c| c.failures.len()).sum::<usize>(), 3);
    }

    fn run(config: &str, seed: u64, explore: bool, corruptions: u64, catch: Option<u64>) -> Run {
        Run {
            scenario: "s".into(),
            config: config.into(),
            expected: "caught".into(),
            cpus: 2,
            seed,
            explore,
            verdict: if corruptions > 0 { "ok" } else { "FAIL" }.into(),
            iterations: 100,
            overlaps: 10,
            corruptions,
            dma_lost: corruptions,
            write_lost: 0,
            uaf: 0,
            invariant_errors: 0,
            elapsed_ms: 1000,
            catch_ms: catch,
        }
    }

    #[test]
    fn summary_counts_catches_and_percentiles() {
        let runs = vec![
            run("a", 1, true, 1, Some(100)),
            run("a", 2, true, 2, Some(300)),
            run("a", 3, true, 0, None),
            run("a", 1, false, 0, None),
        ];
        let cells = summarise(&runs);
        assert_eq!(cells.len(), 2);
        assert_eq!((cells[0].caught, cells[0].runs, cells[0].ok), (2, 3, 2));
        assert_eq!(cells[0].median_catch_ms, Some(100));
        assert_eq!(cells[0].p90_catch_ms, Some(300));
        assert_eq!(cells[0].kinds, vec!["dma"]);
        assert!((cells[0].overlaps_per_s - 10.0).abs() < 1e-9);
        assert_eq!(cells[1].caught, 0);
        assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90.0), Some(9));
        let t = table(&cells).to_string();
        assert!(t.contains("2/3") && t.contains("0/1"), "{t}");
        assert!(csv(&runs).lines().count() == 5);
        let dir = std::env::temp_dir().join(format!("testbed-matrix-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("t.svg");
        plot(&runs, 10, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.contains("<circle"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
