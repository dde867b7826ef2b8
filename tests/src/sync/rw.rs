//! `RwSpinLock`: readers share, writers exclude, writers are not starved.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use kernel::arch::cpu::interrupts_enabled;
use kernel::smp::{self, work};
use kernel::sync::RwSpinLock;
use kernel::time::{Deadline, now_ns};

use super::{WAIT_NS, flag, on_all_cpus, other_cpu, others, slow_increment, wait_until};

/// A pair the writers keep equal; readers check it.
struct Pair {
    a: u64,
    b: u64,
}

static SHARED: RwSpinLock<u64> = RwSpinLock::new("sync-test-shared", 0);
static PAIR: RwSpinLock<Pair> = RwSpinLock::new("sync-test-pair", Pair { a: 0, b: 0 });
static STREAM: RwSpinLock<u64> = RwSpinLock::new("sync-test-stream", 0);

/// How long each CPU alternates writes and reads in the exclusion test.
const RUN_NS: u64 = 1_000_000_000;

/// A short busy pause, to widen a critical section's window.
fn pause() {
    for _ in 0..20 {
        core::hint::spin_loop();
    }
}

kernel::ktests! {
    fn readers_are_inside_together() {
        let Some(_) = other_cpu() else { return };
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (i, m) = (inside.clone(), most.clone());
        on_all_cpus(move |_, cpus| {
            let g = SHARED.read();
            assert!(!interrupts_enabled(), "interrupts on inside a read lock");
            let now = i.fetch_add(1, Ordering::AcqRel) + 1;
            m.fetch_max(now, Ordering::AcqRel);
            // Stay inside until every CPU is: only possible if they share it.
            wait_until("every CPU is inside the read lock", || i.load(Ordering::Acquire) == cpus);
            drop(g);
        });
        assert!(interrupts_enabled(), "the read guard did not restore interrupts");
        assert_eq!(most.load(Ordering::Acquire), smp::online_count());
        assert_eq!(SHARED.reader_count(), 0);
    }

    fn writers_exclude_readers_and_writers() {
        *PAIR.write() = Pair { a: 0, b: 0 };
        let writes = Arc::new(AtomicU64::new(0));
        let end = Arc::new(AtomicU64::new(0));
        let (w, e) = (writes.clone(), end.clone());
        on_all_cpus(move |_, _| {
            // Time-bounded (the first CPU past the barrier sets the end for
            // all): how many rounds fit depends on the vCPUs' scheduling.
            let _ = e.compare_exchange(0, now_ns() + RUN_NS, Ordering::AcqRel, Ordering::Acquire);
            let end = e.load(Ordering::Acquire);
            let mut mine = 0;
            while now_ns() < end {
                {
                    let mut g = PAIR.write();
                    slow_increment(&mut g.a);
                    pause();
                    g.b = g.a;
                }
                mine += 1;
                let g = PAIR.read();
                let a = g.a;
                // A long read: any write completing meanwhile shows.
                for _ in 0..10 {
                    pause();
                }
                assert_eq!(a, g.b, "a reader saw a write happen");
            }
            w.fetch_add(mine, Ordering::AcqRel);
        });
        let g = PAIR.read();
        let want = writes.load(Ordering::Acquire);
        log::info!("{want} writes on {} CPUs", smp::online_count());
        assert_eq!((g.a, g.b), (want, want), "lost writes under the RwSpinLock");
    }

    fn a_writer_is_not_starved_by_readers() {
        let Some(_) = other_cpu() else { return };
        let readers = others();
        let stop = flag();
        let reads = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for &cpu in &readers {
            let (stop, reads, n) = (stop.clone(), reads.clone(), readers.len());
            handles.push(work::run_on(cpu, move || {
                // Overlapping readers: each holds its read lock ~200 us, then
                // (with 2+ readers) until another reader is inside, so the
                // lock is never free for long; a reader-preferring lock would
                // never let the writer in. Bounded: 2 ms of hand-off waiting,
                // 20 s overall.
                let overall = Deadline::after_ns(20_000_000_000);
                while !stop.load(Ordering::Acquire) && !overall.expired() {
                    let g = STREAM.read();
                    reads.fetch_add(1, Ordering::Relaxed);
                    let hold = Deadline::after_ns(200_000);
                    while !hold.expired() {
                        core::hint::spin_loop();
                    }
                    let handoff = Deadline::after_ns(2_000_000);
                    while n >= 2 && STREAM.reader_count() < 2 && !handoff.expired() {
                        core::hint::spin_loop();
                    }
                    drop(g);
                }
            }).expect("cannot place work"));
        }
        wait_until("the readers are streaming", || reads.load(Ordering::Relaxed) > 20);
        let mut worst = 0u64;
        for _ in 0..20 {
            let t0 = now_ns();
            let mut g = STREAM.write();
            worst = worst.max(now_ns() - t0);
            *g += 1;
            drop(g);
            let pause = Deadline::after_ns(1_000_000);
            while !pause.expired() {
                core::hint::spin_loop();
            }
        }
        let reads_done = reads.load(Ordering::Relaxed);
        stop.store(true, Ordering::Release);
        for h in &handles {
            h.join(WAIT_NS).unwrap_or_else(|cpu| panic!("reader on cpu{cpu} did not stop"));
        }
        log::info!("writer: worst wait {} us among {} readers ({reads_done} reads)", worst / 1000, readers.len());
        assert_eq!(*STREAM.read(), 20);
        assert!(worst < 1_000_000_000, "a writer waited {} ms behind readers", worst / 1_000_000);
    }
}
