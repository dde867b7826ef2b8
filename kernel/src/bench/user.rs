//! RESULT lines from user programs (the `bench_result` syscall).
//!
//! A benchmark that must run in user space (the shootdown benchmark times
//! syscalls from ring 3, as the Linux peer does) hands its finished line to
//! the kernel, which prints it raw as `RESULT <line>`: the console's `write`
//! prefixes every user line with the process, so a program cannot print
//! protocol lines by itself. The kernel checks the form — one line, `<bench>`
//! then `key=value` words of a small alphabet — so a program can print a
//! result, never a test verdict or an end marker, and appends the
//! configuration keys only the kernel knows (` flush=nmi` under `tlb=nmi`,
//! as its own benchmarks do).
//!
//! [`reported`] counts the lines printed, so the benchmark driver can check
//! that the program reported every configuration.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::tlb::{self, FlushMode};

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadLine;

static REPORTED: AtomicU64 = AtomicU64::new(0);

/// Lines printed so far (Relaxed: a statistic; the driver reads it after
/// waiting for the program, which orders it).
pub(crate) fn reported() -> u64 {
    REPORTED.load(Ordering::Relaxed)
}

fn ident(w: &str) -> bool {
    !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn value(w: &str) -> bool {
    !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:,+-".contains(&b))
}

/// Whether `line` is `<bench> key=value ...` (at least one pair; no key the
/// kernel appends itself).
pub(crate) fn well_formed(line: &str) -> bool {
    let mut words = line.split(' ');
    let Some(bench) = words.next() else { return false };
    if !ident(bench) {
        return false;
    }
    let mut pairs = 0;
    for w in words {
        let Some((k, v)) = w.split_once('=') else { return false };
        if !ident(k) || !value(v) || k == "flush" {
            return false;
        }
        pairs += 1;
    }
    pairs > 0
}

/// Prints `RESULT <line>` plus the kernel's configuration keys, if `line`
/// (a trailing newline allowed) is well formed.
pub(crate) fn report(line: &str) -> Result<(), BadLine> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    if !well_formed(line) {
        log::warn!("bench_result: refused a malformed line ({} bytes)", line.len());
        return Err(BadLine);
    }
    let suffix = if tlb::config().mode == FlushMode::Nmi { " flush=nmi" } else { "" };
    crate::println!("RESULT {line}{suffix}");
    REPORTED.fetch_add(1, Ordering::Relaxed);
    if crate::stamps::enabled() {
        // `bench.breakdown=on`: the steps since the last line, under the
        // line's identifying words (`<bench>_steps op=.. remote_cpus=..`).
        let mut words = line.split(' ');
        let bench = words.next().unwrap_or("");
        let ids: alloc::string::String = words
            .filter(|w| w.split_once('=').is_some_and(|(k, _)| matches!(k, "op" | "remote_cpus" | "backing" | "mib")))
            .flat_map(|w| [" ", w])
            .collect();
        crate::println!("RESULT {bench}_steps{ids}{}{suffix}", crate::stamps::summary());
        crate::stamps::reset();
    }
    Ok(())
}
