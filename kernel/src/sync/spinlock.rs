//! [`SpinLock`] (irqsave: Linux `spin_lock_irqsave()` /
//! `spin_unlock_irqrestore()`) and [`ThreadLock`] (interrupts untouched:
//! Linux `spin_lock()` / `spin_unlock()`), both on the fair
//! [`RawTicket`](super::ticket::RawTicket).
//!
//! A `SpinLock` guard records whether interrupts were enabled when it was
//! taken; dropping it releases the lock first and then re-enables interrupts
//! only if they were enabled before. Nested guards therefore restore
//! correctly when dropped in reverse order (as Rust scopes do); dropping an
//! outer guard before an inner one re-enables interrupts while the inner lock
//! is still held, exactly as with Linux's irqsave/irqrestore pairs.
//!
//! Invariant: the data is only reached through a guard, and a guard exists
//! only while its CPU holds the ticket lock.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::ticket::RawTicket;
use crate::arch::cpu;

const SPIN: &str = "SpinLock";
const THREAD: &str = "ThreadLock";

/// Makes a guard `!Send` (and `!Sync`): it must be dropped on the CPU that
/// took the lock.
type NotSend = PhantomData<*const ()>;

/// A fair spinning lock that disables interrupts while held (see the module
/// docs). Usable in thread and interrupt context, not in NMI handlers.
pub struct SpinLock<T> {
    name: &'static str,
    raw: RawTicket,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one CPU at a time, so sharing the lock
// moves `T` between CPUs: `T: Send` is what that needs.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: the lock owns its `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

/// Proof of holding a [`SpinLock`]; releases it and restores the interrupt
/// state when dropped.
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
    irqs_were_enabled: bool,
    in_irq: bool,
    _cpu_bound: NotSend,
}

impl<T> SpinLock<T> {
    /// A free lock named `name` (shown in debug reports) guarding `value`.
    pub const fn new(name: &'static str, value: T) -> Self {
        SpinLock { name, raw: RawTicket::new(), data: UnsafeCell::new(value) }
    }

    /// Disables interrupts on this CPU and spins, in ticket order, until the
    /// lock is this CPU's.
    #[track_caller]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        super::check_irqsave_context(SPIN, self.name);
        self.raw.check_recursion(self.name);
        let irqs_were_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        self.raw.lock(SPIN, self.name);
        self.guard(irqs_were_enabled)
    }

    /// Takes the lock (interrupts disabled, as `lock`) if it is free;
    /// otherwise leaves the interrupt state as it was and returns `None`.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        let irqs_were_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        if self.raw.try_lock() {
            return Some(self.guard(irqs_were_enabled));
        }
        if irqs_were_enabled {
            x86_64::instructions::interrupts::enable();
        }
        None
    }

    fn guard(&self, irqs_were_enabled: bool) -> SpinLockGuard<'_, T> {
        SpinLockGuard { lock: self, irqs_were_enabled, in_irq: super::note_irq_acquire(), _cpu_bound: PhantomData }
    }

    /// Whether some CPU holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// How many CPUs wait for the lock (a snapshot).
    pub fn waiters(&self) -> u32 {
        self.raw.waiters()
    }

}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this CPU holds the lock (module invariant).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        super::note_irq_release(self.in_irq);
        // SAFETY: the guard was made after this CPU acquired the lock, and a
        // guard is dropped once.
        unsafe { self.lock.raw.unlock() };
        // Interrupts come back only after the release, so no handler on this
        // CPU can find the lock still held by the code it interrupted.
        if self.irqs_were_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// A fair spinning lock that leaves interrupts alone: for data never touched
/// in interrupt context (see the module docs).
pub struct ThreadLock<T> {
    name: &'static str,
    raw: RawTicket,
    data: UnsafeCell<T>,
}

// SAFETY: as for `SpinLock`.
unsafe impl<T: Send> Sync for ThreadLock<T> {}
// SAFETY: the lock owns its `T`.
unsafe impl<T: Send> Send for ThreadLock<T> {}

/// Proof of holding a [`ThreadLock`]; releases it when dropped.
pub struct ThreadLockGuard<'a, T> {
    lock: &'a ThreadLock<T>,
    _cpu_bound: NotSend,
}

impl<T> ThreadLock<T> {
    /// A free lock named `name` (shown in debug reports) guarding `value`.
    pub const fn new(name: &'static str, value: T) -> Self {
        ThreadLock { name, raw: RawTicket::new(), data: UnsafeCell::new(value) }
    }

    /// Spins, in ticket order, until the lock is this CPU's. Must not be
    /// called in interrupt context (checked in debug builds).
    #[track_caller]
    pub fn lock(&self) -> ThreadLockGuard<'_, T> {
        super::check_thread_context(self.name);
        self.raw.check_recursion(self.name);
        self.raw.lock(THREAD, self.name);
        ThreadLockGuard { lock: self, _cpu_bound: PhantomData }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<ThreadLockGuard<'_, T>> {
        // Not `bool::then_some`: its argument is evaluated either way, and a
        // guard built for a failed try would unlock the holder's lock when
        // dropped.
        if self.raw.try_lock() { Some(ThreadLockGuard { lock: self, _cpu_bound: PhantomData }) } else { None }
    }

    /// Whether some CPU holds the lock (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

}

impl<T> Deref for ThreadLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this CPU holds the lock (module invariant).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for ThreadLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for ThreadLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard was made after this CPU acquired the lock, and a
        // guard is dropped once.
        unsafe { self.lock.raw.unlock() };
    }
}
