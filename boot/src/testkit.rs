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

/// The console plus the host's verdict message: what a user would see.
pub fn everything(r: &RunReport) -> String {
    format!("{}{}", r.console_text(), r.message())
}
