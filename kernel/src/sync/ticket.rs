//! The raw ticket lock under [`SpinLock`](super::SpinLock),
//! [`ThreadLock`](super::ThreadLock) and the writers' queue of
//! [`RwSpinLock`](super::RwSpinLock) (Linux's ticket `arch_spin_lock()`, before
//! queued spinlocks).
//!
//! Layout: two 32-bit counters, `next` (the next ticket to hand out) and
//! `serving` (the ticket allowed in). Taking a ticket is one `fetch_add` on
//! `next`; the owner of ticket `t` is in while `serving == t`; unlocking is one
//! store of `t + 1` to `serving`, by the holder only. So CPUs get the lock in
//! the order they took tickets (FIFO, no starvation), and a waiter only reads
//! `serving`. Counters wrap; only equality and differences are used, and fewer
//! than 2^32 CPUs can wait at once.
//!
//! Invariants: `serving <= next` (mod 2^32) at all times; the lock is held iff
//! `serving != next`; `holder` is the holder's CPU index + 1 (0 = free), set
//! after acquiring and cleared before releasing, only by the holder.

use core::sync::atomic::{AtomicU32, Ordering};

use super::{HeldBy, spin_until, this_cpu};

/// A fair spinning lock with no data and no interrupt handling.
pub(super) struct RawTicket {
    next: AtomicU32,
    serving: AtomicU32,
    holder: AtomicU32,
}

impl RawTicket {
    pub(super) const fn new() -> Self {
        RawTicket { next: AtomicU32::new(0), serving: AtomicU32::new(0), holder: AtomicU32::new(0) }
    }

    /// The CPU recorded as holding the lock.
    pub(super) fn holder(&self) -> Option<u32> {
        // Relaxed: diagnostics and the recursion check only. A CPU reads its
        // own last store to `holder` (program order), so "this CPU holds it"
        // is exact; another CPU's index may be stale, which reports tolerate.
        self.holder.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Whether this CPU holds the lock.
    pub(super) fn held_by_me(&self) -> bool {
        self.holder() == Some(this_cpu())
    }

    /// Panics (debug builds) if this CPU already holds the lock.
    #[track_caller]
    pub(super) fn check_recursion(&self, name: &str) {
        if cfg!(debug_assertions) && self.held_by_me() {
            panic!("recursive locking of '{name}' on cpu{}", this_cpu());
        }
    }

    /// Takes a ticket and spins until it is served. `kind` and `name` are for
    /// the deadlock report.
    #[track_caller]
    pub(super) fn lock(&self, kind: &str, name: &str) {
        // Relaxed: taking a ticket orders nothing by itself; the Acquire load
        // of `serving` below is what orders the critical section after the
        // previous holder's (its Release store of `serving`).
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        spin_until(
            kind,
            name,
            || self.serving.load(Ordering::Acquire) == ticket,
            || HeldBy(self.holder()),
        );
        self.set_holder();
    }

    /// Takes the lock if it is free, without waiting.
    pub(super) fn try_lock(&self) -> bool {
        // Acquire: if the lock turns out free, this load read the previous
        // holder's Release store of `serving`, which orders our critical
        // section after theirs.
        let serving = self.serving.load(Ordering::Acquire);
        // `next == serving` means free and no ticket handed out beyond it, so
        // `serving` cannot move until we unlock: ticket `serving` is ours.
        // Relaxed on the exchange: the ordering came from the load above.
        let won = self
            .next
            .compare_exchange(serving, serving.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if won {
            self.set_holder();
        }
        won
    }

    fn set_holder(&self) {
        // Relaxed: see `holder`.
        self.holder.store(this_cpu() + 1, Ordering::Relaxed);
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The calling CPU must hold the lock (from `lock` or a successful
    /// `try_lock`), and release it once.
    pub(super) unsafe fn unlock(&self) {
        self.holder.store(0, Ordering::Relaxed);
        // Relaxed load: only the holder writes `serving`, and the holder read
        // its current value when it acquired (or wrote it itself).
        let serving = self.serving.load(Ordering::Relaxed);
        // Release: the critical section's accesses happen before the next
        // holder's Acquire load that sees this value.
        self.serving.store(serving.wrapping_add(1), Ordering::Release);
    }

    /// Whether someone holds the lock.
    pub(super) fn is_locked(&self) -> bool {
        // Relaxed: a snapshot for tests and reports, ordering nothing.
        self.next.load(Ordering::Relaxed) != self.serving.load(Ordering::Relaxed)
    }

    /// How many CPUs hold a ticket and wait (a snapshot).
    pub(super) fn waiters(&self) -> u32 {
        // Relaxed: a snapshot. Read `serving` first: it only grows, so the
        // difference can only be overestimated by a just-released ticket,
        // never underflow.
        let serving = self.serving.load(Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        next.wrapping_sub(serving).saturating_sub(1)
    }
}
