//! Gathers: the pending count KSM reads, and page-table freeing after the
//! flush and the `ptfree` synchronisation, with poisoned tables.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::mm::page::{self, PageRef};
use kernel::mm::paging::{Level, PageSize, PageTable, RawEntry};
use kernel::sched;
use kernel::time::now_ns;
use kernel::tlb::{self, FlushMode, Gather, POISON_ENTRY, PtFree, TlbFlush};
use kernel::mm::pgtable::DetachedTable;

use super::{TestMm, leaf_entry, page, wait_tables_freed};
use crate::util;

kernel::ktests! {
    fn flush_pending_is_raised_while_a_gather_is_open() {
        let t = TestMm::new();
        let mm = t.mm.clone();
        assert!(!tlb::flush_pending(mm.tlb()));
        let g = Gather::new(mm.tlb());
        assert!(tlb::flush_pending(mm.tlb()));
        if let Some(other) = util::others().first().copied() {
            let m = mm.clone();
            assert!(sched::spawn_on(other, "reader", move || tlb::flush_pending(m.tlb())).unwrap().join(), "cpu{other} missed it");
        }
        let mut inner = Gather::new(mm.tlb());
        inner.add(TlbFlush::page(mm.tlb(), page(0)));
        inner.finish();
        assert!(tlb::flush_pending(mm.tlb()), "the outer gather is still open");
        g.finish();
        assert!(!tlb::flush_pending(mm.tlb()));
        // Dropped without finish: still lowered, exactly once.
        drop(Gather::new(mm.tlb()));
        assert!(!tlb::flush_pending(mm.tlb()));
        drop(mm);
        t.teardown();
    }

    fn gathered_tables_are_freed_poisoned_after_the_ptfree_sync() {
        let Some(other) = util::other_cpu() else { return };
        let ptfree = tlb::config().ptfree;
        let mut t = TestMm::new();
        let a = t.data(0, 1);
        let x = page(0);
        t.map(x, a, PageSize::Size4K);
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
        let mut g = Gather::new(mm.tlb());
        pml4e.swap(RawEntry::EMPTY, Ordering::SeqCst);
        for table in [pt, pd, pdpt] {
            // SAFETY: detached by the swap above (a detached subtree);
            // order-0 tables of this space, each handed over once.
            g.free_table(unsafe { DetachedTable::new(table) }, x);
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
                assert_eq!(v.bits(), POISON_ENTRY, "freed table {table:?} entry {i} not poisoned");
            }
        }
        drop(mm);
        t.teardown();
    }

    fn a_gather_flushes_then_frees_tables_then_drops_references_then_lowers_pending() {
        let Some(other) = util::other_cpu() else { return };
        let cfg = tlb::config();
        // Whether the flush itself waits for an interrupts-off CPU of the
        // address space, and whether the table free does (ptfree=ipi's sync).
        let flush_waits = cfg.mode == FlushMode::Ipi && !cfg.nowait;
        let sync_waits = cfg.ptfree == PtFree::Ipi;
        let mut t = TestMm::new();
        let a = t.data(0, 1);
        let x = page(0);
        t.map(x, a, PageSize::Size4K);
        let mm = t.mm.clone();
        let pml4e = leaf_entry(&mm, x, Level::Pml4);
        let pdpt = pml4e.load(Ordering::Relaxed).addr();
        let pd = leaf_entry(&mm, x, Level::Pdpt).load(Ordering::Relaxed).addr();
        let pt = leaf_entry(&mm, x, Level::Pd).load(Ordering::Relaxed).addr();
        // A folio whose second reference the gather drops.
        let folio = page::alloc_folio(0, false).expect("folio");
        let p = folio.page();
        let released = PageRef::new_ref(p);
        assert_eq!(p.refcount(), 2);
        let freed_before = tlb::counts().tables_freed;
        // The gather is open (pending raised) before the watcher looks.
        let mut g = Gather::new(mm.tlb());
        pml4e.swap(RawEntry::EMPTY, Ordering::SeqCst);
        for table in [pt, pd, pdpt] {
            // SAFETY: detached by the swap above (a detached subtree);
            // order-0 tables of this space, each handed over once.
            g.free_table(unsafe { DetachedTable::new(table) }, x);
        }
        g.page(x);
        g.release(released);
        // A CPU of the address space sits with interrupts off while the
        // gather finishes, watching the three effects; then, with interrupts
        // on, it waits for the pending count to drop and checks what must be
        // visible by then.
        let inside = Arc::new(AtomicBool::new(false));
        let i = inside.clone();
        let m = mm.clone();
        let watcher = sched::spawn_in(other, "irqs-off", Some(mm.clone()), move || {
            x86_64::instructions::interrupts::disable();
            i.store(true, Ordering::Release);
            let end = now_ns() + 50_000_000;
            let (mut ref_dropped, mut table_freed, mut pending_lowered) = (false, false, false);
            while now_ns() < end {
                ref_dropped |= p.refcount() != 2;
                table_freed |= tlb::counts().tables_freed != freed_before;
                pending_lowered |= !tlb::flush_pending(m.tlb());
            }
            x86_64::instructions::interrupts::enable();
            // The count drops last: whoever sees it low sees the rest done.
            let deadline = now_ns() + 5_000_000_000;
            while tlb::flush_pending(m.tlb()) {
                assert!(now_ns() < deadline, "the gather's pending count never dropped");
                core::hint::spin_loop();
            }
            let refcount_at_lowered = p.refcount();
            let freed_at_lowered = tlb::counts().tables_freed - freed_before;
            (ref_dropped, table_freed, pending_lowered, refcount_at_lowered, freed_at_lowered)
        })
        .unwrap();
        util::wait_for(&inside);
        g.finish();
        assert_eq!(p.refcount(), 1, "finish() returned without dropping the released reference");
        assert!(!tlb::flush_pending(mm.tlb()), "finish() returned with the count raised");
        let (ref_dropped, table_freed, pending_lowered, refcount_at_lowered, freed_at_lowered) = watcher.join();
        if flush_waits || sync_waits {
            // Nothing after the flush (and the ptfree sync) happened while
            // cpu{other} held them back.
            assert!(!ref_dropped, "{cfg}: the reference was dropped before the flush/sync completed");
            assert!(!pending_lowered, "{cfg}: the pending count dropped before the flush/sync completed");
        }
        // ptfree=ipi: its sync waits for cpu{other}; rcu: the interrupts-off
        // section holds the grace period off.
        assert!(!table_freed, "{cfg}: a table was freed while cpu{other} had interrupts off");
        assert_eq!(refcount_at_lowered, 1, "{cfg}: the pending count dropped before the reference");
        if sync_waits {
            assert_eq!(freed_at_lowered, 3, "{cfg}: the pending count dropped before the tables were freed");
        } else {
            wait_tables_freed(freed_before + 3);
        }
        drop(folio);
        drop(mm);
        t.teardown();
    }

}
