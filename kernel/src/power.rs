//! How a run ends: a last line for the host, then QEMU exits or the machine halts.
//!
//! The host tool reads the line `TESTBED-END status=...` and QEMU's exit status
//! (`isa-debug-exit`: status `(code << 1) | 1`). Without that line the host knows
//! the kernel never finished (a triple fault, a hang) and says so.

use crate::arch;

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

/// Ends the run: prints the end marker, asks QEMU to exit, and halts if it is
/// still running (a physical machine: the message stays on screen).
pub fn exit(status: ExitStatus) -> ! {
    if status == ExitStatus::Fatal {
        crate::console::emergency_print(format_args!("TESTBED-END status={}\n", status.name()));
    } else {
        crate::println!("TESTBED-END status={}", status.name());
    }
    arch::qemu::request_exit(status.code());
    crate::console::emergency_print(format_args!(
        "run ended (status {}); halting: power the machine off to restart\n",
        status.name()
    ));
    arch::cpu::halt_forever()
}
