//! The ksm suite (`tests/src/ksm/`: equal pages merge within and across
//! address spaces, copy-on-write and MADV_UNMERGEABLE give private copies,
//! pinned and GUP-referenced pages are refused, `ksm.check_before_clear` and
//! `sync=rcu` still merge, a fault under the marker waits, ksmd, huge pages
//! left alone, fork, ksmd's checksum list against a model of Linux's
//! rmap_list) on BIOS with 2 and 4 CPUs.

use testbed::qemu::Firmware;
use testbed::testkit;

fn ksm_suite(smp: u32) {
    let out = testkit::run_suite_ok("ksm", Firmware::Bios, smp, 240);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}

#[test]
fn ksm_suite_bios_smp2() {
    ksm_suite(2);
}

#[test]
fn ksm_suite_bios_smp4() {
    ksm_suite(4);
}
