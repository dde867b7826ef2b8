//! Completion of one DMA request (Linux: struct completion plus the
//! driver's own request state): a small state machine shared by the engine
//! and the waiter.
//!
//! States: `QUEUED` -> `RUNNING` (the engine claims the request) -> `DONE`;
//! or `QUEUED` -> `CANCELLED` (the waiter gave up before the engine started).
//! Both transitions out of `QUEUED` are compare-exchanges, so exactly one
//! side wins: a cancelled request is never transferred, and a claimed one is
//! always waited for. That is what lets the caller unpin the frames after
//! [`DmaTicket::wait`] returned, whatever it returned.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, Ordering};

use super::DmaError;
use crate::time::Deadline;

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;

/// The state of one request.
#[derive(Debug)]
pub(crate) struct Completion {
    state: AtomicU8,
}

impl Completion {
    /// A queued request.
    pub(crate) fn new() -> Completion {
        Completion { state: AtomicU8::new(QUEUED) }
    }

    /// The engine claims the request before touching memory; false if the
    /// waiter cancelled it (then the engine must skip it).
    pub(crate) fn claim(&self) -> bool {
        // Acquire: pairs with nothing the waiter publishes today, but a
        // claim must not be reordered before the queue pop that found it.
        self.state.compare_exchange(QUEUED, RUNNING, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// The engine signals the end of the transfer.
    pub(crate) fn complete(&self) {
        // Release: every byte the transfer wrote (through the direct map) is
        // visible to a waiter that sees DONE with Acquire.
        let old = self.state.swap(DONE, Ordering::Release);
        debug_assert_eq!(old, RUNNING, "DMA completion of a request that was not running");
    }

    /// Whether the transfer finished.
    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }
}

impl Default for Completion {
    fn default() -> Self {
        Completion::new()
    }
}

/// A submitted request: wait for it with [`DmaTicket::wait`]. Dropping an
/// unfinished ticket waits too (so frames can never be unpinned under a
/// running transfer).
#[must_use = "a DMA ticket must be waited for before the frames are unpinned"]
pub struct DmaTicket {
    completion: Arc<Completion>,
    /// The engine's CPU (for timeout reports).
    cpu: usize,
    /// Bound on the wait for the engine to *start* the transfer.
    start_bound_ns: u64,
    finished: bool,
}

impl DmaTicket {
    /// A ticket for `completion`, served by an engine on `cpu`; waits give up
    /// (cancelling) when the engine has not started after `start_bound_ns`.
    pub(crate) fn new(completion: Arc<Completion>, cpu: usize, start_bound_ns: u64) -> DmaTicket {
        DmaTicket { completion, cpu, start_bound_ns, finished: false }
    }

    /// Waits until the transfer is done (Linux wait_for_completion_timeout()).
    ///
    /// Polls, with a voluntary preemption point every round (so an agent on
    /// this same CPU gets to run, and RCU sees quiescent states). If the
    /// engine has not started the transfer after the ticket's bound, the
    /// request is cancelled and `Timeout` names the engine's CPU: nothing was
    /// written. A transfer that started is always waited for; if it has not
    /// ended after a second bound the kernel panics naming the CPU (returning
    /// would let the caller free frames the engine still writes).
    ///
    /// Must run with interrupts enabled.
    pub fn wait(mut self) -> Result<(), DmaError> {
        self.wait_inner()
    }

    fn wait_inner(&mut self) -> Result<(), DmaError> {
        if self.finished {
            return Ok(());
        }
        let start = Deadline::after_ns(self.start_bound_ns);
        let c = &self.completion;
        loop {
            if c.is_done() {
                self.finished = true;
                return Ok(());
            }
            if start.expired() {
                match c.state.compare_exchange(QUEUED, CANCELLED, Ordering::Acquire, Ordering::Acquire) {
                    Ok(_) => {
                        self.finished = true;
                        super::agent::count_cancel();
                        log::warn!("dma: the agent on cpu{} did not start a transfer in time; cancelled", self.cpu);
                        return Err(DmaError::Timeout { cpu: self.cpu });
                    }
                    Err(DONE) => {
                        self.finished = true;
                        return Ok(());
                    }
                    Err(_) => break, // running: wait for its end below
                }
            }
            pause();
        }
        let end = Deadline::after_ns(self.start_bound_ns);
        while !c.is_done() {
            if end.expired() {
                panic!(
                    "dma: the agent on cpu{} started a transfer and did not finish it within {} ms",
                    self.cpu,
                    self.start_bound_ns / 1_000_000
                );
            }
            pause();
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for DmaTicket {
    fn drop(&mut self) {
        let _ = self.wait_inner();
    }
}

/// One polling round: a preemption point (switches if this CPU's agent or
/// anything else was woken), else a pause.
fn pause() {
    if crate::arch::cpu::interrupts_enabled() {
        crate::sched::cond_resched();
    }
    core::hint::spin_loop();
}
