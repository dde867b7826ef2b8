//! Work on a chosen CPU: run a closure there in thread context (interrupts
//! enabled, outside any interrupt handler), as a kernel thread.
//!
//! A thin convenience over `sched::spawn_on` for tests and scenarios that need
//! code placed on another CPU, for example a section that disables interrupts
//! for a while (the situation the race protocol is about).

use crate::sched::{self, JoinHandle};

/// A handle on work placed on a CPU.
pub struct WorkHandle {
    thread: spin::Mutex<Option<JoinHandle<()>>>,
    cpu: usize,
}

/// Why work could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkError {
    /// The CPU is not online or has no scheduler.
    NoSuchCpu(usize),
}

/// Runs `f` on `cpu` as a kernel thread named "work".
pub fn run_on(cpu: usize, f: impl FnOnce() + Send + 'static) -> Result<WorkHandle, WorkError> {
    let thread = sched::spawn_on(cpu, "work", f).map_err(|_| WorkError::NoSuchCpu(cpu))?;
    Ok(WorkHandle { thread: spin::Mutex::new(Some(thread)), cpu })
}

impl WorkHandle {
    /// Whether the work has finished.
    pub fn is_done(&self) -> bool {
        self.thread.lock().as_ref().is_none_or(|t| t.is_finished())
    }

    /// The CPU the work runs on.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Waits (bounded) for the work to finish; `Err` names the CPU on timeout.
    pub fn join(&self, timeout_ns: u64) -> Result<(), usize> {
        let Some(thread) = self.thread.lock().take() else { return Ok(()) };
        match thread.join_timeout(timeout_ns) {
            Ok(()) => Ok(()),
            Err((timeout, thread)) => {
                *self.thread.lock() = Some(thread);
                Err(timeout.cpu)
            }
        }
    }
}
