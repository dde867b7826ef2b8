//! `testbed compare`: our benchmarks and the Linux peer's on the same virtual
//! machine, in one go, side by side.
//!
//! 1. Ours: the main kernel with `bench=shootdown,gup,ksm,collapse` (QEMU
//!    flags of [`crate::qemu`], which match the peer's `qemu-common.sh`).
//! 2. Linux: the peer's `run.sh` (`../shared/peer/linux`, or `--peer DIR`)
//!    with the same `--smp`, `--accel` and `--mem`, its benches `shootdown
//!    gup_fast ksm_merge collapse`. Its pieces are installed through its
//!    `setup.sh` when its cache has none. If it cannot run, the reason is
//!    printed and ours is still reported.
//! 3. One table (rows keyed as `compare.sh` keys them, ours / Linux / ratio,
//!    [`table`]), `compare.csv`, `compare.json` (with the conditions: host,
//!    accelerator, CPUs, memory, load before and after each run, both QEMU
//!    command lines), and three SVG plots ([`plot`]) in `--out`.
//!
//! Every run has a wall-clock bound (`--timeout`, per run): ours through the
//! testbed's runner, the peer's through its own `--timeout` plus a kill of
//! its whole process group a little later. `--ours FILE` / `--linux FILE`
//! take recorded RESULT lines instead of running that side.

pub mod plot;
pub mod table;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{KernelChoice, RunOptions, UsageError, usage};
use crate::qemu::AccelChoice;
use table::{ResultLine, Row};

/// Our benchmarks run by `compare` (`bench=` list).
pub const OUR_BENCHES: &str = "shootdown,gup,ksm,collapse";
/// The peer's benchmarks run by `compare`.
pub const PEER_BENCHES: [&str; 4] = ["shootdown", "gup_fast", "ksm_merge", "collapse"];

/// `testbed compare` options.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    pub smp: u32,
    pub accel: AccelChoice,
    pub mem_mib: u32,
    /// Bound on each run (ours, the peer's), seconds.
    pub timeout_s: u64,
    /// Where the table, CSV, JSON, SVGs and raw results go.
    pub out: Option<PathBuf>,
    /// The peer's folder (run.sh, setup.sh).
    pub peer: Option<PathBuf>,
    /// Recorded RESULT lines of ours instead of a run.
    pub ours_file: Option<PathBuf>,
    /// Recorded RESULT lines of Linux instead of a run.
    pub linux_file: Option<PathBuf>,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            smp: 2,
            accel: AccelChoice::Tcg,
            mem_mib: 256,
            timeout_s: 900,
            out: None,
            peer: None,
            ours_file: None,
            linux_file: None,
        }
    }
}

/// The options of `compare`, each with a value.
const OPTIONS: &[&str] = &["--smp", "--accel", "--mem", "--timeout", "--out", "--peer", "--ours", "--linux"];

/// Parses the words after `compare`.
pub fn parse(args: &[String]) -> Result<CompareOptions, UsageError> {
    let mut o = CompareOptions::default();
    for (name, v) in crate::cli::subcommand_options("compare", OPTIONS, &[], args)? {
        match name {
            "--smp" => {
                o.smp = match v.parse() {
                    Ok(n) if (1..=64).contains(&n) => n,
                    _ => return usage(format!("compare: --smp: '{v}' is not a CPU count in 1..=64")),
                }
            }
            "--accel" => {
                o.accel = match v.as_str() {
                    "tcg" => AccelChoice::Tcg,
                    "kvm" => AccelChoice::Kvm,
                    _ => return usage(format!("compare: --accel: '{v}' is not tcg or kvm (both kernels need the same one)")),
                }
            }
            "--mem" => o.mem_mib = crate::cli::parse_mem(&v)?,
            "--timeout" => {
                o.timeout_s = match v.parse() {
                    Ok(n) if (10..=7200).contains(&n) => n,
                    _ => return usage(format!("compare: --timeout: '{v}' is not in 10..=7200 seconds")),
                }
            }
            "--out" => o.out = Some(PathBuf::from(v)),
            "--peer" => o.peer = Some(PathBuf::from(v)),
            "--ours" => o.ours_file = Some(PathBuf::from(v)),
            "--linux" => o.linux_file = Some(PathBuf::from(v)),
            _ => unreachable!("option table and match disagree on {name}"),
        }
    }
    Ok(o)
}

/// The peer's folder: `--peer`, `$PEER_DIR`, or `shared/peer/linux` next to
/// the repository (the worktree's parent).
pub fn peer_dir(o: &CompareOptions) -> PathBuf {
    if let Some(p) = &o.peer {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("PEER_DIR") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peer/linux")
}

/// One side's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// `ok`, or why there are no (or not all) figures.
    pub status: String,
    pub lines: Vec<ResultLine>,
    /// The QEMU command line (or the file the lines came from).
    pub command: String,
    pub loadavg_before: Option<f64>,
    pub loadavg_after: Option<f64>,
    pub wall_s: f64,
    /// The raw output kept in `--out`.
    pub raw: Option<PathBuf>,
}

impl Side {
    fn from_file(path: &Path) -> Result<Side, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("compare: {}: {e}", path.display()))?;
        let lines = table::parse_results(&text);
        let status = if lines.is_empty() { "no RESULT lines in the file".to_string() } else { "ok (recorded)".to_string() };
        Ok(Side { status, lines, command: format!("recorded: {}", path.display()), loadavg_before: None, loadavg_after: None, wall_s: 0.0, raw: Some(path.to_path_buf()) })
    }
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn run_ours(o: &CompareOptions, out: &Path) -> Side {
    let opts = RunOptions {
        smp: o.smp,
        mem_mib: o.mem_mib,
        accel: o.accel,
        kernel: KernelChoice::Main,
        timeout: Some(Duration::from_secs(o.timeout_s)),
        boot_options: vec![format!("bench={OUR_BENCHES}")],
        ..Default::default()
    };
    let cpu = if o.accel == AccelChoice::Kvm { "host" } else { "max" };
    let command = format!(
        "qemu-system-x86_64 -machine q35 -accel {} -cpu {cpu} -smp {} -m {} -serial stdio -display none -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -drive format=raw,file=<bios image> (bench={OUR_BENCHES})",
        if o.accel == AccelChoice::Kvm { "kvm" } else { "tcg" },
        o.smp,
        o.mem_mib
    );
    let before = loadavg();
    let start = Instant::now();
    let raw = out.join("ours.txt");
    let (status, lines) = match crate::run(&opts, false) {
        Ok(r) => {
            let _ = std::fs::write(&raw, r.console_text());
            let lines: Vec<ResultLine> = r.output.console.results.iter().filter_map(|l| ResultLine::parse(l)).collect();
            let status = if r.exit_code() == 0 { "ok".to_string() } else { format!("exit {}: {}", r.exit_code(), r.message().lines().next().unwrap_or("")) };
            (status, lines)
        }
        Err(e) => (format!("not run: {}", e.message), Vec::new()),
    };
    Side { status, lines, command, loadavg_before: before, loadavg_after: loadavg(), wall_s: start.elapsed().as_secs_f64(), raw: Some(raw) }
}

/// Runs `cmd` with its output in `log`, in its own process group, killed
/// (the whole group) after `limit`. Returns the exit status, or why none.
fn run_bounded(mut cmd: Command, log: &Path, limit: Duration) -> Result<Option<i32>, String> {
    use std::os::unix::process::CommandExt;
    let f = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s.code()),
            Ok(None) if start.elapsed() > limit => {
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
                let _ = child.wait();
                return Err(format!("killed after the wall-clock bound of {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Why the peer cannot run here, if it cannot (before trying).
fn peer_missing(dir: &Path) -> Option<String> {
    if !dir.join("run.sh").is_file() || !dir.join("setup.sh").is_file() {
        return Some(format!("no run.sh/setup.sh in {} (give the peer's folder with --peer DIR)", dir.display()));
    }
    None
}

fn run_peer(o: &CompareOptions, out: &Path) -> Side {
    let dir = peer_dir(o);
    let mut side = Side { status: String::new(), lines: Vec::new(), command: String::new(), loadavg_before: None, loadavg_after: None, wall_s: 0.0, raw: None };
    if let Some(why) = peer_missing(&dir) {
        side.status = format!("not run: {why}");
        return side;
    }
    let cache = PathBuf::from(std::env::var_os("PEER_CACHE").unwrap_or_else(|| "/tmp/peer-cache".into()));
    if !cache.join("peer.env").is_file() || !cache.join("initramfs.cpio.gz").is_file() {
        eprintln!("testbed: compare: the peer's pieces are missing in {}: running its setup.sh", cache.display());
        let log = out.join("peer-setup.log");
        let mut cmd = Command::new("bash");
        cmd.arg(dir.join("setup.sh")).env("PEER_CACHE", &cache);
        match run_bounded(cmd, &log, Duration::from_secs(1800)) {
            Ok(Some(0)) => {}
            other => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
                side.status = format!("not run: the peer's setup.sh failed ({other:?}): {last} (log {})", log.display());
                return side;
            }
        }
    }
    let accel = if o.accel == AccelChoice::Kvm { "kvm" } else { "tcg" };
    let raw = out.join("linux.txt");
    let mut cmd = Command::new("bash");
    cmd.arg(dir.join("run.sh"))
        .args(["--smp", &o.smp.to_string(), "--accel", accel, "--mem", &o.mem_mib.to_string()])
        .args(["--timeout", &o.timeout_s.to_string(), "--log", &out.join("linux-console.log").to_string_lossy()])
        .args(PEER_BENCHES)
        .env("PEER_CACHE", &cache);
    side.loadavg_before = loadavg();
    let start = Instant::now();
    // run.sh bounds QEMU by --timeout itself (plus a boot watchdog); this is
    // the bound on run.sh as a whole (a setup.sh re-run included).
    let res = run_bounded(cmd, &raw, Duration::from_secs(o.timeout_s + 300));
    side.wall_s = start.elapsed().as_secs_f64();
    side.loadavg_after = loadavg();
    side.raw = Some(raw.clone());
    let text = std::fs::read_to_string(&raw).unwrap_or_default();
    side.lines = table::parse_results(&text);
    side.command = text
        .lines()
        .find_map(|l| l.strip_prefix("INFO host cmd="))
        .map_or_else(|| format!("{} (no command line printed)", dir.join("run.sh").display()), str::to_string);
    let error = text.lines().filter(|l| l.starts_with("ERROR") || l.starts_with("WARN host")).collect::<Vec<_>>().join("; ");
    side.status = match res {
        Ok(Some(0)) => "ok".to_string(),
        Ok(Some(c)) => format!("run.sh exit {c} ({}){}", peer_exit_meaning(c), if error.is_empty() { String::new() } else { format!(": {error}") }),
        Ok(None) => "run.sh killed by a signal".to_string(),
        Err(e) => format!("run.sh {e}"),
    };
    side
}

/// run.sh's exit statuses (its usage text).
fn peer_exit_meaning(code: i32) -> &'static str {
    match code {
        1 => "a benchmark failed or no PEER-DONE",
        2 => "timeout or no boot",
        3 => "KVM internal error: a stock kernel does not run on this host's KVM",
        64 => "usage",
        _ => "unexpected",
    }
}

/// Where and under what the comparison ran.
#[derive(Debug, Clone, Serialize)]
pub struct Conditions {
    pub host: String,
    pub host_cpus: usize,
    pub accel: String,
    pub smp: u32,
    pub mem_mib: u32,
    pub started: String,
}

fn conditions(o: &CompareOptions) -> Conditions {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    let started = Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    Conditions {
        host: model.unwrap_or_else(|| "unknown CPU".to_string()),
        host_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        accel: if o.accel == AccelChoice::Kvm { "kvm" } else { "tcg" }.to_string(),
        smp: o.smp,
        mem_mib: o.mem_mib,
        started: started.unwrap_or_default(),
    }
}

/// What a comparison produced.
#[derive(Debug, Serialize)]
pub struct CompareReport {
    pub conditions: Conditions,
    pub ours: Side,
    pub linux: Side,
    pub rows: Vec<Row>,
    pub files: Vec<PathBuf>,
}

impl CompareReport {
    /// The conditions as one line (for the README).
    pub fn conditions_line(&self) -> String {
        let c = &self.conditions;
        let load = |s: &Side| match (s.loadavg_before, s.loadavg_after) {
            (Some(a), Some(b)) => format!("{a:.2} -> {b:.2}"),
            _ => "-".to_string(),
        };
        format!(
            "{}; host: {} x{}; QEMU -accel {} -smp {} -m {}; load (1 min) ours {} ({:.0} s), Linux {} ({:.0} s)",
            c.started, c.host, c.host_cpus, c.accel, c.smp, c.mem_mib, load(&self.ours), self.ours.wall_s, load(&self.linux), self.linux.wall_s
        )
    }
}

/// Lines both sides up and writes the CSV, JSON and SVGs into `out`.
pub fn report(conditions: Conditions, ours: Side, linux: Side, out: &Path) -> Result<CompareReport, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("compare: creating {}: {e}", out.display()))?;
    let rows = table::rows(&ours.lines, &linux.lines);
    let mut r = CompareReport { conditions, ours, linux, rows, files: Vec::new() };
    let w = |p: PathBuf, s: String| -> Result<PathBuf, String> {
        std::fs::write(&p, s).map_err(|e| format!("compare: {}: {e}", p.display()))?;
        Ok(p)
    };
    r.files.push(w(out.join("compare.csv"), table::csv(&r.rows))?);
    r.files.push(w(out.join("compare.md"), format!("{}\n\n{}\n", r.conditions_line(), table::table(&r.rows)))?);
    let (svg1, svg2, svg3) = (out.join("shootdown.svg"), out.join("pin.svg"), out.join("latency.svg"));
    plot::shootdown(&r.ours.lines, &r.linux.lines, &svg1)?;
    plot::pin(&r.ours.lines, &r.linux.lines, &svg2)?;
    plot::latency(&r.ours.lines, &r.linux.lines, &svg3)?;
    r.files.extend([svg1, svg2, svg3]);
    let json = out.join("compare.json");
    r.files.push(json.clone());
    let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
    w(json, text)?;
    Ok(r)
}

/// Runs (or reads) both sides and reports.
pub fn run(o: &CompareOptions) -> Result<CompareReport, String> {
    let out = o.out.clone().unwrap_or_else(|| crate::default_testbed_dir().join("compare"));
    std::fs::create_dir_all(&out).map_err(|e| format!("compare: creating {}: {e}", out.display()))?;
    let conditions = conditions(o);
    let ours = match &o.ours_file {
        Some(p) => Side::from_file(p)?,
        None => {
            eprintln!("testbed: compare: running ours (bench={OUR_BENCHES}, smp {}, bound {} s)...", o.smp, o.timeout_s);
            run_ours(o, &out)
        }
    };
    let linux = match &o.linux_file {
        Some(p) => Side::from_file(p)?,
        None => {
            eprintln!("testbed: compare: running the Linux peer ({}, smp {}, bound {} s)...", PEER_BENCHES.join(" "), o.smp, o.timeout_s);
            run_peer(o, &out)
        }
    };
    report(conditions, ours, linux, &out)
}

/// `testbed compare ...`: prints the table, the conditions and the files.
/// Exit 0 when both sides ran, 1 when one did not (the other still
/// reported), 2 for a usage error.
pub fn main(o: &CompareOptions) -> i32 {
    match run(o) {
        Ok(r) => {
            println!("{}", table::table(&r.rows));
            println!("conditions: {}", r.conditions_line());
            println!("ours: {} ({})", r.ours.status, r.ours.command);
            println!("Linux: {} ({})", r.linux.status, r.linux.command);
            for f in &r.files {
                println!("wrote {}", f.display());
            }
            let ok = |s: &Side| s.status.starts_with("ok") && !s.lines.is_empty();
            i32::from(!(ok(&r.ours) && ok(&r.linux)))
        }
        Err(e) => {
            eprintln!("testbed: {e}");
            1
        }
    }
}
