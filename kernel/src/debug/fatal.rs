//! The fatal path shared by the panic handler and unhandled exceptions.
//!
//! It switches the console to its emergency path, marks the running test (if
//! any) as failed with a one-line reason the host can show, prints the report
//! and ends the run with `ExitStatus::Fatal`. A fault while reporting (a nested
//! fatal on the same CPU) skips straight to the end, so a broken report can
//! never loop.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::power::{self, ExitStatus};

static IN_PROGRESS: AtomicBool = AtomicBool::new(false);

/// Output helper for reports.
pub fn out(args: fmt::Arguments) {
    crate::console::emergency_print(args);
}

/// Starts a fatal report: `summary` is one line (it becomes the failed test's
/// reason). Returns `false` if a report is already under way (nested failure):
/// the caller must then call [`end`] at once.
pub fn begin(summary: fmt::Arguments) -> bool {
    if IN_PROGRESS.swap(true, Ordering::SeqCst) {
        out(format_args!("\nFATAL (nested, while reporting): {summary}\n"));
        return false;
    }
    crate::console::enter_emergency();
    if let Some(test) = crate::testing::current_test() {
        // The host reads one line per test result: fold a multi-line summary
        // (assert_eq!'s left/right lines) into it.
        out(format_args!("test {test} ... FAILED ({})\n", OneLine(summary)));
    }
    out(format_args!("FATAL: {summary}\n"));
    true
}

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
pub fn end() -> ! {
    power::exit(ExitStatus::Fatal)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let location = info.location();
    let file = location.map_or("<unknown>", |l| l.file());
    let line = location.map_or(0, |l| l.line());
    if !begin(format_args!("panicked at {file}:{line}: {}", info.message())) {
        end();
    }
    out(format_args!("  on cpu{}\n", crate::smp::cpu_index()));
    crate::debug::backtrace::print_current(&mut |a| out(a));
    end()
}
