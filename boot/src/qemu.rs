//! Running QEMU: the command line, accelerator probing, spawning with a live console
//! and timeouts, mapping QEMU's exit status to the host's, gdb, and reading QEMU's
//! `-d cpu_reset,guest_errors` log after a triple fault.
//!
//! The machine flags match the Linux peer (`shared/peer/linux/qemu-common.sh`) so that
//! figures are comparable: `-machine q35 -accel tcg -cpu max -smp N -m M -serial stdio
//! -display none -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04`,
//! the disk as `-drive format=raw,file=IMG`, and for UEFI two pflash drives (OVMF code
//! read-only, a writable copy of the VARS file).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::serial::{Console, EndStatus, LineSplitter};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// OVMF firmware code (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template; QEMU gets a writable copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Firmware to boot with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        })
    }
}

/// QEMU's machine type (`--machine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MachineType {
    /// Q35 + ICH9 (PCIe; the Linux peer's machine).
    #[default]
    Q35,
    /// i440FX + PIIX (the older PC; legacy devices, PCI only).
    Pc,
}

/// The machine: its type and the HPET switch (`--machine q35|pc[,hpet=off]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    pub kind: MachineType,
    /// `hpet=off`: no HPET (and no ACPI HPET table): the PM timer calibrates.
    pub hpet: bool,
    /// `i8042=off` (pc only): no 8042 keyboard controller (`end=reboot`
    /// without a reset register then ends by triple fault).
    pub i8042: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Machine { kind: MachineType::Q35, hpet: true, i8042: true }
    }
}

impl Machine {
    /// Parses `q35` or `pc`, optionally followed by `,hpet=on|off`.
    pub fn parse(s: &str) -> Result<Machine, String> {
        let mut parts = s.split(',');
        let kind = match parts.next() {
            Some("q35") => MachineType::Q35,
            Some("pc") => MachineType::Pc,
            _ => return Err(format!("--machine: '{s}' does not start with q35 or pc")),
        };
        let mut m = Machine { kind, hpet: true, i8042: true };
        for p in parts {
            match p {
                "hpet=on" => m.hpet = true,
                "hpet=off" => m.hpet = false,
                "i8042=off" if kind == MachineType::Pc => m.i8042 = false,
                _ => return Err(format!("--machine: '{p}' is not hpet=on, hpet=off or (pc) i8042=off")),
            }
        }
        Ok(m)
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            MachineType::Q35 => "q35",
            MachineType::Pc => "pc",
        })?;
        if !self.hpet {
            f.write_str(",hpet=off")?;
        }
        if !self.i8042 {
            f.write_str(",i8042=off")?;
        }
        Ok(())
    }
}

/// `--accel` as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    Tcg,
    Kvm,
    Auto,
}

/// The accelerator QEMU gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    /// The CPU model used when none is given: `max` under TCG, `host` under KVM.
    pub fn default_cpu(self) -> &'static str {
        match self {
            Accel::Tcg => "max",
            Accel::Kvm => "host",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// Whether KVM is usable for this kernel: `/dev/kvm` read/writable and `vmx` or `svm`
/// among the CPU flags. `Err` says why not. A `/dev/kvm` without vmx/svm is typically
/// the `kvm_pvm` software KVM of nested cloud VMs, which is far slower than TCG and
/// fails UEFI boots.
pub fn kvm_usable() -> Result<(), String> {
    let accessible = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !accessible {
        return Err("no accessible /dev/kvm".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if cpuinfo_has_virt(&cpuinfo) {
        return Ok(());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        Err("/dev/kvm is kvm_pvm (software KVM, no vmx/svm): much slower than TCG here and UEFI boots fail".into())
    } else {
        Err("no vmx/svm CPU flag".into())
    }
}

/// Whether a `/proc/cpuinfo` text lists `vmx` or `svm` as a flag.
pub fn cpuinfo_has_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|w| w == "vmx" || w == "svm"))
}

/// Resolves `--accel`: returns the accelerator and, for `auto`, why.
pub fn pick_accel(choice: AccelChoice) -> (Accel, Option<String>) {
    match choice {
        AccelChoice::Tcg => (Accel::Tcg, None),
        AccelChoice::Kvm => (Accel::Kvm, None),
        AccelChoice::Auto => match kvm_usable() {
            Ok(()) => (Accel::Kvm, Some("auto: KVM (vmx/svm present)".into())),
            Err(why) => (Accel::Tcg, Some(format!("auto: TCG ({why})"))),
        },
    }
}

fn in_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// Checks that QEMU (and for UEFI, OVMF) is installed; `Err` says what to install.
pub fn check_host(firmware: Firmware) -> Result<(), String> {
    if !in_path(QEMU) {
        return Err(format!("{QEMU} not found in PATH: install it with `apt-get install -y qemu-system-x86`"));
    }
    if firmware == Firmware::Uefi {
        for f in [OVMF_CODE, OVMF_VARS] {
            if !Path::new(f).is_file() {
                return Err(format!("{f} not found: install OVMF with `apt-get install -y ovmf`"));
            }
        }
    }
    Ok(())
}

/// Everything needed for one QEMU command line.
#[derive(Clone, Debug)]
pub struct QemuSpec {
    pub machine: Machine,
    pub accel: Accel,
    /// `None`: [`Accel::default_cpu`].
    pub cpu: Option<String>,
    pub smp: u32,
    /// `-smp N,maxcpus=M`: M - N more CPUs the firmware lists but does not
    /// start (hot-pluggable: disabled or online-capable MADT entries).
    pub maxcpus: Option<u32>,
    pub mem_mib: u32,
    pub firmware: Firmware,
    /// The raw disk image.
    pub image: PathBuf,
    /// The writable OVMF VARS copy (UEFI only).
    pub ovmf_vars: Option<PathBuf>,
    pub display: bool,
    /// `Some((w, h))`: a VGA whose EDID prefers this mode (OVMF sets it;
    /// SeaBIOS's VESA list ignores it), with video memory for it.
    pub resolution: Option<(u32, u32)>,
    pub gdb: bool,
    /// `-no-reboot` (always, except when reproducing a triple fault).
    pub no_reboot: bool,
    /// QEMU's `-D` log (`-d cpu_reset,guest_errors`).
    pub log: PathBuf,
    /// `Some(monitor socket)`: the screen mode (`testbed --usb`, see
    /// `screen`): the image as a USB stick on an xHCI controller, no serial
    /// port, no isa-debug-exit, the human monitor on this Unix socket.
    pub usb_screen: Option<PathBuf>,
    /// The isa-debug-exit device (off for `end=reboot`, where the kernel
    /// ends the machine itself, and in the screen mode).
    pub debug_exit: bool,
}

impl QemuSpec {
    /// The arguments after the program name.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        let cpu = self.cpu.clone().unwrap_or_else(|| self.accel.default_cpu().to_string());
        push(&["-machine", &self.machine.to_string(), "-accel", self.accel.name(), "-cpu", &cpu]);
        let smp = match self.maxcpus {
            Some(m) => format!("{},maxcpus={m}", self.smp),
            None => self.smp.to_string(),
        };
        push(&["-smp", &smp, "-m", &self.mem_mib.to_string()]);
        let monitor = self.usb_screen.as_ref().map(|m| format!("unix:{},server,nowait", m.display()));
        push(&["-serial", if monitor.is_some() { "none" } else { "stdio" }]);
        if !self.display {
            push(&["-display", "none"]);
        }
        push(&["-monitor", monitor.as_deref().unwrap_or("none")]);
        if let Some((w, h)) = self.resolution {
            // 32-bit pixels; QEMU rounds vgamem_mb up to a power of two.
            let vgamem_mb = (u64::from(w) * u64::from(h) * 4).div_ceil(1 << 20).next_power_of_two().max(16);
            push(&["-vga", "none", "-device", &format!("VGA,xres={w},yres={h},vgamem_mb={vgamem_mb}")]);
        }
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        if monitor.is_none() && self.debug_exit {
            push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        }
        if self.firmware == Firmware::Uefi {
            let vars = self.ovmf_vars.as_ref().expect("UEFI needs a VARS copy");
            push(&["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")]);
            push(&["-drive", &format!("if=pflash,format=raw,unit=1,file={}", vars.display())]);
        }
        if monitor.is_some() {
            push(&["-drive", &format!("if=none,id=stick,format=raw,file={}", self.image.display())]);
            push(&["-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=1"]);
        } else {
            push(&["-drive", &format!("format=raw,file={}", self.image.display())]);
        }
        push(&["-d", "cpu_reset,guest_errors", "-D", &self.log.display().to_string()]);
        if self.gdb {
            push(&["-s", "-S"]);
        }
        a
    }

    /// The command line as a shell would show it (for messages).
    pub fn command_line(&self) -> String {
        std::iter::once(QEMU.to_string()).chain(self.args()).collect::<Vec<_>>().join(" ")
    }
}

/// The gdb command line that attaches to `-s -S` and loads the kernel's symbols (the
/// kernel is a static ELF linked at 0xffffffff80000000: no offset needed).
pub fn gdb_command(kernel: &Path) -> String {
    format!(
        "gdb -ex 'set arch i386:x86-64' -ex 'target remote :1234' -ex 'symbol-file {}'",
        kernel.display()
    )
}

/// How QEMU ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QemuExit {
    /// QEMU exited with this status.
    Status(i32),
    /// QEMU was killed by a signal we did not send.
    Signal,
    /// The wall-clock timeout passed; QEMU was killed.
    TimedOut,
    /// The watcher asked to kill QEMU, for this reason (e.g. a hung test).
    Killed(String),
}

/// The result of one QEMU run.
#[derive(Debug)]
pub struct RunOutput {
    pub exit: QemuExit,
    pub console: Console,
    /// QEMU's own stderr.
    pub stderr: String,
    pub elapsed: Duration,
}

/// How to run QEMU.
pub struct RunConfig<'a> {
    /// Wall-clock limit; `None` = none.
    pub timeout: Option<Duration>,
    /// Print cleaned console lines (and QEMU's stderr) as they arrive.
    pub echo: bool,
    /// Also write the cleaned console here.
    pub serial_log: Option<&'a Path>,
}

/// At most this many QEMUs run at once in this process: 1, or `TESTBED_JOBS`. The
/// machine this was written for has 2 cores, and `-smp 4` already oversubscribes it.
pub fn max_jobs() -> usize {
    std::env::var("TESTBED_JOBS").ok().and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(1)
}

static RUNNING: Mutex<usize> = Mutex::new(0);
static RUNNING_CV: Condvar = Condvar::new();

/// A slot for one QEMU; released on drop.
pub struct Slot(());

/// Waits for a QEMU slot (see [`max_jobs`]). [`run`] takes one itself.
pub fn slot() -> Slot {
    let max = max_jobs();
    let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    while *n >= max {
        n = RUNNING_CV.wait(n).unwrap_or_else(|e| e.into_inner());
    }
    *n += 1;
    Slot(())
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        RUNNING_CV.notify_one();
    }
}

/// Kills the child on drop (e.g. when the caller panics).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

enum Msg {
    Out(Vec<u8>),
    OutEof,
}

/// Runs QEMU per `spec`. `watch` is called with each cleaned console line (and
/// with `None` at least every 100 ms); returning `Some(reason)` kills QEMU
/// ([`QemuExit::Killed`]).
pub fn run(
    spec: &QemuSpec,
    cfg: &RunConfig<'_>,
    watch: impl FnMut(Option<&str>, Instant) -> Option<String>,
) -> io::Result<RunOutput> {
    let _slot = slot();
    run_holding_slot(spec, cfg, watch)
}

/// [`run`] for a caller that already holds a [`slot`] (e.g. for a whole suite).
pub fn run_holding_slot(
    spec: &QemuSpec,
    cfg: &RunConfig<'_>,
    mut watch: impl FnMut(Option<&str>, Instant) -> Option<String>,
) -> io::Result<RunOutput> {
    let mut serial_log = match cfg.serial_log {
        Some(p) => Some(io::BufWriter::new(std::fs::File::create(p).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create serial log {}: {e}", p.display()))
        })?)),
        None => None,
    };
    let start = Instant::now();
    let child = Command::new(QEMU)
        .args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {QEMU}: {e}")))?;
    let mut child = KillOnDrop(child);
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let stderr = child.0.stderr.take().expect("piped stderr");

    let (tx, rx) = mpsc::channel::<Msg>();
    let out_reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Msg::Out(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Msg::OutEof);
    });
    let echo = cfg.echo;
    let err_reader = thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if echo {
                eprintln!("{line}");
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });

    let mut console = Console::default();
    let mut splitter = LineSplitter::default();
    let deadline = cfg.timeout.map(|t| start + t);
    let mut kill_reason: Option<QemuExit> = None;
    // Echoes, logs and records a line (if any) and asks the watcher.
    let mut step = |line: Option<String>, console: &mut Console| -> Option<String> {
        let Some(line) = line else { return watch(None, Instant::now()) };
        if echo {
            println!("{line}");
        }
        if let Some(f) = serial_log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        let verdict = watch(Some(&line), Instant::now());
        console.push(line);
        verdict
    };
    loop {
        let now = Instant::now();
        if let Some(d) = deadline
            && now >= d {
                kill_reason = Some(QemuExit::TimedOut);
                break;
            }
        let wait = deadline.map_or(Duration::from_millis(100), |d| {
            (d - now).min(Duration::from_millis(100))
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Out(bytes)) => {
                for line in splitter.push(&bytes) {
                    if let Some(r) = step(Some(line), &mut console) {
                        kill_reason.get_or_insert(QemuExit::Killed(r));
                    }
                }
                if kill_reason.is_some() {
                    break;
                }
            }
            Ok(Msg::OutEof) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(r) = step(None, &mut console) {
            kill_reason = Some(QemuExit::Killed(r));
            break;
        }
    }
    if kill_reason.is_some() {
        let _ = child.0.kill();
    }
    let status: ExitStatus = child.0.wait()?;
    // Drain what QEMU wrote before it ended.
    let _ = out_reader.join();
    while let Ok(Msg::Out(bytes)) = rx.try_recv() {
        for line in splitter.push(&bytes) {
            step(Some(line), &mut console);
        }
    }
    if let Some(rest) = splitter.finish() {
        step(Some(rest), &mut console);
    }
    drop(step);
    let stderr = err_reader.join().unwrap_or_default();
    if let Some(f) = serial_log.as_mut() {
        let _ = f.flush();
    }
    let exit = match kill_reason {
        Some(k) => k,
        None => match status.code() {
            Some(c) => QemuExit::Status(c),
            None => QemuExit::Signal,
        },
    };
    Ok(RunOutput { exit, console, stderr, elapsed: start.elapsed() })
}

/// What a run means, and the host's exit status for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// QEMU status 33 with an end marker: exit 0.
    Pass,
    /// QEMU status 35 (failure) or 39 (fatal: panic / CPU exception): exit 1.
    Failed { fatal: bool },
    /// QEMU status 37: the kernel rejected a boot option: exit 2.
    Usage,
    /// Wall-clock timeout: exit 3.
    Timeout,
    /// QEMU exited without the kernel's end marker (status 0 = triple fault / reset
    /// under -no-reboot), or with a status the protocol does not define: exit 4.
    NoEnd { status: Option<i32> },
    /// QEMU itself failed (an error or an assertion of its own on stderr, see
    /// [`qemu_failure`]), before the kernel reported an end: exit 5.
    QemuFailed { status: Option<i32> },
}

impl Verdict {
    /// The exit status of `testbed run`.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Failed { .. } => 1,
            Verdict::Usage => 2,
            Verdict::Timeout => 3,
            Verdict::NoEnd { .. } => 4,
            Verdict::QemuFailed { .. } => 5,
        }
    }
}

/// Maps QEMU's exit and the kernel's end marker to a [`Verdict`].
pub fn classify(exit: &QemuExit, end: Option<EndStatus>) -> Verdict {
    match exit {
        QemuExit::TimedOut => Verdict::Timeout,
        QemuExit::Killed(_) | QemuExit::Signal => Verdict::NoEnd { status: None },
        QemuExit::Status(code) => match (code, end) {
            (_, None) => Verdict::NoEnd { status: Some(*code) },
            (33, Some(_)) => Verdict::Pass,
            (35, Some(_)) => Verdict::Failed { fatal: false },
            (39, Some(_)) => Verdict::Failed { fatal: true },
            (37, Some(_)) => Verdict::Usage,
            (c, Some(_)) => Verdict::NoEnd { status: Some(*c) },
        },
    }
}

/// QEMU's own failure: its error lines and, where one is known, a remedy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuFailure {
    /// QEMU's error lines (`qemu-system-x86_64: ...`, warnings left out).
    pub message: String,
    /// What to do about it, where known.
    pub remedy: Option<&'static str>,
}

/// Known QEMU failures: a piece of its message, and the remedy.
const REMEDIES: &[(&str, &str)] = &[
    (
        "failed to set MSR 0x10a",
        "this host's KVM cannot give the guest IA32_ARCH_CAPABILITIES (MSR 0x10a), which `-cpu host` \
         asks for: retry with `--cpu host,-arch-capabilities` (as the smp suite's x2APIC test does), \
         or use `--accel tcg`",
    ),
    ("unable to find CPU model", "list the models this QEMU knows with `qemu-system-x86_64 -cpu help`"),
    ("Could not access KVM kernel module", "KVM is not usable here: use `--accel tcg` or `--accel auto`"),
    ("failed to initialize kvm", "KVM is not usable here: use `--accel tcg` or `--accel auto`"),
    ("-accel kvm: failed", "KVM is not usable here: use `--accel tcg` or `--accel auto`"),
];

/// Whether QEMU itself failed: the kernel reported no end, QEMU ended with a
/// status the protocol does not define (1: a QEMU error) or by a signal (an
/// assertion aborts it), and its stderr holds error lines of its own. Returns
/// those lines and the known remedy, if any.
pub fn qemu_failure(exit: &QemuExit, end: Option<EndStatus>, stderr: &str) -> Option<QemuFailure> {
    let by_qemu = match exit {
        QemuExit::Status(c) => ![0, 33, 35, 37, 39].contains(c),
        QemuExit::Signal => true,
        QemuExit::TimedOut | QemuExit::Killed(_) => false,
    };
    if end.is_some() || !by_qemu {
        return None;
    }
    let prefix = format!("{QEMU}:");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&prefix) && !l.contains(": warning:"))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let message = lines.join("\n");
    let remedy = REMEDIES.iter().find(|(needle, _)| message.contains(needle)).map(|(_, r)| *r);
    Some(QemuFailure { message, remedy })
}

/// What an exit status of QEMU means under the protocol (for messages).
pub fn describe_status(code: i32) -> &'static str {
    match code {
        0 => "triple fault or reset under -no-reboot",
        1 => "QEMU error (see its messages)",
        33 => "kernel exit 0x10: pass",
        35 => "kernel exit 0x11: failure",
        37 => "kernel exit 0x12: usage error",
        39 => "kernel exit 0x13: fatal",
        _ => "not a status the protocol defines",
    }
}

/// The exit status the kernel's end marker implies, for a consistency check.
pub fn expected_status(end: EndStatus) -> i32 {
    match end {
        EndStatus::Pass => 33,
        EndStatus::Fail => 35,
        EndStatus::Usage => 37,
        EndStatus::Fatal => 39,
    }
}

/// One `CPU Reset (CPU n)` block of QEMU's `-d cpu_reset` log: the CPU state just
/// before the reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetDump {
    pub cpu: u32,
    pub lines: Vec<String>,
    /// QEMU had logged "Triple fault" before this reset.
    pub after_triple_fault: bool,
}

impl ResetDump {
    /// The instruction pointer (RIP or EIP), if present.
    pub fn pc(&self) -> Option<u64> {
        self.lines.iter().find_map(|l| {
            let v = l.strip_prefix("RIP=").or_else(|| l.strip_prefix("EIP="))?;
            u64::from_str_radix(v.split_whitespace().next()?, 16).ok()
        })
    }

    /// Whether the CPU was running kernel code (pc in the higher half, where the
    /// kernel is linked), rather than firmware or nothing (power-on / INIT resets,
    /// the firmware's own AP start-up).
    pub fn in_kernel(&self) -> bool {
        self.pc().is_some_and(|pc| pc >= 0xffff_8000_0000_0000)
    }

    /// The lines worth showing: general registers, RIP, CS/SS, GDT/IDT, control
    /// registers, EFER.
    pub fn key_lines(&self) -> Vec<&str> {
        const KEYS: &[&str] = &[
            "RAX=", "RSI=", "R8 =", "R12=", "RIP=", "EAX=", "ESI=", "EIP=", "CS =", "SS =",
            "GDT=", "IDT=", "CR0=", "DR6=", "EFER=",
        ];
        self.lines
            .iter()
            .map(String::as_str)
            .filter(|l| KEYS.iter().any(|k| l.starts_with(k)))
            .collect()
    }
}

/// What QEMU's `-d cpu_reset,guest_errors` log says.
///
/// QEMU logs a `CPU Reset` dump per CPU at power-on (and when firmware or the kernel
/// sends INIT to an AP). On a triple fault TCG logs "Triple fault"; under
/// `-no-reboot` QEMU then exits without resetting, so **no register dump follows**;
/// without `-no-reboot` the reset that follows dumps the CPU state at the fault
/// (see [`reproduce_triple_fault`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuLog {
    pub resets: Vec<ResetDump>,
    /// QEMU logged "Triple fault".
    pub triple_fault: bool,
    /// Other lines (guest errors etc.).
    pub other: Vec<String>,
}

impl QemuLog {
    /// Parses the log text.
    pub fn parse(text: &str) -> QemuLog {
        let mut log = QemuLog::default();
        let mut cur: Option<ResetDump> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("CPU Reset (CPU ") {
                log.resets.extend(cur.take());
                let cpu = rest.trim_end_matches(')').trim().parse().unwrap_or(0);
                cur = Some(ResetDump { cpu, lines: Vec::new(), after_triple_fault: log.triple_fault });
                continue;
            }
            if line.trim() == "Triple fault" {
                log.triple_fault = true;
                log.resets.extend(cur.take());
                continue;
            }
            // Register dump lines: an upper-case register name, then '=' (or " ="
            // for segment registers).
            let is_reg = line.contains('=')
                && line.split(['=', ' ']).next().is_some_and(|w| {
                    !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                });
            match cur.as_mut() {
                Some(d) if is_reg => d.lines.push(line.to_string()),
                _ => {
                    log.resets.extend(cur.take());
                    if !line.trim().is_empty() {
                        log.other.push(line.to_string());
                    }
                }
            }
        }
        log.resets.extend(cur.take());
        log
    }

    /// The dump that shows the kernel's state: the first reset after a "Triple
    /// fault" line, else the last reset of a CPU that was in kernel code.
    pub fn kernel_reset(&self) -> Option<&ResetDump> {
        self.resets
            .iter()
            .find(|d| d.after_triple_fault)
            .or_else(|| self.resets.iter().rev().find(|d| d.in_kernel()))
    }

    /// A report for a run that ended without the kernel's end marker.
    pub fn report(&self) -> String {
        let mut s = String::new();
        if self.triple_fault {
            s.push_str("QEMU log: \"Triple fault\"\n");
        }
        match self.kernel_reset() {
            Some(d) => {
                s.push_str(&format!("QEMU log: CPU state at the reset (CPU {}):\n", d.cpu));
                for l in d.key_lines() {
                    s.push_str("    ");
                    s.push_str(l);
                    s.push('\n');
                }
            }
            None => s.push_str(&format!(
                "QEMU log: no CPU reset dump from kernel code ({} firmware/power-on resets logged)\n",
                self.resets.len()
            )),
        }
        let from = self.other.len().saturating_sub(5);
        for l in &self.other[from..] {
            s.push_str(&format!("QEMU log: {l}\n"));
        }
        s
    }
}

/// After a triple fault under `-no-reboot` (QEMU exit 0, which logs no CPU state),
/// boots the same image again without `-no-reboot` and kills QEMU as soon as the
/// reset that follows a triple fault has been logged: that dump holds the CPU state
/// at the fault. `spec.log` must name a fresh log file. Returns the parsed log, or
/// `None` when no triple fault showed up within `timeout`.
pub fn reproduce_triple_fault(spec: &QemuSpec, timeout: Duration) -> io::Result<Option<QemuLog>> {
    let mut spec = spec.clone();
    spec.no_reboot = false;
    spec.gdb = false;
    let log_path = spec.log.clone();
    let mut seen_at: Option<Instant> = None;
    let out = run(&spec, &RunConfig { timeout: Some(timeout), echo: false, serial_log: None }, |_, now| {
        if let Some(t) = seen_at {
            // Give QEMU a moment to finish writing the dump.
            return (now.duration_since(t) > Duration::from_millis(300)).then(|| "triple fault".to_string());
        }
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("Triple fault") && QemuLog::parse(&text).resets.iter().any(|d| d.after_triple_fault) {
            seen_at = Some(now);
        }
        None
    })?;
    let log = QemuLog::parse(&std::fs::read_to_string(&log_path).unwrap_or_default());
    let _ = out;
    Ok(log.resets.iter().any(|d| d.after_triple_fault).then_some(log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mapping() {
        use EndStatus::*;
        let st = |c| QemuExit::Status(c);
        assert_eq!(classify(&st(33), Some(Pass)).exit_code(), 0);
        assert_eq!(classify(&st(35), Some(Fail)), Verdict::Failed { fatal: false });
        assert_eq!(classify(&st(35), Some(Fail)).exit_code(), 1);
        assert_eq!(classify(&st(39), Some(Fatal)), Verdict::Failed { fatal: true });
        assert_eq!(classify(&st(39), Some(Fatal)).exit_code(), 1);
        assert_eq!(classify(&st(37), Some(Usage)).exit_code(), 2);
        assert_eq!(classify(&QemuExit::TimedOut, None).exit_code(), 3);
        assert_eq!(classify(&QemuExit::TimedOut, Some(Pass)).exit_code(), 3);
        // Triple fault: QEMU exits 0 under -no-reboot.
        assert_eq!(classify(&st(0), None), Verdict::NoEnd { status: Some(0) });
        assert_eq!(classify(&st(0), None).exit_code(), 4);
        // Any exit without the end marker.
        assert_eq!(classify(&st(33), None).exit_code(), 4);
        assert_eq!(classify(&st(39), None).exit_code(), 4);
        // Statuses the protocol does not define.
        assert_eq!(classify(&st(1), None).exit_code(), 4);
        assert_eq!(classify(&st(0), Some(Pass)).exit_code(), 4);
        assert_eq!(classify(&st(41), Some(Fatal)).exit_code(), 4);
        assert_eq!(classify(&QemuExit::Signal, None).exit_code(), 4);
        assert_eq!(classify(&QemuExit::Killed("hang".into()), None).exit_code(), 4);
        for (e, c) in [(Pass, 33), (Fail, 35), (Usage, 37), (Fatal, 39)] {
            assert_eq!(expected_status(e), c);
        }
    }

    fn spec(firmware: Firmware, accel: Accel) -> QemuSpec {
        QemuSpec {
            machine: Machine::default(),
            accel,
            cpu: None,
            smp: 2,
            maxcpus: None,
            mem_mib: 256,
            firmware,
            image: "/r/bios.img".into(),
            ovmf_vars: Some("/r/vars.fd".into()),
            display: false,
            resolution: None,
            gdb: false,
            no_reboot: true,
            log: "/r/qemu.log".into(),
            usb_screen: None,
            debug_exit: true,
        }
    }

    #[test]
    fn qemu_failures_are_recognised() {
        let kvm = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
                   qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n";
        let f = qemu_failure(&QemuExit::Signal, None, kvm).expect("the KVM assertion is QEMU's failure");
        assert!(f.message.contains("failed to set MSR 0x10a") && f.message.contains("Assertion"), "{f:?}");
        assert!(f.remedy.unwrap().contains("--cpu host,-arch-capabilities"));
        let cpu = "qemu-system-x86_64: unable to find CPU model 'nosuch'\n";
        let f = qemu_failure(&QemuExit::Status(1), None, cpu).unwrap();
        assert_eq!(f.message, "qemu-system-x86_64: unable to find CPU model 'nosuch'");
        assert!(f.remedy.unwrap().contains("-cpu help"));
        // An unknown QEMU error is still QEMU's, without a remedy.
        let f = qemu_failure(&QemuExit::Status(1), None, "qemu-system-x86_64: -foo: bar\n").unwrap();
        assert_eq!(f.remedy, None);
        // Not QEMU's failure: a triple fault (status 0), a kernel end, a kill
        // by the watcher, a signal without QEMU error lines, warnings only.
        assert_eq!(qemu_failure(&QemuExit::Status(0), None, cpu), None);
        assert_eq!(qemu_failure(&QemuExit::Status(1), Some(EndStatus::Fail), cpu), None);
        assert_eq!(qemu_failure(&QemuExit::Killed("hang".into()), None, cpu), None);
        assert_eq!(qemu_failure(&QemuExit::TimedOut, None, cpu), None);
        assert_eq!(qemu_failure(&QemuExit::Signal, None, ""), None);
        let warn = "qemu-system-x86_64: warning: host doesn't support requested feature\n";
        assert_eq!(qemu_failure(&QemuExit::Status(1), None, warn), None);
        assert_eq!(Verdict::QemuFailed { status: Some(1) }.exit_code(), 5);
    }

    #[test]
    fn command_line_matches_peer() {
        let s = spec(Firmware::Bios, Accel::Tcg);
        assert_eq!(
            s.command_line(),
            "qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 2 -m 256 -serial stdio \
             -display none -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -drive format=raw,file=/r/bios.img -d cpu_reset,guest_errors -D /r/qemu.log"
        );
        let mut u = spec(Firmware::Uefi, Accel::Kvm);
        u.gdb = true;
        u.display = true;
        u.cpu = Some("Skylake-Server".into());
        let l = u.command_line();
        assert!(l.contains("-accel kvm -cpu Skylake-Server"), "{l}");
        assert!(!l.contains("-display none"));
        assert!(l.contains(&format!("-drive if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")));
        assert!(l.contains("-drive if=pflash,format=raw,unit=1,file=/r/vars.fd"));
        assert!(l.ends_with("-s -S"));
        assert_eq!(spec(Firmware::Bios, Accel::Kvm).args()[5], "host");
        let mut p = spec(Firmware::Bios, Accel::Tcg);
        p.machine = Machine::parse("pc,hpet=off").unwrap();
        p.maxcpus = Some(4);
        let l = p.command_line();
        assert!(l.contains("-machine pc,hpet=off -accel tcg") && l.contains("-smp 2,maxcpus=4 "), "{l}");
        assert_eq!(Machine::parse("q35").unwrap(), Machine::default());
        assert_eq!(Machine::parse("pc").unwrap().to_string(), "pc");
        assert!(Machine::parse("virt").is_err() && Machine::parse("q35,hpet=maybe").is_err());
        assert_eq!(Machine::parse("pc,i8042=off,hpet=off").unwrap().to_string(), "pc,hpet=off,i8042=off");
        assert!(Machine::parse("q35,i8042=off").is_err(), "q35's 8042 is built in");
        let mut u = spec(Firmware::Uefi, Accel::Tcg);
        u.usb_screen = Some("/r/monitor.sock".into());
        let l = u.command_line();
        assert!(l.contains("-serial none") && l.contains("-monitor unix:/r/monitor.sock,server,nowait"), "{l}");
        assert!(!l.contains("isa-debug-exit") && !l.contains("-drive format=raw"), "{l}");
        assert!(l.contains("-drive if=none,id=stick,format=raw,file=/r/bios.img -device qemu-xhci,id=xhci -device usb-storage,bus=xhci.0,drive=stick,bootindex=1"), "{l}");
        u.resolution = Some((1920, 1080));
        assert!(u.command_line().contains("-vga none -device VGA,xres=1920,yres=1080,vgamem_mb=16 "));
        u.resolution = Some((3840, 2160));
        assert!(u.command_line().contains("-device VGA,xres=3840,yres=2160,vgamem_mb=32 "));
    }

    #[test]
    fn gdb_line() {
        assert_eq!(
            gdb_command(Path::new("/t/kernel")),
            "gdb -ex 'set arch i386:x86-64' -ex 'target remote :1234' -ex 'symbol-file /t/kernel'"
        );
    }

    #[test]
    fn cpuinfo_flags() {
        assert!(cpuinfo_has_virt("processor : 0\nflags\t\t: fpu vme vmx sse\n"));
        assert!(cpuinfo_has_virt("flags\t\t: fpu svm\n"));
        assert!(!cpuinfo_has_virt("flags\t\t: fpu vmxnet sse\nmodel name : svm box\n"));
    }

    const POWER_ON: &str = "\
CPU Reset (CPU 0)
EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000000
ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000
EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0
CS =f000 ffff0000 0000ffff 00009b00
CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
EFER=0000000000000000
CPU Reset (CPU 1)
EAX=00000000 EBX=00000000 ECX=00000000 EDX=00000000
EIP=00000000 EFL=00000000 [-------] CPL=0 II=0 A20=0 SMM=0 HLT=0
CR0=00000000 CR2=00000000 CR3=00000000 CR4=00000000
";

    const RUNNING: &str = "\
Triple fault
CPU Reset (CPU 0)
RAX=0000000000000000 RBX=0000000000000001 RCX=0000000000000002 RDX=0000000000000003
RSI=0000000000000000 RDI=0000000000000000 RBP=ffffffff80123000 RSP=ffffffff80122ff8
R8 =0000000000000000 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000
R12=0000000000000000 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000
RIP=ffffffff80001234 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0000 0000000000000000 00000000 00000000
CS =0008 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]
SS =0010 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
GDT=     ffffffff80200000 0000001f
IDT=     0000000000000000 00000000
CR0=80010033 CR2=ffffdeadbeef0000 CR3=0000000001000000 CR4=00000620
DR6=00000000ffff0ff0 DR7=0000000000000400
EFER=0000000000000d00
Invalid read at addr 0xFEE00000, size 4, region '(null)', reason: rejected
";

    #[test]
    fn reset_log_power_on_only() {
        let log = QemuLog::parse(POWER_ON);
        assert_eq!(log.resets.len(), 2);
        assert_eq!(log.resets[0].cpu, 0);
        assert_eq!(log.resets[1].cpu, 1);
        assert_eq!(log.resets[0].pc(), Some(0xfff0));
        assert!(!log.resets.iter().any(ResetDump::in_kernel));
        assert!(!log.triple_fault);
        assert_eq!(log.kernel_reset(), None);
        assert!(log.report().contains("no CPU reset dump from kernel code"));
    }

    #[test]
    fn reset_log_triple_fault() {
        let log = QemuLog::parse(&format!("{POWER_ON}{RUNNING}"));
        assert_eq!(log.resets.len(), 3);
        assert!(log.triple_fault);
        let d = log.kernel_reset().unwrap();
        assert!(d.after_triple_fault && d.in_kernel());
        assert_eq!(d.cpu, 0);
        assert_eq!(d.pc(), Some(0xffff_ffff_8000_1234));
        let keys = d.key_lines();
        assert!(keys.iter().any(|l| l.starts_with("RIP=ffffffff80001234")));
        assert!(keys.iter().any(|l| l.starts_with("CR0=80010033 CR2=ffffdeadbeef0000")));
        assert!(keys.iter().any(|l| l.starts_with("IDT=")));
        assert!(!keys.iter().any(|l| l.starts_with("ES =")));
        assert_eq!(log.other, vec!["Invalid read at addr 0xFEE00000, size 4, region '(null)', reason: rejected"]);
        let r = log.report();
        assert!(r.contains("Triple fault"), "{r}");
        assert!(r.contains("RIP=ffffffff80001234"), "{r}");
        assert!(r.contains("Invalid read"), "{r}");
    }

    #[test]
    fn reset_log_triple_fault_under_no_reboot() {
        // What QEMU 7.2 writes under -no-reboot: the line, no dump after it.
        let log = QemuLog::parse(&format!("{POWER_ON}Triple fault\n"));
        assert!(log.triple_fault);
        assert_eq!(log.resets.len(), 2);
        assert_eq!(log.kernel_reset(), None);
        assert!(log.report().contains("\"Triple fault\""));
    }

    #[test]
    fn reset_log_firmware_ap_reset_is_not_kernel() {
        // OVMF's AP start-up resets a CPU that was running firmware code.
        let fw = "CPU Reset (CPU 1)\nRIP=000000000f059731 RFL=00000046 [---Z-P-] CPL=0\nCR0=80010033 CR2=0 CR3=0 CR4=0\n";
        let log = QemuLog::parse(&format!("{POWER_ON}{fw}"));
        assert_eq!(log.resets.len(), 3);
        assert_eq!(log.kernel_reset(), None);
        // A kernel-space reset without a triple-fault line (e.g. under KVM).
        let k = "CPU Reset (CPU 0)\nRIP=ffffffff80001000 RFL=00000046\n";
        let log = QemuLog::parse(&format!("{POWER_ON}{fw}{k}"));
        assert_eq!(log.kernel_reset().unwrap().pc(), Some(0xffff_ffff_8000_1000));
    }
}
