//! Flushes on the initiating CPU: a remapped page is seen only after the
//! flush; the ceiling decides between INVLPG per page and a whole flush; 2 MiB
//! leaves are flushed with one INVLPG each.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use kernel::mm::paging::{self, Level, PageSize, RawEntry};
use kernel::mm::{page, pgtable};
use kernel::sched;
use kernel::smp;
use kernel::tlb::{self, TlbFlush};
use x86_64::VirtAddr;

use super::{TestMm, leaf_entry, page, pte, read_user, user_flags};

/// Maps `n` pages to frames marked `1000 + i`, then (in a thread on this CPU
/// in the address space) reads them all, remaps each to a frame marked
/// `2000 + i`, flushes with `flush`, and checks every read sees the new frame.
/// Returns the address space's counters' change over the flush.
fn remap_and_flush(n: u64, flush: fn(&kernel::mm::addr_space::AddressSpace, u64)) -> tlb::TlbCounts {
    let mut t = TestMm::new();
    let mut new = Vec::new();
    for i in 0..n {
        let a = t.data(0, 1000 + i);
        t.map(page(i), a, PageSize::Size4K);
        new.push(t.data(0, 2000 + i));
    }
    let mm = t.mm.clone();
    let (before, after) = sched::spawn_in(smp::cpu_index(), "local", Some(mm.clone()), move || {
        for i in 0..n {
            assert_eq!(read_user(page(i)), 1000 + i, "page {i} not mapped as set up");
        }
        for (i, pa) in new.iter().enumerate() {
            let old = pte(&mm, page(i as u64)).swap(RawEntry::new(*pa, user_flags()), Ordering::SeqCst);
            assert!(old.is_present());
        }
        let before = tlb::mm_counts(mm.tlb());
        flush(&mm, n);
        let after = tlb::mm_counts(mm.tlb());
        for i in 0..n {
            let v = read_user(page(i));
            assert_eq!(v, 2000 + i, "page {i} still reads the old frame after the flush (stale TLB entry)");
        }
        (before, after)
    })
    .unwrap()
    .join();
    t.teardown();
    tlb::TlbCounts {
        flushes: after.flushes - before.flushes,
        local_invlpg_pages: after.local_invlpg_pages - before.local_invlpg_pages,
        local_full_flushes: after.local_full_flushes - before.local_full_flushes,
        remote_requests: after.remote_requests - before.remote_requests,
        remote_targets: after.remote_targets - before.remote_targets,
        ..Default::default()
    }
}

kernel::ktests! {
    fn a_remapped_page_is_seen_after_flush_page() {
        let d = remap_and_flush(1, |mm, _| tlb::flush_tlb_page(mm.tlb(), page(0)));
        assert_eq!((d.flushes, d.local_invlpg_pages, d.local_full_flushes), (1, 1, 0), "{d:?}");
    }

    fn a_token_flushes_and_merged_tokens_cover_both_pages() {
        let d = remap_and_flush(2, |mm, _| TlbFlush::page(mm.tlb(), page(0)).merge(TlbFlush::page(mm.tlb(), page(1))).flush());
        assert_eq!((d.flushes, d.local_invlpg_pages, d.local_full_flushes), (1, 2, 0), "{d:?}");
    }

    fn ranges_up_to_the_ceiling_use_invlpg_per_page() {
        let c = tlb::config().ceiling;
        if c > 512 {
            kernel::testing::skip("tlb.ceiling above 512: too many frames for this test");
            return;
        }
        let d = remap_and_flush(c, |mm, n| tlb::flush_tlb_mm_range(mm.tlb(), page(0), page(n), PageSize::Size4K));
        assert_eq!((d.local_invlpg_pages, d.local_full_flushes), (c, 0), "ceiling {c}: {d:?}");
    }

    fn a_range_beyond_the_ceiling_is_flushed_whole() {
        let c = tlb::config().ceiling;
        if c > 512 {
            kernel::testing::skip("tlb.ceiling above 512: too many frames for this test");
            return;
        }
        let d = remap_and_flush(c + 1, |mm, n| tlb::flush_tlb_mm_range(mm.tlb(), page(0), page(n), PageSize::Size4K));
        assert_eq!((d.local_invlpg_pages, d.local_full_flushes), (0, 1), "ceiling {c}: {d:?}");
    }

    fn a_2mib_leaf_is_flushed_with_one_invlpg() {
        let mut t = TestMm::new();
        let a = t.data(9, 0xa);
        let b = t.data(9, 0xb);
        let x = VirtAddr::new(super::USER_BASE);
        t.map(x, a, PageSize::Size2M);
        // A marker in the middle of each huge page too.
        super::write_phys(a + 0x10_0000u64, 0xa1);
        super::write_phys(b + 0x10_0000u64, 0xb1);
        let mm = t.mm.clone();
        let (invlpg, full) = sched::spawn_in(smp::cpu_index(), "huge", Some(mm.clone()), move || {
            assert_eq!((read_user(x), read_user(x + 0x10_0000u64)), (0xa, 0xa1));
            let flags = user_flags() | kernel::mm::paging::PteFlags::HUGE;
            leaf_entry(&mm, x, Level::Pd).swap(RawEntry::new(b, flags), Ordering::SeqCst);
            let before = tlb::mm_counts(mm.tlb());
            TlbFlush::huge(mm.tlb(), x).flush();
            let after = tlb::mm_counts(mm.tlb());
            assert_eq!((read_user(x), read_user(x + 0x10_0000u64)), (0xb, 0xb1), "stale 2 MiB translation");
            (after.local_invlpg_pages - before.local_invlpg_pages, after.local_full_flushes - before.local_full_flushes)
        })
        .unwrap()
        .join();
        assert_eq!((invlpg, full), (1, 0));
        t.teardown();
    }

    fn a_pmd_collapse_flush_is_a_whole_flush() {
        let d = remap_and_flush(3, |mm, _| TlbFlush::pmd_collapse(mm.tlb(), page(0)).flush());
        assert_eq!((d.local_invlpg_pages, d.local_full_flushes), (0, 1), "{d:?}");
    }

    fn pmdp_collapse_flush_clears_the_pmd_and_owes_a_whole_flush() {
        let mut t = TestMm::new();
        for i in 0..3 {
            let a = t.data(0, 1000 + i);
            t.map(page(i), a, PageSize::Size4K);
        }
        let mm = t.mm.clone();
        let (old, table, bounds, d) = sched::spawn_in(smp::cpu_index(), "collapse", Some(mm.clone()), move || {
            for i in 0..3 {
                assert_eq!(read_user(page(i)), 1000 + i);
            }
            // The test's tables come from `paging::map` (not marked as user
            // page tables), so the pmd is located by hand.
            let pd = leaf_entry(&mm, page(0), Level::Pdpt).load(Ordering::Relaxed).addr();
            let pmd = pgtable::Pmd { entry: leaf_entry(&mm, page(0), Level::Pd), table: page::page_of(pd) };
            let table = pmd.get().addr();
            // No pmd lock: these tables are not marked as user page tables
            // (no ptl), and nothing else changes this test's address space.
            let (detached, flush) =
                pgtable::pmdp_collapse_flush(&mm, pmd, kernel::mm::UserAddr::new(page(0).as_u64()).expect("a user address")).expect("the pmd points to a pte table");
            let old = detached.pmd_value();
            let bounds = flush.bounds();
            assert_eq!(pmd.get(), RawEntry::EMPTY, "the pmd was not cleared");
            let before = tlb::mm_counts(mm.tlb());
            flush.flush();
            let after = tlb::mm_counts(mm.tlb());
            assert!(paging::translate(mm.root(), page(1)).is_none(), "still translated after the collapse clear");
            // Put the table back for the teardown (collapse's rollback).
            pgtable::pmd_populate(pmd, detached);
            let d = (after.local_invlpg_pages - before.local_invlpg_pages, after.local_full_flushes - before.local_full_flushes);
            (old, table, bounds, d)
        })
        .unwrap()
        .join();
        assert!(old.is_present() && !old.is_huge(), "old pmd {old:?} is not a table entry");
        assert_eq!(old.addr(), table);
        assert_eq!(bounds, (page(0), page(0) + (2u64 << 20), PageSize::Size4K));
        assert_eq!(d, (0, 1), "512 strides are beyond the ceiling: a whole flush");
        t.teardown();
    }

    fn a_kernel_range_flush_reaches_every_cpu() {
        let before = tlb::counts();
        let heap = VirtAddr::new(kernel::mm::layout::HEAP_START);
        tlb::flush_tlb_kernel_range(heap, heap + 4096u64);
        let after = tlb::counts();
        let others = smp::online_count() as u64 - 1;
        assert_eq!(after.local_invlpg_pages - before.local_invlpg_pages, 1);
        assert_eq!(after.remote_targets - before.remote_targets, others);
        // Every target ran the handler before the flush returned.
        assert!(after.remote_handled - before.remote_handled >= others);
    }
}
