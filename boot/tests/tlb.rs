//! The TLB suite (`tests/src/tlb/`) in each flush mode, and the `tlb.nowait`
//! negative control: with it, both stale-write tests (kernel-thread writer
//! and user-thread writer) must fail with their reason while every other
//! test passes.

use testbed::qemu::Firmware;
use testbed::testkit;

const STALE_TESTS: [&str; 2] = [
    "no_write_reaches_the_old_frame_after_a_remote_flush",
    "a_user_writer_never_writes_the_old_frame_after_a_remote_flush",
];

fn all_pass(smp: u32, options: &[&str]) {
    let out = testkit::run_suite_with("tlb", smp, options, 300);
    out.assert_ok();
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "with {smp} CPUs nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}

fn nowait_is_caught(options: &[&str]) {
    let out = testkit::run_suite_with("tlb", 2, options, 300);
    let report = out.report(60);
    assert_eq!(out.aborted, None, "{report}");
    assert_eq!(out.failed(), 2, "exactly the two stale-write tests must fail:\n{report}");
    for (failed, name) in out.failures().into_iter().zip(STALE_TESTS) {
        assert!(failed.name.ends_with(name), "the wrong test failed (expected {name}):\n{report}");
        let reason = failed.reason.as_deref().unwrap_or("");
        assert!(reason.contains("stale TLB write"), "reason {reason:?} is not a stale write:\n{report}");
    }
    assert_eq!(Some(out.passed() + 2), out.total, "the other tests must pass:\n{report}");
}

#[test]
fn tlb_suite_smp2() {
    let out = testkit::run_suite_ok("tlb", Firmware::Bios, 2, 300);
    assert_eq!(out.ignored(), 0, "{}", out.report(40));
    assert_eq!(Some(out.passed()), out.total, "{}", out.report(40));
}

#[test]
fn tlb_suite_smp4_ptfree_rcu() {
    all_pass(4, &["ptfree=rcu"]);
}

#[test]
fn tlb_suite_nmi_smp2() {
    all_pass(2, &["tlb=nmi"]);
}

#[test]
fn tlb_nowait_is_caught_by_the_stale_write_test() {
    nowait_is_caught(&["tlb.nowait=on"]);
}

#[test]
fn tlb_nmi_nowait_is_caught_by_the_stale_write_test() {
    nowait_is_caught(&["tlb=nmi", "tlb.nowait=on"]);
}

#[test]
fn tlb_suite_smp1_skips_what_needs_two_cpus() {
    let out = testkit::run_suite_ok("tlb", Firmware::Bios, 1, 300);
    let report = out.report(40);
    for t in out.tests.iter().filter(|t| t.ignored) {
        assert!(t.reason.as_deref().unwrap_or("").contains("needs at least 2 online CPUs"), "{report}");
    }
    // The five remote-flush and gather tests and the lazy-CPU test.
    assert_eq!(out.ignored(), 6, "{report}");
}

#[test]
fn bad_tlb_options_are_usage_errors() {
    for bad in ["tlb=broadcast", "tlb.ceiling=0", "tlb.ceiling=262145", "tlb.nowait=yes", "ptfree=now"] {
        let r = testkit::boot(testbed::cli::KernelChoice::Main, Firmware::Bios, 1, &[bad], 120);
        testkit::expect_exit(&r, 2);
        let text = testkit::everything(&r);
        let key = bad.split('=').next().unwrap();
        assert!(text.contains(&format!("for '{key}'")), "{bad}: no message naming the key:\n{text}");
    }
}
