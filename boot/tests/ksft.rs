//! The ksft suite (`tests/src/ksft/`: Linux's cow.c, gup_longterm.c and
//! ksm_functional_tests.c cases ported as user programs, the
//! selftest-support syscalls, pins released at exit) on BIOS with 2 CPUs.
//! Besides every test passing, each ported program's summary must count
//! exactly the cases the README lists, so a case cannot silently vanish.

use testbed::qemu::Firmware;
use testbed::testkit;

#[test]
fn ksft_suite_bios_smp2() {
    let out = testkit::run_suite_ok("ksft", Firmware::Bios, 2, 240);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
    for summary in [
        "cow: 57 passed, 0 failed, 1 skipped",
        "gup_longterm: 12 passed, 0 failed, 0 skipped",
        "ksm: 4 passed, 0 failed, 0 skipped",
        "mmctl: ok",
        "pinexit: exiting with every set held",
    ] {
        assert!(out.log.contains(summary), "no `{summary}` line:\n{report}");
    }
    // The one skip is the one cow.c skips on Linux too (SCAN_PAGE_RO).
    assert!(
        out.log.contains("cow: SKIP Basic COW after fork() when collapsing after fork() (fully shared)"),
        "the skipped case is not the fully-shared collapse:\n{report}"
    );
}
