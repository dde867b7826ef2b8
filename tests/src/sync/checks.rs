//! The lock debug checks fire, naming the lock. Each check ends the kernel
//! with a panic, so each is a `should_panic` test (the host boots on with the
//! next test). In release builds, where the checks are compiled out, they
//! report themselves `ignored`.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::smp::{self, CpuSet, call, nmi, work};
use kernel::sync::{RwSpinLock, SpinLock, ThreadLock};
use kernel::time::Deadline;

use super::{WAIT_NS, debug_checks, other_cpu, wait_until};

static RECURSIVE: SpinLock<()> = SpinLock::new("sync-test-recursive", ());
static RECURSIVE_THREAD: ThreadLock<()> = ThreadLock::new("sync-test-recursive-thread", ());
static RECURSIVE_RW: RwSpinLock<()> = RwSpinLock::new("sync-test-recursive-rw", ());
static NOT_IN_IRQ: ThreadLock<()> = ThreadLock::new("sync-test-thread-only", ());
static LEAKED: SpinLock<()> = SpinLock::new("sync-test-leaked", ());
static NOT_IN_NMI: SpinLock<()> = SpinLock::new("sync-test-nmi", ());
static STUCK: SpinLock<()> = SpinLock::new("sync-test-stuck", ());

kernel::ktests! {
    fn nmi_depth_is_balanced() {
        let Some(other) = other_cpu() else { return };
        let block = smp::percpu::cpu(other).expect("online CPU without per-CPU data");
        let before = block.nmis.load(Ordering::Relaxed);
        assert!(nmi::dump_cpus(CpuSet::single(other)).contains(other), "cpu{other} did not answer the NMI");
        assert!(block.nmis.load(Ordering::Relaxed) > before);
        assert_eq!(block.in_nmi.load(Ordering::Relaxed), 0, "the NMI depth stayed raised after the NMI");
        assert!(!smp::percpu::in_nmi());
    }

    #[should_panic = "recursive locking of 'sync-test-recursive' on cpu0"]
    fn recursive_spinlock_panics() {
        if !debug_checks() { return }
        let _first = RECURSIVE.lock();
        let _second = RECURSIVE.lock();
    }

    #[should_panic = "recursive locking of 'sync-test-recursive-thread' on cpu0"]
    fn recursive_threadlock_panics() {
        if !debug_checks() { return }
        let _first = RECURSIVE_THREAD.lock();
        let _second = RECURSIVE_THREAD.lock();
    }

    #[should_panic = "recursive locking of 'sync-test-recursive-rw' on cpu0"]
    fn write_inside_read_panics() {
        if !debug_checks() { return }
        let _read = RECURSIVE_RW.read();
        let _write = RECURSIVE_RW.write();
    }

    #[should_panic = "ThreadLock 'sync-test-thread-only' taken in interrupt context on cpu1"]
    fn threadlock_in_an_interrupt_handler_panics() {
        if !debug_checks() { return }
        let Some(other) = other_cpu() else { return };
        // The call's function runs in the IPI handler on `other`.
        let _ = call::call_and_wait(CpuSet::single(other), || drop(NOT_IN_IRQ.lock()));
        panic!("the ThreadLock check did not fire on cpu{other}");
    }

    #[should_panic = "ThreadLock 'sync-test-thread-only' taken on cpu1 while holding a SpinLock taken in interrupt context"]
    fn threadlock_under_an_interrupt_spinlock_panics() {
        if !debug_checks() { return }
        let Some(other) = other_cpu() else { return };
        // A guard taken in an interrupt handler and leaked keeps counting as
        // held in interrupt context after the handler returned.
        call::call_and_wait(CpuSet::single(other), || core::mem::forget(LEAKED.lock()))
            .unwrap_or_else(|e| panic!("{e}"));
        let h = work::run_on(other, || drop(NOT_IN_IRQ.lock())).expect("cannot place work");
        let _ = h.join(WAIT_NS);
        panic!("the ThreadLock check did not fire on cpu{other}");
    }

    #[should_panic = "SpinLock 'sync-test-nmi' taken in NMI context on cpu0"]
    fn spinlock_in_nmi_context_panics() {
        if !debug_checks() { return }
        // Stands in for the NMI entry (arch/exceptions.rs raises the same
        // depth around the NMI handler; `nmi_depth_is_balanced` checks that
        // path leaves it balanced). The NMI handler itself runs fixed code.
        smp::current().in_nmi.fetch_add(1, Ordering::Relaxed);
        let _g = NOT_IN_NMI.lock();
    }

    #[should_panic = "held by cpu1 (deadlock?)"]
    fn a_lock_held_too_long_is_reported() {
        if !debug_checks() { return }
        let Some(other) = other_cpu() else { return };
        kernel::sync::set_spin_limit_ms(300);
        let held = Arc::new(AtomicBool::new(false));
        let h = held.clone();
        // The holder keeps the lock for up to 20 s: far past the limit.
        work::run_on(other, move || {
            let _g = STUCK.lock();
            h.store(true, Ordering::Release);
            let until = Deadline::after_ns(20_000_000_000);
            while !until.expired() {
                core::hint::spin_loop();
            }
        })
        .expect("cannot place work");
        wait_until("the other CPU holds the lock", || held.load(Ordering::Acquire));
        let _g = STUCK.lock();
    }
}
