//! `bench=tlb`: cost of `tlb::flush_tlb_page` on an address space loaded on
//! K remote CPUs, K = 0 .. online-1 (Linux: flush_tlb_mm_range() for one
//! page; the peer's `shootdown` bench measures it under mprotect()).
//!
//! A fresh address space with one user page (mmap with MAP_POPULATE at a
//! fixed address; gone with the address space at the end). A thread on the boot CPU
//! runs in it and times `flush_tlb_page` (TSC clock). On the K lowest other
//! CPUs a kernel thread runs in the same address space, spinning on reads of
//! the page (like the peer's spinner threads), with interrupts enabled. One
//! sample includes: the fence, reading the CPU set, allocating and queueing
//! the request, the ICR write per target, the local INVLPG, delivery, the
//! targets' interrupt (or NMI) entry and INVLPG, their acknowledgements, the
//! initiator's spinning on them, and freeing the request. K = 0 is the local
//! INVLPG alone. Between configurations the spinners' CPUs leave the address
//! space, so exactly K CPUs are targeted.
//!
//! Output, one line per K:
//! `RESULT tlb_flush op=flush_page remote_cpus=K n=N median_ns=N p10_ns=N p90_ns=N delta_median_ns=N`
//! plus ` flush=nmi` under `tlb=nmi` (`delta_median_ns`: median minus the
//! K = 0 median).

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::VirtAddr;

use super::{Bench, BenchError, Plan, sample};
use crate::mm::PAGE_SIZE;
use crate::mm::addr_space::AddressSpace;
use crate::mm::mmap::{self as m, map};
use crate::sched;
use crate::smp;
use crate::time::now_ns;
use crate::tlb::{self, FlushMode};

const VA: u64 = 0x4000_0000;

fn err(message: alloc::string::String) -> BenchError {
    BenchError { bench: Bench::Tlb, message }
}

/// Runs every configuration and prints its RESULT line.
pub(crate) fn run() -> Result<(), BenchError> {
    let me = smp::cpu_index();
    let others: Vec<usize> = smp::online_cpus().iter().filter(|&c| c != me).collect();
    let mm = Arc::new(AddressSpace::new().map_err(|e| err(format!("no address space: {e:?}")))?);
    let flags = map::PRIVATE | map::ANONYMOUS | map::FIXED_NOREPLACE | map::POPULATE;
    let va = m::mmap(&mm, VA, PAGE_SIZE, 3, flags).map_err(|e| err(format!("mmap: {e:?}")))?;
    let va = VirtAddr::new(va.as_u64());
    let suffix = if tlb::config().mode == FlushMode::Nmi { " flush=nmi" } else { "" };
    let mut base_median = None;
    for k in 0..=others.len() {
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = others[..k]
            .iter()
            .map(|&cpu| {
                let s = stop.clone();
                sched::spawn_in(cpu, "tlb-spinner", Some(mm.clone()), move || {
                    while !s.load(Ordering::Relaxed) {
                        // Mapped for the whole benchmark; through uaccess (SMAP).
                        let _ = crate::mm::uaccess::read_user::<u64>(crate::mm::uaccess::UserPtr(va.as_u64()));
                    }
                })
                .map_err(|e| err(format!("spawn on cpu{cpu}: {e:?}")))
            })
            .collect::<Result<_, _>>()?;
        let m = mm.clone();
        let stats = sched::spawn_in(me, "tlb-bench", Some(mm.clone()), move || {
            // Wait until every spinner has the address space loaded.
            let d = crate::time::Deadline::after_ns(5_000_000_000);
            while m.cpus().len() < k + 1 && !d.expired() {
                core::hint::spin_loop();
            }
            let stats = sample(Plan::DEFAULT, || {
                let start = now_ns();
                tlb::flush_tlb_page(m.tlb(), va);
                Ok::<u64, BenchError>(now_ns() - start)
            });
            (stats, m.cpus().len())
        })
        .map_err(|e| err(format!("spawn: {e:?}")))?
        .join();
        stop.store(true, Ordering::Relaxed);
        spinners.into_iter().for_each(|s| s.join());
        let (stats, loaded) = (stats.0?, stats.1);
        if loaded != k + 1 {
            return Err(err(format!("remote_cpus={k}: the address space was loaded on {loaded} CPUs, not {}", k + 1)));
        }
        let base = *base_median.get_or_insert(stats.median);
        crate::println!(
            "RESULT tlb_flush op=flush_page remote_cpus={k} n={} median_ns={} p10_ns={} p90_ns={} delta_median_ns={}{suffix}",
            stats.n,
            stats.median,
            stats.p10,
            stats.p90,
            stats.median as i64 - base as i64
        );
        leave_everywhere(&others);
    }
    // Unloaded everywhere: the last reference tears the address space down.
    drop(mm);
    Ok(())
}

/// Every CPU drops the lazily kept address space.
fn leave_everywhere(others: &[usize]) {
    for &cpu in others {
        if let Ok(h) = sched::spawn_on(cpu, "leave", sched::leave_lazy_mm) {
            h.join();
        }
    }
    sched::leave_lazy_mm();
}
