//! The fatal path shared by the panic handler and unhandled exceptions.
//!
//! It switches the console to its emergency path, marks the running test (if
//! any) as failed with a one-line reason the host can show, prints the report
//! and ends the run with `ExitStatus::Fatal`. A fault while reporting (a nested
//! fatal on the same CPU) skips straight to the end, so a broken report can
//! never loop.
//!
//! A panic inside a `#[should_panic = "text"]` test whose message contains
//! `text` is that test passing: the fatal path prints `test N ... ok` and a
//! one-line note instead of the report, and still ends the run (a panic does
//! not unwind, so the kernel cannot go on); the host boots the next test.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::power::{self, ExitStatus};

static IN_PROGRESS: AtomicBool = AtomicBool::new(false);
/// Set by the first nested failure; a second one exits without printing.
static NESTED: AtomicBool = AtomicBool::new(false);

/// Output helper for reports.
pub(crate) fn out(args: fmt::Arguments) {
    crate::console::emergency_print(args);
}

/// Starts a fatal report: `summary` is one line (it becomes the failed test's
/// reason). Returns `false` if a report is already under way (nested failure):
/// the caller must then call [`end`] at once.
pub(crate) fn begin(summary: fmt::Arguments) -> bool {
    start(summary, None)
}

/// [`begin`] for a panic with message `panic`: also returns `false` (no report
/// wanted, call [`end`]) when the panic is the running test's expected one.
fn start(summary: fmt::Arguments, panic: Option<&dyn fmt::Display>) -> bool {
    if IN_PROGRESS.swap(true, Ordering::SeqCst) {
        // Formatting the summary may be what faulted: print nothing that needs
        // formatting, and if even this faults, leave at once.
        if NESTED.swap(true, Ordering::SeqCst) {
            crate::arch::qemu::request_exit(0x13);
            crate::arch::cpu::halt_forever();
        }
        out(format_args!("\nFATAL (nested: a second failure while reporting the first)\n"));
        return false;
    }
    crate::console::enter_emergency();
    crate::console::note_failure(summary);
    if let Some(test) = crate::testing::current() {
        // The host reads one line per test result: fold a multi-line summary
        // (assert_eq!'s left/right lines) into it.
        match test.should_panic {
            None => out(format_args!("test {} ... FAILED ({})\n", test.name, OneLine(summary))),
            Some(expected) if panic.is_some_and(|m| contains(m, expected)) => {
                out(format_args!("test {} ... ok\n", test.name));
                out(format_args!("ktest: expected panic on cpu{}: {}\n", crate::smp::cpu_index(), OneLine(summary)));
                return false;
            }
            Some(expected) => out(format_args!(
                "test {} ... FAILED (expected panic containing \"{expected}\", got: {})\n",
                test.name,
                OneLine(summary)
            )),
        }
    }
    out(format_args!("FATAL: {summary}\n"));
    true
}

/// Whether `message` contains `needle`, looking at the message's first
/// [`MATCH_BYTES`] bytes (formatted without allocating: the heap may be
/// what failed).
fn contains(message: &dyn fmt::Display, needle: &str) -> bool {
    struct Prefix {
        bytes: [u8; MATCH_BYTES],
        len: usize,
    }
    impl fmt::Write for Prefix {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(MATCH_BYTES - self.len);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut p = Prefix { bytes: [0; MATCH_BYTES], len: 0 };
    let _ = fmt::write(&mut p, format_args!("{message}"));
    let needle = needle.as_bytes();
    needle.is_empty() || p.bytes[..p.len].windows(needle.len()).any(|w| w == needle)
}

const MATCH_BYTES: usize = 1024;

/// Displays its arguments with line breaks replaced by " | ".
struct OneLine<'a>(fmt::Arguments<'a>);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Fold<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Fold<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let mut parts = s.split('\n');
                if let Some(first) = parts.next() {
                    self.0.write_str(first)?;
                }
                for part in parts {
                    self.0.write_str(" | ")?;
                    self.0.write_str(part)?;
                }
                Ok(())
            }
        }
        fmt::write(&mut Fold(f), self.0)
    }
}

/// Ends the run after a fatal report.
pub(crate) fn end() -> ! {
    power::exit(ExitStatus::Fatal)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let location = info.location();
    let file = location.map_or("<unknown>", |l| l.file());
    let line = location.map_or(0, |l| l.line());
    let message = info.message();
    if !start(format_args!("panicked at {file}:{line}: {message}"), Some(&message)) {
        end();
    }
    out(format_args!("  on cpu{}\n", crate::smp::cpu_index()));
    crate::debug::backtrace::print_current(&mut |a| out(a));
    end()
}
