//! The main kernel's deliberate crashes (`crash=...`) must each give the right
//! `testbed run` exit status and a report that names the crash; bad boot options
//! must give the usage status 2.

use testbed::testkit as common;

use testbed::cli::KernelChoice;
use testbed::qemu::Firmware;

/// Boots with `crash=<what>` and checks the exit status and the report; returns
/// console + verdict message.
fn crash(what: &str, exit: i32, needle: &str) -> String {
    let opt = format!("crash={what}");
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 1, &[&opt], 120);
    common::expect_exit(&r, exit);
    let all = common::everything(&r);
    assert!(all.contains(needle), "crash={what}: the report does not contain {needle:?}:\n{all}");
    all
}

#[test]
fn panic_is_reported() {
    crash("panic", 1, "panicked");
}

#[test]
fn page_fault_is_reported() {
    crash("pagefault", 1, "PAGE FAULT");
}

#[test]
fn double_fault_is_reported() {
    crash("doublefault", 1, "DOUBLE FAULT");
}

#[test]
fn stack_overflow_is_reported() {
    crash("stackoverflow", 1, "stack overflow");
}

#[test]
fn triple_fault_is_reported() {
    // No handler can report a triple fault: QEMU exits 0 under -no-reboot, the host
    // says so (exit 4) and shows the CPU state from QEMU's reset log.
    let all = crash("triplefault", 4, "triple fault");
    assert!(all.contains("RIP=ffffffff8"), "no kernel RIP in the triple-fault report:\n{all}");
}

#[test]
fn bad_crash_value_is_a_usage_error() {
    // `bad_option_probe` is not a crash the kernel knows: it must reject the value.
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 1, &["crash=bad_option_probe"], 120);
    common::expect_exit(&r, 2);
}

#[test]
fn unknown_boot_option_is_a_usage_error() {
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 1, &["bogus=1"], 120);
    common::expect_exit(&r, 2);
    assert!(r.console_text().contains("bogus"), "the kernel should name the bad option:\n{}", r.console_text());
}
