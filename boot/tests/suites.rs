//! Kernel test suites, run with crash recovery by `testbed::suite::run_suite`.

use std::time::Duration;

use testbed::qemu::Firmware;
use testbed::suite::{run_suite, SuiteConfig};
use testbed::suites::suite_kernel;
use testbed::testkit;

fn boot_suite(firmware: Firmware, smp: u32) {
    let out = testkit::run_suite_ok("boot", firmware, smp, 240);
    assert!(out.total.unwrap_or(0) > 0 && out.passed() == out.total.unwrap());
}

#[test]
fn boot_suite_bios_smp1() {
    boot_suite(Firmware::Bios, 1);
}

#[test]
fn boot_suite_bios_smp2() {
    boot_suite(Firmware::Bios, 2);
}

#[test]
fn boot_suite_bios_smp4() {
    boot_suite(Firmware::Bios, 4);
}

#[test]
fn boot_suite_uefi_smp2() {
    boot_suite(Firmware::Uefi, 2);
}

/// `tests/src/bin/selftest_fail.rs` documents the expected mix: 6 tests, 2 passed,
/// 4 failed, each failure with a telling reason, and the suite carries on after each
/// (the panics and the page fault kill the kernel; the hang is killed by the host).
#[test]
fn harness_reports_every_failure() {
    let mut cfg = SuiteConfig::new(suite_kernel("selftest_fail").expect("suite selftest_fail"));
    cfg.per_test_timeout = Duration::from_secs(10);
    cfg.timeout = Duration::from_secs(180);
    let out = run_suite(&cfg);
    let report = out.report(60);
    println!("{report}");
    assert_eq!(out.aborted, None, "{report}");
    assert!(out.summary.is_some(), "the kernel never printed its test result line:\n{report}");
    assert_eq!(out.total, Some(6), "{report}");
    assert_eq!((out.passed(), out.failed()), (2, 4), "{report}");
    let find = |suffix: &str| {
        out.tests
            .iter()
            .find(|t| t.name.ends_with(suffix))
            .unwrap_or_else(|| panic!("no test named *{suffix}:\n{report}"))
    };
    assert!(find("passes_first").passed, "{report}");
    assert!(find("passes_last").passed, "{report}");
    for (name, needle) in [
        ("assertion_fails", "assertion"),
        ("panics", "deliberate panic in selftest"),
        ("page_faults", "PAGE FAULT"),
        ("hangs_with_interrupts_off", "timeout"),
    ] {
        let t = find(name);
        assert!(!t.passed, "{name} passed:\n{report}");
        let reason = t.reason.as_deref().unwrap_or("");
        assert!(reason.contains(needle), "{name}: reason {reason:?} lacks {needle:?}:\n{report}");
    }
    assert!(out.boots >= 4 && out.boots <= 7, "{} boots:\n{report}", out.boots);
    assert!(out.summary_line().starts_with("test result: FAILED. 2 passed; 4 failed;"), "{}", out.summary_line());
}
