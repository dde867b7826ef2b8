//! Command-line parsing for `testbed` (hand-written: a few options, no dependency).
//! One reading of option words ([`OptionWord`]: `--name value`, `--name=value`)
//! serves `run`/`image` and the subcommands ([`subcommand_options`]).
//!
//! `testbed [run] [options] [key=value ...]`, `testbed image --out DIR [...]`,
//! `testbed help`. Every word containing `=` that is not a host option (`--x=v`) is a
//! kernel boot option; its syntax is checked here ([`check_boot_option`]), its meaning
//! by the kernel. Errors are [`UsageError`]s: one line, host exit status 2.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::qemu::{AccelChoice, Firmware, Machine};

/// The help text (`testbed help`, `--help`).
pub const HELP: &str = "\
testbed: build a boot image for the kernel and run it under QEMU

USAGE:
    cargo run -- [run] [OPTIONS] [key=value ...]     (or ./run-qemu.sh ...)
    cargo run -- image --out DIR [--suite NAME | --kernel PATH] [key=value ...]
    cargo run -- matrix [--smp 2,3,4] [--seeds N] [--secs S] [--scenario NAME]
                        [--explore auto,off] [--config A;B]... [--rows all|caught|safe]
                        [--first-seed N] [--mem SIZE] [--out DIR] [--kernel PATH]
                        [--boot-per-row]
    cargo run -- compare [--smp N] [--accel tcg|kvm] [--mem SIZE] [--timeout SECS]
                         [--out DIR] [--peer DIR] [--ours FILE] [--linux FILE]
    cargo run -- help

With no options (and no scenario=, bench= or init=) the main kernel runs the main job:
every row of every race scenario's table, one after the other, then a table and one
verdict on serial and screen (job=none boots only).

Words of the form key=value are kernel boot options (key: a-z 0-9 . _ -, value:
no whitespace and no '#'). They are written one per line into a text file that is put into
the image as the bootloader's ramdisk: in the image's FAT partition it is the file
named `ramdisk`, so it can be edited on a USB stick. The kernel checks them and
exits with a usage error on a bad one.

OPTIONS (run):
    --smp N[,maxcpus=M] number of CPUs, 1..=64 (default 4, as the Linux peer);
                        maxcpus: M-N more CPUs the firmware lists as hot-pluggable
                        (disabled or online-capable MADT entries, never started)
    --machine M         q35 | pc, optionally ,hpet=off; pc also ,i8042=off (default q35)
    --mem SIZE          memory in MiB, or with suffix M or G (default 256, min 64)
    --accel A           tcg | kvm | auto (default tcg; auto takes KVM only when
                        /dev/kvm is usable and the CPU shows vmx/svm)
    --cpu MODEL         QEMU CPU model (default: max under tcg, host under kvm)
    --firmware F        bios | uefi (default bios)
    --timeout SECS      wall-clock limit, 0 = none (default 300; off with --gdb)
    --gdb               start QEMU halted with a gdb stub on :1234 (-s -S) and print
                        the gdb command line
    --display           show the framebuffer window (default: -display none)
    --usb               boot the image from an emulated USB stick (qemu-xhci +
                        usb-storage) with no serial port and judge the run from
                        the screen: the kernel's status band green = pass (0),
                        red = failure (1); the last screen is saved as a PNG
    --screenshot FILE   with --usb: where the PNG goes (default: the run dir)
    --resolution WxH    UEFI: the screen mode, e.g. 1920x1080 or 1280x800 (QEMU's VGA
                        offers it as its EDID's preferred mode and OVMF sets it;
                        default: OVMF's 1280x800). BIOS: the bootloader always sets
                        1280x720, so this is a usage error there
    --suite NAME        boot the kernel test suite NAME instead of the main kernel
    --kernel PATH       boot an arbitrary kernel ELF
    --serial-log FILE   also save the cleaned console to FILE
    --qemu-log FILE     where QEMU's -d cpu_reset,guest_errors log goes
                        (default: in the run directory)
    -h, --help          this text

OPTIONS (image):
    --out DIR           write DIR/bios.img and DIR/uefi.img (dd them to a USB stick)
    --suite NAME, --kernel PATH   as above

OPTIONS (matrix): the race matrix: every row of every scenario's table (the kernel lists
them) for each CPU count, exploration mode and seed: one boot per (CPU count,
exploration, seed) runs the selected rows one after the other (job.rows=, as the main
job), --boot-per-row boots once per run; every boot has a wall-clock bound; a progress bar, one table (caught n/N, median and p90 time to the first
corruption, overlaps/s, iterations/s, corruption kinds), runs.csv, summary.json and
time-to-catch.svg in --out (default target/testbed/matrix). Defaults: --smp 2,
--seeds 3 (seeds 1000, 1001, ...), --secs 10, --explore auto, every scenario and row;
--config takes configurations as in the RESULT line (gup.recheck:off,tlb:nmi), several
separated by ';' or given by repeating the option; --kernel PATH boots a saved kernel
ELF instead of this build's (a before/after pair).
Exit 0 when every run met its row's expectation, 1 otherwise, 2 for a usage error.

OPTIONS (compare): our benchmarks (bench=shootdown,gup,ksm,collapse) and the Linux peer's
(../shared/peer/linux/run.sh shootdown gup_fast ksm_merge collapse; its setup.sh installs what is
missing) on the same QEMU machine, one after the other; one table (rows keyed as the peer's
compare.sh keys them; ours, Linux, ours/Linux), compare.csv, compare.json (with the conditions:
host, accelerator, CPUs, load), compare.md and shootdown.svg, pin.svg, latency.svg in --out
(default target/testbed/compare). Defaults: --smp 2, --accel tcg, --mem 256, --timeout 900 per
run. --peer DIR: the peer's folder (or $PEER_DIR); --ours/--linux FILE: recorded RESULT lines
instead of running that side. If the peer cannot run, the reason is printed and ours still
reported (exit 1; 0 when both ran).

EXIT STATUS (run):
    0 pass, 1 failure reported by the kernel (test failure, panic, CPU exception),
    2 usage error (bad host option, or a boot option the kernel rejected),
    3 wall-clock timeout, 4 the kernel never reported an end (e.g. triple fault),
    5 QEMU itself failed (its message and, where known, a remedy are shown).

Images and logs go to target/testbed/<run>/.
";

/// A command-line error: one line, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error with `msg`.
pub(crate) fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Which kernel ELF to boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// The main kernel (`kernel` package).
    #[default]
    Main,
    /// A test-suite kernel by name (see [`crate::suites`]).
    Suite(String),
    /// Any kernel ELF.
    Path(PathBuf),
}

/// Options of `testbed run`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub machine: Machine,
    pub smp: u32,
    /// `--smp N,maxcpus=M`.
    pub maxcpus: Option<u32>,
    pub mem_mib: u32,
    pub accel: AccelChoice,
    pub cpu: Option<String>,
    pub firmware: Firmware,
    /// `None`: no wall-clock limit.
    pub timeout: Option<Duration>,
    pub gdb: bool,
    pub display: bool,
    pub kernel: KernelChoice,
    pub serial_log: Option<PathBuf>,
    pub qemu_log: Option<PathBuf>,
    pub boot_options: Vec<String>,
    /// `--usb`: boot from an emulated USB stick, judge from the screen.
    pub usb: bool,
    /// `--screenshot FILE` (with `--usb`).
    pub screenshot: Option<PathBuf>,
    /// `--resolution WxH` (UEFI): the screen mode QEMU's VGA prefers.
    pub resolution: Option<(u32, u32)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            machine: Machine::default(),
            smp: 4,
            maxcpus: None,
            mem_mib: 256,
            accel: AccelChoice::Tcg,
            cpu: None,
            firmware: Firmware::Bios,
            timeout: Some(Duration::from_secs(300)),
            gdb: false,
            display: false,
            kernel: KernelChoice::Main,
            serial_log: None,
            qemu_log: None,
            boot_options: Vec::new(),
            usb: false,
            screenshot: None,
            resolution: None,
        }
    }
}

/// Options of `testbed image`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOptions {
    pub out: PathBuf,
    pub kernel: KernelChoice,
    pub boot_options: Vec<String>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(RunOptions),
    Image(ImageOptions),
    Matrix(crate::matrix::MatrixOptions),
    Compare(crate::compare::CompareOptions),
    Help,
}

/// Checks the syntax of a boot option word `key=value`: a non-empty key of
/// `[a-z0-9._-]` and a value without whitespace (it may be empty).
pub fn check_boot_option(word: &str) -> Result<(), UsageError> {
    let Some((key, value)) = word.split_once('=') else {
        return usage(format!("boot option '{word}' is not of the form key=value"));
    };
    if key.is_empty() {
        return usage(format!("boot option '{word}' has an empty key"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return usage(format!(
            "boot option '{word}': key '{key}' contains {c:?} (allowed: a-z 0-9 . _ -)"
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return usage(format!("boot option '{word}': the value contains whitespace"));
    }
    if value.contains('#') {
        return usage(format!("boot option '{word}': the value contains '#' (starts a comment in the boot-options file)"));
    }
    if value.chars().any(char::is_control) {
        return usage(format!("boot option '{word}': the value contains a control character"));
    }
    Ok(())
}

/// Parses `--resolution WxH` (320x200 up to 7680x4320; QEMU's VGA needs
/// widths that are multiples of 8).
pub fn parse_resolution(s: &str) -> Result<(u32, u32), UsageError> {
    let bad = || UsageError(format!("--resolution: '{s}' is not WIDTHxHEIGHT (e.g. 1920x1080)"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(320..=7680).contains(&w) || !(200..=4320).contains(&h) || w % 8 != 0 {
        return usage(format!(
            "--resolution: {w}x{h} is out of range (width 320-7680 and a multiple of 8, height 200-4320)"
        ));
    }
    Ok((w, h))
}

/// Parses `--mem`: a MiB number, or a number with suffix M or G (case-insensitive,
/// `MiB`/`GiB` also accepted). At least 64 MiB.
pub fn parse_mem(s: &str) -> Result<u32, UsageError> {
    let bad = || UsageError(format!("--mem: '{s}' is not a size (e.g. 256, 512M, 2G)"));
    let lower = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("gib").or(lower.strip_suffix('g')) {
        (n, 1024u64)
    } else if let Some(n) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (n, 1)
    } else {
        (lower.as_str(), 1)
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mib = n.checked_mul(mult).ok_or_else(bad)?;
    if mib < 64 {
        return usage(format!("--mem: {mib} MiB is too small (at least 64 MiB)"));
    }
    if mib > 1024 * 1024 {
        return usage(format!("--mem: {mib} MiB is too large (at most 1024G)"));
    }
    Ok(mib as u32)
}

fn parse_smp(s: &str) -> Result<u32, UsageError> {
    match s.parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => usage(format!("--smp: '{s}' is not a CPU count in 1..=64")),
    }
}

/// `--smp N` or `--smp N,maxcpus=M` (N <= M <= 64).
fn parse_smp_maxcpus(s: &str) -> Result<(u32, Option<u32>), UsageError> {
    let Some((n, m)) = s.split_once(',') else { return Ok((parse_smp(s)?, None)) };
    let n = parse_smp(n)?;
    match m.strip_prefix("maxcpus=").map(str::parse::<u32>) {
        Some(Ok(m)) if (n..=64).contains(&m) => Ok((n, Some(m))),
        _ => usage(format!("--smp: '{s}': expected N,maxcpus=M with N <= M <= 64")),
    }
}

fn parse_timeout(s: &str) -> Result<Option<Duration>, UsageError> {
    match s.parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(Duration::from_secs(n))),
        Err(_) => usage(format!("--timeout: '{s}' is not a number of seconds (0 = none)")),
    }
}

/// One host option word: `--name`, or `--name=value` with its value inline
/// (otherwise an option's value is the next word). A word that does not start
/// with `--` is all name, so a table of names never matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionWord {
    pub name: String,
    inline: Option<String>,
}

impl OptionWord {
    /// Splits `word` at its first `=` when it starts with `--`.
    pub fn parse(word: &str) -> OptionWord {
        match word.split_once('=') {
            Some((n, v)) if n.starts_with("--") => OptionWord { name: n.to_string(), inline: Some(v.to_string()) },
            _ => OptionWord { name: word.to_string(), inline: None },
        }
    }

    /// Whether the word carried a value (`--name=value`).
    pub fn has_value(&self) -> bool {
        self.inline.is_some()
    }

    /// The option's value: the inline one, else the next of `rest` (`None`:
    /// the words ran out).
    pub fn value(self, rest: &mut impl Iterator<Item = String>) -> Option<String> {
        self.inline.or_else(|| rest.next())
    }
}

/// Reads the options of a subcommand (`matrix`, `compare`): `--name value` or
/// `--name=value` with a non-empty value for `name` one of `values`, a bare
/// `--name` for one of `flags`. Returns each option's name and value in order
/// (a flag's value is empty); errors start with `cmd`.
pub fn subcommand_options(
    cmd: &str,
    values: &[&'static str],
    flags: &[&'static str],
    args: &[String],
) -> Result<Vec<(&'static str, String)>, UsageError> {
    let mut words = args.iter().cloned();
    let mut options = Vec::new();
    while let Some(word) = words.next() {
        let opt = OptionWord::parse(&word);
        if let Some(&name) = flags.iter().find(|n| **n == opt.name) {
            if opt.has_value() {
                return usage(format!("{cmd}: option {name} takes no value"));
            }
            options.push((name, String::new()));
            continue;
        }
        let Some(&name) = values.iter().find(|n| **n == opt.name) else {
            return usage(format!("{cmd}: unknown option '{}' (see `testbed help`)", opt.name));
        };
        match opt.value(&mut words) {
            Some(v) if !v.is_empty() => options.push((name, v)),
            _ => return usage(format!("{cmd}: option {name} needs a value")),
        }
    }
    Ok(options)
}

/// The options that take a value.
const VALUE_OPTIONS: &[&str] = &[
    "--smp", "--machine", "--mem", "--resolution", "--accel", "--cpu", "--firmware", "--timeout", "--suite", "--kernel",
    "--serial-log", "--qemu-log", "--out", "--screenshot",
];
/// The options without a value.
const FLAG_OPTIONS: &[&str] = &["--gdb", "--display", "--help", "--usb"];
/// The options `testbed image` accepts.
const IMAGE_OPTIONS: &[&str] = &["--out", "--suite", "--kernel", "--help"];

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args: Vec<String> = args.into_iter().map(Into::into).collect();
    let sub = match args.first().map(String::as_str) {
        Some("run") => {
            args.remove(0);
            "run"
        }
        Some("image") => {
            args.remove(0);
            "image"
        }
        Some("matrix") => {
            if args.iter().any(|a| a == "--help" || a == "-h") {
                return Ok(Command::Help);
            }
            return crate::matrix::parse(&args[1..]).map(Command::Matrix);
        }
        Some("compare") => {
            if args.iter().any(|a| a == "--help" || a == "-h") {
                return Ok(Command::Help);
            }
            return crate::compare::parse(&args[1..]).map(Command::Compare);
        }
        Some("help") => {
            if args.len() > 1 {
                return usage(format!("'help' takes no arguments (got '{}')", args[1]));
            }
            return Ok(Command::Help);
        }
        _ => "run",
    };

    let mut run = RunOptions::default();
    let mut out: Option<PathBuf> = None;
    let mut kernel_set: Option<&'static str> = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" {
            return Ok(Command::Help);
        }
        if arg == "--" {
            return usage("'--' is not used: boot options are plain key=value words");
        }
        if !arg.starts_with('-') {
            if arg.contains('=') {
                check_boot_option(&arg)?;
                run.boot_options.push(arg);
                continue;
            }
            return usage(format!(
                "unexpected argument '{arg}': boot options are key=value words, host options start with --"
            ));
        }
        if !arg.starts_with("--") {
            return usage(format!("unknown option '{arg}'"));
        }
        let opt = OptionWord::parse(&arg);
        let name: &'static str = if let Some(n) = VALUE_OPTIONS.iter().find(|o| **o == opt.name) {
            n
        } else if let Some(n) = FLAG_OPTIONS.iter().find(|o| **o == opt.name) {
            if opt.has_value() {
                return usage(format!("option {n} takes no value"));
            }
            n
        } else {
            return usage(format!("unknown option '{}'", opt.name));
        };
        if sub == "image" && !IMAGE_OPTIONS.contains(&name) {
            return usage(format!("option {name} does not apply to 'testbed image'"));
        }
        let value = if VALUE_OPTIONS.contains(&name) {
            match opt.value(&mut it) {
                Some(v) => v,
                None => return usage(format!("option {name} needs a value")),
            }
        } else {
            String::new()
        };
        let nonempty = |v: &str| -> Result<(), UsageError> {
            if v.is_empty() { usage(format!("option {name} needs a non-empty value")) } else { Ok(()) }
        };
        match name {
            "--help" => return Ok(Command::Help),
            "--gdb" => run.gdb = true,
            "--display" => run.display = true,
            "--usb" => run.usb = true,
            "--screenshot" => {
                nonempty(&value)?;
                run.screenshot = Some(PathBuf::from(value));
            }
            "--resolution" => run.resolution = Some(parse_resolution(&value)?),
            "--smp" => (run.smp, run.maxcpus) = parse_smp_maxcpus(&value)?,
            "--machine" => run.machine = Machine::parse(&value).map_err(UsageError)?,
            "--mem" => run.mem_mib = parse_mem(&value)?,
            "--accel" => {
                run.accel = match value.as_str() {
                    "tcg" => AccelChoice::Tcg,
                    "kvm" => AccelChoice::Kvm,
                    "auto" => AccelChoice::Auto,
                    _ => return usage(format!("--accel: '{value}' is not one of tcg, kvm, auto")),
                }
            }
            "--firmware" => {
                run.firmware = match value.as_str() {
                    "bios" => Firmware::Bios,
                    "uefi" => Firmware::Uefi,
                    _ => return usage(format!("--firmware: '{value}' is not one of bios, uefi")),
                }
            }
            "--cpu" => {
                nonempty(&value)?;
                if value.chars().any(char::is_whitespace) {
                    return usage(format!("--cpu: '{value}' contains whitespace"));
                }
                run.cpu = Some(value);
            }
            "--timeout" => run.timeout = parse_timeout(&value)?,
            "--suite" | "--kernel" => {
                nonempty(&value)?;
                if let Some(prev) = kernel_set {
                    return usage(format!("{name} conflicts with {prev}: give only one kernel"));
                }
                kernel_set = Some(name);
                run.kernel = if name == "--suite" {
                    KernelChoice::Suite(value)
                } else {
                    KernelChoice::Path(PathBuf::from(value))
                };
            }
            "--serial-log" => {
                nonempty(&value)?;
                run.serial_log = Some(PathBuf::from(value));
            }
            "--qemu-log" => {
                nonempty(&value)?;
                run.qemu_log = Some(PathBuf::from(value));
            }
            "--out" => {
                nonempty(&value)?;
                out = Some(PathBuf::from(value));
            }
            _ => unreachable!("option table and match disagree on {name}"),
        }
    }

    if sub == "image" {
        let Some(out) = out else {
            return usage("'testbed image' needs --out DIR");
        };
        return Ok(Command::Image(ImageOptions {
            out,
            kernel: run.kernel,
            boot_options: run.boot_options,
        }));
    }
    if out.is_some() {
        return usage("--out only applies to 'testbed image'");
    }
    if run.screenshot.is_some() && !run.usb {
        return usage("--screenshot only applies with --usb");
    }
    if run.resolution.is_some() && run.firmware == Firmware::Bios {
        return usage(
            "--resolution needs --firmware uefi: the BIOS bootloader (bootloader 0.11.17) always \
             picks the largest VESA mode up to 1280x720",
        );
    }
    if run.usb && run.gdb {
        return usage("--usb and --gdb do not go together");
    }
    if run.gdb {
        run.timeout = None;
    }
    Ok(Command::Run(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunOptions {
        match parse(args.iter().copied()) {
            Ok(Command::Run(r)) => r,
            other => panic!("expected run options for {args:?}, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(UsageError(m)) => m,
            other => panic!("expected a usage error for {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let r = run(&[]);
        assert_eq!(r, RunOptions::default());
        assert_eq!(r.smp, 4, "the default matches the Linux peer");
        assert_eq!(r.mem_mib, 256);
        assert_eq!(r.accel, AccelChoice::Tcg);
        assert_eq!(r.firmware, Firmware::Bios);
        assert_eq!(r.timeout, Some(Duration::from_secs(300)));
        assert_eq!(run(&["run"]), RunOptions::default());
    }

    #[test]
    fn every_option() {
        let r = run(&[
            "run", "--smp", "4", "--mem", "1G", "--accel", "auto", "--cpu", "max,-la57",
            "--firmware", "uefi", "--timeout", "30", "--display", "--suite", "boot",
            "--serial-log", "s.log", "--qemu-log", "q.log", "a=1", "b.c_d-e=",
        ]);
        assert_eq!(r.smp, 4);
        assert_eq!(r.mem_mib, 1024);
        assert_eq!(r.accel, AccelChoice::Auto);
        assert_eq!(r.cpu.as_deref(), Some("max,-la57"));
        assert_eq!(r.firmware, Firmware::Uefi);
        assert_eq!(r.timeout, Some(Duration::from_secs(30)));
        assert!(r.display && !r.gdb);
        assert_eq!(r.kernel, KernelChoice::Suite("boot".into()));
        assert_eq!(r.serial_log, Some(PathBuf::from("s.log")));
        assert_eq!(r.qemu_log, Some(PathBuf::from("q.log")));
        assert_eq!(r.boot_options, vec!["a=1", "b.c_d-e="]);

        let r = run(&["--kernel=/x/k", "--smp=64", "--accel=kvm", "--firmware=bios", "--mem=64"]);
        assert_eq!(r.kernel, KernelChoice::Path("/x/k".into()));
        assert_eq!((r.smp, r.mem_mib, r.accel), (64, 64, AccelChoice::Kvm));
        assert_eq!(run(&["--accel", "tcg"]).accel, AccelChoice::Tcg);
    }

    #[test]
    fn resolution_option() {
        let r = run(&["--firmware", "uefi", "--resolution", "1920x1080"]);
        assert_eq!(r.resolution, Some((1920, 1080)));
        assert_eq!(run(&["--resolution=1280x800", "--firmware=uefi"]).resolution, Some((1280, 800)));
        assert_eq!(run(&[]).resolution, None);
        assert!(err(&["--resolution", "1920x1080"]).contains("--firmware uefi"));
        for bad in ["1920", "1920x", "x1080", "axb", "100x100", "1921x1080", "1920x99999"] {
            assert!(err(&["--firmware", "uefi", "--resolution", bad]).contains("--resolution"), "{bad}");
        }
    }

    #[test]
    fn usb_screen_options() {
        let r = run(&["--usb", "--screenshot", "s.png", "--firmware", "uefi"]);
        assert!(r.usb);
        assert_eq!(r.screenshot, Some(PathBuf::from("s.png")));
        assert!(err(&["--screenshot", "s.png"]).contains("--usb"));
        assert!(err(&["--usb", "--gdb"]).contains("--usb"));
    }

    #[test]
    fn machine_and_maxcpus() {
        let r = run(&["--machine", "pc,hpet=off", "--smp", "2,maxcpus=4"]);
        assert_eq!((r.machine.kind, r.machine.hpet), (crate::qemu::MachineType::Pc, false));
        assert_eq!((r.smp, r.maxcpus), (2, Some(4)));
        assert_eq!(run(&["--smp", "3"]).maxcpus, None);
        assert_eq!(run(&["--machine=q35"]).machine, Machine::default());
        for bad in [&["--machine", "virt"][..], &["--machine", "pc,hpet=no"], &["--smp", "4,maxcpus=2"], &["--smp", "2,max=4"], &["--smp", "2,maxcpus=65"]] {
            let e = err(bad);
            assert!(e.contains(bad[0]), "{bad:?}: {e}");
        }
    }

    #[test]
    fn gdb_disables_timeout() {
        let r = run(&["--gdb", "--timeout", "10"]);
        assert!(r.gdb);
        assert_eq!(r.timeout, None);
        assert_eq!(run(&["--timeout", "0"]).timeout, None);
    }

    #[test]
    fn mem_sizes() {
        assert_eq!(parse_mem("256"), Ok(256));
        assert_eq!(parse_mem("512M"), Ok(512));
        assert_eq!(parse_mem("512m"), Ok(512));
        assert_eq!(parse_mem("512MiB"), Ok(512));
        assert_eq!(parse_mem("2G"), Ok(2048));
        assert_eq!(parse_mem("2g"), Ok(2048));
        assert_eq!(parse_mem("64"), Ok(64));
        for bad in ["", "G", "1.5G", "-1", "abc", "12K", "63", "0", "99999999999999999999", "2048G"] {
            assert!(parse_mem(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_values() {
        assert!(err(&["--smp", "0"]).contains("--smp"));
        assert!(err(&["--smp", "65"]).contains("1..=64"));
        assert!(err(&["--smp", "two"]).contains("--smp"));
        assert!(err(&["--smp"]).contains("needs a value"));
        assert!(err(&["--mem", "32"]).contains("too small"));
        assert!(err(&["--accel", "hvf"]).contains("tcg, kvm, auto"));
        assert!(err(&["--firmware", "coreboot"]).contains("bios, uefi"));
        assert!(err(&["--timeout", "-1"]).contains("--timeout"));
        assert!(err(&["--timeout", "1.5"]).contains("--timeout"));
        assert!(err(&["--cpu", ""]).contains("non-empty"));
        assert!(err(&["--cpu", "max la57"]).contains("whitespace"));
        assert!(err(&["--suite", "a", "--kernel", "b"]).contains("conflicts"));
        assert!(err(&["--gdb=1"]).contains("takes no value"));
        assert!(err(&["--frobnicate"]).contains("unknown option"));
        assert!(err(&["-x"]).contains("unknown option"));
        assert!(err(&["--out", "d"]).contains("image"));
        assert!(err(&["--"]).contains("--"));
    }

    #[test]
    fn subcommand_option_words() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (names, flags) = (&["--a", "--bb"], &["--f"]);
        let parse = |w: &[&str]| subcommand_options("cmd", names, flags, &words(w));
        assert_eq!(
            parse(&["--a", "1", "--bb=x=y", "--f", "--a=2"]),
            Ok(vec![("--a", "1".to_string()), ("--bb", "x=y".to_string()), ("--f", String::new()), ("--a", "2".to_string())])
        );
        assert_eq!(parse(&[]), Ok(vec![]));
        let err = |w: &[&str]| parse(w).unwrap_err().0;
        assert_eq!(err(&["--a"]), "cmd: option --a needs a value");
        assert_eq!(err(&["--a="]), "cmd: option --a needs a value");
        assert_eq!(err(&["--a", ""]), "cmd: option --a needs a value");
        assert_eq!(err(&["--f=1"]), "cmd: option --f takes no value");
        assert_eq!(err(&["--c", "1"]), "cmd: unknown option '--c' (see `testbed help`)");
        assert_eq!(err(&["--c"]), "cmd: unknown option '--c' (see `testbed help`)", "unknown before missing value");
        assert_eq!(err(&["k=v"]), "cmd: unknown option 'k=v' (see `testbed help`)");
        assert_eq!(OptionWord::parse("x=--y").name, "x=--y");
    }

    #[test]
    fn boot_option_words() {
        assert_eq!(run(&["crash=panic"]).boot_options, vec!["crash=panic"]);
        assert_eq!(run(&["ktest.filter=mm::", "x="]).boot_options, vec!["ktest.filter=mm::", "x="]);
        assert!(err(&["hello"]).contains("unexpected argument 'hello'"));
        assert!(err(&["=1"]).contains("empty key"));
        assert!(err(&["Key=1"]).contains("key 'Key'"));
        assert!(err(&["a b=1"]).contains("key"));
        assert!(err(&["a=b c"]).contains("whitespace"));
        assert!(err(&["a=b\tc"]).contains("whitespace"));
        assert!(err(&["a=b#c"]).contains("'#'"));
        assert!(check_boot_option("a.b_c-9=x=y").is_ok());
        assert!(check_boot_option("noequals").is_err());
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(["help"]), Ok(Command::Help));
        assert_eq!(parse(["--help"]), Ok(Command::Help));
        assert_eq!(parse(["-h"]), Ok(Command::Help));
        assert_eq!(parse(["run", "--smp", "2", "--help"]), Ok(Command::Help));
        assert!(parse(["help", "x"]).is_err());
        assert_eq!(
            parse(["image", "--out", "d", "--suite", "boot", "k=v"]),
            Ok(Command::Image(ImageOptions {
                out: "d".into(),
                kernel: KernelChoice::Suite("boot".into()),
                boot_options: vec!["k=v".into()],
            }))
        );
        assert!(parse(["image"]).unwrap_err().0.contains("--out"));
        assert!(parse(["image", "--out", "d", "--smp", "2"]).unwrap_err().0.contains("does not apply"));
        // A subcommand name later on is a stray word.
        assert!(parse(["--smp", "2", "image"]).is_err());
    }
}
