//! Boots the main kernel under BIOS and UEFI with 1, 2 and 4 CPUs: each must end
//! with `TESTBED-END status=pass` and QEMU status 33 (`testbed run` exit 0).

use testbed::testkit as common;

use testbed::cli::KernelChoice;
use testbed::qemu::Firmware;

fn boots_and_passes(firmware: Firmware, smp: u32) {
    let r = common::boot(KernelChoice::Main, firmware, smp, &[], 120);
    common::expect_exit(&r, 0);
    assert!(r.output.console.lines.iter().any(|l| l.contains("TESTBED-END status=pass")));
}

#[test]
fn bios_smp1() {
    boots_and_passes(Firmware::Bios, 1);
}

#[test]
fn bios_smp2() {
    boots_and_passes(Firmware::Bios, 2);
}

#[test]
fn bios_smp4() {
    boots_and_passes(Firmware::Bios, 4);
}

#[test]
fn uefi_smp1() {
    boots_and_passes(Firmware::Uefi, 1);
}

#[test]
fn uefi_smp2() {
    boots_and_passes(Firmware::Uefi, 2);
}

#[test]
fn uefi_smp4() {
    boots_and_passes(Firmware::Uefi, 4);
}
