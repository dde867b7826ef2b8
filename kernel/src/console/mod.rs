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

pub(crate) mod framebuffer;
pub(crate) mod logger;
pub(crate) mod serial;

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use bootloader_api::info::FrameBufferInfo;
pub(crate) use framebuffer::{ScrollStats, Status};
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
pub(crate) fn init_serial() -> Result<(), &'static str> {
    let (serial, problem) = Serial::probe();
    CONSOLE.lock().serial = serial;
    problem.map_or(Ok(()), Err)
}

/// Hands the framebuffer to the console (not yet drawn to; see [`choose`]).
/// A second call (the kernel's mapping of the same framebuffer) keeps what
/// is on screen.
pub(crate) fn attach_framebuffer(buffer: &'static mut [u8], info: FrameBufferInfo) {
    let mut c = CONSOLE.lock();
    c.framebuffer = Some(match c.framebuffer.take() {
        Some(old) => old.remap(buffer, info),
        None => FrameBufferConsole::new(buffer, info),
    });
}

/// Gives the framebuffer console a shadow buffer in RAM (needs the heap; see
/// [`framebuffer`]'s docs): from now on a scroll never reads the screen.
/// Returns the shadow's size in bytes, or why there is none.
pub(crate) fn enable_shadow() -> Result<usize, &'static str> {
    let len = x86_64::instructions::interrupts::without_interrupts(|| CONSOLE.lock().framebuffer.as_ref().map(|f| f.shadow_len()))
        .ok_or("no framebuffer")?;
    let shadow = alloc_shadow(len).ok_or("no memory for a shadow buffer")?;
    set_shadow(Some(shadow));
    Ok(len)
}

/// A zeroed buffer of `len` bytes, or `None` when the heap cannot give it.
fn alloc_shadow(len: usize) -> Option<alloc::vec::Vec<u8>> {
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0);
    Some(v)
}

/// Installs (or, with `None`, removes) the framebuffer console's shadow;
/// returns the previous one.
fn set_shadow(shadow: Option<alloc::vec::Vec<u8>>) -> Option<alloc::vec::Vec<u8>> {
    x86_64::instructions::interrupts::without_interrupts(|| CONSOLE.lock().framebuffer.as_mut()?.set_shadow(shadow))
}

/// Whether the framebuffer console draws through a shadow buffer.
pub(crate) fn has_shadow() -> bool {
    x86_64::instructions::interrupts::without_interrupts(|| {
        CONSOLE.lock().framebuffer.as_ref().is_some_and(|f| f.has_shadow())
    })
}

/// For `bench=console`: turns the shadow buffer on or off (allocating one
/// when needed). `Err` when there is no framebuffer or no memory.
pub(crate) fn use_shadow(on: bool) -> Result<(), &'static str> {
    match (on, has_shadow()) {
        (true, false) => enable_shadow().map(|_| ()),
        (false, true) => {
            drop(set_shadow(None));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// With a shadow buffer: the first byte where the screen differs from it
/// (`None`: identical, or no shadow). Reads the whole framebuffer.
pub(crate) fn shadow_mismatch() -> Option<usize> {
    x86_64::instructions::interrupts::without_interrupts(|| CONSOLE.lock().framebuffer.as_mut()?.shadow_mismatch())
}

/// The framebuffer's size: (width, height, bytes per pixel), if there is one.
pub(crate) fn framebuffer_geometry() -> Option<(usize, usize, usize)> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        CONSOLE.lock().framebuffer.as_ref().map(|f| f.geometry())
    })
}

/// Writes formatted output to the framebuffer only, whatever `console=`
/// chose (for `bench=console`, which times the screen alone).
pub(crate) fn print_framebuffer(args: fmt::Arguments) {
    print_to(args, |_| (false, true));
}

/// Selects the sinks. Returns a description of the result for the boot log.
pub(crate) fn choose(choice: ConsoleChoice) -> &'static str {
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
pub(crate) fn print(args: fmt::Arguments) {
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

/// Writes formatted output to every sink there is, serial *and* the
/// framebuffer, whatever `console=` chose (for the main job's table: a
/// person at the screen and the host tool on the serial line both see it).
pub(crate) fn print_everywhere(args: fmt::Arguments) {
    print_to(args, |c| (c.serial.present(), c.framebuffer.is_some()));
}

/// Writes formatted output to the sinks `sinks` picks (serial, framebuffer)
/// for this one print, whatever `console=` chose, then restores the choice.
fn print_to(args: fmt::Arguments, sinks: impl FnOnce(&Console) -> (bool, bool)) {
    if EMERGENCY.load(Ordering::Relaxed) {
        emergency_print(args);
        return;
    }
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut c = CONSOLE.lock();
        let chosen = (c.to_serial, c.to_framebuffer);
        (c.to_serial, c.to_framebuffer) = sinks(&c);
        let _ = c.write_fmt(args);
        (c.to_serial, c.to_framebuffer) = chosen;
    });
}

/// Switches every writer to the emergency path (see [`emergency_print`]).
pub(crate) fn enter_emergency() {
    EMERGENCY.store(true, Ordering::SeqCst);
}

/// Writes a crash report line: to serial and, if there is one, the framebuffer
/// (so a machine halted by a crash shows why on screen). If the console lock is
/// held (perhaps by the crashing code itself), it waits briefly and then takes
/// the console anyway: a garbled line is better than no report.
pub(crate) fn emergency_print(args: fmt::Arguments) {
    let mut guard = lock_forcibly();
    let fb_present = guard.framebuffer.is_some();
    let to_fb = guard.to_framebuffer;
    guard.to_framebuffer = fb_present;
    guard.to_serial = true;
    let _ = guard.write_fmt(args);
    guard.to_framebuffer = to_fb;
}

/// The console with the emergency path's locking: waits briefly, then takes
/// the lock from a holder that is not making progress.
fn lock_forcibly() -> spin::MutexGuard<'static, Console> {
    let mut spins = 0u32;
    loop {
        if let Some(g) = CONSOLE.try_lock() {
            return g;
        }
        spins += 1;
        if spins > 10_000_000 {
            // SAFETY: the holder is this CPU (crashed while printing) or a CPU
            // that is not making progress; output is the only shared state, and
            // garbled output is acceptable on the way down.
            unsafe { CONSOLE.force_unlock() };
        }
        core::hint::spin_loop();
    }
}

/// Draws the framebuffer's status band (if there is a framebuffer, whatever
/// the console sinks are): `text` on the colour of `status`. Usable on the
/// way down (it takes the console as the emergency path does).
pub(crate) fn set_status(status: Status, text: fmt::Arguments) {
    let mut line = Line::new();
    let _ = line.write_fmt(text);
    x86_64::instructions::interrupts::without_interrupts(|| {
        if let Some(fb) = lock_forcibly().framebuffer.as_mut() {
            fb.set_status(status, line.as_str());
        }
    });
}

/// The framebuffer console's scrolling figures (`None`: no framebuffer, or
/// the console is busy: never waits, it is read on the way down).
pub(crate) fn scroll_stats() -> Option<ScrollStats> {
    x86_64::instructions::interrupts::without_interrupts(|| CONSOLE.try_lock()?.framebuffer.as_ref().map(|f| f.stats()))
}

/// The first failure worth showing in the status band (the first error
/// logged, or a fatal report's summary), one line.
static REASON: spin::Mutex<Line> = spin::Mutex::new(Line::new());

/// Records `why` as the run's failure reason unless one is recorded already
/// (the first failure is usually the cause). Never blocks: a reason that
/// cannot take the lock at once is dropped.
pub(crate) fn note_failure(why: fmt::Arguments) {
    if let Some(mut r) = REASON.try_lock()
        && r.len == 0
    {
        let _ = r.write_fmt(why);
    }
}

/// The recorded failure reason (empty if none).
pub(crate) fn failure_reason() -> Line {
    REASON.try_lock().map_or(Line::new(), |r| r.clone())
}

/// One line of text in a fixed buffer (line breaks become " | ", the rest of
/// a long text is dropped).
#[derive(Clone)]
pub(crate) struct Line {
    bytes: [u8; 200],
    len: usize,
}

impl Line {
    const fn new() -> Self {
        Line { bytes: [0; 200], len: 0 }
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let piece: &str = if c == '\n' { " | " } else if c.is_control() { " " } else { c.encode_utf8(&mut tmp) };
            if self.len + piece.len() > self.bytes.len() {
                return Ok(());
            }
            self.bytes[self.len..self.len + piece.len()].copy_from_slice(piece.as_bytes());
            self.len += piece.len();
        }
        Ok(())
    }
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
