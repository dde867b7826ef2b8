//! The scheduler and RCU suite (`tests/src/sched.rs`) on BIOS with 1, 2
//! and 4 CPUs; on one CPU the two-CPU tests must say they were skipped.

use testbed::qemu::Firmware;
use testbed::testkit;

/// Tests of the suite that need a second CPU.
const NEEDS_TWO_CPUS: usize = 5;

fn sched_suite(smp: u32) {
    let out = testkit::run_suite_ok("sched", Firmware::Bios, smp, 240);
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
fn sched_suite_bios_smp4() {
    sched_suite(4);
}
