//! The `race` syscall's kernel side (see `abi::race`): parameters, the stop
//! flag, the write probe and the workers' reports.

use core::sync::atomic::Ordering;

use abi::Errno;
use abi::race as r;

use super::SHARED;
use crate::mm::uaccess::{self, UserPtr};
use crate::mm::{PAGE_SIZE, frame_io, page, pgtable};
use crate::mm::UserAddr;

/// Pages each worker pins by direct read per iteration.
pub(crate) const DIO_PAGES: u64 = 2;
/// Pages each worker writes and probes per iteration (unless the scenario's
/// writer sizes it: `harness::Writer::write_pages`).
pub(crate) const WRITE_PAGES: u64 = 2;

/// `race(op, a, b)`.
pub(crate) fn race(op: u64, a: u64, b: u64) -> Result<usize, Errno> {
    if !SHARED.running.load(Ordering::Acquire) {
        return Err(Errno::EINVAL);
    }
    match op as usize {
        r::PARAMS => {
            let mut p = [0u64; r::PARAM_WORDS];
            p[r::P_WORKER] = SHARED.next_worker.fetch_add(1, Ordering::Relaxed);
            p[r::P_WORKERS] = SHARED.workers.load(Ordering::Relaxed);
            p[r::P_SEED] = SHARED.seed.load(Ordering::Relaxed);
            p[r::P_ITERATIONS] = SHARED.iterations.load(Ordering::Relaxed);
            p[r::P_DIO_PAGES] = DIO_PAGES;
            p[r::P_WRITE_PAGES] = SHARED.write_pages.load(Ordering::Relaxed);
            p[r::P_PREP_US] = SHARED.prep_us.load(Ordering::Relaxed);
            p[r::P_COLLAPSER] = SHARED.collapser.load(Ordering::Relaxed);
            uaccess::write_user(UserPtr(a), &p)?;
            Ok(0)
        }
        r::SHOULD_STOP => Ok(usize::from(should_stop())),
        r::PROBE => probe(a).map(|v| v as usize),
        r::HUGE => huge(a).map(usize::from),
        r::REPORT => {
            let counter = match a as usize {
                r::R_ITERATIONS => &SHARED.done_iterations,
                r::R_DMA_CHECKS => &SHARED.dma_checks,
                r::R_DMA_LOST => &SHARED.corrupt_dma,
                r::R_WRITE_CHECKS => &SHARED.write_checks,
                r::R_WRITE_LOST => &SHARED.corrupt_write,
                _ => return Err(Errno::EINVAL),
            };
            counter.fetch_add(b, Ordering::Relaxed);
            if b > 0 && matches!(a as usize, r::R_DMA_LOST | r::R_WRITE_LOST) {
                // Relaxed: a timestamp for the report; the first one wins.
                let _ = SHARED.first_catch_ns.compare_exchange(0, crate::time::now_ns(), Ordering::Relaxed, Ordering::Relaxed);
            }
            Ok(0)
        }
        r::TARGET => super::uprobe_vs_pin::target(a, b).map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

fn should_stop() -> bool {
    if SHARED.stop.load(Ordering::Relaxed) {
        return true;
    }
    let uaf = page::uaf_events() > SHARED.uaf0.load(Ordering::Relaxed);
    if uaf {
        // A use after free is a catch too; its time is when a worker first
        // notices it here (within one of its iterations). Relaxed: a
        // timestamp for the report; the first one wins.
        let _ = SHARED.first_catch_ns.compare_exchange(0, crate::time::now_ns(), Ordering::Relaxed, Ordering::Relaxed);
    }
    let caught = uaf || SHARED.corrupt_dma.load(Ordering::Relaxed) + SHARED.corrupt_write.load(Ordering::Relaxed) > 0;
    let late = crate::time::now_ns() >= SHARED.deadline_ns.load(Ordering::Relaxed);
    let enough = SHARED.enough_overlaps.load(Ordering::Relaxed);
    // The evidence of a safe row: the overlaps, and the writer's work.
    let evidence = enough > 0 && crate::race::overlap::count() >= enough && {
        let done = *SHARED.done_counter.lock();
        done.is_some_and(|now| now() > SHARED.done0.load(Ordering::Relaxed))
    };
    if late || evidence || (caught && SHARED.stop_on_catch.load(Ordering::Relaxed)) {
        SHARED.stop.store(true, Ordering::Relaxed);
        return true;
    }
    false
}

/// Whether a huge pmd maps `addr` now.
fn huge(addr: u64) -> Result<bool, Errno> {
    uaccess::check_range(UserPtr(addr & !(PAGE_SIZE - 1)), PAGE_SIZE as usize)?;
    let addr = UserAddr::new(addr).ok_or(Errno::EFAULT)?;
    let mm = crate::mm::fault::current_mm().ok_or(Errno::EINVAL)?;
    let _vmas = mm.vmas.read();
    Ok(pgtable::pmd(&mm, addr, false).ok().flatten().is_some_and(|pmd| pmd.get().is_huge()))
}

/// The word at user address `addr` in the frame the current page table maps
/// there (controls.md: "never through the writing CPU's own, possibly stale,
/// TLB entry"), then a local INVLPG of `addr`.
pub(crate) fn probe(addr: u64) -> Result<u64, Errno> {
    if !addr.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    uaccess::check_range(UserPtr(addr), 8)?;
    let addr = UserAddr::new(addr).ok_or(Errno::EFAULT)?;
    let mm = crate::mm::fault::current_mm().ok_or(Errno::EINVAL)?;
    // A writer's marker (KSM under `sync=rcu`) stands for a pte that comes
    // back within a grace period: wait for it, as a fault would.
    let deadline = crate::time::now_ns() + 10_000_000_000;
    loop {
        match probe_once(&mm, addr) {
            Err(Errno::EAGAIN) if crate::time::now_ns() < deadline => crate::sched::yield_now(),
            r => return r,
        }
    }
}

fn probe_once(mm: &crate::mm::addr_space::AddressSpace, addr: UserAddr) -> Result<u64, Errno> {
    let _vmas = mm.vmas.read();
    let pmd = pgtable::pmd(mm, addr, false).ok().flatten().ok_or(Errno::EFAULT)?;
    let value = {
        let v = pmd.get();
        if v.is_huge() {
            let _ptl = pmd.lock();
            let v = pmd.get();
            if !v.is_present() || !v.is_huge() {
                return Err(Errno::EFAULT);
            }
            // The huge folio the pmd maps, held in place by its lock.
            let pa = v.addr() + addr.page_offset(crate::mm::PageSize::Size2M);
            frame_io::read_word(page::page_of(pa), (pa.as_u64() & (PAGE_SIZE - 1)) as usize)
        } else {
            let pt = pgtable::pte_table(pmd, false).ok().flatten().ok_or(Errno::EFAULT)?;
            let _ptl = pt.lock();
            let e = pt.entry(addr).load(Ordering::Acquire);
            if pgtable::is_marker(e) {
                return Err(Errno::EAGAIN);
            }
            if !e.is_present() {
                return Err(Errno::EFAULT);
            }
            // The frame a present leaf maps, held in place by the page-table
            // lock we hold (its mapping's reference keeps it allocated).
            frame_io::read_word(page::page_of(e.addr()), addr.page_offset(crate::mm::PageSize::Size4K) as usize)
        }
    };
    crate::arch::cpu::flush_tlb_page(addr.into());
    Ok(value)
}

