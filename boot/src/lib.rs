//! The host side of the bare-metal kernel testbed: builds boot images for a kernel
//! ELF and runs them under QEMU, reading the kernel's verdict from the serial console.
//!
//! * [`cli`]: command-line parsing;
//! * [`image`]: disk images and the boot-options file;
//! * [`qemu`]: QEMU flags, accelerator probing, running, exit-status mapping, gdb;
//! * [`serial`]: the console stream and the kernel <-> host protocol;
//! * [`matrix`]: the race matrix (`testbed matrix`);
//! * [`compare`]: ours and the Linux peer side by side (`testbed compare`);
//! * [`suite`]: running a kernel test suite with crash recovery;
//! * [`suites`]: the kernels known by name.
//!
//! [`run`] is `testbed run` without the printing of the final verdict; the binary
//! (`src/main.rs`) and the integration tests (`boot/tests/`) use it.

pub mod cli;
pub mod compare;
pub mod image;
pub mod matrix;
pub mod qemu;
pub mod screen;
pub mod serial;
pub mod suite;
pub mod suites;
pub mod testkit;

use std::path::{Path, PathBuf};

use cli::{KernelChoice, RunOptions, UsageError};
use qemu::{QemuExit, QemuFailure, QemuLog, QemuSpec, RunConfig, RunOutput, Verdict};

/// How many console lines are shown after a timeout or a missing end marker.
pub const TAIL_LINES: usize = 20;

/// The kernel ELF for a [`KernelChoice`].
pub fn resolve_kernel(choice: &KernelChoice) -> Result<PathBuf, UsageError> {
    match choice {
        KernelChoice::Main => Ok(PathBuf::from(suites::MAIN_KERNEL)),
        KernelChoice::Suite(name) => suites::suite_kernel(name).ok_or_else(|| {
            let names = suites::suite_names();
            UsageError(format!(
                "unknown suite '{name}' (known: {})",
                if names.is_empty() { "none yet".to_string() } else { names.join(", ") }
            ))
        }),
        KernelChoice::Path(p) => {
            if p.is_file() {
                Ok(p.clone())
            } else {
                Err(UsageError(format!("--kernel: {} is not a file", p.display())))
            }
        }
    }
}

/// A failure before QEMU could run: a message and the exit status (2).
#[derive(Debug)]
pub struct SetupError {
    pub message: String,
    pub exit_code: i32,
}

impl From<UsageError> for SetupError {
    fn from(e: UsageError) -> Self {
        SetupError { message: e.0, exit_code: 2 }
    }
}

fn setup(message: String) -> SetupError {
    SetupError { message, exit_code: 2 }
}

/// What one `testbed run` saw.
#[derive(Debug)]
pub struct RunReport {
    pub kernel: PathBuf,
    /// The run directory (image, boot options, QEMU log).
    pub dir: PathBuf,
    pub qemu_log_path: PathBuf,
    pub output: RunOutput,
    pub qemu_log: QemuLog,
    pub verdict: Verdict,
    pub timeout: Option<std::time::Duration>,
    /// The CPU state in `qemu_log` comes from a second boot that reproduced the
    /// triple fault (see [`qemu::reproduce_triple_fault`]).
    pub reproduced: bool,
    /// QEMU itself failed (then `verdict` is [`Verdict::QemuFailed`]).
    pub qemu_failure: Option<QemuFailure>,
}

impl RunReport {
    /// The exit status of `testbed run`.
    pub fn exit_code(&self) -> i32 {
        self.verdict.exit_code()
    }

    /// The whole cleaned console.
    pub fn console_text(&self) -> String {
        self.output.console.lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The verdict for the user: one line, plus details for failures.
    pub fn message(&self) -> String {
        let c = &self.output.console;
        let secs = self.output.elapsed.as_secs_f64();
        let mut m = String::new();
        let tail = |m: &mut String| {
            let t = c.tail(TAIL_LINES);
            m.push_str(&format!("--- last {} console lines ---\n", t.len()));
            for l in t {
                m.push_str(&format!("    {l}\n"));
            }
        };
        match &self.verdict {
            Verdict::Pass => m.push_str(&format!("testbed: pass ({secs:.2}s)\n")),
            Verdict::Failed { fatal } => {
                m.push_str(&format!(
                    "testbed: {} ({secs:.2}s, QEMU status {})\n",
                    if *fatal { "FATAL: the kernel crashed (panic or CPU exception)" } else { "FAILED: the kernel reported a failure" },
                    if *fatal { 39 } else { 35 }
                ));
                if let Some(f) = &c.fatal {
                    m.push_str(&format!("    {f}\n"));
                }
            }
            Verdict::Usage => m.push_str("testbed: the kernel rejected a boot option (QEMU status 37)\n"),
            Verdict::Timeout => {
                let t = self.timeout.map_or(0, |t| t.as_secs());
                m.push_str(&format!("testbed: TIMEOUT after {t}s: QEMU killed\n"));
                tail(&mut m);
            }
            Verdict::QemuFailed { status } => {
                let how = status.map_or("killed by a signal (an assertion aborts it)".to_string(), |s| format!("exit status {s}"));
                m.push_str(&format!("testbed: QEMU itself failed ({how}; {secs:.2}s), not the kernel:\n"));
                if let Some(f) = &self.qemu_failure {
                    for l in f.message.lines() {
                        m.push_str(&format!("    {l}\n"));
                    }
                    if let Some(r) = f.remedy {
                        m.push_str(&format!("testbed: remedy: {r}\n"));
                    }
                }
                if !c.lines.is_empty() {
                    tail(&mut m);
                }
            }
            Verdict::NoEnd { status } => {
                let how = match (status, &self.output.exit) {
                    (Some(s), _) => format!("QEMU exit status {s}: {}", qemu::describe_status(*s)),
                    (None, QemuExit::Killed(r)) => format!("QEMU killed: {r}"),
                    (None, _) => "QEMU was killed by a signal".to_string(),
                };
                m.push_str(&format!("testbed: the kernel never reported an end ({how}; {secs:.2}s)\n"));
                if c.end.is_some() {
                    m.push_str("    (a TESTBED-END line was printed, but QEMU did not exit with its status)\n");
                } else {
                    m.push_str("    (no TESTBED-END line on the console)\n");
                }
                tail(&mut m);
                if self.reproduced {
                    m.push_str("QEMU log: (CPU state from a second boot of the same image without -no-reboot)\n");
                }
                m.push_str(&self.qemu_log.report());
                if !self.output.stderr.trim().is_empty() {
                    m.push_str("--- QEMU stderr ---\n");
                    m.push_str(&self.output.stderr);
                }
                m.push_str(&format!("QEMU log: {}\n", self.qemu_log_path.display()));
            }
        }
        if let (Some(end), QemuExit::Status(s)) = (c.end, &self.output.exit) {
            let want = qemu::expected_status(end);
            // QEMU 0 with a pass/fail verdict: `end=reboot` ended the machine.
            let machine_ended = *s == 0 && matches!(self.verdict, Verdict::Pass | Verdict::Failed { .. });
            if want != *s && self.verdict != Verdict::Timeout && !machine_ended {
                m.push_str(&format!(
                    "testbed: warning: TESTBED-END status={end} but QEMU exited {s} (expected {want})\n"
                ));
            }
        }
        m
    }
}

/// The QEMU machine `opts` asks for, booting `prepared`: no gdb stub, no
/// reboot, no screen watcher and no isa-debug-exit (callers set those).
fn qemu_spec(opts: &RunOptions, accel: qemu::Accel, prepared: &image::Prepared) -> QemuSpec {
    QemuSpec {
        machine: opts.machine,
        accel,
        cpu: opts.cpu.clone(),
        smp: opts.smp,
        maxcpus: opts.maxcpus,
        mem_mib: opts.mem_mib,
        firmware: opts.firmware,
        image: prepared.image.clone(),
        ovmf_vars: prepared.ovmf_vars.clone(),
        display: opts.display,
        resolution: opts.resolution,
        gdb: false,
        no_reboot: true,
        log: prepared.qemu_log.clone(),
        usb_screen: None,
        debug_exit: false,
    }
}

/// `testbed run`: builds the image and boots it. Progress and the gdb line go to
/// stderr; the console goes to stdout when `echo`.
pub fn run(opts: &RunOptions, echo: bool) -> Result<RunReport, SetupError> {
    let kernel = resolve_kernel(&opts.kernel)?;
    qemu::check_host(opts.firmware).map_err(setup)?;
    let (accel, why) = qemu::pick_accel(opts.accel);
    if let Some(why) = why {
        eprintln!("testbed: accel {why}");
    }
    let prepared = image::prepare(&kernel, opts.firmware, &opts.boot_options, opts.qemu_log.as_deref())
        .map_err(setup)?;
    // `end=reboot|poweroff`: the kernel ends the machine itself (QEMU exits 0 under
    // -no-reboot), so QEMU gets no isa-debug-exit and the end marker decides.
    let machine_ends = opts.boot_options.iter().any(|o| o == "end=reboot" || o == "end=poweroff");
    let spec = QemuSpec { gdb: opts.gdb, debug_exit: !machine_ends, ..qemu_spec(opts, accel, &prepared) };
    eprintln!(
        "testbed: booting {} ({}, {}, smp {}{}, {} MiB; boot options: {}; run dir {})",
        kernel.display(),
        opts.machine,
        opts.firmware,
        opts.smp,
        opts.maxcpus.map_or(String::new(), |m| format!(",maxcpus={m}")),
        opts.mem_mib,
        if opts.boot_options.is_empty() { "none".to_string() } else { opts.boot_options.join(" ") },
        prepared.dir.display()
    );
    if opts.gdb {
        eprintln!("testbed: QEMU waits for gdb on :1234 (no timeout). In another terminal run:");
        eprintln!("    {}", qemu::gdb_command(&kernel));
    }
    let output = qemu::run(
        &spec,
        &RunConfig { timeout: opts.timeout, echo, serial_log: opts.serial_log.as_deref() },
        |_, _| None,
    )
    .map_err(|e| setup(e.to_string()))?;
    let mut qemu_log = QemuLog::parse(&std::fs::read_to_string(&prepared.qemu_log).unwrap_or_default());
    let mut verdict = qemu::classify(&output.exit, output.console.end);
    if machine_ends
        && output.exit == QemuExit::Status(0)
        && let Some(end) = output.console.end
    {
        verdict = qemu::classify(&QemuExit::Status(qemu::expected_status(end)), Some(end));
    }
    let qemu_failure = qemu::qemu_failure(&output.exit, output.console.end, &output.stderr);
    if qemu_failure.is_some() {
        verdict = Verdict::QemuFailed { status: verdict_status(&output.exit) };
    }
    let mut reproduced = false;
    if verdict == (Verdict::NoEnd { status: Some(0) }) && qemu_log.kernel_reset().is_none() && !opts.gdb {
        // Under -no-reboot QEMU logs no CPU state on a triple fault: boot the same
        // image once more without it to catch the reset dump.
        eprintln!("testbed: QEMU exited 0 (triple fault?): booting again without -no-reboot to catch the CPU state");
        let mut again = spec.clone();
        again.log = prepared.dir.join("qemu-triple-fault.log");
        let limit = output.elapsed * 2 + std::time::Duration::from_secs(10);
        if let Ok(Some(log)) = qemu::reproduce_triple_fault(&again, limit) {
            qemu_log.resets = log.resets;
            qemu_log.triple_fault = true;
            reproduced = true;
        }
    }
    Ok(RunReport {
        kernel,
        dir: prepared.dir,
        qemu_log_path: prepared.qemu_log,
        output,
        qemu_log,
        verdict,
        timeout: opts.timeout,
        reproduced,
        qemu_failure,
    })
}

fn verdict_status(exit: &QemuExit) -> Option<i32> {
    match exit {
        QemuExit::Status(s) => Some(*s),
        _ => None,
    }
}

/// What `testbed --usb` saw (see [`screen`]).
#[derive(Debug)]
pub struct ScreenReport {
    pub dir: PathBuf,
    /// The band when the run was judged ([`screen::Band::Other`]: never
    /// green or red).
    pub band: screen::Band,
    pub exit: QemuExit,
    pub stderr: String,
    pub elapsed: std::time::Duration,
    /// The PNG of the last screen, if one was written.
    pub png: Option<PathBuf>,
    /// Problems taking screendumps or the PNG.
    pub errors: Vec<String>,
}

impl ScreenReport {
    /// The exit status: 0 green, 1 red, 3 timeout, 5 QEMU's own failure, 4
    /// QEMU ended without a verdict on screen.
    pub fn exit_code(&self) -> i32 {
        match (self.band, &self.exit) {
            (screen::Band::Pass, _) => 0,
            (screen::Band::Fail, _) => 1,
            (_, QemuExit::TimedOut) => 3,
            (_, e) if qemu::qemu_failure(e, None, &self.stderr).is_some() => 5,
            _ => 4,
        }
    }

    /// The verdict for the user.
    pub fn message(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mut m = match self.exit_code() {
            0 => format!("testbed: pass: the status band is green ({secs:.2}s)\n"),
            1 => format!("testbed: FAILED: the status band is red ({secs:.2}s)\n"),
            3 => format!("testbed: TIMEOUT after {secs:.0}s: the status band never turned green or red\n"),
            _ => format!("testbed: QEMU ended ({:?}) before the status band turned green or red ({secs:.2}s)\n", self.exit),
        };
        if let Some(p) = &self.png {
            m.push_str(&format!("testbed: screen saved as {}\n", p.display()));
        }
        for e in &self.errors {
            m.push_str(&format!("testbed: screen: {e}\n"));
        }
        if !self.stderr.trim().is_empty() {
            m.push_str("--- QEMU stderr ---\n");
            m.push_str(&self.stderr);
        }
        m
    }
}

/// `testbed --usb`: boots the image from an emulated USB stick with no serial
/// port and judges the run from the screen's status band (see [`screen`]);
/// writes the last screen as a PNG to `opts.screenshot` or the run directory.
pub fn run_usb(opts: &RunOptions) -> Result<ScreenReport, SetupError> {
    let kernel = resolve_kernel(&opts.kernel)?;
    qemu::check_host(opts.firmware).map_err(setup)?;
    let (accel, _) = qemu::pick_accel(opts.accel);
    let prepared = image::prepare(&kernel, opts.firmware, &opts.boot_options, opts.qemu_log.as_deref())
        .map_err(setup)?;
    let mut watcher = screen::Watcher::new(&prepared.dir);
    let spec = QemuSpec { usb_screen: Some(watcher.socket.clone()), ..qemu_spec(opts, accel, &prepared) };
    eprintln!(
        "testbed: booting {} from an emulated USB stick ({}, {}, smp {}, no serial port; judged from the screen every {}s; run dir {})",
        kernel.display(),
        opts.machine,
        opts.firmware,
        opts.smp,
        screen::POLL.as_secs(),
        prepared.dir.display()
    );
    let mut png = None;
    let png_path = opts.screenshot.clone().unwrap_or_else(|| prepared.dir.join("screen.png"));
    let mut png_error = None;
    let output = qemu::run(&spec, &RunConfig { timeout: opts.timeout, echo: true, serial_log: None }, |_, now| {
        let band = watcher.poll(now)?;
        match screen::screendump_png(&watcher.socket, &png_path) {
            Ok(()) => png = Some(png_path.clone()),
            Err(e) => png_error = Some(e),
        }
        Some(format!("status band {band:?}"))
    })
    .map_err(|e| setup(e.to_string()))?;
    let mut errors = watcher.errors;
    errors.extend(png_error);
    if watcher.band == screen::Band::Other && output.exit == QemuExit::TimedOut {
        // A last look for the record (QEMU is gone: nothing to do).
    }
    Ok(ScreenReport { dir: prepared.dir, band: watcher.band, exit: output.exit, stderr: output.stderr, elapsed: output.elapsed, png, errors })
}

/// `testbed image`: writes `bios.img` and `uefi.img` into `out`.
pub fn make_images(opts: &cli::ImageOptions) -> Result<Vec<PathBuf>, SetupError> {
    let kernel = resolve_kernel(&opts.kernel)?;
    image::write_images(&kernel, &opts.boot_options, &opts.out).map_err(setup)
}

/// The whole program: parses `args` (without the program name), runs, prints, and
/// returns the exit status.
pub fn main_with_args(args: Vec<String>) -> i32 {
    let cmd = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("testbed: {e}");
            eprintln!("testbed: see `cargo run -- --help`");
            return 2;
        }
    };
    match cmd {
        cli::Command::Help => {
            print!("{}", cli::HELP);
            0
        }
        cli::Command::Image(o) => match make_images(&o) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                eprintln!(
                    "testbed: write one to a USB stick with `dd if=IMG of=/dev/sdX bs=4M conv=fsync`; \
                     boot options are in the file `ramdisk` of its FAT partition"
                );
                0
            }
            Err(e) => {
                eprintln!("testbed: {}", e.message);
                e.exit_code
            }
        },
        cli::Command::Run(o) if o.usb => match run_usb(&o) {
            Ok(r) => {
                eprint!("{}", r.message());
                r.exit_code()
            }
            Err(e) => {
                eprintln!("testbed: {}", e.message);
                e.exit_code
            }
        },
        cli::Command::Matrix(o) => matrix::main(&o),
        cli::Command::Compare(o) => compare::main(&o),
        cli::Command::Run(o) => match run(&o, true) {
            Ok(r) => {
                eprint!("{}", r.message());
                r.exit_code()
            }
            Err(e) => {
                eprintln!("testbed: {}", e.message);
                e.exit_code
            }
        },
    }
}

/// The target directory's `testbed` folder for the main kernel (for tests and tools).
pub fn default_testbed_dir() -> PathBuf {
    image::testbed_dir(Path::new(suites::MAIN_KERNEL))
}
