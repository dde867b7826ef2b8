//! The history suite (`tests/src/history/`: each of Linux's bugs brought
//! back by its switch, caught, and the same workload safe without it) on
//! BIOS with 2 CPUs. The README's history table lists what each test shows.

use testbed::qemu::Firmware;
use testbed::testkit;

#[test]
fn history_suite_bios_smp2() {
    let out = testkit::run_suite_ok("history", Firmware::Bios, 2, 240);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}
