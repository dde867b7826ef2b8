//! Helpers for the integration tests in `boot/tests/` (and for anyone driving
//! the testbed from Rust): boot a kernel through the same code path as
//! `testbed run` and explain failures. They live in the library rather than a
//! `tests/common` module so that every helper is used somewhere and none is
//! compiled as dead code into test binaries that do not need it.

use std::time::Duration;

use crate::RunReport;
use crate::cli::{KernelChoice, RunOptions};
use crate::qemu::Firmware;

/// Boots the main kernel (or another choice) with these settings; the console is
/// printed (captured by the test harness, shown on failure).
pub fn boot(kernel: KernelChoice, firmware: Firmware, smp: u32, options: &[&str], timeout_s: u64) -> RunReport {
    let opts = RunOptions {
        smp,
        firmware,
        kernel,
        timeout: Some(Duration::from_secs(timeout_s)),
        boot_options: options.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    match crate::run(&opts, true) {
        Ok(r) => r,
        Err(e) => panic!("testbed could not run: {} (exit {})", e.message, e.exit_code),
    }
}

/// Panics with the run's verdict unless `testbed run` would exit with `code`.
#[track_caller]
pub fn expect_exit(r: &RunReport, code: i32) {
    if r.exit_code() != code {
        panic!(
            "expected testbed exit {code}, got {} ({:?})\n{}",
            r.exit_code(),
            r.verdict,
            r.message()
        );
    }
}

/// The text of `key=` in a `RESULT` line (`key=value` words).
pub fn result_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The value of `key=` in a `RESULT` line, parsed (a number, usually).
pub fn result_value<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    result_field(line, key)?.parse().ok()
}

/// The console plus the host's verdict message: what a user would see.
pub fn everything(r: &RunReport) -> String {
    format!("{}{}", r.console_text(), r.message())
}

/// Runs test suite `name` under TCG with `firmware` and `smp` CPUs (whole-suite
/// limit `timeout_s`), prints cargo's summary line, and panics with a readable
/// report unless every test passed or was ignored with a reason. Returns the
/// outcome for further checks (ignored counts, log contents).
#[track_caller]
pub fn run_suite_ok(name: &str, firmware: Firmware, smp: u32, timeout_s: u64) -> crate::suite::SuiteOutcome {
    let kernel = crate::suites::suite_kernel(name).unwrap_or_else(|| panic!("no test suite named {name}"));
    let mut cfg = crate::suite::SuiteConfig::new(kernel);
    cfg.firmware = firmware;
    cfg.smp = smp;
    cfg.timeout = Duration::from_secs(timeout_s);
    let out = crate::suite::run_suite(&cfg);
    println!("{}", out.summary_line());
    out.assert_ok();
    out
}

/// Runs test suite `name` under TCG on BIOS with `smp` CPUs and extra kernel
/// boot options (e.g. `tlb=nmi`), whole-suite limit `timeout_s`, and prints
/// cargo's summary line. Unlike [`run_suite_ok`] it does not judge the
/// outcome: for runs where some tests must fail (negative controls).
pub fn run_suite_with(name: &str, smp: u32, options: &[&str], timeout_s: u64) -> crate::suite::SuiteOutcome {
    let kernel = crate::suites::suite_kernel(name).unwrap_or_else(|| panic!("no test suite named {name}"));
    let mut cfg = crate::suite::SuiteConfig::new(kernel);
    cfg.smp = smp;
    cfg.extra_options = options.iter().map(|s| s.to_string()).collect();
    cfg.timeout = Duration::from_secs(timeout_s);
    let out = crate::suite::run_suite(&cfg);
    println!("{}", out.summary_line());
    out
}
