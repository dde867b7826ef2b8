//! A blocking reader-writer semaphore: the mmap lock of the address spaces to
//! come (Linux: struct rw_semaphore, down_read()/down_write()).
//!
//! Waiters sleep on a wait queue instead of spinning, so the holder may block
//! too (fault handling, GUP's slow path). Writer-preferring: once a writer
//! waits, new readers queue behind it, so a stream of readers cannot starve
//! writers (Linux's rwsem hands off to a waiting writer for the same reason).
//!
//! Must not be taken in interrupt context or with interrupts disabled (it may
//! sleep); debug builds check both.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};

use crate::sched::WaitQueue;

#[derive(Default)]
struct Count {
    readers: usize,
    writer: bool,
    waiting_writers: usize,
}

/// A reader-writer semaphore protecting a `T`.
pub struct RwSemaphore<T> {
    name: &'static str,
    count: spin::Mutex<Count>,
    queue: WaitQueue,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by the reader/writer protocol in
// `count`: shared references only while readers > 0 and no writer, a unique
// reference only while the writer flag is held.
unsafe impl<T: Send + Sync> Sync for RwSemaphore<T> {}
// SAFETY: as above; moving the semaphore moves the `T`.
unsafe impl<T: Send> Send for RwSemaphore<T> {}

impl<T> RwSemaphore<T> {
    /// A semaphore named `name` (for reports) around `value`.
    pub const fn new(name: &'static str, value: T) -> Self {
        RwSemaphore {
            name,
            count: spin::Mutex::new(Count { readers: 0, writer: false, waiting_writers: 0 }),
            queue: WaitQueue::new(),
            data: UnsafeCell::new(value),
        }
    }

    fn with_count<R>(&self, f: impl FnOnce(&mut Count) -> R) -> R {
        x86_64::instructions::interrupts::without_interrupts(|| f(&mut self.count.lock()))
    }

    fn check_context(&self) {
        if cfg!(debug_assertions) {
            assert!(
                !crate::smp::percpu::in_interrupt() && crate::arch::cpu::interrupts_enabled(),
                "RwSemaphore '{}' taken in interrupt context or with interrupts off (it may sleep)",
                self.name
            );
        }
    }

    /// Takes the semaphore for reading, sleeping while a writer holds or waits.
    pub fn read(&self) -> RwSemReadGuard<'_, T> {
        self.check_context();
        self.queue.wait_until(|| self.try_read_inner());
        RwSemReadGuard { sem: self }
    }

    /// Takes the semaphore for writing, sleeping until it is free.
    pub fn write(&self) -> RwSemWriteGuard<'_, T> {
        self.check_context();
        // Free: taken in the same critical section that would otherwise
        // count this writer as waiting (Linux down_write()'s fast path, one
        // compare-exchange). Not free: counted as waiting, so new readers
        // queue behind it, then it sleeps until it is.
        let taken = self.with_count(|c| {
            let free = !c.writer && c.readers == 0;
            if free {
                c.writer = true;
            } else {
                c.waiting_writers += 1;
            }
            free
        });
        if taken {
            return RwSemWriteGuard { sem: self };
        }
        self.queue.wait_until(|| {
            self.with_count(|c| {
                let free = !c.writer && c.readers == 0;
                if free {
                    c.writer = true;
                    c.waiting_writers -= 1;
                }
                free
            })
        });
        RwSemWriteGuard { sem: self }
    }

    /// Takes it for reading if that is possible without waiting.
    pub fn try_read(&self) -> Option<RwSemReadGuard<'_, T>> {
        // Not `bool::then_some`: its argument is evaluated either way, and a
        // guard built for a failed try would be dropped, releasing a read
        // lock never taken (the readers count underflowed under ksmd's try
        // of another address space's mmap lock while its owner was exiting).
        if self.try_read_inner() { Some(RwSemReadGuard { sem: self }) } else { None }
    }

    fn try_read_inner(&self) -> bool {
        self.with_count(|c| {
            let ok = !c.writer && c.waiting_writers == 0;
            if ok {
                c.readers += 1;
            }
            ok
        })
    }

    /// Readers holding it now (for tests and reports).
    pub fn readers(&self) -> usize {
        self.with_count(|c| c.readers)
    }
}

/// Shared access; released on drop.
pub struct RwSemReadGuard<'a, T> {
    sem: &'a RwSemaphore<T>,
}

impl<T> Deref for RwSemReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists, so no writer holds the semaphore.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> Drop for RwSemReadGuard<'_, T> {
    fn drop(&mut self) {
        let last = self.sem.with_count(|c| {
            c.readers = c.readers.checked_sub(1).unwrap_or_else(|| {
                panic!("RwSemaphore '{}': read unlock without a reader", self.sem.name)
            });
            c.readers == 0
        });
        if last {
            self.sem.queue.wake_all();
        }
    }
}

/// Exclusive access; released on drop.
pub struct RwSemWriteGuard<'a, T> {
    sem: &'a RwSemaphore<T>,
}

impl<T> Deref for RwSemWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is the only access while it exists.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> DerefMut for RwSemWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes it unique.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T> Drop for RwSemWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.sem.with_count(|c| c.writer = false);
        self.sem.queue.wake_all();
    }
}
