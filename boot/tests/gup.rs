//! The gup suite (`tests/src/gup/`: get_user_pages and pin_user_pages, fast and
//! slow, COW and unshare semantics, bad addresses) on BIOS
//! with 2 and 4 CPUs.

use testbed::qemu::Firmware;
use testbed::testkit;

fn gup_suite(smp: u32) {
    let out = testkit::run_suite_ok("gup", Firmware::Bios, smp, 300);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}

#[test]
fn gup_suite_bios_smp2() {
    gup_suite(2);
}

#[test]
fn gup_suite_bios_smp4() {
    gup_suite(4);
}
