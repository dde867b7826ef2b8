//! The gup suite (`tests/src/gup/`: get_user_pages and pin_user_pages, fast and
//! slow, COW and unshare semantics, bad addresses; pins held for DMA by the
//! software agent and direct I/O) on BIOS with 2 and 4 CPUs, and with the
//! DMA agent on the submitters' CPU after a random delay; bad `dma.*`
//! options are usage errors.

use testbed::cli::KernelChoice;
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

#[test]
fn gup_suite_with_the_dma_agent_on_cpu0_and_random_delays() {
    // The tests run on CPU 0: the agent shares it with the waiting submitter,
    // which must yield to it (the 1-CPU situation, on 2 CPUs).
    let out = testkit::run_suite_with("gup", 2, &["dma.cpu=0", "dma.delay=random", "dma.delay_us=2000"], 300);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}

#[test]
fn bad_dma_options_are_usage_errors() {
    for (opt, needle) in [
        ("dma.cpu=7", "dma.cpu=7: no such CPU online"),
        ("dma.delay_us=100001", "'100001' for 'dma.delay_us'"),
        ("dma.delay=sometimes", "'sometimes' for 'dma.delay'"),
    ] {
        let r = testkit::boot(KernelChoice::Main, Firmware::Bios, 2, &[opt], 120);
        testkit::expect_exit(&r, 2);
        assert!(testkit::everything(&r).contains(needle), "{opt}: the error does not say {needle:?}:\n{}", testkit::everything(&r));
    }
}
