//! The ring-3 suite (`tests/src/user.rs`) on BIOS with 1, 2 and 4 CPUs, plus
//! the main kernel's `init=` option.

use testbed::qemu::Firmware;
use testbed::cli::KernelChoice;
use testbed::testkit;

/// Tests of the suite that need a second CPU (reported `ignored` on one).
const NEEDS_TWO_CPUS: usize = 2;

fn user_suite(smp: u32) {
    let out = testkit::run_suite_ok("user", Firmware::Bios, smp, 300);
    let report = out.report(40);
    assert_eq!(Some(out.passed() + out.ignored()), out.total, "not every test ran and passed:\n{report}");
    let skipped = if smp == 1 { NEEDS_TWO_CPUS } else { 0 };
    assert_eq!(out.ignored(), skipped, "with {smp} CPUs exactly {skipped} tests may be skipped:\n{report}");
    // The kill report of the `fault` program, as the console shows it.
    assert!(
        out.log.contains("user fault: pid") && out.log.contains("addr 0x123456789000") && out.log.contains("reason not mapped"),
        "no user-fault report line:\n{report}"
    );
    assert!(out.log.contains("reason GENERAL PROTECTION FAULT"), "no #GP report for `cli` in ring 3:\n{report}");
}

#[test]
fn user_suite_bios_smp1() {
    user_suite(1);
}

#[test]
fn user_suite_bios_smp2() {
    user_suite(2);
}

#[test]
fn user_suite_bios_smp4() {
    user_suite(4);
}

#[test]
fn init_option_runs_a_program_and_reports_its_status() {
    let r = testkit::boot(KernelChoice::Main, Firmware::Bios, 2, &["init=hello"], 120);
    testkit::expect_exit(&r, 0);
    let all = testkit::everything(&r);
    assert!(all.contains("hello from user mode") && all.contains("init: hello exited with status 0"), "{all}");
    let r = testkit::boot(KernelChoice::Main, Firmware::Bios, 1, &["init=fault"], 120);
    testkit::expect_exit(&r, 1);
    assert!(testkit::everything(&r).contains("init: fault exited with status 139"));
    let r = testkit::boot(KernelChoice::Main, Firmware::Bios, 1, &["init=nonesuch"], 120);
    testkit::expect_exit(&r, 2);
}
