//! The sync suite (`tests/src/sync.rs`: spinlocks, the reader-writer lock,
//! the lock debug checks as `should_panic` tests) on BIOS with 2 and 4 CPUs.
//! Each `should_panic` test ends its boot, so the suite takes several boots.

use testbed::qemu::Firmware;
use testbed::testkit;

fn sync_suite(smp: u32) {
    let out = testkit::run_suite_ok("sync", Firmware::Bios, smp, 600);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "with {smp} CPUs nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
    assert!(out.log.contains("ktest: expected panic"), "no should_panic test panicked as expected:\n{report}");
}

#[test]
fn sync_suite_bios_smp2() {
    sync_suite(2);
}

#[test]
fn sync_suite_bios_smp4() {
    sync_suite(4);
}
