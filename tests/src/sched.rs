//! The scheduler and RCU: threads on chosen CPUs, joining, blocking and
//! waking across CPUs, voluntary preemption, the tick, and grace periods —
//! including the property the seed's "RCU version" rests on: a grace period
//! does not end while a CPU holds interrupts off.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::rcu;
use kernel::sched::{self, WaitQueue};
use kernel::smp;
use kernel::time::{Deadline, now_ns};

use crate::util::{other_cpu, spin_ns};

kernel::ktests! {
    fn threads_run_on_the_cpu_they_were_given_and_join() {
        let mut handles = Vec::new();
        for cpu in smp::online_cpus().iter() {
            handles.push((cpu, sched::spawn_on(cpu, "where", move || (smp::cpu_index(), cpu * 10)).unwrap()));
        }
        for (cpu, h) in handles {
            let (ran_on, value) = h.join();
            assert_eq!(ran_on, cpu);
            assert_eq!(value, cpu * 10);
        }
    }

    fn many_threads_on_one_cpu_all_finish_and_stacks_are_recycled() {
        let cpu = smp::online_cpus().iter().last().unwrap();
        // Warm the stack pool, then check that a second round allocates no frames.
        let round = |n: u64| {
            let hs: Vec<_> = (0..n).map(|i| sched::spawn_on(cpu, "many", move || i * i).unwrap()).collect();
            hs.into_iter().map(|h| h.join()).sum::<u64>()
        };
        assert_eq!(round(16), (0..16).map(|i| i * i).sum());
        let frames = kernel::mm::frame::stats().free;
        let switches = sched::switches(cpu);
        assert_eq!(round(16), (0..16).map(|i| i * i).sum());
        assert!(sched::switches(cpu) > switches, "no context switches on cpu{cpu}");
        assert!(kernel::mm::frame::stats().free >= frames, "thread stacks were not recycled");
    }

    fn a_blocked_thread_is_woken_from_another_cpu() {
        let Some(other) = other_cpu() else { return };
        let queue = Arc::new(WaitQueue::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (q, f) = (queue.clone(), flag.clone());
        let h = sched::spawn_on(other, "sleeper", move || {
            q.wait_until(|| f.load(Ordering::Acquire));
            now_ns()
        })
        .unwrap();
        sched::sleep_ns(20_000_000);
        assert!(!h.is_finished(), "the sleeper did not wait");
        let woke_at = now_ns();
        flag.store(true, Ordering::Release);
        queue.wake_all();
        let ran_at = h.join();
        assert!(ran_at >= woke_at);
    }

    fn cond_resched_shares_a_cpu_between_busy_threads() {
        let cpu = smp::online_cpus().iter().last().unwrap();
        let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let until = now_ns() + 200_000_000;
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let c = counts.clone();
                sched::spawn_on(cpu, "busy", move || {
                    while now_ns() < until {
                        c[i].fetch_add(1, Ordering::Relaxed);
                        spin_ns(100_000);
                        sched::cond_resched();
                    }
                })
                .unwrap()
            })
            .collect();
        for h in hs {
            h.join();
        }
        let (a, b) = (counts[0].load(Ordering::Relaxed), counts[1].load(Ordering::Relaxed));
        log::info!("two busy threads on cpu{cpu}: {a} and {b} iterations");
        assert!(a > 0 && b > 0, "one thread starved: {a} vs {b}");
        assert!(a.min(b) * 4 > a.max(b), "time slices are far from fair: {a} vs {b}");
    }

    fn every_cpu_ticks() {
        let before: Vec<u64> = smp::online_cpus().iter().map(sched::ticks).collect();
        sched::sleep_ns(100_000_000);
        for (i, cpu) in smp::online_cpus().iter().enumerate() {
            let n = sched::ticks(cpu) - before[i];
            assert!(n >= 5, "cpu{cpu} took {n} ticks in 100 ms");
        }
    }

    fn synchronize_rcu_completes_and_counts() {
        let before = rcu::completed();
        for _ in 0..10 {
            rcu::synchronize_rcu();
        }
        assert!(rcu::completed() >= before + 10);
    }

    fn a_grace_period_does_not_end_while_a_cpu_holds_interrupts_off() {
        let Some(other) = other_cpu() else { return };
        const HOLD_NS: u64 = 50_000_000;
        let inside = Arc::new(AtomicBool::new(false));
        let enabled_at = Arc::new(AtomicU64::new(0));
        let (i, e) = (inside.clone(), enabled_at.clone());
        let h = sched::spawn_on(other, "irqs-off", move || {
            x86_64::instructions::interrupts::disable();
            i.store(true, Ordering::Release);
            spin_ns(HOLD_NS);
            e.store(now_ns(), Ordering::Release);
            x86_64::instructions::interrupts::enable();
        })
        .unwrap();
        while !inside.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        let started = now_ns();
        rcu::synchronize_rcu();
        let ended = now_ns();
        h.join();
        let enabled = enabled_at.load(Ordering::Acquire);
        log::info!(
            "grace period started at +0 us, interrupts enabled at +{} us, grace period ended at +{} us",
            enabled.saturating_sub(started) / 1000,
            (ended - started) / 1000
        );
        assert!(ended >= enabled, "the grace period ended {} ns before the section did", enabled - ended);
    }

    fn call_rcu_runs_after_the_readers_and_not_before() {
        let Some(other) = other_cpu() else { return };
        let inside = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let section_over = Arc::new(AtomicBool::new(false));
        let (i, r, s) = (inside.clone(), release.clone(), section_over.clone());
        let h = sched::spawn_on(other, "reader", move || {
            x86_64::instructions::interrupts::disable();
            i.store(true, Ordering::Release);
            let d = Deadline::after_ns(2_000_000_000);
            while !r.load(Ordering::Acquire) && !d.expired() {
                core::hint::spin_loop();
            }
            s.store(true, Ordering::Release);
            x86_64::instructions::interrupts::enable();
        })
        .unwrap();
        while !inside.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        let ran = Arc::new(AtomicBool::new(false));
        let ran_after_section = Arc::new(AtomicBool::new(false));
        let (rn, ra, so) = (ran.clone(), ran_after_section.clone(), section_over.clone());
        rcu::call_rcu(move || {
            ra.store(so.load(Ordering::Acquire), Ordering::Relaxed);
            rn.store(true, Ordering::Release);
        });
        sched::sleep_ns(30_000_000);
        rcu::run_callbacks();
        assert!(!ran.load(Ordering::Acquire), "the callback ran while a reader was inside");
        release.store(true, Ordering::Release);
        h.join();
        let d = Deadline::after_ns(5_000_000_000);
        while !ran.load(Ordering::Acquire) {
            assert!(!d.expired(), "the callback never ran");
            rcu::synchronize_rcu();
            rcu::run_callbacks();
        }
        assert!(ran_after_section.load(Ordering::Relaxed));
    }
}

/// The blocking reader-writer semaphore (the future mmap lock).
pub mod rwsem {
    use super::*;
    use kernel::sync::rwsem::RwSemaphore;

    kernel::ktests! {
        fn rwsem_readers_share_and_a_writer_excludes_them() {
            let Some(other) = other_cpu() else { return };
            let sem = Arc::new(RwSemaphore::new("test rwsem", 0u64));
            let r1 = sem.read();
            let s = sem.clone();
            // A reader on another CPU gets in while we hold a read guard.
            let h = sched::spawn_on(other, "reader", move || *s.read()).unwrap();
            assert_eq!(h.join(), 0);
            // A writer on another CPU must wait for our read guard.
            let s = sem.clone();
            let wrote_at = Arc::new(AtomicU64::new(0));
            let w = wrote_at.clone();
            let h = sched::spawn_on(other, "writer", move || {
                let mut g = s.write();
                *g += 1;
                w.store(now_ns(), Ordering::Release);
            })
            .unwrap();
            sched::sleep_ns(20_000_000);
            assert_eq!(wrote_at.load(Ordering::Acquire), 0, "the writer got in past a reader");
            let released = now_ns();
            drop(r1);
            h.join();
            assert!(wrote_at.load(Ordering::Acquire) >= released);
            assert_eq!(*sem.read(), 1);
        }

        fn rwsem_writer_is_not_starved_by_readers() {
            let Some(other) = other_cpu() else { return };
            let sem = Arc::new(RwSemaphore::new("test rwsem", 0u64));
            let stop = Arc::new(AtomicBool::new(false));
            // Two readers on one CPU whose sections overlap: each yields to the
            // other inside its section, so the reader count never drops to
            // zero by itself. Only writer preference lets a writer in.
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, st) = (sem.clone(), stop.clone());
                    sched::spawn_on(other, "reader", move || {
                        let deadline = Deadline::after_ns(3_000_000_000);
                        let mut n = 0u64;
                        while !st.load(Ordering::Acquire) && !deadline.expired() {
                            let _g = s.read();
                            spin_ns(200_000);
                            sched::yield_now();
                            n += 1;
                        }
                        n
                    })
                    .unwrap()
                })
                .collect();
            // The readers need their CPU first: wait for them (bounded; a
            // loaded host may not run that vCPU for a while).
            let started = Deadline::after_ns(2_000_000_000);
            while sem.readers() == 0 && !started.expired() {
                sched::sleep_ns(1_000_000);
            }
            sched::sleep_ns(20_000_000);
            assert!(sem.readers() > 0, "the readers are not overlapping");
            let t0 = now_ns();
            *sem.write() += 1;
            let waited = now_ns() - t0;
            stop.store(true, Ordering::Release);
            let n: u64 = readers.into_iter().map(|h| h.join()).sum();
            log::info!("writer waited {} us while {n} read sections ran", waited / 1000);
            assert!(waited < 1_000_000_000, "writer starved for {} ms", waited / 1_000_000);
            assert_eq!(*sem.read(), 1);
        }

        fn rwsem_try_read_fails_under_a_writer_without_touching_the_count() {
            let sem = RwSemaphore::new("test rwsem", 0u64);
            // A failed try must not release a read lock it never took (a
            // guard built and dropped on failure made the count underflow).
            let w = sem.write();
            for _ in 0..3 {
                assert!(sem.try_read().is_none(), "try_read got in under a writer");
            }
            assert_eq!(sem.readers(), 0, "a failed try_read changed the reader count");
            drop(w);
            let r = sem.try_read().expect("try_read of a free semaphore failed");
            assert_eq!(sem.readers(), 1);
            let r2 = sem.try_read().expect("a second reader was refused");
            assert_eq!(sem.readers(), 2);
            drop((r, r2));
            assert_eq!(sem.readers(), 0);
            // And the semaphore still excludes: a writer gets it and a try fails.
            let w = sem.write();
            assert!(sem.try_read().is_none());
            drop(w);
            assert_eq!(*sem.read(), 0);
        }
    }
}

/// Address-space switching: CR3 only on a change, lazy kernel threads, the
/// CPU set of each address space.
pub mod mm_switch {
    use super::*;
    use kernel::arch::cpu;
    use kernel::mm::addr_space::AddressSpace;
    use kernel::mm::paging::ADDR_MASK;

    fn cr3_root() -> u64 {
        cpu::cr3() & ADDR_MASK
    }

    fn last_cpu() -> usize {
        smp::online_cpus().iter().last().unwrap()
    }

    kernel::ktests! {
        fn cr3_is_written_only_when_the_address_space_changes() {
            let c = last_cpu();
            let a = Arc::new(AddressSpace::new().unwrap());
            let b = Arc::new(AddressSpace::new().unwrap());
            let in_a = |mm: &Arc<AddressSpace>| sched::spawn_in(c, "in-mm", Some(mm.clone()), cr3_root).unwrap().join();
            assert_eq!(in_a(&a), a.root().as_u64());
            assert!(a.cpus().contains(c));
            let writes = sched::cr3_writes(c);
            // Another task of the same address space (the idle task ran in
            // between, lazily): no CR3 write.
            assert_eq!(in_a(&a), a.root().as_u64());
            assert_eq!(sched::cr3_writes(c), writes, "CR3 rewritten for the same address space");
            assert_eq!(in_a(&b), b.root().as_u64());
            assert_eq!(sched::cr3_writes(c), writes + 1);
            assert!(!a.cpus().contains(c), "cpu{c} still in the old address space's set");
            assert!(b.cpus().contains(c));
            sched::spawn_on(c, "leave", sched::leave_lazy_mm).unwrap().join();
            assert!(!b.cpus().contains(c));
        }

        fn kernel_threads_run_lazily_on_the_loaded_address_space() {
            let c = last_cpu();
            let a = Arc::new(AddressSpace::new().unwrap());
            let a_id = a.id;
            sched::spawn_in(c, "user", Some(a.clone()), || {}).unwrap().join();
            let (root, loaded) = sched::spawn_on(c, "kthread", move || (cr3_root(), sched::loaded_mm(smp::cpu_index())))
                .unwrap()
                .join();
            assert_eq!(root, a.root().as_u64(), "a kernel thread switched CR3");
            assert_eq!(loaded, (Some(a_id), true), "the CPU is not lazy in the user address space");
            assert!(a.cpus().contains(c), "a lazy CPU must stay in the address space's set");
            let root = sched::spawn_on(c, "leave", || {
                sched::leave_lazy_mm();
                cr3_root()
            })
            .unwrap()
            .join();
            assert_eq!(root, kernel::mm::kernel_map::kernel_root().as_u64());
            assert!(!a.cpus().contains(c));
        }

        fn address_spaces_share_the_kernel_half_and_are_freed() {
            let before = kernel::mm::frame::stats().free;
            let c = last_cpu();
            for _ in 0..8 {
                let mm = Arc::new(AddressSpace::new().unwrap());
                // Kernel code, data and the heap work inside it.
                let v = sched::spawn_in(c, "user", Some(mm), || alloc::vec![7u8; 4096].iter().map(|&b| b as u64).sum::<u64>())
                    .unwrap()
                    .join();
                assert_eq!(v, 7 * 4096);
            }
            sched::spawn_on(c, "leave", sched::leave_lazy_mm).unwrap().join();
            assert_eq!(kernel::mm::frame::stats().free, before, "address-space roots leaked");
        }
    }
}

/// Misuse that must be refused, not silently accepted.
pub mod misuse {
    kernel::ktests! {
        #[should_panic = "cond_resched() with interrupts disabled"]
        fn cond_resched_inside_an_interrupts_off_section_is_refused() {
            x86_64::instructions::interrupts::disable();
            kernel::sched::cond_resched();
        }
    }
}
