//! Wait queues: block until a condition holds (Linux: wait_event / wake_up).
//!
//! The waiter marks itself Blocked *before* re-checking the condition, and a
//! waker changes the condition *before* waking; with the queue lock between
//! them, a wake-up cannot fall between the waiter's check and its sleep.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::task::{State, Task};
use crate::sync::SpinLock;

/// Tasks waiting for something.
pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Task>>>,
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        WaitQueue { waiters: SpinLock::new("wait queue", VecDeque::new()) }
    }

    /// Blocks the current task until `cond()` is true (checked before each
    /// sleep and after each wake-up). Once `cond()` returns true it is not
    /// called again, so it may have a side effect (take a lock, claim an item).
    pub fn wait_until(&self, cond: impl Fn() -> bool) {
        enum Outcome {
            Sleep,
            Done,
            /// Done, but a waker already made us Runnable and queued us: the
            /// queue entry must be consumed by a pass through schedule().
            DoneAfterWake,
        }
        loop {
            if cond() {
                return;
            }
            let me = super::current_task();
            let outcome = x86_64::instructions::interrupts::without_interrupts(|| {
                me.set_state(State::Blocked);
                self.waiters.lock().push_back(me.clone());
                if !cond() {
                    Outcome::Sleep
                } else if me.transition(State::Blocked, State::Running) {
                    Outcome::Done
                } else {
                    Outcome::DoneAfterWake
                }
            });
            match outcome {
                Outcome::Sleep => super::schedule(),
                Outcome::Done => return,
                Outcome::DoneAfterWake => {
                    super::schedule();
                    return;
                }
            }
        }
    }

    /// Wakes every waiter.
    pub fn wake_all(&self) {
        let waiters: VecDeque<Arc<Task>> = core::mem::take(&mut *self.waiters.lock());
        for t in waiters {
            super::wake(&t);
        }
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}
