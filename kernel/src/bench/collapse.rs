//! `bench=collapse`: the cost of `MADV_COLLAPSE` of one 2 MiB range made of
//! 512 populated 4 KiB pages, with 0 and 1.. remote CPUs running threads of
//! the address space (then the pmd collapse flush must reach them), measured
//! as the Linux peer's `collapse.c` measures Linux:
//! `RESULT collapse remote_cpus=K n=N mean_us= median_us= p10_us= p90_us=
//! min_us= fails=N`.
//!
//! Per iteration, as the peer (untimed unless stated): mmap 2 MiB (2 MiB
//! aligned), `MADV_NOHUGEPAGE`, write every page (512 small pages),
//! `MADV_HUGEPAGE`, check it is not huge; **timed**: `madvise(MADV_COLLAPSE)`;
//! check it is huge and every page's data intact; munmap. The timed part:
//! the huge-folio allocation, the mmap write lock, the pmd clear and its
//! flush (whole-mm past the 33-page ceiling, IPIs to the remote CPUs), the
//! table sync IPI, the isolation of 512 pages, the 2 MiB copy, the huge pmd,
//! the 512 puts and the table free. Differences from the peer: the kernel
//! thread calls madvise directly (no syscall entry), the remote threads are
//! kernel threads with the address space loaded spinning on a separate
//! page, khugepaged is not running. Up to 300 samples or 3 s per
//! configuration after 5 warm-up iterations; `fails` counts collapses that
//! did not happen (the line still prints).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::VirtAddr;

use super::{Bench, BenchError, Stats};
use crate::arch::tsc;
use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind};
use crate::mm::mmap::{self as m, advice, map};
use crate::mm::paging::{self, PageSize};
use crate::mm::uaccess::{self, UserPtr};
use crate::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use crate::time::Deadline;
use crate::{sched, smp};

const ITERS: usize = 300;
const WARMUP: usize = 5;
const BUDGET_NS: u64 = 3_000_000_000;

fn err(message: String) -> BenchError {
    BenchError { bench: Bench::Collapse, message }
}

fn word(i: u64) -> u64 {
    0xc011_a95e_0000_0000 | (i * PAGE_SIZE)
}

/// Runs the configurations (0 .. every other CPU remote) and prints a line each.
pub(crate) fn run() -> Result<(), BenchError> {
    let me = smp::cpu_index();
    let others: Vec<usize> = smp::online_cpus().iter().filter(|&c| c != me).collect();
    for k in 0..=others.len().min(1) {
        let mm = Arc::new(AddressSpace::new().map_err(|e| err(format!("no address space: {e:?}")))?);
        let spin_page = {
            let m2 = mm.clone();
            sched::spawn_in(me, "collapse-setup", Some(mm.clone()), move || -> Result<u64, BenchError> {
                let p = m::mmap(&m2, 0, PAGE_SIZE, 3, map::PRIVATE | map::ANONYMOUS).map_err(|e| err(format!("mmap: {e:?}")))?;
                fault::handle(VirtAddr::new(p.as_u64()), Access { kind: AccessKind::Write, user: false })
                    .map_err(|e| err(format!("fault: {}", e.as_str())))?;
                Ok(p.as_u64())
            })
            .map_err(|e| err(format!("spawn: {e:?}")))?
            .join()?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = others[..k]
            .iter()
            .map(|&cpu| {
                let s = stop.clone();
                sched::spawn_in(cpu, "collapse-spinner", Some(mm.clone()), move || {
                    while !s.load(Ordering::Relaxed) {
                        // The page stays mapped until the spinners stop: a
                        // fault here is a bench bug, not a result.
                        let _ = uaccess::read_user::<u64>(UserPtr(spin_page));
                    }
                })
                .map_err(|e| err(format!("spawn on cpu{cpu}: {e:?}")))
            })
            .collect::<Result<_, _>>()?;
        let m2 = mm.clone();
        let r = sched::spawn_in(me, "collapse-bench", Some(mm.clone()), move || measure(&m2, k))
            .map_err(|e| err(format!("spawn: {e:?}")))?
            .join();
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|s| s.join());
        drop(mm);
        let _ = sched::leave_lazy_mm_everywhere();
        crate::println!("{}", r?);
    }
    Ok(())
}

/// One iteration: `Ok(Some(ticks))` for a collapse, `Ok(None)` for a refusal.
fn one(mm: &Arc<AddressSpace>) -> Result<Option<u64>, BenchError> {
    let r = m::mmap(mm, 0, HUGE_PAGE_SIZE, 3, map::PRIVATE | map::ANONYMOUS).map_err(|e| err(format!("mmap: {e:?}")))?;
    m::madvise(mm, r.as_u64(), HUGE_PAGE_SIZE, advice::NOHUGEPAGE).map_err(|e| err(format!("MADV_NOHUGEPAGE: {e:?}")))?;
    for i in 0..512 {
        let va = r + i * PAGE_SIZE;
        fault::handle(VirtAddr::new(va.as_u64()), Access { kind: AccessKind::Write, user: false })
            .map_err(|e| err(format!("fault at {va:#x}: {}", e.as_str())))?;
        uaccess::write_user(UserPtr(va.as_u64()), &word(i)).map_err(|_| err(format!("write at {va:#x} faulted")))?;
    }
    m::madvise(mm, r.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).map_err(|e| err(format!("MADV_HUGEPAGE: {e:?}")))?;
    let size = |mm: &AddressSpace| paging::translate(mm.root(), VirtAddr::new(r.as_u64())).map(|t| t.size);
    if size(mm) != Some(PageSize::Size4K) {
        return Err(err("the range was huge before MADV_COLLAPSE".into()));
    }
    let t0 = tsc::rdtsc();
    let rc = m::madvise(mm, r.as_u64(), HUGE_PAGE_SIZE, advice::COLLAPSE);
    let t1 = tsc::rdtsc();
    let huge = size(mm) == Some(PageSize::Size2M);
    let bad = (0..512)
        .filter(|&i| uaccess::read_user::<u64>(UserPtr(r.as_u64() + i * PAGE_SIZE)) != Ok(word(i)))
        .count();
    m::munmap(mm, r.as_u64(), HUGE_PAGE_SIZE).map_err(|e| err(format!("munmap: {e:?}")))?;
    if bad > 0 {
        return Err(err(format!("{bad} pages with wrong data after MADV_COLLAPSE")));
    }
    match rc {
        Ok(()) if huge => Ok(Some(t1 - t0)),
        Ok(()) => Err(err("MADV_COLLAPSE succeeded but the range is not huge".into())),
        Err(e) => {
            log::warn!("bench collapse: MADV_COLLAPSE failed: {e:?}");
            Ok(None)
        }
    }
}

fn measure(mm: &Arc<AddressSpace>, k: usize) -> Result<String, BenchError> {
    // Every spinner has the address space loaded before timing starts.
    let d = Deadline::after_ns(5_000_000_000);
    while mm.cpus().len() < k + 1 && !d.expired() {
        core::hint::spin_loop();
    }
    if mm.cpus().len() != k + 1 {
        return Err(err(format!("remote_cpus={k}: the address space is loaded on {} CPUs", mm.cpus().len())));
    }
    for _ in 0..WARMUP {
        one(mm)?;
    }
    crate::stamps::reset();
    let mut ns = Vec::with_capacity(ITERS);
    let mut fails = 0;
    let budget = Deadline::after_ns(BUDGET_NS);
    while ns.len() < ITERS && !budget.expired() {
        match one(mm)? {
            Some(t) => ns.push(tsc::ticks_to_ns(t)),
            None => fails += 1,
        }
    }
    let n = ns.len();
    let mean = if n > 0 { ns.iter().sum::<u64>() / n as u64 } else { 0 };
    let s = Stats::from_samples(ns);
    let us = |v: u64| format!("{}.{}", v / 1000, v / 100 % 10);
    // `bench.breakdown=on`: the steps of the timed collapses (the untimed
    // part of an iteration collapses nothing).
    let steps = if crate::stamps::enabled() {
        format!("\nRESULT collapse_steps remote_cpus={k}{}", crate::stamps::summary())
    } else {
        String::new()
    };
    Ok(format!(
        "RESULT collapse remote_cpus={k} n={n} mean_us={} median_us={} p10_us={} p90_us={} min_us={} fails={fails}{steps}",
        us(mean),
        us(s.median),
        us(s.p10),
        us(s.p90),
        us(s.min)
    ))
}
