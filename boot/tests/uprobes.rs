//! The uprobes suite (`tests/src/uprobes/`: install and remove in both
//! modes, bug C on a pinned page, fork, errors, the `uprobes` user program)
//! on BIOS with 2 CPUs.

use testbed::qemu::Firmware;
use testbed::testkit;

#[test]
fn uprobes_suite_bios_smp2() {
    let out = testkit::run_suite_ok("uprobes", Firmware::Bios, 2, 240);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
    // The child probed on a `mov` is killed by the breakpoint, with a report.
    assert!(out.log.contains("reason breakpoint (no uprobe can handle it)"), "no breakpoint kill report:\n{report}");
}
