//! Faults and page tables: demand-zero at 4 KiB and 2 MiB, THP split by a
//! partial munmap, mprotect and MADV_DONTNEED, the split of a THP's folio
//! into small folios, protection faults, munmap freeing the page tables of
//! the range, and teardown.

use kernel::mm::fault::{self, Access, AccessKind, FaultError};
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::{self, PageFlags};
use kernel::mm::paging::{PageSize, PteFlags};
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use x86_64::VirtAddr;

use super::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, translate, write};
use kernel::mm::UserAddr;

kernel::ktests! {
    fn a_4k_fault_maps_a_zeroed_exclusive_page() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 8 * PAGE_SIZE, RW);
            assert!(translate(&mm, a).is_none(), "mapped before the first touch");
            let m2 = mm.clone();
            in_mm(&mm, move || {
                assert_eq!(read(a + 8), 0);
                write(a + 16, 0x1234);
                assert_eq!(read(a + 16), 0x1234);
                let _ = m2;
            });
            let t = translate(&mm, a).expect("mapped");
            assert_eq!(t.size, PageSize::Size4K);
            assert!(t.leaf.flags().contains(PteFlags::USER | PteFlags::WRITABLE | PteFlags::NO_EXECUTE));
            let p = page::page_of(t.phys);
            assert!(p.has(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE));
            assert_eq!((p.refcount(), p.mapcount()), (1, 1));
            assert_eq!(super::read_phys(t.phys + 16u64), 0x1234);
            assert_eq!(mm.rss(), 1);
            assert!(translate(&mm, a + PAGE_SIZE).is_none(), "a neighbour was mapped too");
        });
    }

    fn table_entries_are_born_accessed_so_the_hardware_never_writes_them() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, PAGE_SIZE, RW);
            let m2 = mm.clone();
            let (before, after) = in_mm(&mm, move || {
                // The fault handler installs the tables and the pte without
                // the CPU walking them for `a`.
                fault::handle(VirtAddr::new(a.as_u64()), Access { kind: AccessKind::Write, user: false }).expect("fault");
                let pmd = kernel::mm::pgtable::pmd(&m2, a, false).unwrap().expect("no pmd after the fault");
                let before = pmd.get();
                // The CPU walks the tables now; it sets ACCESSED in every
                // entry it passes that lacks it.
                kernel::mm::uaccess::write_user(kernel::mm::uaccess::UserPtr(a.as_u64()), &7u64).expect("write_user");
                (before, pmd.get())
            });
            assert!(before.flags().contains(PteFlags::ACCESSED), "a table entry without ACCESSED: {before:?}");
            assert_eq!(before, after, "the hardware walk changed the pmd (GUP-fast's re-check would bail out)");
        });
    }

    fn a_2m_fault_maps_a_huge_pmd_where_the_area_asks_for_it() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 2 * HUGE_PAGE_SIZE, RW);
            assert!(a.is_aligned(kernel::mm::PageSize::Size2M), "2 MiB mappings are 2 MiB aligned");
            m::madvise(&mm, a.as_u64(), 2 * HUGE_PAGE_SIZE, advice::HUGEPAGE).expect("madvise");
            in_mm(&mm, move || write(a + 5 * PAGE_SIZE, 7));
            let t = translate(&mm, a).expect("mapped");
            assert_eq!(t.size, PageSize::Size2M, "not a huge mapping");
            assert_eq!(mm.rss(), 512);
            let head = page::page_of(t.phys);
            assert_eq!((head.order(), head.entire_mapcount(), head.refcount()), (9, 1, 1));
            // Without the advice: 4 KiB pages.
            let b = mmap(&mm, 2 * HUGE_PAGE_SIZE, RW);
            in_mm(&mm, move || write(b, 1));
            assert_eq!(translate(&mm, b).expect("mapped").size, PageSize::Size4K);
        });
    }

    fn a_partial_munmap_splits_a_huge_pmd_and_keeps_the_rest() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&mm, move || {
                for i in 0..512 {
                    write(a + i * PAGE_SIZE, i);
                }
            });
            let head = translate(&mm, a).unwrap().phys;
            m::munmap(&mm, a.as_u64() + 10 * PAGE_SIZE, 3 * PAGE_SIZE).expect("munmap");
            for i in 0..512u64 {
                let t = translate(&mm, a + i * PAGE_SIZE);
                if (10..13).contains(&i) {
                    assert!(t.is_none(), "page {i} still mapped");
                } else {
                    let t = t.expect("lost a page");
                    assert_eq!(t.size, PageSize::Size4K);
                    assert_eq!(t.phys, head + i * PAGE_SIZE, "split moved page {i}");
                    assert_eq!(super::read_phys(t.phys), i);
                }
            }
            let h = page::page_of(head);
            assert_eq!((h.entire_mapcount(), h.refcount()), (0, 509));
            assert_eq!(mm.rss(), 509);
            // The folio is freed when the last page goes.
            m::munmap(&mm, a.as_u64(), HUGE_PAGE_SIZE).unwrap();
            assert_eq!(mm.rss(), 0);
        });
    }

    fn mprotect_and_dontneed_split_partially_covered_huge_pmds() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&mm, move || write(a, 1));
            m::mprotect(&mm, a.as_u64() + PAGE_SIZE, PAGE_SIZE, 1).expect("mprotect");
            let t = translate(&mm, a + PAGE_SIZE).unwrap();
            assert_eq!(t.size, PageSize::Size4K);
            assert!(!t.leaf.flags().contains(PteFlags::WRITABLE));
            assert!(translate(&mm, a).unwrap().leaf.flags().contains(PteFlags::WRITABLE));
            m::madvise(&mm, a.as_u64() + 2 * PAGE_SIZE, PAGE_SIZE, advice::DONTNEED).expect("dontneed");
            assert!(translate(&mm, a + 2 * PAGE_SIZE).is_none());
            // DONTNEED'd memory reads back as zeroes.
            in_mm(&mm, move || assert_eq!(read(a + 2 * PAGE_SIZE), 0));
        });
    }

    fn whole_huge_pmds_are_changed_without_splitting() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&mm, move || write(a, 1));
            m::mprotect(&mm, a.as_u64(), HUGE_PAGE_SIZE, 1).unwrap();
            let t = translate(&mm, a).unwrap();
            assert_eq!(t.size, PageSize::Size2M);
            assert!(!t.leaf.flags().contains(PteFlags::WRITABLE));
            // Writable again, and exclusive: the write reuses the huge page.
            m::mprotect(&mm, a.as_u64(), HUGE_PAGE_SIZE, RW).unwrap();
            in_mm(&mm, move || write(a + 8, 2));
            assert_eq!(translate(&mm, a).unwrap().phys, t.phys);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::DONTNEED).unwrap();
            assert_eq!(mm.rss(), 0);
        });
    }

    fn protection_faults_are_refused() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let ro = mmap(&mm, PAGE_SIZE, 1);
            let none = mmap(&mm, PAGE_SIZE, 0);
            let rw = mmap(&mm, PAGE_SIZE, RW);
            in_mm(&mm, move || {
                let f = |a: UserAddr, kind| fault::handle(VirtAddr::new(a.as_u64()), Access { kind, user: true });
                assert_eq!(f(ro, AccessKind::Write), Err(FaultError::Protection));
                assert_eq!(f(ro, AccessKind::Read), Ok(()));
                assert_eq!(f(none, AccessKind::Read), Err(FaultError::Protection));
                assert_eq!(f(rw, AccessKind::Exec), Err(FaultError::Protection));
                assert_eq!(f(rw + PAGE_SIZE * 100, AccessKind::Read), Err(FaultError::NotMapped));
                assert_eq!(f(UserAddr::ZERO, AccessKind::Read), Err(FaultError::NotMapped));
            });
            // PROT_NONE on a mapped page keeps the page but refuses access.
            in_mm(&mm, move || write(rw, 5));
            m::mprotect(&mm, rw.as_u64(), PAGE_SIZE, 0).unwrap();
            let t = kernel::mm::paging::translate(mm.root(), VirtAddr::new(rw.as_u64()));
            assert!(t.is_none(), "a PROT_NONE page is still present");
            assert_eq!(mm.rss(), 2);
            in_mm(&mm, move || {
                assert_eq!(fault::handle(VirtAddr::new(rw.as_u64()), Access { kind: AccessKind::Read, user: true }), Err(FaultError::Protection));
            });
            m::mprotect(&mm, rw.as_u64(), PAGE_SIZE, RW).unwrap();
            in_mm(&mm, move || assert_eq!(read(rw), 5, "PROT_NONE lost the contents"));
        });
    }

    fn dropping_an_address_space_frees_pages_and_tables() {
        let before = super::accounts();
        {
            let mm = new_mm();
            let a = mmap(&mm, 4 * HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&mm, move || {
                for i in 0..64 {
                    write(a + i * 32 * PAGE_SIZE, i);
                }
            });
            assert!(super::accounts().tables > before.tables);
            assert!(mm.rss() > 512);
        }
        super::release_lazy_mms();
        assert_eq!(super::accounts(), before);
    }
    fn split_huge_page_makes_512_small_folios_and_refuses_a_pinned_thp() {
        use kernel::gup::{self, Foll};
        use kernel::mm::huge_memory::{self, SplitCount};
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&mm, move || {
                for i in [0u64, 7, 300, 511] {
                    write(a + i * PAGE_SIZE, 0x5000 + i);
                }
            });
            let t = translate(&mm, a).unwrap();
            assert_eq!(t.size, PageSize::Size2M, "no THP");
            let head = page::page_of(t.phys);
            // A pin refuses the split (can_split_folio(): EAGAIN in Linux).
            let pins = gup::get_user_pages(&mm, a + 7 * PAGE_SIZE, 1, Foll::PIN | Foll::WRITE).expect("pin");
            let failed0 = huge_memory::split_failures();
            let n = huge_memory::split_huge_pages_pid(&mm, a, a + HUGE_PAGE_SIZE);
            assert_eq!(n, SplitCount { split: 0, failed: 1 }, "a pinned THP was split");
            assert_eq!(huge_memory::split_failures(), failed0 + 1);
            assert!(head.is_large() && head.pincount() == 1, "a refused split changed the folio");
            assert_eq!(translate(&mm, a + 7 * PAGE_SIZE).unwrap().size, PageSize::Size4K, "the pmd is split first");
            drop(pins);
            // Half of it unmapped: those pages are freed by the split.
            m::munmap(&mm, a.as_u64() + 256 * PAGE_SIZE, 128 * PAGE_SIZE).expect("munmap");
            let (folios0, splits0) = (page::live_folios(), huge_memory::splits());
            let n = huge_memory::split_huge_pages_pid(&mm, a, a + HUGE_PAGE_SIZE);
            assert_eq!(n, SplitCount { split: 1, failed: 0 });
            assert_eq!(huge_memory::splits(), splits0 + 1);
            // One large folio became the 384 still mapped small ones.
            assert_eq!(page::live_folios(), folios0 + 383, "the unmapped pages were not freed");
            for i in [0u64, 7, 255, 384, 511] {
                let p = page::page_of(translate(&mm, a + i * PAGE_SIZE).unwrap().phys);
                assert!(!p.is_large() && p.has(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE), "page {i}: {p:?}");
                assert_eq!((p.refcount(), p.mapcount(), p.order()), (1, 1, 0), "page {i}: {p:?}");
            }
            assert!(translate(&mm, a + 300 * PAGE_SIZE).is_none());
            in_mm(&mm, move || {
                for i in [0u64, 7, 511] {
                    assert_eq!(read(a + i * PAGE_SIZE), 0x5000 + i, "page {i} lost its contents");
                }
                assert_eq!(read(a + 8 * PAGE_SIZE), 0);
                // Each page is written on its own now.
                write(a + 8 * PAGE_SIZE, 9);
            });
            // Nothing large is left to split.
            assert_eq!(huge_memory::split_huge_pages_pid(&mm, a, a + HUGE_PAGE_SIZE), SplitCount::default());
        });
    }
    fn munmap_frees_the_page_tables_only_the_range_used() {
        use kernel::mm::mmap::map;
        use kernel::mm::pgtable;
        assert_no_leaks(|| {
            let mm = new_mm();
            let keep = mmap(&mm, PAGE_SIZE, RW);
            let m2 = mm.clone();
            in_mm(&mm, move || write(keep, 1));
            let base = pgtable::live_tables();
            // Each round maps and touches 4 MiB at a fresh 1 GiB-aligned
            // address (a pmd table and two pte tables of its own), then
            // unmaps it: the tables go with it.
            for round in 0..40u64 {
                let a = UserAddr::from_const(0x40_0000_0000 + round * (1 << 30));
                let got = m::mmap(&mm, a.as_u64(), 2 * HUGE_PAGE_SIZE, RW, map::PRIVATE | map::ANONYMOUS | map::FIXED).unwrap();
                assert_eq!(got, a);
                in_mm(&mm, move || {
                    write(a, round);
                    write(a + HUGE_PAGE_SIZE + 8 * PAGE_SIZE, round);
                });
                assert!(pgtable::live_tables() >= base + 3, "round {round}: no tables were built");
                m::munmap(&mm, a.as_u64(), 2 * HUGE_PAGE_SIZE).unwrap();
                assert_eq!(pgtable::live_tables(), base, "round {round}: munmap left page tables behind");
            }
            // A partial munmap keeps the tables the rest of the area needs.
            let a = UserAddr::from_const(0x50_0000_0000);
            m::mmap(&mm, a.as_u64(), 2 * HUGE_PAGE_SIZE, RW, map::PRIVATE | map::ANONYMOUS | map::FIXED).unwrap();
            in_mm(&mm, move || {
                write(a, 5);
                write(a + HUGE_PAGE_SIZE, 6);
            });
            let built = pgtable::live_tables();
            m::munmap(&mm, a.as_u64() + PAGE_SIZE, PAGE_SIZE).unwrap();
            assert_eq!(pgtable::live_tables(), built, "a table still in use was freed");
            // The second half's pte table is used by nothing else once the
            // second half goes; the first half keeps its own and the pmd table.
            m::munmap(&mm, a.as_u64() + HUGE_PAGE_SIZE, HUGE_PAGE_SIZE).unwrap();
            assert_eq!(pgtable::live_tables(), built - 1, "the emptied pte table was kept");
            in_mm(&mm, move || assert_eq!(read(a), 5));
            in_mm(&mm, move || assert_eq!(read(keep), 1));
            let _ = m2;
        });
    }

    fn a_thp_faults_in_again_where_a_split_one_was_unmapped() {
        use kernel::mm::mmap::map;
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, HUGE_PAGE_SIZE, RW);
            for round in 0..3u64 {
                m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
                in_mm(&mm, move || write(a, round));
                assert_eq!(translate(&mm, a).unwrap().size, PageSize::Size2M, "round {round}: no THP");
                // Mapped by ptes now: a pte table hangs under the pmd.
                m::mprotect(&mm, a.as_u64(), PAGE_SIZE, 1).unwrap();
                assert_eq!(translate(&mm, a).unwrap().size, PageSize::Size4K);
                m::munmap(&mm, a.as_u64(), HUGE_PAGE_SIZE).unwrap();
                let got = m::mmap(&mm, a.as_u64(), HUGE_PAGE_SIZE, RW, map::PRIVATE | map::ANONYMOUS | map::FIXED_NOREPLACE).unwrap();
                assert_eq!(got, a);
            }
        });
    }
}
