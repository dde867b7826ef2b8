//! The stale-write test with a *user* thread as the writer (issue #4: "a
//! user thread on another CPU writes a page whose mapping changes; its writes
//! must land in the frame the page table maps").
//!
//! The program `tlbwriter` (`kernel/user/src/bin/tlbwriter.rs`) runs as a
//! process whose only thread is on another CPU: it maps a private page at a
//! fixed address and writes an incrementing counter to it in ring 3, through
//! its own TLB. This test (on its own CPU, outside the address space) moves
//! the page back and forth between the process's frame and a spare frame:
//! under the pte table's lock, an atomic exchange of the pte (same flags,
//! other frame), then `flush_tlb_page` on the process's address space. Right
//! after the flush returned the old frame is snapshotted through the direct
//! map (never through a user translation) and watched until the writer has
//! demonstrably written many values to the new frame; any change of the old
//! frame is a user write through a stale TLB entry, i.e. a write that did not
//! land in the frame the page table maps. With a correct flush it cannot
//! happen (the writer's CPU flushes before it acknowledges, and the flush
//! returns only after every acknowledgement); with `tlb.nowait` it must be
//! caught (the host test asserts it).
//!
//! At the end the pte maps the process's own frame again (so the page's
//! reference and mapcount, never changed, are right again), the process is
//! told to exit and reaped, and no frame may have leaked.

use kernel::mm::addr_space::AddressSpace;
use kernel::mm::paging::RawEntry;
use kernel::mm::pgtable;
use kernel::process;
use kernel::time::Deadline;
use kernel::tlb;
use x86_64::{PhysAddr, VirtAddr};

use super::{TestMm, read_phys};
use crate::util;
use kernel::mm::UserAddr;

/// The writer's page (`PAGE` in `tlbwriter.rs`).
const WRITER_PAGE: UserAddr = UserAddr::from_const(0x5000_0000);
/// Most iterations (each moves the page once)... With a one-store writer
/// loop the `tlb.nowait` stale write was caught at iterations 2 to 7595 in
/// ten runs, and once (CI, `tlb=nmi`) not in 40000; with the writer's
/// branch-free runs of stores it is caught at iteration 0 to about 400.
const ITERATIONS: u64 = 40_000;
/// ... within this time budget, after at least [`MIN_ITERATIONS`].
const BUDGET_NS: u64 = 6_000_000_000;
const MIN_ITERATIONS: u64 = 100;
/// Values the writer must have written to the new frame before an iteration ends.
const WRITES_AFTER_FLUSH: u64 = 2000;

/// Exchanges the pte of `va` for one mapping `new` with the same flags,
/// under the pte table's lock; returns the frame it mapped before.
fn move_page(mm: &AddressSpace, va: UserAddr, new: PhysAddr) -> PhysAddr {
    let pmd = pgtable::pmd(mm, va, false).expect("no memory").expect("no pmd for the writer's page");
    let pt = pgtable::pte_table(pmd, false).expect("no memory").expect("no pte table for the writer's page");
    let _ptl = pt.lock();
    let entry = pt.entry(va);
    let old = entry.load(core::sync::atomic::Ordering::Acquire);
    assert!(pgtable::maps_page(old), "the writer's page is not mapped");
    // SeqCst exchange: the hardware may set accessed/dirty concurrently; the
    // flush's fence then orders the change before the CPU-set read.
    let prev = entry.swap(RawEntry::new(new, old.flags()), core::sync::atomic::Ordering::SeqCst);
    prev.addr()
}

/// The frame the writer's page maps once it is mapped and written, at most 5 s.
fn writer_frame(mm: &AddressSpace, cpu: usize) -> PhysAddr {
    let d = Deadline::after_ns(5_000_000_000);
    loop {
        if let Ok(Some(pmd)) = pgtable::pmd(mm, WRITER_PAGE, false)
            && let Ok(Some(pt)) = pgtable::pte_table(pmd, false)
        {
            let e = pt.entry(WRITER_PAGE).load(core::sync::atomic::Ordering::Acquire);
            if pgtable::maps_page(e) && read_phys(e.addr()) != 0 {
                return e.addr();
            }
        }
        assert!(!d.expired(), "the user writer on cpu{cpu} never wrote its page");
        core::hint::spin_loop();
    }
}

kernel::ktests! {
    fn a_user_writer_never_writes_the_old_frame_after_a_remote_flush() {
        let Some(other) = util::other_cpu() else { return };
        let mut t = TestMm::new();
        let spare = t.data(0, 0);
        let pid = process::spawn("tlbwriter", other).expect("spawn tlbwriter");
        let proc_ = process::get(pid).expect("the writer's process");
        let mm = proc_.mm.clone();
        let own = writer_frame(&mm, other);
        assert!(mm.cpus().contains(other), "the writer's cpu{other} is not in its address space");
        let va = VirtAddr::new(WRITER_PAGE.as_u64());
        let frames = [own, spare];
        let before = tlb::mm_counts(mm.tlb());
        let budget = Deadline::after_ns(BUDGET_NS);
        let mut iterations = 0;
        for iter in 0..ITERATIONS {
            if iter >= MIN_ITERATIONS && budget.expired() {
                break;
            }
            iterations += 1;
            let (old, new) = (frames[(iter % 2) as usize], frames[((iter + 1) % 2) as usize]);
            assert_eq!(move_page(&mm, WRITER_PAGE, new), old);
            tlb::flush_tlb_page(mm.tlb(), va);
            // Right after the return: the old frame must be final from now on.
            let snap = read_phys(old);
            let d = Deadline::after_ns(2_000_000_000);
            loop {
                let now = read_phys(old);
                if now != snap {
                    panic!(
                        "stale TLB write: iteration {iter}: the old frame changed from {snap} to {now} after the flush \
                         returned (the user thread on cpu{other} wrote through a stale translation; {})",
                        tlb::config()
                    );
                }
                if read_phys(new) > snap + WRITES_AFTER_FLUSH {
                    break;
                }
                assert!(!d.expired(), "iteration {iter}: the user writer made no progress in the new frame for 2 s");
                core::hint::spin_loop();
            }
        }
        // Back to the process's own frame before it exits and unmaps it.
        if iterations % 2 == 1 {
            assert_eq!(move_page(&mm, WRITER_PAGE, own), spare);
            tlb::flush_tlb_page(mm.tlb(), va);
        }
        let after = tlb::mm_counts(mm.tlb());
        let moves = iterations + iterations % 2;
        assert_eq!(after.flushes - before.flushes, moves, "flushes of the writer's address space");
        assert_eq!(after.remote_requests - before.remote_requests, moves, "every flush needed cpu{other}");
        proc_.request_exit(0);
        drop((mm, proc_));
        let info = process::wait_info(pid).expect("wait for tlbwriter");
        assert_eq!(info, process::ExitInfo { status: 0, killed: None }, "how the writer ended");
        log::info!("{}: {iterations} remote flushes under a user writer, no stale write", tlb::config());
        // The process's page tables may be freed after a grace period (ptfree=rcu).
        super::wait_tables_freed(tlb::counts().tables_queued);
        t.teardown();
    }
}
