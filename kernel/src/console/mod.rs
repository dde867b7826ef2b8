//! Console output: COM1 first, the framebuffer when no serial port answers or
//! when asked (`console=fb|both`), and an emergency path for crash reports.
//!
//! Invariants: output never blocks forever (a dead serial port is dropped, see
//! [`serial`]); a line is written under one lock so lines from different CPUs do
//! not interleave; the emergency path ([`emergency_print`]) works even when the
//! crashing code held the console lock.
//!
//! Machine-readable lines for the host tool (`test ...`, `RESULT ...`,
//! `TESTBED-END ...`) go through [`println!`](crate::println) without a log
//! prefix; everything else goes through the `log` macros ([`logger`]).

pub mod framebuffer;
pub mod logger;
pub mod serial;

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use bootloader_api::info::FrameBufferInfo;
use framebuffer::FrameBufferConsole;
use serial::Serial;

/// Which sinks receive output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// Serial if a port answers, else the framebuffer.
    Auto,
    /// Serial only (output is lost if there is no port).
    Serial,
    /// Framebuffer only.
    FrameBuffer,
    /// Both.
    Both,
}

struct Console {
    serial: Serial,
    framebuffer: Option<FrameBufferConsole>,
    to_serial: bool,
    to_framebuffer: bool,
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.to_serial {
            self.serial.write(s.as_bytes());
        }
        if self.to_framebuffer
            && let Some(fb) = self.framebuffer.as_mut()
        {
            fb.write(s);
        }
        Ok(())
    }
}

/// A `spin::Mutex`, not a `sync::SpinLock`: the emergency path must be able to
/// take the console from a holder that crashed (`force_unlock`), which a
/// ticket lock cannot offer safely. Normal printing takes it with interrupts
/// off, so an interrupt handler that prints cannot deadlock against its CPU.
static CONSOLE: spin::Mutex<Console> = spin::Mutex::new(Console {
    serial: Serial::absent(),
    framebuffer: None,
    to_serial: true,
    to_framebuffer: false,
});

/// Set once a fatal report has begun: from then on every writer takes the
/// emergency path, so a report is never stuck behind a lock its CPU holds.
static EMERGENCY: AtomicBool = AtomicBool::new(false);

/// Probes COM1. Returns `Err(reason)` when no port is usable.
pub fn init_serial() -> Result<(), &'static str> {
    let (serial, problem) = Serial::probe();
    CONSOLE.lock().serial = serial;
    problem.map_or(Ok(()), Err)
}

/// Whether a serial port answered.
pub fn serial_present() -> bool {
    CONSOLE.lock().serial.present()
}

/// Hands the framebuffer to the console (not yet drawn to; see [`choose`]).
pub fn attach_framebuffer(buffer: &'static mut [u8], info: FrameBufferInfo) {
    CONSOLE.lock().framebuffer = Some(FrameBufferConsole::new(buffer, info));
}

/// Selects the sinks. Returns a description of the result for the boot log.
pub fn choose(choice: ConsoleChoice) -> &'static str {
    let mut c = CONSOLE.lock();
    let serial = c.serial.present();
    let fb = c.framebuffer.is_some();
    let (s, f) = match choice {
        ConsoleChoice::Auto => (serial, !serial && fb),
        ConsoleChoice::Serial => (true, false),
        ConsoleChoice::FrameBuffer => (false, fb),
        ConsoleChoice::Both => (true, fb),
    };
    c.to_serial = s;
    c.to_framebuffer = f;
    match (s && serial, f) {
        (true, true) => "serial and framebuffer",
        (true, false) => "serial",
        (false, true) => "framebuffer",
        (false, false) => "none (no serial port, no framebuffer)",
    }
}

/// Writes formatted output to the console (used by [`print!`](crate::print)).
pub fn print(args: fmt::Arguments) {
    if EMERGENCY.load(Ordering::Relaxed) {
        emergency_print(args);
        return;
    }
    // Interrupt handlers that print would deadlock against an interrupted
    // holder; until the interrupt-safe locks exist, print with interrupts off.
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = CONSOLE.lock().write_fmt(args);
    });
}

/// Switches every writer to the emergency path (see [`emergency_print`]).
pub fn enter_emergency() {
    EMERGENCY.store(true, Ordering::SeqCst);
}

/// Writes a crash report line: to serial and, if there is one, the framebuffer
/// (so a machine halted by a crash shows why on screen). If the console lock is
/// held (perhaps by the crashing code itself), it waits briefly and then takes
/// the console anyway: a garbled line is better than no report.
pub fn emergency_print(args: fmt::Arguments) {
    let mut spins = 0u32;
    let mut guard = loop {
        if let Some(g) = CONSOLE.try_lock() {
            break g;
        }
        spins += 1;
        if spins > 10_000_000 {
            // SAFETY: the holder is this CPU (crashed while printing) or a CPU
            // that is not making progress; output is the only shared state, and
            // garbled output is acceptable on the way down.
            unsafe { CONSOLE.force_unlock() };
        }
        core::hint::spin_loop();
    };
    let fb_present = guard.framebuffer.is_some();
    let to_fb = guard.to_framebuffer;
    guard.to_framebuffer = fb_present;
    guard.to_serial = true;
    let _ = guard.write_fmt(args);
    guard.to_framebuffer = to_fb;
}

/// Prints without a log prefix (machine-readable lines for the host tool).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line without a log prefix (machine-readable lines for the host tool).
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
