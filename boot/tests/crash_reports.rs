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

/// SMAP is on under `-cpu max`: a kernel read of a mapped user page outside
/// uaccess is a reported page fault, not a silent read.
#[test]
fn user_access_outside_uaccess_is_reported() {
    let all = crash("useraccess", 1, "SMAP: kernel access to a user page outside uaccess");
    assert!(all.contains("SMEP on, SMAP on"), "the boot log should say SMEP and SMAP are on:\n{all}");
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

/// `debug.wedge_cpu=1`: CPU 1 halts with interrupts off; the boot CPU's next
/// shootdown must time out naming it, show its NMI backtrace (inside the wedge,
/// interrupts OFF) and end the run with the fatal status: never a silent hang.
#[test]
fn wedged_cpu_times_out_the_next_shootdown() {
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 2, &["debug.wedge_cpu=1"], 120);
    common::expect_exit(&r, 1);
    let all = common::everything(&r);
    for needle in [
        "cpu1 is wedged",
        "no answer from cpu1",
        "cpu1 (APIC id 1) at",
        "interrupts OFF",
        "wedged_here",
        "TLB shootdown to cpu1 not acknowledged",
    ] {
        assert!(all.contains(needle), "the wedged-CPU report lacks {needle:?}:\n{all}");
    }
}

/// A wedge of the boot CPU or of a CPU that is not online is a usage error
/// naming the key.
#[test]
fn bad_wedge_cpu_is_a_usage_error() {
    for (smp, word) in [(2, "debug.wedge_cpu=0"), (2, "debug.wedge_cpu=2"), (1, "debug.wedge_cpu=one")] {
        let r = common::boot(KernelChoice::Main, Firmware::Bios, smp, &[word], 120);
        common::expect_exit(&r, 2);
        assert!(r.console_text().contains("debug.wedge_cpu"), "{word}: the error does not name the key:\n{}", r.console_text());
    }
}
