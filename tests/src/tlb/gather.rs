//! Gathers: the pending count KSM reads, and page-table freeing after the
//! flush and the `ptfree` synchronisation, with poisoned tables.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::mm::paging::{Level, PageTable, RawEntry};
use kernel::sched;
use kernel::time::now_ns;
use kernel::tlb::{self, Gather, POISON_ENTRY, PtFree, TlbFlush};
use x86_64::structures::paging::PhysFrame;

use super::{TestMm, leaf_entry, page, wait_tables_freed};
use crate::util;

kernel::ktests! {
    fn flush_pending_is_raised_while_a_gather_is_open() {
        let t = TestMm::new();
        let mm = t.mm.clone();
        assert!(!tlb::flush_pending(&mm));
        let g = Gather::new(&mm);
        assert!(tlb::flush_pending(&mm));
        if let Some(other) = util::others().first().copied() {
            let m = mm.clone();
            assert!(sched::spawn_on(other, "reader", move || tlb::flush_pending(&m)).unwrap().join(), "cpu{other} missed it");
        }
        let mut inner = Gather::new(&mm);
        inner.add(TlbFlush::page(&mm, page(0)));
        inner.finish();
        assert!(tlb::flush_pending(&mm), "the outer gather is still open");
        g.finish();
        assert!(!tlb::flush_pending(&mm));
        // Dropped without finish: still lowered, exactly once.
        drop(Gather::new(&mm));
        assert!(!tlb::flush_pending(&mm));
        drop(mm);
        t.teardown();
    }

    fn gathered_tables_are_freed_poisoned_after_the_ptfree_sync() {
        let Some(other) = util::other_cpu() else { return };
        let ptfree = tlb::config().ptfree;
        let mut t = TestMm::new();
        let a = t.data(0, 1);
        let x = page(0);
        t.map(x, a, Level::Pt);
        let mm = t.mm.clone();
        // Detach the whole subtree below the root entry of x: pdpt, pd, pt.
        let pml4e = leaf_entry(&mm, x, Level::Pml4);
        let pdpt = pml4e.load(Ordering::Relaxed).addr();
        let pd = leaf_entry(&mm, x, Level::Pdpt).load(Ordering::Relaxed).addr();
        let pt = leaf_entry(&mm, x, Level::Pd).load(Ordering::Relaxed).addr();
        // A kernel thread (not in the address space) sits in an
        // interrupts-off section, as a lockless walker would.
        let inside = Arc::new(AtomicBool::new(false));
        let enabled_at = Arc::new(AtomicU64::new(0));
        let (i, e) = (inside.clone(), enabled_at.clone());
        let section = sched::spawn_on(other, "walker", move || {
            x86_64::instructions::interrupts::disable();
            i.store(true, Ordering::Release);
            util::spin_ns(50_000_000);
            e.store(now_ns(), Ordering::Release);
            x86_64::instructions::interrupts::enable();
        })
        .unwrap();
        util::wait_for(&inside);
        let freed_before = tlb::counts().tables_freed;
        let mut g = Gather::new(&mm);
        pml4e.swap(RawEntry::EMPTY, Ordering::SeqCst);
        for table in [pt, pd, pdpt] {
            // SAFETY: detached by the swap above; order-0 tables of this space.
            unsafe { g.free_table(PhysFrame::containing_address(table), x) };
        }
        g.finish();
        let returned = now_ns();
        let freed_at_return = tlb::counts().tables_freed - freed_before;
        match ptfree {
            PtFree::Ipi => {
                section.join();
                let enabled = enabled_at.load(Ordering::Acquire);
                assert!(returned >= enabled, "ptfree=ipi: tables freed while cpu{other} had interrupts off");
                assert_eq!(freed_at_return, 3);
            }
            PtFree::Rcu => {
                // The grace period cannot end while the section runs.
                while enabled_at.load(Ordering::Acquire) == 0 {
                    assert_eq!(tlb::counts().tables_freed, freed_before, "ptfree=rcu: freed inside a read-side section");
                    core::hint::spin_loop();
                }
                assert!(returned < enabled_at.load(Ordering::Acquire), "ptfree=rcu: finish() waited for the section");
                section.join();
                wait_tables_freed(freed_before + 3);
            }
        }
        // Freed tables hold the poison (the allocator's free-list node
        // overwrites the first 16 bytes; nothing has reused the frames yet:
        // the other CPUs are idle and this one allocated nothing since).
        for table in [pt, pd, pdpt] {
            // SAFETY: reading a free frame through the direct map (atomics).
            let tbl = unsafe { PageTable::at(table) };
            for i in 2..512 {
                let v = tbl.entry(i).load(Ordering::Relaxed);
                assert_eq!(v.0, POISON_ENTRY, "freed table {table:?} entry {i} not poisoned");
            }
        }
        drop(mm);
        t.teardown();
    }
}
