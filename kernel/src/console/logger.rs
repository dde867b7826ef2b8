//! The `log` backend: `[    secs.micros cpuN LEVEL] message` on the console.
//!
//! Time is nanoseconds since boot from [`crate::time`]; the CPU number is the
//! dense index from per-CPU data.

use core::sync::atomic::{AtomicUsize, Ordering};
use log::{LevelFilter, Log, Metadata, Record};

struct Logger;

static LOGGER: Logger = Logger;

/// The level in force, as a `LevelFilter` discriminant (set by `log=`).
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

/// Installs the logger with `level`.
pub(crate) fn init(level: LevelFilter) {
    LEVEL.store(level as usize, Ordering::Relaxed);
    // A second call (a test kernel re-running init) finds it installed: fine.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Changes the level (boot option `log=`).
pub(crate) fn set_level(level: LevelFilter) {
    LEVEL.store(level as usize, Ordering::Relaxed);
    log::set_max_level(level);
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() as usize <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if record.level() == log::Level::Error {
            crate::console::note_failure(*record.args());
        }
        let ns = crate::time::now_ns();
        crate::console::print(format_args!(
            "[{:5}.{:06} cpu{} {:5}] {}\n",
            ns / 1_000_000_000,
            (ns / 1000) % 1_000_000,
            crate::smp::percpu::cpu_index(),
            record.level(),
            record.args()
        ));
    }

    fn flush(&self) {}
}
