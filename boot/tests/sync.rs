//! The sync suite (`tests/src/sync.rs`: spinlocks, the reader-writer lock,
//! the lock debug checks as `should_panic` tests) on BIOS with 2 and 4 CPUs.
//! Each `should_panic` test ends its boot, so the suite takes several boots.

use std::time::Duration;

use testbed::qemu::Firmware;
use testbed::suite::{SuiteConfig, run_suite};
use testbed::suites::suite_kernel;

fn sync_suite(smp: u32) {
    let mut cfg = SuiteConfig::new(suite_kernel("sync").expect("suite sync"));
    cfg.firmware = Firmware::Bios;
    cfg.smp = smp;
    cfg.timeout = Duration::from_secs(600);
    let out = run_suite(&cfg);
    println!("{}", out.summary_line());
    out.assert_ok();
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
