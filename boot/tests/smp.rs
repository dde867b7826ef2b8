//! The SMP suite (`tests/src/smp.rs`) on 1, 2 and 4 CPUs (BIOS) and 2 (UEFI), and the
//! x2APIC path where this machine can offer it.

use std::time::Duration;

use testbed::qemu::{Accel, Firmware};
use testbed::suite::{SuiteConfig, SuiteOutcome, run_suite};
use testbed::suites::suite_kernel;
use testbed::testkit;

/// Tests of the suite that need a second CPU (reported `ignored` on one).
const NEEDS_TWO_CPUS: usize = 7;

fn smp_suite(firmware: Firmware, smp: u32) -> SuiteOutcome {
    let out = testkit::run_suite_ok("smp", firmware, smp, 240);
    if smp == 1 {
        assert_eq!(out.ignored(), NEEDS_TWO_CPUS, "on one CPU the two-CPU tests must say they were skipped");
    } else {
        assert_eq!(out.ignored(), 0, "with {smp} CPUs nothing may be skipped");
    }
    assert!(out.log.contains(&format!("SMP: {smp} of {smp} CPUs online")), "not every CPU came online");
    out
}

#[test]
fn smp_suite_bios_smp1() {
    smp_suite(Firmware::Bios, 1);
}

#[test]
fn smp_suite_bios_smp2() {
    smp_suite(Firmware::Bios, 2);
}

#[test]
fn smp_suite_bios_smp4() {
    smp_suite(Firmware::Bios, 4);
}

#[test]
fn smp_suite_uefi_smp2() {
    smp_suite(Firmware::Uefi, 2);
}

/// QEMU's TCG offers no x2APIC; KVM with `-cpu host` does where the host CPU
/// has it. On this project's machines KVM is a slow software KVM (kvm_pvm)
/// and `-cpu host` needs `-arch-capabilities` (QEMU cannot set that MSR
/// there). Where none of this is available the test says so on stderr and
/// passes without having run: it cannot prove anything about x2APIC then.
#[test]
fn smp_suite_x2apic_under_kvm() {
    let kvm_rw = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    let x2apic = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.split_whitespace().any(|w| w == "x2apic"));
    if !kvm_rw || !x2apic {
        eprintln!(
            "SKIPPED smp_suite_x2apic_under_kvm: the x2APIC path was NOT exercised ({})",
            if kvm_rw { "host CPU has no x2apic" } else { "/dev/kvm is not usable" }
        );
        return;
    }
    let mut cfg = SuiteConfig::new(suite_kernel("smp").expect("suite smp"));
    cfg.accel = Accel::Kvm;
    cfg.cpu = Some("host,-arch-capabilities".into());
    cfg.smp = 2;
    // A software KVM runs this kernel ~100x slower than TCG.
    cfg.timeout = Duration::from_secs(900);
    cfg.per_test_timeout = Duration::from_secs(300);
    cfg.extra_options = vec!["smp.call_timeout_ms=20000".into()];
    let out = run_suite(&cfg);
    println!("{}", out.summary_line());
    if out.log.contains("KVM internal error") {
        eprintln!("SKIPPED smp_suite_x2apic_under_kvm: KVM cannot run the guest here:\n{}", out.report(20));
        return;
    }
    out.assert_ok();
    assert!(out.log.contains("X2Apic mode"), "KVM with -cpu host did not put the APIC in x2APIC mode");
    assert_eq!(out.ignored(), 0);
}
