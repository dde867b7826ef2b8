//! The ksft suite (`tests/src/ksft/`: Linux's cow.c, gup_longterm.c and
//! ksm_functional_tests.c cases ported as user programs, the
//! selftest-support syscalls, pins released at exit) on BIOS with 2 CPUs.
//! Besides every test passing, each ported program's summary must count
//! exactly the cases the README lists, so a case cannot silently vanish,
//! and under each of bugs D, E and J's switches exactly the cow.c cases
//! about that bug must fail.

use testbed::qemu::Firmware;
use testbed::testkit;

#[test]
fn ksft_suite_bios_smp2() {
    let out = testkit::run_suite_ok("ksft", Firmware::Bios, 2, 240);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
    for summary in [
        "cow: 73 passed, 0 failed, 1 skipped",
        "cow: 69 passed, 4 failed, 1 skipped",
        "cow: 68 passed, 5 failed, 1 skipped",
        "cow: 51 passed, 22 failed, 1 skipped",
        "gup_longterm: 12 passed, 0 failed, 0 skipped",
        "ksm: 5 passed, 0 failed, 0 skipped",
        "mmctl: ok",
        "pinexit: exiting with every set held",
    ] {
        assert!(out.log.contains(summary), "no `{summary}` line:\n{report}");
    }
    // Under each of Linux's old rules, exactly the cases about that rule
    // fail (the kernel test asserts the counts: 4, 5, 22).
    let section = |marker: &str| {
        let start = out.log.find(marker).unwrap_or_else(|| panic!("no `{marker}` line:\n{report}"));
        let rest = &out.log[start + marker.len()..];
        rest[..rest.find("ksft: ksft_cow ").unwrap_or(rest.len())].to_string()
    };
    let fails = |text: &str| text.lines().filter(|l| l.contains("cow: FAIL ")).map(|l| l.split("cow: FAIL ").nth(1).unwrap_or("").to_string()).collect::<Vec<_>>();
    let d = fails(&section("ksft: ksft_cow under cow.reuse=mapcount (bug D)"));
    assert_eq!(d.len(), 4, "bug D: {d:#?}");
    assert!(d.iter().all(|f| f.contains("vmsplice()") && f.contains("with base page")), "bug D: {d:#?}");
    let e = fails(&section("ksft: ksft_cow under fork.early_cow=off (bug E)"));
    assert_eq!(e.len(), 5, "bug E: {e:#?}");
    assert!(e.iter().all(|f| f.starts_with("fork() with an iouring fixed buffer")), "bug E: {e:#?}");
    let j = fails(&section("ksft: ksft_cow under unshare=off (bug J)"));
    assert_eq!(j.len(), 22, "bug J: {j:#?}");
    assert!(
        j.iter().all(|f| f.starts_with("R/O GUP") && (f.contains("shared page") || f.contains("with partially shared THP"))),
        "bug J: {j:#?}"
    );
    // The one skip is the one cow.c skips on Linux too (SCAN_PAGE_RO).
    assert!(
        out.log.contains("cow: SKIP Basic COW after fork() when collapsing after fork() (fully shared)"),
        "the skipped case is not the fully-shared collapse:\n{report}"
    );
}
