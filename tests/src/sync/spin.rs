//! `SpinLock` and `ThreadLock`: exclusion, ticket order, no starvation,
//! irqsave semantics, use from an interrupt handler.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::arch::cpu::interrupts_enabled;
use kernel::smp::{self, CpuSet, call, work};
use kernel::sync::{SpinLock, ThreadLock};
use kernel::time::Deadline;
use x86_64::instructions::interrupts;

use super::{WAIT_NS, on_all_cpus, other_cpu, others, slow_increment, wait_until};

/// Increments per CPU in the exclusion tests: enough that a lock letting two
/// CPUs in at once loses updates (checked by breaking the lock on purpose),
/// few because under TCG with more vCPUs than host cores a ticket hand-off to
/// a descheduled vCPU costs up to milliseconds.
const ITERATIONS: u64 = 1_000;

static COUNTER: SpinLock<u64> = SpinLock::new("sync-test-counter", 0);
static THREAD_COUNTER: ThreadLock<u64> = ThreadLock::new("sync-test-thread-counter", 0);
static ORDER: SpinLock<Vec<usize>> = SpinLock::new("sync-test-order", Vec::new());
static PER_CPU: SpinLock<[u64; smp::MAX_CPUS]> = SpinLock::new("sync-test-per-cpu", [0; smp::MAX_CPUS]);
static OUTER: SpinLock<()> = SpinLock::new("sync-test-outer", ());
static INNER: SpinLock<()> = SpinLock::new("sync-test-inner", ());
static PLAIN: ThreadLock<()> = ThreadLock::new("sync-test-plain", ());
static IRQ: SpinLock<u64> = SpinLock::new("sync-test-irq", 0);
static AFTER_IRQ: ThreadLock<u64> = ThreadLock::new("sync-test-after-irq", 0);

kernel::ktests! {
    fn spinlock_excludes_on_all_cpus() {
        *COUNTER.lock() = 0;
        on_all_cpus(|_, _| {
            for _ in 0..ITERATIONS {
                slow_increment(&mut COUNTER.lock());
            }
        });
        let want = ITERATIONS * smp::online_count() as u64;
        assert_eq!(*COUNTER.lock(), want, "lost updates under the SpinLock on {}", smp::online_cpus());
        assert!(!COUNTER.is_locked());
    }

    fn threadlock_excludes_on_all_cpus() {
        *THREAD_COUNTER.lock() = 0;
        on_all_cpus(|_, _| {
            for _ in 0..ITERATIONS {
                slow_increment(&mut THREAD_COUNTER.lock());
            }
        });
        let want = ITERATIONS * smp::online_count() as u64;
        assert_eq!(*THREAD_COUNTER.lock(), want, "lost updates under the ThreadLock on {}", smp::online_cpus());
    }

    fn waiters_get_the_lock_in_ticket_order() {
        let Some(_) = other_cpu() else { return };
        ORDER.lock().clear();
        let held = ORDER.lock();
        let mut handles = Vec::new();
        // Queue the other CPUs one after the other behind the held lock.
        for (queued, cpu) in others().into_iter().enumerate() {
            handles.push(work::run_on(cpu, move || ORDER.lock().push(cpu)).expect("cannot place work"));
            wait_until("the CPU queued on the lock", || ORDER.waiters() as usize == queued + 1);
        }
        drop(held);
        for h in &handles {
            h.join(WAIT_NS).unwrap_or_else(|cpu| panic!("cpu{cpu} never got the lock"));
        }
        assert_eq!(*ORDER.lock(), others(), "CPUs got the lock out of ticket order");
    }

    fn no_cpu_starves_under_contention() {
        let Some(_) = other_cpu() else { return };
        *PER_CPU.lock() = [0; smp::MAX_CPUS];
        let stop = Arc::new(AtomicU64::new(0));
        let s = stop.clone();
        on_all_cpus(move |cpu, _| {
            // Everybody hammers the lock for the same 300 ms (the first CPU
            // past the barrier sets the end for all).
            let end = match s.compare_exchange(0, kernel::time::now_ns() + 300_000_000, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => s.load(Ordering::Acquire),
                Err(end) => end,
            };
            while kernel::time::now_ns() < end {
                PER_CPU.lock()[cpu] += 1;
            }
        });
        let counts: Vec<(usize, u64)> = smp::online_cpus().iter().map(|c| (c, PER_CPU.lock()[c])).collect();
        log::info!("acquisitions per CPU in 300 ms: {counts:?}");
        for &(cpu, n) in &counts {
            assert!(n > 0, "cpu{cpu} never got the contended lock: {counts:?}");
        }
    }

    fn spinlock_disables_and_restores_interrupts() {
        let was = interrupts_enabled();
        interrupts::enable();
        {
            let _g = OUTER.lock();
            assert!(!interrupts_enabled(), "interrupts on inside a SpinLock");
        }
        assert!(interrupts_enabled(), "interrupts not restored (on) after a SpinLock");
        // Nested guards restore in reverse order.
        let outer = OUTER.lock();
        let inner = INNER.lock();
        drop(inner);
        assert!(!interrupts_enabled(), "dropping the inner guard re-enabled interrupts under the outer one");
        drop(outer);
        assert!(interrupts_enabled(), "dropping the outer guard did not restore interrupts");
        // Taken with interrupts off: they stay off.
        interrupts::disable();
        drop(OUTER.lock());
        assert!(!interrupts_enabled(), "a SpinLock enabled interrupts that were off");
        // try_lock: success behaves like lock; failure leaves the state alone.
        interrupts::enable();
        let g = OUTER.try_lock().expect("try_lock of a free lock failed");
        assert!(!interrupts_enabled());
        interrupts::enable();
        assert!(OUTER.try_lock().is_none(), "try_lock took a held lock");
        assert!(interrupts_enabled(), "a failed try_lock changed the interrupt state");
        interrupts::disable();
        drop(g);
        assert!(interrupts_enabled(), "the try_lock guard did not restore interrupts");
        // A ThreadLock leaves interrupts alone.
        {
            let _g = PLAIN.lock();
            assert!(interrupts_enabled(), "a ThreadLock disabled interrupts");
        }
        if !was {
            interrupts::disable();
        }
    }

    fn a_failed_threadlock_try_lock_leaves_the_holder_alone() {
        let g = PLAIN.lock();
        for _ in 0..3 {
            assert!(PLAIN.try_lock().is_none(), "try_lock took a held ThreadLock");
        }
        // A guard built and dropped on failure would have unlocked it.
        assert!(PLAIN.is_locked(), "a failed try_lock released the holder's lock");
        drop(g);
        assert!(!PLAIN.is_locked());
        let g = PLAIN.try_lock().expect("try_lock of a free ThreadLock failed");
        assert!(PLAIN.is_locked());
        drop(g);
        assert!(!PLAIN.is_locked(), "the try_lock guard did not unlock");
    }

    fn an_interrupt_handler_takes_a_spinlock() {
        let Some(other) = other_cpu() else { return };
        *IRQ.lock() = 0;
        // Uncontended: the cross-CPU call's function runs in the IPI handler.
        call::call_and_wait(CpuSet::single(other), || {
            assert!(smp::percpu::in_interrupt(), "a cross-CPU call ran outside interrupt context");
            *IRQ.lock() += 1;
        })
        .unwrap_or_else(|e| panic!("{e}"));
        // Contended: the handler spins until this CPU lets go.
        let held = IRQ.lock();
        let pending = call::call(CpuSet::single(other), || *IRQ.lock() += 1);
        wait_until("the interrupt handler waits for the lock", || IRQ.waiters() == 1);
        let deadline = Deadline::after_ns(10_000_000);
        while !deadline.expired() {
            core::hint::spin_loop();
        }
        assert!(!pending.pending().is_empty(), "the handler ran while this CPU held the lock");
        drop(held);
        pending.wait(WAIT_NS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(*IRQ.lock(), 2);
        // Back in thread context the CPU holds no interrupt-context lock, so
        // a ThreadLock is fine there.
        work::run_on(other, || *AFTER_IRQ.lock() += 1)
            .expect("cannot place work")
            .join(WAIT_NS)
            .unwrap_or_else(|cpu| panic!("cpu{cpu} did not run the work"));
        assert_eq!(*AFTER_IRQ.lock(), 1);
    }
}
