//! MADV_COLLAPSE: what collapses, what is refused with which errno, and
//! what the range holds afterwards.

use kernel::khugepaged::{self, Collapsed, Control};
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, MmError, advice};
use kernel::mm::page::{self, PinnedPage};
use kernel::mm::PageSize;
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE, pgtable};
use kernel::race::{self, CollapseSwitches};

use super::{check_contents, collapse_no_leaks, mapped_size, populated, word};
use crate::mm::{RW, in_mm, mmap, new_mm, read, translate, write};
use kernel::mm::UserAddr;

fn collapse(mm: &alloc::sync::Arc<kernel::mm::addr_space::AddressSpace>, a: UserAddr) -> Result<(), MmError> {
    m::madvise(mm, a.as_u64(), HUGE_PAGE_SIZE, advice::COLLAPSE)
}

kernel::ktests! {
    fn a_full_range_collapses_into_one_huge_page_with_its_contents() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K));
            let s0 = khugepaged::stats();
            let tables = pgtable::live_tables();
            collapse(&mm, a).expect("MADV_COLLAPSE of 512 small pages");
            let s = khugepaged::stats();
            assert_eq!(s.pages_collapsed - s0.pages_collapsed, 1, "{s:?}");
            assert_eq!(s.madvise_collapsed - s0.madvise_collapsed, 1, "{s:?}");
            assert_eq!(pgtable::live_tables(), tables - 1, "the old pte table was not freed");
            let t = translate(&mm, a).unwrap();
            assert_eq!(t.size, PageSize::Size2M, "not mapped huge after MADV_COLLAPSE");
            let head = page::page_of(t.phys);
            assert!(head.is_large() && head.entire_mapcount() == 1 && head.refcount() == 1, "{head:?}");
            check_contents(&mm, a, |_| true);
            // Writable in place (anon-exclusive).
            in_mm(&mm, move || write(a + 5 * PAGE_SIZE, 7));
            assert_eq!(translate(&mm, a).unwrap().phys, t.phys);
        });
    }

    fn an_empty_range_is_refused_and_stays_empty() {
        collapse_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            let s0 = khugepaged::stats();
            assert_eq!(collapse(&mm, a), Err(MmError::Invalid));
            assert_eq!(mapped_size(&mm, a), None, "an empty range got a mapping");
            assert_eq!(khugepaged::stats().pages_collapsed, s0.pages_collapsed);
        });
    }

    fn a_range_with_a_single_pte_collapses() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(3..4);
            collapse(&mm, a).expect("MADV_COLLAPSE of one page");
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size2M));
            check_contents(&mm, a, |i| i == 3);
        });
    }

    fn an_already_huge_range_is_a_success_that_changes_nothing() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            collapse(&mm, a).unwrap();
            let t = translate(&mm, a).unwrap();
            let s0 = khugepaged::stats();
            collapse(&mm, a).expect("MADV_COLLAPSE of a huge range");
            assert_eq!(khugepaged::collapse_huge_page(&mm, a, Control::Madvise), Ok(Collapsed::AlreadyHuge));
            assert_eq!(translate(&mm, a).unwrap().phys, t.phys, "an already huge range was changed");
            assert_eq!(khugepaged::stats().pages_collapsed, s0.pages_collapsed);
        });
    }

    fn a_range_with_a_pinned_subpage_is_refused_and_the_pin_stays_coherent() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            let va = a + 17 * PAGE_SIZE;
            let before = translate(&mm, va).unwrap();
            let pin = PinnedPage::pin(page::page_of(before.phys));
            let s0 = khugepaged::stats();
            assert_eq!(collapse(&mm, a), Err(MmError::Again), "a pinned subpage must refuse with EAGAIN");
            let s = khugepaged::stats();
            assert_eq!(s.refused_pinned - s0.refused_pinned, 1, "{s:?}");
            let after = translate(&mm, va).unwrap();
            assert_eq!((after.phys, after.leaf, after.size), (before.phys, before.leaf, before.size), "the pinned page's mapping changed");
            // A device write into the pinned frame is seen through the mapping.
            crate::mm::write_phys(pin.phys(), 0xd1a_0017);
            assert_eq!(in_mm(&mm, move || read(va)), 0xd1a_0017, "the pin is not coherent with the mapping");
            drop(pin);
            collapse(&mm, a).expect("MADV_COLLAPSE after the unpin");
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size2M));
            in_mm(&mm, move || {
                for i in 0..512 {
                    let want = if i == 17 { 0xd1a_0017 } else { word(i) };
                    assert_eq!(read(a + i * PAGE_SIZE), want, "page {i} after the collapse (17: the device's data)");
                }
            });
        });
    }

    fn a_pte_mapped_huge_page_collapses_into_a_new_one() {
        collapse_no_leaks(|| {
            // Linux's collapse_full_of_compound: a THP split into ptes by a
            // partial MADV_DONTNEED stays one large folio mapped 511 times.
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&mm, move || {
                for i in 0..512 {
                    write(a + i * PAGE_SIZE, word(i));
                }
            });
            let old = translate(&mm, a).unwrap();
            assert_eq!(old.size, PageSize::Size2M, "no huge page to start from");
            m::madvise(&mm, a.as_u64() + 7 * PAGE_SIZE, PAGE_SIZE, advice::DONTNEED).unwrap();
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K), "the partial MADV_DONTNEED did not split the huge pmd");
            let folio = page::page_of(old.phys);
            assert!(folio.is_large() && folio.refcount() == 511, "{folio:?}");
            // A pin on one subpage of the large folio refuses the whole range.
            let pin = PinnedPage::pin(page::page_of(translate(&mm, a + 3 * PAGE_SIZE).unwrap().phys));
            assert_eq!(collapse(&mm, a), Err(MmError::Again));
            drop(pin);
            collapse(&mm, a).expect("MADV_COLLAPSE of a pte-mapped THP");
            let t = translate(&mm, a).unwrap();
            assert_eq!(t.size, PageSize::Size2M);
            assert_ne!(t.phys, old.phys, "the collapse reused the old folio");
            check_contents(&mm, a, |i| i != 7);
        });
    }

    fn a_gup_reference_refuses_too() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            let r = page::PageRef::new_ref(page::page_of(translate(&mm, a + 100 * PAGE_SIZE).unwrap().phys));
            assert_eq!(collapse(&mm, a), Err(MmError::Again));
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K));
            drop(r);
            collapse(&mm, a).unwrap();
            check_contents(&mm, a, |_| true);
        });
    }

    fn a_locked_page_refuses_with_eagain() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            let p = page::page_of(translate(&mm, a + 9 * PAGE_SIZE).unwrap().phys);
            let lock = p.lock();
            let s0 = khugepaged::stats();
            assert_eq!(collapse(&mm, a), Err(MmError::Again));
            assert_eq!(khugepaged::stats().refused_locked - s0.refused_locked, 1);
            drop(lock);
            collapse(&mm, a).unwrap();
        });
    }

    fn a_partial_munmap_makes_the_range_unsuitable() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            m::munmap(&mm, a.as_u64() + 10 * PAGE_SIZE, PAGE_SIZE).unwrap();
            assert_eq!(collapse(&mm, a), Err(MmError::NoMemory), "a range with a hole is not fully mapped");
            assert_eq!(m::madvise(&mm, a.as_u64(), 10 * PAGE_SIZE, advice::COLLAPSE), Ok(()), "no whole 2 MiB block: nothing to do");
            assert_eq!(khugepaged::collapse_huge_page(&mm, a, Control::Madvise), Err(khugepaged::Refusal::Changed));
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K));
            in_mm(&mm, move || {
                for i in (0..512).filter(|&i| i != 10) {
                    assert_eq!(read(a + i * PAGE_SIZE), word(i));
                }
            });
        });
    }

    fn argument_errors() {
        collapse_no_leaks(|| {
            let (mm, a) = populated(0..512);
            assert_eq!(m::madvise(&mm, a.as_u64() + 1, HUGE_PAGE_SIZE, advice::COLLAPSE), Err(MmError::Invalid), "unaligned start");
            // A zero length does nothing and succeeds, as Linux's madvise.
            assert_eq!(m::madvise(&mm, a.as_u64(), 0, advice::COLLAPSE), Ok(()), "empty length");
            assert_eq!(m::madvise(&mm, a.as_u64() + 1, 0, advice::COLLAPSE), Err(MmError::Invalid), "empty length, unaligned start");
            assert_eq!(m::madvise(&mm, a.as_u64() + HUGE_PAGE_SIZE * 8, HUGE_PAGE_SIZE, advice::COLLAPSE), Err(MmError::NoMemory), "unmapped");
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::NOHUGEPAGE).unwrap();
            assert_eq!(collapse(&mm, a), Err(MmError::Invalid), "MADV_NOHUGEPAGE area");
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K));
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            collapse(&mm, a).unwrap();
        });
    }

    fn cow_after_fork_with_collapse_before_and_after_fork() {
        collapse_no_leaks(|| {
            // Before fork: the huge page is shared, each side's write copies.
            let (parent, a) = populated(0..512);
            collapse(&parent, a).unwrap();
            let child = fork_mm(&parent).expect("fork");
            in_mm(&child, move || write(a, 0xc41d));
            in_mm(&parent, move || write(a + PAGE_SIZE, 0x9a2e));
            assert_eq!(in_mm(&parent, move || read(a)), word(0), "the parent saw the child's write");
            assert_eq!(in_mm(&child, move || read(a + PAGE_SIZE)), word(1), "the child saw the parent's write");
            drop(child);
            // After fork: the parent's ptes are read-only and shared.
            let (parent, b) = populated(0..512);
            let child = fork_mm(&parent).expect("fork");
            assert_eq!(collapse(&parent, b), Err(MmError::Invalid), "only read-only ptes: nothing to collapse (SCAN_PAGE_RO)");
            in_mm(&parent, move || write(b, 0x9a2e));
            collapse(&parent, b).expect("collapse of a range of shared pages");
            assert_eq!(mapped_size(&parent, b), Some(PageSize::Size2M));
            assert_eq!(mapped_size(&child, b), Some(PageSize::Size4K), "the child's mapping was collapsed");
            in_mm(&parent, move || write(b + 2 * PAGE_SIZE, 0x9a2f));
            in_mm(&child, move || write(b + 3 * PAGE_SIZE, 0xc41e));
            in_mm(&parent, move || {
                assert_eq!(read(b), 0x9a2e);
                assert_eq!(read(b + 3 * PAGE_SIZE), word(3), "the parent saw the child's write");
            });
            in_mm(&child, move || {
                assert_eq!(read(b), word(0), "the child saw the parent's write");
                assert_eq!(read(b + 2 * PAGE_SIZE), word(2), "the child saw the parent's write");
                assert_eq!(read(b + 3 * PAGE_SIZE), 0xc41e);
            });
            drop(child);
        });
    }

    fn the_negative_controls_still_collapse_an_idle_range() {
        collapse_no_leaks(|| {
            for s in [
                CollapseSwitches { check_before_clear: true, no_table_sync: false },
                CollapseSwitches { check_before_clear: false, no_table_sync: true },
            ] {
                race::set_collapse_switches(s);
                let (mm, a) = populated(0..512);
                collapse(&mm, a).unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
                check_contents(&mm, a, |_| true);
                let p = page::page_of(translate(&mm, a + PAGE_SIZE).unwrap().phys);
                let pin = PinnedPage::pin(p);
                let (mm2, b) = populated(0..512);
                let q = PinnedPage::pin(page::page_of(translate(&mm2, b).unwrap().phys));
                assert_eq!(collapse(&mm2, b), Err(MmError::Again), "{s:?}: a pinned page was not refused");
                drop((pin, q));
            }
        });
    }

    fn sync_rcu_collapses() {
        collapse_no_leaks(|| {
            race::set_sync_mode(race::SyncMode::Rcu);
            let (mm, a) = populated(0..512);
            let r = collapse(&mm, a);
            race::set_sync_mode(race::SyncMode::None);
            r.expect("collapse with sync=rcu");
            check_contents(&mm, a, |_| true);
        });
    }
}
