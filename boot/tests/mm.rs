//! The mm suite (`tests/src/mm/`: page metadata, user page tables, faults,
//! THP splits, copy-on-write after fork, the memory calls' checks) on BIOS
//! with 2 and 4 CPUs.

use testbed::qemu::Firmware;
use testbed::testkit;

fn mm_suite(smp: u32) {
    let out = testkit::run_suite_ok("mm", Firmware::Bios, smp, 300);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}

#[test]
fn mm_suite_bios_smp2() {
    mm_suite(2);
}

#[test]
fn mm_suite_bios_smp4() {
    mm_suite(4);
}
