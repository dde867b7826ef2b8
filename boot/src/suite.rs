//! Running a kernel test suite, with crash recovery.
//!
//! A suite kernel runs its tests one after the other and reports each on the serial
//! console (protocol: [`crate::serial`]). When the kernel dies inside a test (panic or
//! CPU exception: QEMU status 39; triple fault: status 0; any exit without the end
//! marker) or a test hangs (no `test ... ok|FAILED` line within
//! [`SuiteConfig::per_test_timeout`] of its `ktest: start` line: QEMU is killed), the
//! test that was running is recorded as failed (unless the kernel already printed its
//! `FAILED` line) and the suite is booted again with `ktest.skip=<index + 1>`, until the
//! kernel prints its `test result:` line. At most `tests + 1` boots are made, and the
//! whole suite has a wall-clock limit ([`SuiteConfig::timeout`]).
//!
//! QEMU runs are serialised per process by [`crate::qemu::slot`] (`TESTBED_JOBS`
//! raises the limit).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::image;
use crate::qemu::{self, Accel, Firmware, QemuExit, QemuLog, QemuSpec, RunConfig};
use crate::serial::{Line, TestSummary};

/// How to run a suite.
#[derive(Clone, Debug)]
pub struct SuiteConfig {
    /// The suite's kernel ELF (e.g. `suites::suite_kernel("boot")`).
    pub kernel: PathBuf,
    /// QEMU machine (default q35).
    pub machine: crate::qemu::Machine,
    pub firmware: Firmware,
    pub smp: u32,
    pub mem_mib: u32,
    /// Accelerator (default TCG).
    pub accel: Accel,
    /// QEMU CPU model (`None`: the accelerator's default).
    pub cpu: Option<String>,
    /// More boot options (e.g. `ktest.filter=...`), before the host's `ktest.skip`.
    pub extra_options: Vec<String>,
    /// Wall-clock limit for the whole suite, all boots together.
    pub timeout: Duration,
    /// Limit for one test, from its `ktest: start` line to its result line.
    pub per_test_timeout: Duration,
    /// Print the console as it arrives (captured by the test harness in `#[test]`s).
    pub echo: bool,
}

impl SuiteConfig {
    /// Defaults: BIOS, 1 CPU, 256 MiB, 300 s for the suite, 60 s per test, echo on.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        SuiteConfig {
            kernel: kernel.into(),
            machine: crate::qemu::Machine::default(),
            firmware: Firmware::Bios,
            smp: 1,
            mem_mib: 256,
            accel: Accel::Tcg,
            cpu: None,
            extra_options: Vec::new(),
            timeout: Duration::from_secs(300),
            per_test_timeout: Duration::from_secs(60),
            echo: true,
        }
    }
}

/// One test's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    pub index: usize,
    pub name: String,
    pub passed: bool,
    /// The kernel skipped it (`test <path> ... ignored, <reason>`): counted as
    /// neither passed nor failed, with its reason kept.
    pub ignored: bool,
    /// Why it failed (the kernel's reason, the panic/exception line, "triple
    /// fault", or "timeout after Ns (hang)") or why it was ignored.
    pub reason: Option<String>,
}

/// The result of a whole suite run.
#[derive(Clone, Debug, Default)]
pub struct SuiteOutcome {
    /// The suite name from the kernel's `ktest: suite` line.
    pub suite: Option<String>,
    /// The number of tests the kernel announced.
    pub total: Option<usize>,
    /// Tests that ran, by index.
    pub tests: Vec<TestOutcome>,
    /// How many times the kernel was booted.
    pub boots: usize,
    /// `RESULT` lines from all boots.
    pub results: Vec<String>,
    /// The console of all boots (with a separator line per boot).
    pub log: String,
    /// The kernel's final `test result:` line, if it got there.
    pub summary: Option<TestSummary>,
    /// Why the suite could not be completed (setup error, boot failure outside any
    /// test, suite timeout, too many boots), if so.
    pub aborted: Option<String>,
    pub elapsed: Duration,
}

impl SuiteOutcome {
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.passed && !t.ignored).count()
    }

    /// Tests the kernel skipped (with a reason).
    pub fn ignored(&self) -> usize {
        self.tests.iter().filter(|t| t.ignored).count()
    }

    pub fn failed(&self) -> usize {
        self.tests.iter().filter(|t| !t.passed).count()
    }

    /// Tests the kernel announced that did not run (filtered out).
    pub fn filtered_out(&self) -> usize {
        self.total.map_or(0, |n| n.saturating_sub(self.tests.len()))
    }

    /// Whether the suite completed and every test passed.
    pub fn ok(&self) -> bool {
        self.aborted.is_none() && self.summary.is_some() && self.failed() == 0
    }

    /// The failed tests.
    pub fn failures(&self) -> Vec<&TestOutcome> {
        self.tests.iter().filter(|t| !t.passed).collect()
    }

    /// The test with this name, if it ran.
    pub fn test(&self, name: &str) -> Option<&TestOutcome> {
        self.tests.iter().find(|t| t.name == name)
    }

    /// A summary in cargo's format, over all boots.
    pub fn summary_line(&self) -> String {
        format!(
            "test result: {}. {} passed; {} failed; {} ignored; 0 measured; {} filtered out; finished in {:.2}s",
            if self.ok() { "ok" } else { "FAILED" },
            self.passed(),
            self.failed(),
            self.ignored(),
            self.filtered_out(),
            self.elapsed.as_secs_f64()
        )
    }

    /// A readable report: the failures with reasons, why the run was aborted, the
    /// summary, and the last `tail` log lines.
    pub fn report(&self, tail: usize) -> String {
        let mut s = String::new();
        let name = self.suite.as_deref().unwrap_or("?");
        s.push_str(&format!("suite {name}: {} boot(s)\n", self.boots));
        for t in self.failures() {
            s.push_str(&format!(
                "    test {} (index {}) FAILED: {}\n",
                t.name,
                t.index,
                t.reason.as_deref().unwrap_or("(no reason given)")
            ));
        }
        if let Some(a) = &self.aborted {
            s.push_str(&format!("    aborted: {a}\n"));
        }
        s.push_str(&self.summary_line());
        s.push('\n');
        let lines: Vec<&str> = self.log.lines().collect();
        let from = lines.len().saturating_sub(tail);
        s.push_str(&format!("--- last {} console lines ---\n", lines.len() - from));
        for l in &lines[from..] {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Panics with [`report`](Self::report) unless [`ok`](Self::ok). For `#[test]`s.
    #[track_caller]
    pub fn assert_ok(&self) {
        if !self.ok() {
            panic!("kernel test suite failed:\n{}", self.report(40));
        }
    }
}

/// What one boot saw, for the recovery decision.
#[derive(Default)]
struct BootState {
    /// The test that started and has not reported: (index, name, when).
    open: Option<(usize, String, Instant)>,
    /// The index of the last test that started in this boot.
    last_started: Option<usize>,
    /// Console line number at which the open test started.
    open_line: usize,
    lines_seen: usize,
}

impl BootState {
    /// Books a test line (start, ok, FAILED, ignored) of this boot.
    fn on_test_line(&mut self, line: Line, recorded: &mut BTreeMap<usize, TestOutcome>, skip: usize, now: Instant) {
        let (name, failure) = match line {
            Line::TestStart { index, name } => {
                self.open = Some((index, name, now));
                self.last_started = Some(index);
                self.open_line = self.lines_seen;
                return;
            }
            Line::TestIgnored { name, reason } => {
                if let Some((index, _, _)) = self.open.take() {
                    recorded.insert(index, TestOutcome { index, name, passed: true, ignored: true, reason });
                }
                return;
            }
            Line::TestOk { name } => (name, None),
            Line::TestFailed { name, reason } => (name, Some(reason)),
            _ => return,
        };
        if self.open.is_none() && !recorded.values().any(|t| t.name == name) {
            // A result without a start line: record it under the next index.
            let index = recorded.keys().next_back().map_or(skip, |i| i + 1);
            let passed = failure.is_none();
            recorded.insert(index, TestOutcome { index, name, passed, ignored: false, reason: failure.flatten() });
        } else if let Some((index, _, _)) = self.open.take() {
            // An `ok` is also what a `should_panic` test prints from the panic
            // path just before the kernel dies: the test is closed as passed,
            // so the death is not charged to it.
            let passed = failure.is_none();
            let reason = failure.map(|r| r.unwrap_or_else(|| "FAILED (no reason given)".into()));
            recorded.insert(index, TestOutcome { index, name, passed, ignored: false, reason });
        }
    }

    /// After a boot that died before its `test result:` line: the
    /// `ktest.skip` for the next boot (past the last test that started), or
    /// `None` when no test started beyond `skip` (the kernel died outside any).
    fn next_skip(&self, skip: usize) -> Option<usize> {
        self.last_started.filter(|&i| i + 1 > skip).map(|i| i + 1)
    }
}

/// Picks the most telling line for a test that died: a panic message, else the
/// first `FATAL:` line, else a line mentioning an exception or fault.
fn death_reason(lines: &[String]) -> Option<String> {
    let find = |pred: &dyn Fn(&str) -> bool| {
        lines.iter().map(|l| crate::serial::strip_log_prefix(l).trim()).find(|l| pred(l)).map(str::to_string)
    };
    find(&|l| l.contains("panicked at"))
        .or_else(|| find(&|l| l.starts_with("FATAL:")))
        .or_else(|| find(&|l| l.to_ascii_lowercase().contains("exception") || l.contains("FAULT")))
}

/// Runs the suite to completion (see the module doc).
pub fn run_suite(cfg: &SuiteConfig) -> SuiteOutcome {
    // One slot for all boots, so the suite's clock does not run while other
    // tests of this process use QEMU.
    let _slot = qemu::slot();
    let start = Instant::now();
    let mut out = SuiteOutcome::default();
    let mut recorded: BTreeMap<usize, TestOutcome> = BTreeMap::new();
    let mut skip = 0usize;
    let mut max_boots = 1usize; // raised to tests + 1 once the kernel says how many
    let finish = |mut out: SuiteOutcome, recorded: BTreeMap<usize, TestOutcome>| {
        out.tests = recorded.into_values().collect();
        out.elapsed = start.elapsed();
        out
    };
    if let Err(e) = qemu::check_host(cfg.firmware) {
        out.aborted = Some(e);
        return finish(out, recorded);
    }

    loop {
        if out.boots >= max_boots {
            out.aborted = Some(format!("gave up after {} boots (at most tests + 1)", out.boots));
            break;
        }
        let Some(remaining) = cfg.timeout.checked_sub(start.elapsed()).filter(|d| !d.is_zero()) else {
            out.aborted = Some(format!("suite timeout after {}s", cfg.timeout.as_secs()));
            break;
        };
        let mut options = cfg.extra_options.clone();
        if skip > 0 {
            options.push(format!("ktest.skip={skip}"));
        }
        let prepared = match image::prepare(&cfg.kernel, cfg.firmware, &options, None) {
            Ok(p) => p,
            Err(e) => {
                out.aborted = Some(e);
                break;
            }
        };
        let spec = QemuSpec {
            machine: cfg.machine,
            accel: cfg.accel,
            cpu: cfg.cpu.clone(),
            smp: cfg.smp,
            maxcpus: None,
            mem_mib: cfg.mem_mib,
            firmware: cfg.firmware,
            image: prepared.image.clone(),
            ovmf_vars: prepared.ovmf_vars.clone(),
            display: false,
            resolution: None,
            gdb: false,
            no_reboot: true,
            log: prepared.qemu_log.clone(),
            usb_screen: None,
            debug_exit: true,
        };
        out.boots += 1;
        let header = format!(
            "--- testbed: boot {} of {} ({}, smp {}, options: {}) ---",
            out.boots,
            cfg.kernel.file_name().unwrap_or_default().to_string_lossy(),
            cfg.firmware,
            cfg.smp,
            if options.is_empty() { "none".to_string() } else { options.join(" ") }
        );
        if cfg.echo {
            println!("{header}");
        }
        out.log.push_str(&header);
        out.log.push('\n');

        let mut st = BootState::default();
        let per_test = cfg.per_test_timeout;
        let run = qemu::run_holding_slot(
            &spec,
            &RunConfig { timeout: Some(remaining), echo: cfg.echo, serial_log: None },
            |line, now| {
                let Some(line) = line else {
                    if let Some((_, _, t0)) = &st.open
                        && now.duration_since(*t0) > per_test {
                            return Some(format!("timeout after {}s (hang)", per_test.as_secs()));
                        }
                    return None;
                };
                st.lines_seen += 1;
                match crate::serial::parse_line(line) {
                    Line::SuiteHeader { name, tests, .. } => {
                        out.suite = Some(name);
                        out.total = Some(tests);
                        max_boots = max_boots.max(tests + 1);
                    }
                    Line::TestResult(s) => out.summary = Some(s),
                    parsed => st.on_test_line(parsed, &mut recorded, skip, now),
                }
                None
            },
        );
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                out.aborted = Some(format!("cannot run QEMU: {e}"));
                break;
            }
        };
        for l in &run.console.lines {
            out.log.push_str(l);
            out.log.push('\n');
        }
        out.results.extend(run.console.results.iter().cloned());
        let exit_text = match &run.exit {
            QemuExit::Status(c) => format!("QEMU exit status {c} ({})", qemu::describe_status(*c)),
            QemuExit::Signal => "QEMU killed by a signal".to_string(),
            QemuExit::TimedOut => "suite timeout: QEMU killed".to_string(),
            QemuExit::Killed(r) => format!("QEMU killed: {r}"),
        };
        out.log.push_str(&format!("--- testbed: {exit_text} after {:.2}s ---\n", run.elapsed.as_secs_f64()));

        if out.summary.is_some() {
            // The kernel got to the end. Check it also ended properly.
            let verdict = qemu::classify(&run.exit, run.console.end);
            if !matches!(verdict, qemu::Verdict::Pass | qemu::Verdict::Failed { fatal: false }) {
                out.aborted = Some(format!("after its test result line the kernel did not end properly: {exit_text}"));
            }
            break;
        }

        // The kernel did not finish: find the test it died in.
        let qlog = QemuLog::parse(&std::fs::read_to_string(&prepared.qemu_log).unwrap_or_default());
        if let Some((index, name, _)) = st.open.take() {
            let reason = match &run.exit {
                QemuExit::Killed(r) => r.clone(),
                QemuExit::TimedOut => format!("suite timeout after {}s", cfg.timeout.as_secs()),
                QemuExit::Status(0) => "triple fault".to_string(),
                _ => death_reason(&run.console.lines[st.open_line.min(run.console.lines.len())..])
                    .unwrap_or_else(|| format!("kernel died without a report ({exit_text})")),
            };
            recorded.insert(index, TestOutcome { index, name, passed: false, ignored: false, reason: Some(reason) });
        }
        if run.exit == QemuExit::TimedOut {
            out.aborted = Some(format!("suite timeout after {}s", cfg.timeout.as_secs()));
            break;
        }
        match st.next_skip(skip) {
            Some(next) => skip = next,
            None => {
                let mut why = format!("the kernel died outside any test ({exit_text})");
                if let Some(f) = qemu::qemu_failure(&run.exit, run.console.end, &run.stderr) {
                    why = format!("QEMU itself failed ({exit_text}), not the kernel: {}", f.message);
                    if let Some(r) = f.remedy {
                        why.push_str(&format!("\nremedy: {r}"));
                    }
                }
                if let Some(r) = death_reason(&run.console.lines) {
                    why.push_str(&format!(": {r}"));
                }
                if matches!(run.exit, QemuExit::Status(0)) {
                    why.push('\n');
                    why.push_str(&qlog.report());
                }
                out.aborted = Some(why);
                break;
            }
        }
    }
    finish(out, recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(tests: &[(usize, &str, bool, Option<&str>)]) -> SuiteOutcome {
        SuiteOutcome {
            suite: Some("s".into()),
            total: Some(5),
            tests: tests
                .iter()
                .map(|(i, n, p, r)| TestOutcome { index: *i, name: n.to_string(), passed: *p, ignored: false, reason: r.map(Into::into) })
                .collect(),
            boots: 2,
            summary: Some(TestSummary { ok: false, passed: 0, failed: 0, filtered_out: 0, seconds: None }),
            elapsed: Duration::from_millis(1234),
            log: (0..50).map(|i| format!("line {i}\n")).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn summary_and_report() {
        let o = outcome(&[(0, "a", true, None), (1, "b", false, Some("triple fault")), (2, "c", true, None)]);
        assert_eq!(
            o.summary_line(),
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out; finished in 1.23s"
        );
        assert!(!o.ok());
        let r = o.report(3);
        assert!(r.contains("test b (index 1) FAILED: triple fault"), "{r}");
        assert!(r.contains("line 49") && !r.contains("line 46"), "{r}");
        let good = outcome(&[(0, "a", true, None)]);
        assert!(good.ok());
        good.assert_ok();
        assert!(good.summary_line().starts_with("test result: ok. 1 passed; 0 failed;"));
        assert_eq!(good.test("a").unwrap().index, 0);
    }

    #[test]
    #[should_panic(expected = "test b (index 1) FAILED: boom")]
    fn assert_ok_panics_with_report() {
        outcome(&[(1, "b", false, Some("boom"))]).assert_ok();
    }

    /// A `should_panic` test passes by printing `ok` from the panic path and
    /// dying: it is recorded as passed, nothing is charged with the death, and
    /// the next boot starts after it.
    #[test]
    fn ok_then_death_records_a_pass_and_moves_on() {
        let mut st = BootState::default();
        let mut recorded = BTreeMap::new();
        let now = Instant::now();
        for line in [
            "ktest: start index=3 name=sync::checks::recursive_spinlock_panics",
            "test sync::checks::recursive_spinlock_panics ... ok",
            "ktest: expected panic on cpu0: panicked at kernel/src/sync/ticket.rs:50: recursive locking",
        ] {
            st.lines_seen += 1;
            st.on_test_line(crate::serial::parse_line(line), &mut recorded, 3, now);
        }
        assert!(st.open.is_none(), "the test is still open: its death would be charged to it");
        let t = &recorded[&3];
        assert!(t.passed && !t.ignored && t.reason.is_none(), "{t:?}");
        assert_eq!(st.next_skip(3), Some(4));
        // A test that died without a result stays open (charged by the caller).
        let mut st = BootState::default();
        st.on_test_line(crate::serial::parse_line("ktest: start index=4 name=x"), &mut recorded, 4, now);
        assert!(st.open.is_some());
        assert_eq!(st.next_skip(4), Some(5));
        assert_eq!(BootState::default().next_skip(4), None);
    }

    #[test]
    fn death_reasons() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            death_reason(&l(&["x", "FATAL: CPU EXCEPTION", "panicked at src/a.rs:1:1: boom"])).as_deref(),
            Some("panicked at src/a.rs:1:1: boom")
        );
        assert_eq!(
            death_reason(&l(&["[ 0.1 cpu0 ERROR] FATAL: PAGE FAULT at 0x0", "RIP=..."])).as_deref(),
            Some("FATAL: PAGE FAULT at 0x0")
        );
        assert_eq!(death_reason(&l(&["DOUBLE FAULT"])).as_deref(), Some("DOUBLE FAULT"));
        assert_eq!(death_reason(&l(&["nothing"])), None);
    }
}
