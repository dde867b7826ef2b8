//! Linux's own bugs of this family, brought back one switch at a time
//! (linux-protocol.md §3): for each, the same workload with the switch
//! (the bug shows: caught) and without it (safe), deterministically.
//!
//! * D, CVE-2020-29374 (`cow.reuse=`): a child takes a read-only GUP
//!   reference on a page it shares with its parent (vmsplice), unmaps it,
//!   and the parent writes. Reusing the page on one mapping alone
//!   (`mapcount`, before v5.8) hands the parent's write to the child's
//!   reference; `refcount` (2020) and today's anon-exclusive rule copy.
//! * E, fork vs a pin, its early-COW half (`fork.early_cow=off`): a page
//!   pinned for DMA (exclusive to the parent) is shared with the child at
//!   fork; the parent's next write copies it away from the pin, so the
//!   device's later write is invisible to the parent (and lands in the
//!   child's page). With the early COW (v5.9) the child gets a copy at fork
//!   and the parent keeps the pinned page.
//! * K, KSM merging while another CPU holds a stale writable TLB entry
//!   (`ksm.gate=`): a batched writer (mprotect's change_pte_range under a
//!   gather) has made the pte read-only and clean but not flushed yet, with
//!   the mm's flush-pending count raised; another CPU still has the old
//!   writable translation. KSM's gate before 2017 (`write_dirty`) takes the
//!   clean read-only pte as is, makes the page a KSM page, and the other
//!   CPU's next write goes into the KSM page without a fault. With the
//!   2017 gate (`flush_pending`) or today's (`anon_exclusive`) KSM clears
//!   and flushes, and that write faults and copies.
//! * E, fork vs GUP-fast, its seqcount half (`fork.seqcount=off`, with
//!   `gup.recheck=off` in both runs so that the sequence is the only
//!   defence): a GUP-fast pin (FOLL_WRITE) has read the writable pte and
//!   waits (interrupts off, `widen.gup.pre_ref`) until fork has checked
//!   the page for pins and decided to share it; then it pins. Without the
//!   sequence check the pin lands on the page now shared with the child and
//!   the parent's next write copies away from it; with it the pin sees the
//!   sequence changed, drops, and the slow path (after fork) pins the
//!   parent's own copy.
//! * J, read-only pins not coherent with later writes (`unshare=off`): a
//!   process pins a page it shares with its child (after fork) read-only,
//!   then writes it. Unsharing first (v5.19, FAULT_FLAG_UNSHARE) pins an
//!   exclusive copy that the write then reuses, so the pin sees the write;
//!   without it the pin holds the shared page and the write copies away
//!   from it. Both GUP paths (the slow path, and GUP-fast, which leaves such
//!   a page to the slow path).
//! * H, a GUP-fast reference taken on a folio that is being split
//!   (`gup.head_recheck=off`, with `gup.irqs=on` in both runs so that the
//!   split's flush does not wait for the walk, as with a broadcast TLB
//!   invalidation or RCU-freed tables): a GUP-fast pin (FOLL_WRITE) has
//!   read the pte of a tail page of a pte-mapped THP and looked its folio
//!   up, and waits (`widen.gup.pre_ref`) while the THP is split into small
//!   folios (split_huge_pages_pid, Linux's debugfs split_huge_pages); then
//!   it takes its reference. The split put the same pte back, so the pte
//!   re-check passes. Without the head re-check the pin is counted on the
//!   old head, now an unrelated small folio, and the pinned page shows no
//!   pin (folio_maybe_dma_pinned() false: KSM, a collapse or fork would
//!   treat it as unpinned); with it the walker sees the page in a new
//!   folio, gives the reference back and pins the page's own folio.

use kernel::gup::{self, Foll};
use kernel::mm::PAGE_SIZE;
use kernel::mm::fault::{self, CowReuse};
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap as m;

/// Runs `f` with `unshare=` set to `on`, restoring the default.
fn with_unshare<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let set = |unshare: bool| {
        let c = gup::controls();
        gup::set_controls(gup::Controls { unshare, ..c });
    };
    set(on);
    let r = f();
    set(true);
    r
}

/// Bug K's interleaving, forced: returns whether KSM made the page a KSM
/// page and whether the other CPU's later write changed that KSM page.
fn ksm_merge_under_a_deferred_flush(gate: kernel::race::KsmGate) -> Option<(bool, bool)> {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicU32, Ordering};
    use kernel::mm::page::{self, PageFlags, PageRef};
    use kernel::mm::paging::PteFlags;
    use kernel::mm::pgtable;
    use kernel::mm::uaccess::{UserPtr, write_user};
    const X: u64 = 0x5eed_0001;
    const Y: u64 = 0xbad0_0002;
    let cpu = crate::util::other_cpu()?;
    kernel::race::set_ksm_gate(gate);
    let r = assert_no_leaks(|| {
        let mm = new_mm();
        let a = mmap(&mm, PAGE_SIZE, RW);
        in_mm(&mm, move || write(a, X));
        let stage = Arc::new(AtomicU32::new(0));
        let st = stage.clone();
        let writer = kernel::sched::spawn_in(cpu, "stale writer", Some(mm.clone()), move || {
            // A write caches a writable translation of `a` on this CPU.
            write_user(UserPtr(a.as_u64()), &X).expect("first write");
            st.store(1, Ordering::Release);
            let d = kernel::time::Deadline::after_ns(5_000_000_000);
            while st.load(Ordering::Acquire) != 2 {
                assert!(!d.expired(), "the merge never happened");
                core::hint::spin_loop();
            }
            // Through the stale entry if nobody flushed it, else a fault.
            write_user(UserPtr(a.as_u64()), &Y).expect("second write");
        })
        .expect("spawn");
        let d = kernel::time::Deadline::after_ns(5_000_000_000);
        while stage.load(Ordering::Acquire) != 1 {
            assert!(!d.expired(), "cpu{cpu} never wrote");
            core::hint::spin_loop();
        }
        let p = page::page_of(translate(&mm, a).unwrap().phys);
        let held = PageRef::new_ref(p);
        // The batched writer: pending raised, pte read-only and clean, the
        // flush deferred (Linux change_pte_range() under a gather).
        let mut batch = kernel::tlb::Gather::new(mm.tlb());
        let pmd = pgtable::pmd(&mm, a, false).unwrap().expect("pmd");
        let pt = pgtable::pte_table(pmd, false).unwrap().expect("pte table");
        {
            let _ptl = pt.lock();
            pt.entry(a).fetch_clear(PteFlags::WRITABLE | PteFlags::DIRTY, Ordering::AcqRel);
        }
        batch.page(x86_64::VirtAddr::new(a.as_u64()));
        let merged = {
            let _vmas = mm.vmas.read();
            kernel::ksm::merge::try_to_merge_one_page(&mm, a, &held, None).is_ok() && p.has(PageFlags::KSM)
        };
        stage.store(2, Ordering::Release);
        writer.join();
        batch.finish();
        let ksm_page_written = read_phys(p.phys()) == Y;
        drop(held);
        (merged, ksm_page_written)
    });
    kernel::race::set_ksm_gate(kernel::race::KsmGate::AnonExclusive);
    Some(r)
}

/// Bug E's seqcount interleaving, forced: returns whether the pin holds the
/// page shared with the child, and what the parent's mapping shows of the
/// device's later write through the pin.
fn gup_fast_pin_across_fork(seqcount: bool) -> Option<(bool, u64)> {
    use kernel::race::widen::{self, Point, Widening};
    let cpu = crate::util::other_cpu()?;
    let c0 = gup::controls();
    gup::set_controls(gup::Controls { recheck: false, fork_seqcount: seqcount, ..gup::controls() });
    widen::set(Point::GupPreRef, Widening::Wait(Some(Point::WriterPostCheck), 100_000));
    let r = assert_no_leaks(|| {
        let parent = new_mm();
        let a = mmap(&parent, PAGE_SIZE, RW);
        in_mm(&parent, move || write(a, 0xaaaa));
        let pinner = kernel::sched::spawn_in(cpu, "fast pinner", Some(parent.clone()), move || {
            gup::get_user_pages_fast(a, 1, Foll::PIN | Foll::WRITE).expect("DMA pin")
        })
        .expect("spawn");
        // Let the pinner read the pte and start waiting for fork.
        crate::util::spin_ns(20_000_000);
        let child = fork_mm(&parent).expect("fork");
        let pins = pinner.join();
        widen::set(Point::GupPreRef, Widening::None);
        let shared = translate(&child, a).unwrap().phys == pins[0].phys();
        in_mm(&parent, move || write(a, 0xbbbb));
        crate::mm::write_phys(pins[0].phys() + 8u64, 0xd0d0);
        let seen = in_mm(&parent, move || read(a + 8));
        drop(pins);
        drop(child);
        (shared, seen)
    });
    widen::set(Point::GupPreRef, Widening::None);
    gup::set_controls(c0);
    Some(r)
}

/// A DMA pin (FOLL_PIN | FOLL_WRITE) on the parent's page, fork, the parent
/// writes one word, the device writes another through the pin: returns what
/// the parent's mapping shows of the device's word, and whether the child
/// maps the pinned frame.
fn fork_with_a_pinned_page(early_cow: bool) -> (u64, bool) {
    kernel::mm::fork::set_early_cow(early_cow);
    let r = assert_no_leaks(|| {
        let parent = new_mm();
        let a = mmap(&parent, PAGE_SIZE, RW);
        in_mm(&parent, move || write(a, 0xaaaa));
        let pins = gup::get_user_pages(&parent, a, 1, Foll::PIN | Foll::WRITE).expect("DMA pin");
        let child = fork_mm(&parent).expect("fork");
        let child_maps_pinned = translate(&child, a).unwrap().phys == pins[0].phys();
        in_mm(&parent, move || write(a, 0xbbbb));
        // The device completes its write into the pinned frame.
        crate::mm::write_phys(pins[0].phys() + 8u64, 0xd0d0);
        let seen = in_mm(&parent, move || read(a + 8));
        drop(pins);
        drop(child);
        (seen, child_maps_pinned)
    });
    kernel::mm::fork::set_early_cow(true);
    r
}

/// gup_longterm.c / cow.c's "R/O pin on a COW-shared page, then write":
/// returns what the pin sees after the process's write, and whether the
/// pin holds the page shared with the child.
fn ro_pin_on_shared_page_then_write(unshare: bool, fast: bool) -> (u64, bool) {
    with_unshare(unshare, || {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 0xaaaa));
            let child = fork_mm(&parent).expect("fork");
            let shared = translate(&parent, a).unwrap().phys;
            let pins = if fast {
                in_mm(&parent, move || gup::get_user_pages_fast(a, 1, Foll::PIN | Foll::LONGTERM).expect("R/O pin (fast)"))
            } else {
                gup::get_user_pages(&parent, a, 1, Foll::PIN | Foll::LONGTERM).expect("R/O pin (slow)")
            };
            let pinned_shared = pins[0].phys() == shared;
            in_mm(&parent, move || write(a, 0xbbbb));
            let seen = read_phys(pins[0].phys());
            in_mm(&child, move || assert_eq!(read(a), 0xaaaa, "the child sees the parent's write"));
            drop(pins);
            drop(child);
            (seen, pinned_shared)
        })
    })
}

/// What bug H's forced interleaving left.
struct SplitRace {
    /// The pin is counted on the pinned page's own folio.
    on_the_page: bool,
    /// The pin is counted on the old head instead (no longer the page's
    /// folio).
    on_the_old_head: bool,
    /// GUP-fast re-grabs after finding its page in a new folio.
    head_retries: u64,
    /// THPs split.
    splits: u64,
}

/// Bug H's interleaving, forced (see the module docs).
fn gup_fast_pin_across_a_split(head_recheck: bool) -> Option<SplitRace> {
    use kernel::gup::Grabbed;
    use kernel::mm::huge_memory;
    use kernel::mm::mmap::advice;
    use kernel::mm::page;
    use kernel::mm::{HUGE_PAGE_SIZE, PageSize};
    use kernel::race::widen::{self, Point, Widening};
    let cpu = crate::util::other_cpu()?;
    let c0 = gup::controls();
    gup::set_controls(gup::Controls { irqs_off: false, head_recheck, ..gup::controls() });
    widen::set(Point::GupPreRef, Widening::Wait(Some(Point::WriterPostCheck), 100_000));
    // A writer arrival on this CPU: the walker's pause is skipped when the
    // writer side last ran on the walker's own CPU.
    widen::at(Point::WriterPreClear, u64::MAX);
    let r = assert_no_leaks(|| {
        let mm = new_mm();
        let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
        m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).expect("MADV_HUGEPAGE");
        let t = a + 5 * PAGE_SIZE;
        in_mm(&mm, move || write(t, 0x4848));
        assert_eq!(translate(&mm, t).unwrap().size, PageSize::Size2M, "no THP to split");
        // Mapped by ptes (a partial mprotect splits the pmd, not the folio):
        // GUP-fast reads a pte, which the split puts back unchanged.
        m::mprotect(&mm, a.as_u64(), PAGE_SIZE, 1).expect("mprotect");
        m::mprotect(&mm, a.as_u64(), PAGE_SIZE, RW).expect("mprotect");
        let p = page::page_of(translate(&mm, t).unwrap().phys);
        let head = p.folio();
        assert!(p.is_large() && !core::ptr::eq(p, head), "the page is no tail of a THP");
        let (splits0, retries0) = (huge_memory::splits(), gup::fast::head_retries());
        let seen = widen::arrivals(Point::GupPreRef);
        let pinner = kernel::sched::spawn_in(cpu, "fast pinner", Some(mm.clone()), move || {
            gup::get_user_pages_fast(t, 1, Foll::PIN | Foll::WRITE).expect("DMA pin")
        })
        .expect("spawn");
        let deadline = kernel::time::now_ns() + 5_000_000_000;
        while widen::arrivals(Point::GupPreRef) == seen {
            assert!(kernel::time::now_ns() < deadline, "the pinner on cpu{cpu} never reached gup.pre_ref");
            core::hint::spin_loop();
        }
        // The walker has read the pte and looked the folio up: split it.
        let n = huge_memory::split_huge_pages_pid(&mm, a, a + HUGE_PAGE_SIZE);
        assert_eq!((n.split, n.failed), (1, 0), "the THP was not split");
        assert!(!p.is_large() && !head.is_large(), "the split left a large folio");
        // The split is done: let the walker take its reference.
        widen::at(Point::WriterPostCheck, p.pfn());
        let mut pins = pinner.join();
        widen::set(Point::GupPreRef, Widening::None);
        assert_eq!(pins.len(), 1);
        assert_eq!(pins[0].page().pfn(), p.pfn(), "GUP returned another page");
        let on_the_page = p.dma_pins() == 1 && p.maybe_dma_pinned();
        let on_the_old_head = head.dma_pins() == 1;
        let splits = huge_memory::splits() - splits0;
        let head_retries = gup::fast::head_retries() - retries0;
        // Give the pin back where it was counted, so that the accounts
        // balance in both runs (unpinning the page would drop a pin it never
        // had: the caught run's counts are checked above instead).
        match pins.pop() {
            Some(Grabbed::Pin(pin)) if on_the_old_head => {
                let _ = pin.into_page();
                page::unpin_folio(head);
            }
            other => drop(other),
        }
        in_mm(&mm, move || assert_eq!(read(t), 0x4848, "the split lost the page's contents"));
        drop(mm);
        SplitRace { on_the_page, on_the_old_head, head_retries, splits }
    });
    widen::set(Point::GupPreRef, Widening::None);
    gup::set_controls(c0);
    Some(r)
}

use crate::mm::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, read_phys, translate, write};

/// Runs `f` with `cow.reuse=rule`, restoring the default.
fn with_cow_reuse<R>(rule: CowReuse, f: impl FnOnce() -> R) -> R {
    fault::set_cow_reuse(rule);
    let r = f();
    fault::set_cow_reuse(CowReuse::AnonExclusive);
    r
}

/// cow.c's "vmsplice() + unmap in the child; modify in the parent": returns
/// what the child's reference sees after the parent's write, and whether
/// the parent kept the page (reused it) or copied it.
fn vmsplice_unmap_then_parent_writes(rule: CowReuse) -> (u64, bool) {
    with_cow_reuse(rule, || {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 0xaaaa));
            let child = fork_mm(&parent).expect("fork");
            let shared = translate(&parent, a).unwrap().phys;
            // The child's read-only GUP reference (vmsplice: FOLL_GET, no
            // FOLL_WRITE, no pin), then the child unmaps the page.
            let refs = gup::get_user_pages(&child, a, 1, Foll::GET).expect("R/O GUP in the child");
            assert_eq!(refs[0].phys(), shared, "the child's reference is not on the shared page");
            m::munmap(&child, a.as_u64(), PAGE_SIZE).expect("munmap in the child");
            in_mm(&parent, move || {
                write(a, 0xbbbb);
                assert_eq!(read(a), 0xbbbb);
            });
            let reused = translate(&parent, a).unwrap().phys == shared;
            let seen = read_phys(refs[0].phys());
            drop(refs);
            drop(child);
            (seen, reused)
        })
    })
}

kernel::ktests! {
    fn d_cve_2020_29374_reuse_by_mapcount_leaks_the_parents_write_to_the_child() {
        let (seen, reused) = vmsplice_unmap_then_parent_writes(CowReuse::Mapcount);
        assert!(reused, "cow.reuse=mapcount: the parent's single mapping must reuse the page");
        assert_eq!(seen, 0xbbbb, "cow.reuse=mapcount: the child's reference must see the parent's later write (the bug)");
    }

    fn d_reuse_by_refcount_copies_and_the_child_keeps_its_data() {
        let (seen, reused) = vmsplice_unmap_then_parent_writes(CowReuse::Refcount);
        assert!(!reused, "cow.reuse=refcount: the extra reference must make the parent copy");
        assert_eq!(seen, 0xaaaa, "cow.reuse=refcount: the child's reference saw the parent's write");
    }

    fn e_without_early_cow_the_parent_loses_the_dma_into_its_pinned_page() {
        let (seen, child_maps_pinned) = fork_with_a_pinned_page(false);
        assert!(child_maps_pinned, "fork.early_cow=off: the child must share the pinned page");
        assert_ne!(seen, 0xd0d0, "fork.early_cow=off: the parent must miss the device's write (the bug)");
    }

    fn e_with_early_cow_the_parent_keeps_its_pinned_page() {
        let (seen, child_maps_pinned) = fork_with_a_pinned_page(true);
        assert!(!child_maps_pinned, "fork.early_cow=on: the child must get a copy at fork");
        assert_eq!(seen, 0xd0d0, "fork.early_cow=on: the parent does not see the device's write");
    }

    fn k_the_2016_ksm_gate_merges_under_a_pending_flush_and_a_stale_entry_writes_the_ksm_page() {
        let Some((merged, written)) = ksm_merge_under_a_deferred_flush(kernel::race::KsmGate::WriteDirty) else { return };
        assert!(merged, "ksm.gate=write_dirty: the clean read-only pte must be merged as is");
        assert!(written, "ksm.gate=write_dirty: the stale writable entry must write the KSM page (the bug)");
    }

    fn k_the_2017_and_todays_ksm_gates_flush_first_and_the_write_copies() {
        for gate in [kernel::race::KsmGate::FlushPending, kernel::race::KsmGate::AnonExclusive] {
            let Some((merged, written)) = ksm_merge_under_a_deferred_flush(gate) else { return };
            assert!(merged, "ksm.gate={gate:?}: the page must still merge");
            assert!(!written, "ksm.gate={gate:?}: a write reached the KSM page without a fault");
        }
    }

    fn e_without_the_seqcount_a_gup_fast_pin_lands_on_the_page_fork_shares() {
        let Some((shared, seen)) = gup_fast_pin_across_fork(false) else { return };
        assert!(shared, "fork.seqcount=off: the pin must hold the page fork shared with the child");
        assert_ne!(seen, 0xd0d0, "fork.seqcount=off: the parent must miss the device's write (the bug)");
    }

    fn e_with_the_seqcount_the_pin_retries_after_fork_on_the_parents_page() {
        let Some((shared, seen)) = gup_fast_pin_across_fork(true) else { return };
        assert!(!shared, "fork.seqcount=on: the pin must not hold the shared page");
        assert_eq!(seen, 0xd0d0, "fork.seqcount=on: the parent does not see the device's write");
    }

    fn j_without_unshare_a_read_only_pin_misses_the_processs_later_write() {
        for fast in [false, true] {
            let (seen, shared) = ro_pin_on_shared_page_then_write(false, fast);
            assert!(shared, "unshare=off (fast={fast}): the pin must hold the page shared with the child");
            assert_eq!(seen, 0xaaaa, "unshare=off (fast={fast}): the pin must miss the write (the bug)");
        }
    }

    fn j_with_unshare_a_read_only_pin_sees_the_processs_later_write() {
        for fast in [false, true] {
            let (seen, shared) = ro_pin_on_shared_page_then_write(true, fast);
            assert!(!shared, "unshare=on (fast={fast}): the pin must hold an unshared copy");
            assert_eq!(seen, 0xbbbb, "unshare=on (fast={fast}): the pin does not see the process's write");
        }
    }

    fn h_without_the_head_recheck_a_gup_fast_pin_lands_on_the_old_head_of_a_split_thp() {
        let Some(r) = gup_fast_pin_across_a_split(false) else { return };
        assert_eq!(r.splits, 1, "gup.head_recheck=off: the THP must be split under the walker");
        assert!(r.on_the_old_head, "gup.head_recheck=off: the pin must be counted on the old head (the bug)");
        assert!(!r.on_the_page, "gup.head_recheck=off: the pinned page must show no pin (the bug)");
        assert_eq!(r.head_retries, 0, "gup.head_recheck=off: nothing re-checks the head");
    }

    fn h_with_the_head_recheck_the_pin_retries_on_the_pages_own_folio() {
        let Some(r) = gup_fast_pin_across_a_split(true) else { return };
        assert_eq!(r.splits, 1, "gup.head_recheck=on: the THP must be split under the walker");
        assert!(r.head_retries >= 1, "gup.head_recheck=on: the walker must have met the split (a re-grab)");
        assert!(r.on_the_page, "gup.head_recheck=on: the pin is not on the pinned page's folio");
        assert!(!r.on_the_old_head, "gup.head_recheck=on: the old head holds the pin");
    }

    fn d_todays_anon_exclusive_rule_copies_and_the_child_keeps_its_data() {
        let (seen, reused) = vmsplice_unmap_then_parent_writes(CowReuse::AnonExclusive);
        assert!(!reused, "cow.reuse=anon_exclusive: the extra reference must make the parent copy");
        assert_eq!(seen, 0xaaaa, "cow.reuse=anon_exclusive: the child's reference saw the parent's write");
    }
}
