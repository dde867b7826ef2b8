//! Scanning daemons (ksmd, khugepaged): one kernel thread per daemon, on a
//! CPU of the caller's choice, that runs a batch of work, sleeps (or, with a
//! sleep of 0, only yields the CPU) and runs the next batch, until stopped.
//! A daemon runs only while started (Linux's `run` files); a second start is
//! refused, a stop waits for the thread (bounded, naming its CPU).
//!
//! Also [`lock_yielding`], for a scanner's cursor: a lock whose holder may
//! sleep (it takes mmap locks), so a waiter yields instead of spinning.

use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{JoinHandle, sleep_ns, spawn_on, yield_now};
use crate::sync::SpinLock;

/// How long [`Daemon::stop`] waits for the thread, ns.
const STOP_TIMEOUT_NS: u64 = 10_000_000_000;
/// The longest slice of a daemon's sleep: a stop request is seen within it.
const SLEEP_SLICE_NS: u64 = 10_000_000;

/// A scanning daemon; a `static` of its subsystem.
pub struct Daemon {
    name: &'static str,
    already_running: &'static str,
    no_such_cpu: &'static str,
    stop: AtomicBool,
    thread: SpinLock<Option<JoinHandle<()>>>,
}

impl Daemon {
    /// The daemon `name` (its thread's name), with the errors [`start`]
    /// answers when it runs already and when the CPU does not exist.
    ///
    /// [`start`]: Daemon::start
    pub const fn new(name: &'static str, already_running: &'static str, no_such_cpu: &'static str) -> Daemon {
        Daemon { name, already_running, no_such_cpu, stop: AtomicBool::new(false), thread: SpinLock::new("daemon handle", None) }
    }

    /// Whether the daemon runs.
    pub fn running(&self) -> bool {
        self.thread.lock().is_some()
    }

    /// Starts the daemon on `cpu`: `setup()` (its tunables), then in the
    /// thread `batch()` and a sleep of `sleep_us()` (0: a yield), again and
    /// again until [`stop`](Daemon::stop). An error, and no setup, if it
    /// runs already; an error if `cpu` has no scheduler.
    pub fn start(
        &'static self,
        cpu: usize,
        setup: impl FnOnce(),
        batch: fn(),
        sleep_us: fn() -> u64,
    ) -> Result<(), &'static str> {
        let mut h = self.thread.lock();
        if h.is_some() {
            return Err(self.already_running);
        }
        setup();
        // Relaxed: the thread is spawned after this store, which orders it
        // before the thread's loads.
        self.stop.store(false, Ordering::Relaxed);
        let handle = spawn_on(cpu, self.name, move || {
            // Relaxed: a stop request needs no ordering with the work.
            while !self.stop.load(Ordering::Relaxed) {
                batch();
                match sleep_us() {
                    0 => yield_now(),
                    us => self.sleep_unless_stopped(us),
                }
            }
        })
        .map_err(|_| self.no_such_cpu)?;
        *h = Some(handle);
        Ok(())
    }

    /// Sleeps `us` in slices of at most 10 ms, so a stop request is seen soon.
    fn sleep_unless_stopped(&self, us: u64) {
        let end = crate::time::now_ns() + us * 1000;
        while !self.stop.load(Ordering::Relaxed) {
            let now = crate::time::now_ns();
            if now >= end {
                break;
            }
            sleep_ns((end - now).min(SLEEP_SLICE_NS));
        }
    }

    /// Stops the daemon and waits for it (at most 10 s; the error names the
    /// CPU, whose state is dumped). Nothing to do if it does not run.
    pub fn stop(&self) -> Result<(), String> {
        let Some(h) = self.thread.lock().take() else {
            return Ok(());
        };
        self.stop.store(true, Ordering::Relaxed);
        let cpu = h.task().cpu;
        h.join_timeout(STOP_TIMEOUT_NS).map(|_| ()).map_err(|_| {
            // Show where it is stuck.
            let _ = crate::smp::nmi::dump_cpus(crate::smp::CpuSet::single(cpu));
            alloc::format!("{} on cpu{cpu} did not stop within 10 s", self.name)
        })
    }
}

/// Takes `m`, yielding the CPU while someone else holds it: for a lock whose
/// holder may sleep (a scanner's cursor, held across mmap locks).
pub fn lock_yielding<T>(m: &spin::Mutex<T>) -> spin::MutexGuard<'_, T> {
    loop {
        if let Some(g) = m.try_lock() {
            return g;
        }
        yield_now();
    }
}
