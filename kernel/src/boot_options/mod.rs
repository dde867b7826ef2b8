//! Boot options: `key=value` words from the boot-options file.
//!
//! The host tool writes the words given after `cargo run --` into the boot
//! image as the bootloader's ramdisk (the file `ramdisk` on the image's FAT
//! partition), so they can be changed on a USB stick without recompiling. The
//! text may use spaces or newlines between words, CRLF line ends, a UTF-8
//! byte-order mark and `#` comments. Lists are comma-separated.
//!
//! Parsing is strict: an unknown key, a bad value, a word without `=` or a key
//! given twice is an error that names the word and what was expected, and the
//! kernel then ends the run with the usage status. Parsing allocates nothing,
//! so it runs before the heap exists. A key is added here when the feature it
//! controls exists: a key that is accepted and ignored would be a lie.

use core::fmt;
use log::LevelFilter;

use crate::bench::{Bench, BenchSet};
use crate::console::ConsoleChoice;

pub mod value;

pub use value::KeyInfo;
use value::{BadValue, number_in, on_off};

/// Every key the kernel accepts: this module's table, then those of the
/// subsystems that own their keys (error messages and `job=keys` list them
/// in this order). The parser checks each key against these tables first,
/// so a key is accepted only if it is listed here.
pub fn all_keys() -> impl Iterator<Item = &'static KeyInfo> {
    KEYS.iter().chain(crate::race::config::KEYS).chain(crate::khugepaged::KEYS).chain(crate::ksm::KEYS)
}

/// `job=keys`: every key the kernel accepts, with its values, its default
/// and what it does, from the tables the parser checks keys against; then
/// `RESULT keys count=N`.
pub fn print_keys() {
    let n = all_keys().count();
    crate::println!(
        "BOOT KEYS: the {n} keys the kernel accepts, each as key=values (default ...) and what it does; give them as key=value words after the host options (cargo run -- --smp 2 key=value ...) or in the image's ramdisk file"
    );
    for k in all_keys() {
        crate::println!("{}={} (default {})\n    {}", k.key, k.values, k.default, k.help);
    }
    crate::println!("RESULT keys count={n}");
}

/// Every key the kernel accepts.
pub const KEYS: &[KeyInfo] = &[
    KeyInfo {
        key: "console",
        values: "auto|serial|fb|both",
        default: "auto",
        help: "console sinks (auto: serial if present, else framebuffer)",
    },
    KeyInfo {
        key: "log",
        values: "off|error|warn|info|debug|trace",
        default: "info",
        help: "the least severe log level printed (off: none; trace: every message)",
    },
    KeyInfo {
        key: "crash",
        values: "none|panic|pagefault|gpf|ud|doublefault|stackoverflow|triplefault|useraccess",
        default: "none",
        help: "main kernel: crash deliberately after boot, to check the crash reports",
    },
    KeyInfo { key: "apic", values: "auto|xapic", default: "auto", help: "local APIC mode (auto: x2APIC when the CPU offers it)" },
    KeyInfo {
        key: "smp.ap_timeout_ms",
        values: "<1..=60000>",
        default: "1000",
        help: "how long an AP may take to come online before it is reported and skipped",
    },
    KeyInfo {
        key: "smp.call_timeout_ms",
        values: "<1..=600000>",
        default: "2000",
        help: "bound on every wait for a cross-CPU call (must exceed any interrupts-off pause)",
    },
    KeyInfo {
        key: "bench",
        values: "ipi,rcu,tlb,shootdown,gup,ksm,collapse (comma-separated)",
        default: "<none>",
        help: "main kernel: run these benchmarks after boot and print RESULT lines (ipi: cross-CPU call round trip by IPI and NMI; rcu: grace-period latency; tlb: flush_page shootdown cost; shootdown: user mprotect/madvise cost by remote CPUs; gup: GUP-fast and slow-path cost per page; ksm: ksmd merge rate on 64 MiB of equal pages; collapse: MADV_COLLAPSE of 512 small pages with 0 and 1 remote CPUs)",
    },
    KeyInfo {
        key: "job",
        values: "races|none|list|keys",
        default: "races",
        help: "main kernel, when no scenario=, bench= or init= is given: races (default) runs every row of every race scenario's table with a short bound and prints the table and one verdict (the main job); none only boots; list prints every scenario's rows (RESULT row lines, for the host's matrix); keys prints every boot key with its values, default and what it does (this list)",
    },
    KeyInfo {
        key: "job.rows",
        values: "<index>[,<index>...] (as job=list numbers them)",
        default: "<every row>",
        help: "main job: run only these rows (indices into every scenario's rows in job=list order; the host's race matrix runs a (CPUs, seed) this way in one boot); secs= bounds each row",
    },
    KeyInfo {
        key: "rcu.stall_ms",
        values: "<1..=600000>",
        default: "5000",
        help: "an RCU grace period older than this is reported with the CPUs that hold it up (NMI dump); ten times this is fatal",
    },
    KeyInfo {
        key: "smp.ipi_shorthand",
        values: "on|off",
        default: "on",
        help: "a cross-CPU call to every other CPU is one all-but-self IPI (on, default) or one IPI per CPU (off)",
    },
    KeyInfo {
        key: "smp.ipi_logical",
        values: "on|off",
        default: "on",
        help: "a cross-CPU call to several (not all other) CPUs is one logical-destination IPI per APIC cluster (on, default) or one IPI per CPU (off)",
    },
    KeyInfo {
        key: "smp.icr_poll",
        values: "on|off|auto",
        default: "auto",
        help: "xAPIC: poll the ICR's delivery-status bit before each IPI (on), or not (off); auto (default): only on bare metal, not under a hypervisor (whose emulated ICR is never busy)",
    },
    KeyInfo {
        key: "bench.breakdown",
        values: "on|off",
        default: "off",
        help: "TSC stamps on the remote flush, mprotect and KSM merge paths; bench=shootdown and bench=ksm then print a <bench>_steps RESULT line per configuration with each step's median (default off)",
    },
    KeyInfo {
        key: "tlb",
        values: "ipi|nmi",
        default: "ipi",
        help: "remote TLB flush delivery: fixed-vector IPI (held back by interrupts-off sections) or NMI (not)",
    },
    KeyInfo {
        key: "tlb.nowait",
        values: "on|off",
        default: "off",
        help: "negative control: address-space shootdowns return without waiting for the acknowledgements",
    },
    KeyInfo {
        key: "tlb.ceiling",
        values: "<1..=262144>",
        default: "33",
        help: "most pages flushed one by one (INVLPG); longer ranges are flushed whole (default 33)",
    },
    KeyInfo {
        key: "ptfree",
        values: "ipi|rcu",
        default: "ipi",
        help: "detached page tables are freed after an IPI to every CPU (default) or after an RCU grace period",
    },
    KeyInfo {
        key: "dma.delay",
        values: "fixed|random",
        default: "fixed",
        help: "DMA agent: start each transfer exactly dma.delay_us after submission, or uniformly within it",
    },
    KeyInfo {
        key: "dma.delay_us",
        values: "<0..=100000>",
        default: "20",
        help: "DMA agent: the fixed delay, or the random delay's bound, in us (default 20)",
    },
    KeyInfo {
        key: "dma.cpu",
        values: "<online CPU>",
        default: "<the last online CPU>",
        help: "DMA agent: the CPU its thread runs on (default: the last online CPU)",
    },
    KeyInfo {
        key: "init",
        values: "<program> (hello, threads, ...: kernel/src/process/programs.rs)",
        default: "<none>",
        help: "main kernel: run this built-in user program on the boot CPU after boot and report its exit status (non-zero: failure)",
    },
    KeyInfo {
        key: "end",
        values: "halt|reboot|poweroff",
        default: "halt",
        help: "what the machine does after the run: halt with the results on screen, reset through the FADT reset register, or power off (ACPI S5: PM1 control registers from the FADT, sleep types from the DSDT's \\_S5)",
    },
    KeyInfo {
        key: "debug.wedge_cpu",
        values: "<online CPU other than 0>",
        default: "<none>",
        help: "after boot, wedge this CPU with interrupts off (it stops answering IPIs) and make a kernel TLB shootdown: it must time out naming the CPU, with its NMI backtrace, and end the run (fatal)",
    },
    KeyInfo {
        key: "ktest.filter",
        values: "<substring>[|<substring>...]",
        default: "<every test>",
        help: "test kernels: run only tests whose name contains one of them",
    },
    KeyInfo {
        key: "ktest.skip",
        values: "<number>",
        default: "0",
        help: "test kernels: skip the first N tests (crash recovery)",
    },
];

/// A deliberate crash (`crash=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// `panic!`.
    Panic,
    /// A read of an unmapped address.
    PageFault,
    /// A non-canonical access.
    GeneralProtection,
    /// `ud2`.
    InvalidOpcode,
    /// A push with the stack pointer in unmapped, non-stack memory.
    DoubleFault,
    /// Unbounded recursion into the stack's guard page.
    StackOverflow,
    /// An exception with no usable IDT: the CPU resets.
    TripleFault,
    /// A kernel read of a mapped user page outside `mm::uaccess` (SMAP).
    UserAccess,
}

/// The parsed options.
#[derive(Clone, Copy, Debug)]
pub struct BootOptions {
    /// `console=`.
    pub console: ConsoleChoice,
    /// `log=`.
    pub log_level: LevelFilter,
    /// `crash=`.
    pub crash: Option<Crash>,
    /// `apic=xapic`: stay in xAPIC mode even when x2APIC is offered.
    pub force_xapic: bool,
    /// `smp.ap_timeout_ms=`.
    pub ap_timeout_ms: u64,
    /// `smp.call_timeout_ms=`.
    pub call_timeout_ms: u64,
    /// `rcu.stall_ms=`.
    pub rcu_stall_ms: u64,
    /// `bench=`: benchmarks the main kernel runs after boot.
    pub bench: BenchSet,
    /// `bench.breakdown=`: TSC stamps on the hot paths ([`crate::stamps`]).
    pub bench_breakdown: bool,
    /// `smp.ipi_shorthand=`: all-but-self IPIs for calls to every other CPU.
    pub ipi_shorthand: bool,
    /// `smp.ipi_logical=`: logical-destination IPIs for calls to several CPUs.
    pub ipi_logical: bool,
    /// `smp.icr_poll=`: poll the xAPIC ICR before sending (`None`: auto).
    pub icr_poll: Option<bool>,
    /// `tlb=`, `tlb.nowait=`, `tlb.ceiling=`, `ptfree=`.
    pub tlb: crate::tlb::TlbConfig,
    /// `dma.delay=`, `dma.delay_us=`, `dma.cpu=`.
    pub dma: crate::dma::DmaConfig,
    /// `init=`: the user program the main kernel runs after boot.
    pub init: Option<&'static str>,
    /// `job=`: what the main kernel does when nothing else is asked for.
    pub job: crate::scenario::job::Job,
    /// `job.rows=`: the main job's rows to run (bit `i`: row `i` of
    /// `job=list`); `None`: every row.
    pub job_rows: Option<u128>,
    /// The race tests' keys (`sync=`, `gup.*`, `ksm.*`, `widen.*`,
    /// `scenario=` and its parameters): see `race::config`.
    pub race: crate::race::RaceConfig,
    /// `khugepaged.*=`: khugepaged's tunables for the boot (Linux's
    /// /sys/kernel/mm/transparent_hugepage/khugepaged/*).
    pub khugepaged: crate::khugepaged::Tunables,
    /// `ksm.max_page_sharing=`: most ptes per KSM page, for every ksmd of
    /// the boot (Linux's max_page_sharing, default 256).
    pub ksm_max_page_sharing: u64,
    /// `end=`: what the machine does after the run.
    pub end: crate::power::EndAction,
    /// `debug.wedge_cpu=`: the CPU to wedge after boot.
    pub wedge_cpu: Option<usize>,
    /// `ktest.filter=`.
    pub ktest_filter: Option<&'static str>,
    /// `ktest.skip=`.
    pub ktest_skip: usize,
}

impl BootOptions {
    /// The defaults (no options given).
    pub const DEFAULT: BootOptions = BootOptions {
        console: ConsoleChoice::Auto,
        log_level: LevelFilter::Info,
        crash: None,
        force_xapic: false,
        ap_timeout_ms: 1000,
        call_timeout_ms: 2000,
        rcu_stall_ms: 5000,
        bench: BenchSet::EMPTY,
        bench_breakdown: false,
        ipi_shorthand: true,
        ipi_logical: true,
        icr_poll: None,
        tlb: crate::tlb::TlbConfig::DEFAULT,
        dma: crate::dma::DmaConfig::DEFAULT,
        init: None,
        job: crate::scenario::job::Job::Races,
        job_rows: None,
        race: crate::race::RaceConfig::DEFAULT,
        khugepaged: crate::khugepaged::Tunables::DEFAULT,
        ksm_max_page_sharing: crate::ksm::MAX_PAGE_SHARING_DEFAULT,
        end: crate::power::EndAction::Halt,
        wedge_cpu: None,
        ktest_filter: None,
        ktest_skip: 0,
    };
}

/// What was wrong with the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// A word without `=`.
    NotKeyValue(&'static str),
    /// A key nobody knows.
    UnknownKey(&'static str),
    /// A known key with a value it does not accept.
    BadValue {
        /// The key.
        key: &'static str,
        /// The value given.
        value: &'static str,
        /// What the key accepts.
        expected: &'static str,
    },
    /// The same key twice.
    Duplicate(&'static str),
    /// The file is not UTF-8.
    NotUtf8,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::NotKeyValue(w) => write!(f, "'{w}' is not a key=value word"),
            OptionError::UnknownKey(k) => {
                write!(f, "unknown key '{k}'; known keys:")?;
                for k in all_keys() {
                    write!(f, " {}", k.key)?;
                }
                Ok(())
            }
            OptionError::BadValue { key, value, expected } => {
                write!(f, "bad value '{value}' for '{key}' (expected {expected})")?;
                // What the key is for, from its table: the one place a user
                // at a serial console (or a USB stick's screen) learns it.
                match all_keys().find(|k| k.key == *key) {
                    Some(k) => write!(f, "; {key}: {}", k.help),
                    None => Ok(()),
                }
            }
            OptionError::Duplicate(k) => write!(f, "key '{k}' given twice"),
            OptionError::NotUtf8 => write!(f, "the boot-options file is not UTF-8 text"),
        }
    }
}

fn expected(key: &str) -> &'static str {
    all_keys().find(|k| k.key == key).map_or("?", |k| k.values)
}

fn bad(key: &'static str, value: &'static str) -> OptionError {
    OptionError::BadValue { key, value, expected: expected(key) }
}

/// A subsystem parser's bad value, with what the key accepts.
impl From<BadValue> for OptionError {
    fn from(e: BadValue) -> OptionError {
        bad(e.key, e.value)
    }
}

/// Parses the raw boot-options file.
pub fn parse_bytes(raw: &'static [u8]) -> Result<BootOptions, OptionError> {
    let text = core::str::from_utf8(raw).map_err(|_| OptionError::NotUtf8)?;
    parse(text)
}

/// Parses boot-options text.
pub fn parse(text: &'static str) -> Result<BootOptions, OptionError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut options = BootOptions::DEFAULT;
    let mut seen: [&str; 64] = [""; 64];
    let mut n_seen = 0;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for word in line.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                return Err(OptionError::NotKeyValue(word));
            };
            if key.is_empty() {
                return Err(OptionError::NotKeyValue(word));
            }
            // The tables are the list of keys (what `job=keys` prints).
            if !all_keys().any(|k| k.key == key) {
                return Err(OptionError::UnknownKey(key));
            }
            if seen[..n_seen].contains(&key) {
                return Err(OptionError::Duplicate(key));
            }
            if n_seen < seen.len() {
                seen[n_seen] = key;
                n_seen += 1;
            }
            apply(&mut options, key, value)?;
        }
    }
    Ok(options)
}

fn apply(o: &mut BootOptions, key: &'static str, value: &'static str) -> Result<(), OptionError> {
    match key {
        "console" => {
            o.console = match value {
                "auto" => ConsoleChoice::Auto,
                "serial" => ConsoleChoice::Serial,
                "fb" => ConsoleChoice::FrameBuffer,
                "both" => ConsoleChoice::Both,
                _ => return Err(bad(key, value)),
            }
        }
        "log" => {
            o.log_level = match value {
                "off" => LevelFilter::Off,
                "error" => LevelFilter::Error,
                "warn" => LevelFilter::Warn,
                "info" => LevelFilter::Info,
                "debug" => LevelFilter::Debug,
                "trace" => LevelFilter::Trace,
                _ => return Err(bad(key, value)),
            }
        }
        "crash" => {
            o.crash = match value {
                "none" => None,
                "panic" => Some(Crash::Panic),
                "pagefault" => Some(Crash::PageFault),
                "gpf" => Some(Crash::GeneralProtection),
                "ud" => Some(Crash::InvalidOpcode),
                "doublefault" => Some(Crash::DoubleFault),
                "stackoverflow" => Some(Crash::StackOverflow),
                "triplefault" => Some(Crash::TripleFault),
                "useraccess" => Some(Crash::UserAccess),
                _ => return Err(bad(key, value)),
            }
        }
        "apic" => {
            o.force_xapic = match value {
                "auto" => false,
                "xapic" => true,
                _ => return Err(bad(key, value)),
            }
        }
        "smp.ap_timeout_ms" => o.ap_timeout_ms = number_in(key, value, 1, 60_000)?,
        "smp.call_timeout_ms" => o.call_timeout_ms = number_in(key, value, 1, 600_000)?,
        "rcu.stall_ms" => o.rcu_stall_ms = number_in(key, value, 1, 600_000)?,
        "job" => {
            o.job = match value {
                "races" => crate::scenario::job::Job::Races,
                "none" => crate::scenario::job::Job::None,
                "list" => crate::scenario::job::Job::List,
                "keys" => crate::scenario::job::Job::Keys,
                _ => return Err(bad(key, value)),
            }
        }
        "job.rows" => {
            // Whether each index names a row is checked by the job, which
            // knows the tables.
            let mut mask = 0u128;
            for i in value.split(',') {
                let i = if i.is_empty() { value } else { i };
                mask |= 1u128 << number_in(key, i, 0, u128::BITS as u64 - 1)?;
            }
            o.job_rows = Some(mask);
        }
        "bench" => {
            // Each listed name must be known; the error names the bad one.
            for name in value.split(',') {
                let b = Bench::from_name(name).ok_or_else(|| bad(key, if name.is_empty() { value } else { name }))?;
                o.bench.insert(b);
            }
        }
        "tlb" => {
            o.tlb.mode = match value {
                "ipi" => crate::tlb::FlushMode::Ipi,
                "nmi" => crate::tlb::FlushMode::Nmi,
                _ => return Err(bad(key, value)),
            }
        }
        "tlb.nowait" => o.tlb.nowait = on_off(key, value)?,
        "bench.breakdown" => o.bench_breakdown = on_off(key, value)?,
        "smp.ipi_shorthand" => o.ipi_shorthand = on_off(key, value)?,
        "smp.ipi_logical" => o.ipi_logical = on_off(key, value)?,
        "smp.icr_poll" => o.icr_poll = if value == "auto" { None } else { Some(on_off(key, value)?) },
        "tlb.ceiling" => o.tlb.ceiling = number_in(key, value, 1, crate::tlb::MAX_CEILING)?,
        "ptfree" => {
            o.tlb.ptfree = match value {
                "ipi" => crate::tlb::PtFree::Ipi,
                "rcu" => crate::tlb::PtFree::Rcu,
                _ => return Err(bad(key, value)),
            }
        }
        "dma.delay" => {
            o.dma.delay = match value {
                "fixed" => crate::dma::DelayMode::Fixed,
                "random" => crate::dma::DelayMode::Random,
                _ => return Err(bad(key, value)),
            }
        }
        "dma.delay_us" => o.dma.delay_us = number_in(key, value, 0, crate::dma::MAX_DELAY_US)?,
        // Whether the CPU exists is checked once the CPUs are up (dma::init).
        "dma.cpu" => o.dma.cpu = Some(number_in(key, value, 0, 4095)? as usize),
        "init" => {
            if crate::process::programs::lookup(value).is_none() {
                return Err(bad(key, value));
            }
            o.init = Some(value);
        }
        "end" => {
            o.end = match value {
                "halt" => crate::power::EndAction::Halt,
                "reboot" => crate::power::EndAction::Reboot,
                // Whether S5 can be entered is checked once ACPI is read.
                "poweroff" => crate::power::EndAction::Poweroff,
                _ => return Err(bad(key, value)),
            }
        }
        // CPU 0 runs the main job: wedging it would leave nobody to notice.
        // Whether the CPU is online is checked once the CPUs are up.
        "debug.wedge_cpu" => o.wedge_cpu = Some(number_in(key, value, 1, 4095)? as usize),
        "ktest.filter" => {
            if value.is_empty() {
                return Err(bad(key, value));
            }
            o.ktest_filter = Some(value);
        }
        "ktest.skip" => o.ktest_skip = value.parse().map_err(|_| bad(key, value))?,
        _ => {
            let owned = crate::race::config::apply(&mut o.race, key, value)
                .or_else(|| crate::khugepaged::apply_key(&mut o.khugepaged, key, value))
                .or_else(|| crate::ksm::apply_key(&mut o.ksm_max_page_sharing, key, value));
            match owned {
                Some(r) => r?,
                None => return Err(OptionError::UnknownKey(key)),
            }
        }
    }
    Ok(())
}
