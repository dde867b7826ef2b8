//! The `testbed` binary's command line: usage errors exit 2 without booting.

use std::process::Command;

fn testbed(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_testbed")).args(args).output().expect("run testbed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_exits_0() {
    let (code, text) = testbed(&["--help"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ramdisk") && text.contains("--smp"), "{text}");
    assert_eq!(testbed(&["help"]).0, 0);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["hello"][..],
        &["--smp", "0"],
        &["--smp", "65"],
        &["--mem", "10"],
        &["--accel", "xen"],
        &["--firmware", "coreboot"],
        &["--timeout", "soon"],
        &["--bogus"],
        &["Bad=1"],
        &["a=b c"],
        &["--suite", "no_such_suite"],
        &["--kernel", "/no/such/kernel"],
        &["image"],
    ] {
        let (code, text) = testbed(args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains("testbed:"), "{args:?}: {text}");
    }
}

#[test]
fn image_writes_both_images() {
    let dir = std::env::temp_dir().join(format!("testbed-image-{}", std::process::id()));
    let (code, text) = testbed(&["image", "--out", dir.to_str().unwrap(), "log=debug"]);
    assert_eq!(code, 0, "{text}");
    for f in ["bios.img", "uefi.img"] {
        let len = std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing or empty: {text}");
    }
    let opts = std::fs::read_to_string(dir.join("boot-options.txt")).unwrap();
    assert!(opts.lines().any(|l| l == "log=debug"), "{opts}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// QEMU's own failure (here a CPU model it does not know; on this project's
/// machines `--accel kvm` dies the same way in a KVM assertion) is reported as
/// QEMU's, with its message and the known remedy, and exit status 5: not as
/// "the kernel never reported an end".
#[test]
fn qemu_failure_is_reported_as_qemus() {
    let (code, text) = testbed(&["--cpu", "no-such-model", "--smp", "1", "--timeout", "120"]);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("QEMU itself failed"), "{text}");
    assert!(text.contains("unable to find CPU model 'no-such-model'"), "QEMU's message is not shown:\n{text}");
    assert!(text.contains("remedy:") && text.contains("-cpu help"), "no remedy:\n{text}");
    assert!(!text.contains("never reported an end"), "{text}");
}
