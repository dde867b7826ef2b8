//! The screen tier: the main job booted as a user with no serial port would
//! (`testbed --usb`: the image on an emulated USB stick behind xHCI, `-serial
//! none`, no isa-debug-exit), judged from the screen alone: the colour of the
//! kernel's status band in a screendump taken through QEMU's monitor. One BIOS
//! and one UEFI boot of the main job must turn it green; a deliberate crash
//! must turn it red (so the check can fail). Each run leaves the last screen
//! as a PNG.

use std::time::Duration;

use testbed::cli::RunOptions;
use testbed::qemu::Firmware;
use testbed::screen::Band;

fn usb_run(firmware: Firmware, options: &[&str]) -> testbed::ScreenReport {
    let opts = RunOptions {
        firmware,
        smp: 2,
        usb: true,
        timeout: Some(Duration::from_secs(600)),
        boot_options: options.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let r = testbed::run_usb(&opts).unwrap_or_else(|e| panic!("testbed could not run: {}", e.message));
    eprint!("{}", r.message());
    let png = r.png.as_ref().unwrap_or_else(|| panic!("no PNG of the screen: {}", r.message()));
    let bytes = std::fs::read(png).expect("read the PNG");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", png.display());
    r
}

#[test]
fn main_job_from_a_usb_stick_bios_is_green() {
    let r = usb_run(Firmware::Bios, &[]);
    assert_eq!(r.band, Band::Pass, "{}", r.message());
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn main_job_from_a_usb_stick_uefi_is_green() {
    let r = usb_run(Firmware::Uefi, &[]);
    assert_eq!(r.band, Band::Pass, "{}", r.message());
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn a_crash_turns_the_band_red() {
    let r = usb_run(Firmware::Bios, &["crash=panic"]);
    assert_eq!(r.band, Band::Fail, "{}", r.message());
    assert_eq!(r.exit_code(), 1);
}
