//! Boots the main kernel (boot only: `job=none`) under BIOS and UEFI with 1, 2 and 4 CPUs: each must end
//! with `TESTBED-END status=pass` and QEMU status 33 (`testbed run` exit 0).

use testbed::testkit as common;

use testbed::cli::KernelChoice;
use testbed::qemu::Firmware;

fn boots_and_passes(firmware: Firmware, smp: u32) {
    let r = common::boot(KernelChoice::Main, firmware, smp, &["job=none"], 120);
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

/// `end=reboot`: after its end marker the kernel resets the machine through
/// the FADT reset register (QEMU q35: I/O port 0xcf9, value 0xf). The host
/// gives QEMU no isa-debug-exit then, so only that reset (QEMU exits 0 under
/// -no-reboot) ends the run, and the end marker gives the verdict.
#[test]
fn end_reboot_resets_through_the_fadt() {
    for firmware in [Firmware::Bios, Firmware::Uefi] {
        let r = common::boot(KernelChoice::Main, firmware, 1, &["end=reboot", "job=none"], 120);
        common::expect_exit(&r, 0);
        let text = r.console_text();
        assert!(text.contains("reset port 0xcf9 <- 0xf"), "the ACPI line does not show the reset register:\n{text}");
        assert!(text.contains("end=reboot: writing 0xf to the FADT reset register (I/O port 0xcf9)"), "{text}");
        assert!(!text.contains("did not reset"), "{text}");
        assert!(!text.contains("halting: power the machine off"), "the machine halted instead of resetting:\n{text}");
    }
}

/// `end=reboot` where the FADT has no reset register (QEMU's pc: an ACPI 1.0
/// FADT): as Linux, the 8042 keyboard controller's reset line; with no 8042
/// (`pc,i8042=off`) that does nothing and a triple fault resets the machine.
/// Either way QEMU resets (exit 0 under -no-reboot) after the end marker.
#[test]
fn end_reboot_without_a_reset_register_uses_the_8042_then_a_triple_fault() {
    for (machine, triple) in [("pc", false), ("pc,i8042=off", true)] {
        let opts = testbed::cli::RunOptions {
            machine: testbed::qemu::Machine::parse(machine).unwrap(),
            smp: 1,
            timeout: Some(std::time::Duration::from_secs(120)),
            boot_options: vec!["end=reboot".into(), "job=none".into()],
            ..Default::default()
        };
        let r = testbed::run(&opts, true).unwrap_or_else(|e| panic!("{}", e.message));
        common::expect_exit(&r, 0);
        let text = r.console_text();
        assert!(text.contains("no reset register (reboot by the 8042)"), "{machine}: the ACPI line:\n{text}");
        assert!(text.contains("end=reboot: no reset register (the FADT predates ACPI 2.0"), "{machine}:\n{text}");
        assert!(text.contains("end=reboot: pulsing the reset line of the 8042"), "{machine}:\n{text}");
        assert_eq!(text.contains("end=reboot: resetting by triple fault"), triple, "{machine}:\n{text}");
        assert!(!text.contains("halting: power the machine off"), "{machine}: halted instead of resetting:\n{text}");
    }
}

/// `end=poweroff`: the kernel loads the DSDT into the `acpi` crate's AML
/// interpreter at boot, evaluates `\_S5`, and after its end marker writes
/// SLP_TYP|SLP_EN to PM1a_CNT (QEMU: sleep type 0; the port is where the
/// firmware put the PM block: 0x604 under SeaBIOS, 0xb004 under OVMF on pc).
/// QEMU powers off: exit 0 (it has no isa-debug-exit then) right after.
#[test]
fn end_poweroff_enters_s5() {
    for machine in ["q35", "pc"] {
        let opts = testbed::cli::RunOptions {
            machine: testbed::qemu::Machine::parse(machine).unwrap(),
            smp: 1,
            timeout: Some(std::time::Duration::from_secs(120)),
            boot_options: vec!["end=poweroff".into(), "job=none".into()],
            ..Default::default()
        };
        let r = testbed::run(&opts, true).unwrap_or_else(|e| panic!("{}", e.message));
        common::expect_exit(&r, 0);
        let text = r.console_text();
        assert!(text.contains("end=poweroff: S5 by SLP_TYP 0x0/0x0 to PM1a_CNT port 0x"), "{machine}:\n{text}");
        assert!(text.contains("end=poweroff: entering S5"), "{text}");
        assert!(!text.contains("did not power"), "{text}");
        assert!(!text.contains("halting: power the machine off"), "the machine halted instead of powering off:\n{text}");
    }
}

/// A bad `end=` value is a usage error naming the key.
#[test]
fn bad_end_value_is_a_usage_error() {
    let r = common::boot(KernelChoice::Main, Firmware::Bios, 1, &["end=sleep"], 120);
    common::expect_exit(&r, 2);
    assert!(r.console_text().contains("'end'"), "{}", r.console_text());
}
