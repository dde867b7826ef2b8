//! [`RwSpinLock`]: a writer-preferring reader-writer spinlock, irqsave like
//! [`SpinLock`](super::SpinLock) (Linux `read_lock_irqsave()` /
//! `write_lock_irqsave()` on an `rwlock_t`).
//!
//! State word: bit 0 is `WRITER` ("a writer is waiting for readers to drain,
//! or holds the lock"); the rest counts readers inside, in units of `READER`.
//! A reader enters with a compare-exchange that adds `READER` only while
//! `WRITER` is clear. Writers first queue among themselves on a fair
//! [`RawTicket`](super::ticket::RawTicket); the writer at the head sets
//! `WRITER`, which stops new readers, and owns the lock once the readers
//! inside have left. So a writer waits for at most the readers that were
//! inside when it arrived (writers cannot starve); readers get in between
//! writers and can be held back by a continuous stream of writers (the price
//! of writer preference).
//!
//! Invariants: `WRITER` is set only by the writer holding the queue ticket,
//! and cleared by it on release before it passes the ticket on; while a writer
//! owns the lock the state is exactly `WRITER`. In debug builds `readers` holds
//! the CPUs inside as readers, for the recursion check and deadlock reports.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use super::ticket::RawTicket;
use super::{HeldBy, spin_until, this_cpu};
use crate::arch::cpu;
use crate::smp::cpuset::AtomicCpuSet;

const KIND: &str = "RwSpinLock";
const WRITER: u32 = 1;
const READER: u32 = 2;

/// A reader-writer spinlock that disables interrupts while held.
pub struct RwSpinLock<T> {
    name: &'static str,
    state: AtomicU32,
    writers: RawTicket,
    /// CPUs inside as readers (maintained in debug builds only).
    readers: AtomicCpuSet,
    data: UnsafeCell<T>,
}

// SAFETY: writers get `&mut T` one at a time (needs `T: Send`), readers share
// `&T` across CPUs at once (needs `T: Sync`).
unsafe impl<T: Send + Sync> Sync for RwSpinLock<T> {}
// SAFETY: the lock owns its `T`.
unsafe impl<T: Send> Send for RwSpinLock<T> {}

/// Shared access to an [`RwSpinLock`]; releases it and restores the interrupt
/// state when dropped.
pub struct RwSpinLockReadGuard<'a, T> {
    lock: &'a RwSpinLock<T>,
    irqs_were_enabled: bool,
    _cpu_bound: PhantomData<*const ()>,
}

/// Exclusive access to an [`RwSpinLock`]; releases it and restores the
/// interrupt state when dropped.
pub struct RwSpinLockWriteGuard<'a, T> {
    lock: &'a RwSpinLock<T>,
    irqs_were_enabled: bool,
    _cpu_bound: PhantomData<*const ()>,
}

impl<T> RwSpinLock<T> {
    /// A free lock named `name` (shown in debug reports) guarding `value`.
    pub const fn new(name: &'static str, value: T) -> Self {
        RwSpinLock {
            name,
            state: AtomicU32::new(0),
            writers: RawTicket::new(),
            readers: AtomicCpuSet::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Panics (debug builds) if this CPU is inside already, in either role.
    #[track_caller]
    fn check_recursion(&self) {
        let me = this_cpu();
        if cfg!(debug_assertions)
            && (self.writers.held_by_me() || self.readers.contains(me as usize, Ordering::Relaxed))
        {
            panic!("recursive locking of '{}' on cpu{me}", self.name);
        }
    }

    /// Disables interrupts and spins until no writer holds or waits for the
    /// lock, then enters as one of possibly many readers.
    #[track_caller]
    pub fn read(&self) -> RwSpinLockReadGuard<'_, T> {
        super::check_irqsave_context(KIND, self.name);
        self.check_recursion();
        let irqs_were_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        spin_until(KIND, self.name, || self.try_enter_read(), || HeldBy(self.writers.holder()));
        if cfg!(debug_assertions) {
            // Relaxed: only this CPU changes its own bit; reports tolerate
            // a stale view.
            self.readers.insert(this_cpu() as usize, Ordering::Relaxed);
        }
        RwSpinLockReadGuard { lock: self, irqs_were_enabled, _cpu_bound: PhantomData }
    }

    /// One attempt to enter as a reader.
    fn try_enter_read(&self) -> bool {
        // Relaxed: only a hint for the exchange below.
        let s = self.state.load(Ordering::Relaxed);
        // Acquire on success: the exchange reads the value left by the last
        // writer's Release (directly, or through other readers' RMWs, which
        // continue its release sequence), so the writer's section happens
        // before this reader's.
        s & WRITER == 0
            && self.state.compare_exchange_weak(s, s + READER, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Disables interrupts, waits for its turn among writers, stops new
    /// readers and waits for the readers inside to leave.
    #[track_caller]
    pub fn write(&self) -> RwSpinLockWriteGuard<'_, T> {
        super::check_irqsave_context(KIND, self.name);
        self.check_recursion();
        let irqs_were_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        self.writers.lock(KIND, self.name);
        // Relaxed: the exchange atomicity alone makes every later reader CAS
        // see the bit; ordering with the readers comes from the Acquire below.
        self.state.fetch_or(WRITER, Ordering::Relaxed);
        // Acquire: seeing no readers means seeing the last reader's Release
        // decrement, whose release sequence holds every earlier reader's
        // decrement; so all their sections happen before ours.
        spin_until(
            KIND,
            self.name,
            || self.state.load(Ordering::Acquire) == WRITER,
            || ReadersIn(&self.readers),
        );
        RwSpinLockWriteGuard { lock: self, irqs_were_enabled, _cpu_bound: PhantomData }
    }

    /// Readers inside (a snapshot).
    pub fn reader_count(&self) -> u32 {
        // Relaxed: a snapshot for tests and reports.
        self.state.load(Ordering::Relaxed) / READER
    }
}

/// The CPUs inside as readers, for a writer's deadlock report.
struct ReadersIn<'a>(&'a AtomicCpuSet);

impl core::fmt::Display for ReadersIn<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "held for reading by {}", self.0.load(Ordering::Relaxed))
    }
}

impl<T> Deref for RwSpinLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: while a read guard exists no writer owns the lock (the
        // state counts this reader), so only shared references exist.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> Drop for RwSpinLockReadGuard<'_, T> {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            self.lock.readers.remove(this_cpu() as usize, Ordering::Relaxed);
        }
        // Release: this reader's section happens before a writer's Acquire
        // load that sees the count drop.
        self.lock.state.fetch_sub(READER, Ordering::Release);
        if self.irqs_were_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

impl<T> Deref for RwSpinLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard proves exclusive ownership (state == WRITER
        // and this CPU holds the writers' ticket).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for RwSpinLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for RwSpinLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        // Release: the writer's section happens before the next reader's
        // Acquire exchange or writer's Acquire load. Cleared before the ticket
        // passes on, so the next writer's fetch_or cannot be undone by ours.
        self.lock.state.fetch_and(!WRITER, Ordering::Release);
        // SAFETY: this CPU took the writers' ticket in `write`, once.
        unsafe { self.lock.writers.unlock() };
        if self.irqs_were_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}
