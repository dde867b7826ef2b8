//! The scheduler and RCU suite (`tests/src/sched.rs`) on BIOS with 1, 2, 3
//! and 4 CPUs; on one CPU the two-CPU tests must say they were skipped.

use std::time::Duration;

use testbed::qemu::Firmware;
use testbed::suite::{SuiteConfig, run_suite};
use testbed::suites::suite_kernel;

/// Tests of the suite that need a second CPU.
const NEEDS_TWO_CPUS: usize = 5;

fn sched_suite(smp: u32) {
    let mut cfg = SuiteConfig::new(suite_kernel("sched").expect("suite sched"));
    cfg.firmware = Firmware::Bios;
    cfg.smp = smp;
    cfg.timeout = Duration::from_secs(240);
    let out = run_suite(&cfg);
    println!("{}", out.summary_line());
    out.assert_ok();
    let expected_ignored = if smp == 1 { NEEDS_TWO_CPUS } else { 0 };
    assert_eq!(out.ignored(), expected_ignored, "ignored tests with {smp} CPUs");
}

#[test]
fn sched_suite_bios_smp1() {
    sched_suite(1);
}

#[test]
fn sched_suite_bios_smp2() {
    sched_suite(2);
}

#[test]
fn sched_suite_bios_smp3() {
    sched_suite(3);
}

#[test]
fn sched_suite_bios_smp4() {
    sched_suite(4);
}
