//! How a run ends: a last line for the host, then QEMU exits or the machine halts.
//!
//! The host tool reads the line `TESTBED-END status=...` and QEMU's exit status
//! (`isa-debug-exit`: status `(code << 1) | 1`). Without that line the host knows
//! the kernel never finished (a triple fault, a hang) and says so.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::arch;

/// What the machine does once the run ended (`end=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndAction {
    /// Halt with the results on screen (the default).
    Halt,
    /// Reset the machine (through the FADT's reset register).
    Reboot,
    /// Power the machine off (ACPI S5).
    Poweroff,
}

static END: AtomicU8 = AtomicU8::new(0);
/// Performs a non-halt end action; returns only if it failed, with why.
static END_HANDLER: spin::Once<fn(EndAction) -> &'static str> = spin::Once::new();

/// Sets the end action (`end=`, from the boot options).
pub(crate) fn set_end_action(action: EndAction) {
    END.store(action as u8, Ordering::Relaxed);
}

/// The end action in force.
pub(crate) fn end_action() -> EndAction {
    match END.load(Ordering::Relaxed) {
        1 => EndAction::Reboot,
        2 => EndAction::Poweroff,
        _ => EndAction::Halt,
    }
}

/// Registers how a non-halt end action is done (the boot registers the ACPI
/// reset, which sits above this layer).
pub(crate) fn register_end_handler(handler: fn(EndAction) -> &'static str) {
    END_HANDLER.call_once(|| handler);
}

/// The outcome of a run, as the host tool maps it to its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything passed (QEMU exits 33; host exit 0).
    Pass,
    /// The kernel found a failure: a test, a scenario verdict (QEMU 35; host 1).
    Fail,
    /// A bad boot option (QEMU 37; host 2).
    Usage,
    /// A panic or an unhandled exception, after its report (QEMU 39; host 1).
    Fatal,
}

impl ExitStatus {
    fn code(self) -> u8 {
        match self {
            ExitStatus::Pass => 0x10,
            ExitStatus::Fail => 0x11,
            ExitStatus::Usage => 0x12,
            ExitStatus::Fatal => 0x13,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ExitStatus::Pass => "pass",
            ExitStatus::Fail => "fail",
            ExitStatus::Usage => "usage",
            ExitStatus::Fatal => "fatal",
        }
    }
}

/// The shadow buffer's part of the scroll figure (nothing without one).
struct ShadowFigure(crate::console::ScrollStats);

impl core::fmt::Display for ShadowFigure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.0;
        if s.flushes == 0 {
            return Ok(());
        }
        write!(
            f,
            " (in the shadow buffer); {} KiB copied to the screen in {} us",
            s.flushed_bytes / 1024,
            arch::tsc::ticks_to_ns(s.flush_ticks) / 1000
        )
    }
}

/// Ends the run: prints the framebuffer's scrolling figure and the end
/// marker, turns the screen's status band green (pass) or red (with the first
/// failure's reason), asks QEMU to exit, and halts if it is still running (a
/// physical machine: the results stay on screen).
pub fn exit(status: ExitStatus) -> ! {
    if let Some(s) = crate::console::scroll_stats()
        && s.scrolls > 0
    {
        crate::println!(
            "console: framebuffer scrolled {} times ({} lines, {} per jump) in {} us, {} us per scroll{}",
            s.scrolls,
            s.lines,
            s.lines / s.scrolls,
            arch::tsc::ticks_to_ns(s.ticks) / 1000,
            arch::tsc::ticks_to_ns(s.ticks / s.scrolls) / 1000,
            ShadowFigure(s)
        );
    }
    if status == ExitStatus::Pass {
        crate::console::set_status(
            crate::console::Status::Pass,
            format_args!(
                "PASS: the run ended; {}",
                match end_action() {
                    EndAction::Reboot => "rebooting",
                    EndAction::Poweroff => "powering off",
                    EndAction::Halt => "halted: power the machine off to restart",
                }
            ),
        );
    } else {
        let reason = crate::console::failure_reason();
        crate::console::set_status(
            crate::console::Status::Fail,
            format_args!(
                "FAIL ({}): {}",
                status.name(),
                if reason.as_str().is_empty() { "see the log above" } else { reason.as_str() }
            ),
        );
    }
    if status == ExitStatus::Fatal {
        crate::console::emergency_print(format_args!("TESTBED-END status={}\n", status.name()));
    } else {
        crate::println!("TESTBED-END status={}", status.name());
    }
    arch::qemu::request_exit(status.code());
    let action = end_action();
    if action != EndAction::Halt {
        let why = END_HANDLER.get().map_or("no handler registered (the run ended before ACPI was read)", |h| h(action));
        crate::console::emergency_print(format_args!("end={action:?}: {why}\n"));
    }
    crate::console::emergency_print(format_args!(
        "run ended (status {}); halting: power the machine off to restart\n",
        status.name()
    ));
    arch::cpu::halt_forever()
}
