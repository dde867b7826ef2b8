//! What KSM merges and what it leaves alone, and what the merged pages look
//! like afterwards (Linux ksm_tests.c -M/-U, ksm_functional_tests.c
//! test_unmerge): equal pages in one or two address spaces, copy-on-write of
//! a merged page, MADV_UNMERGEABLE, huge pages, fork.

use alloc::vec::Vec;
use kernel::ksm;
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::paging::{PageSize, PteFlags};
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};

use super::{assert_maps_ksm, assert_private, check, check_phys, fill, ksm_no_leaks, mapped, merge_all, sharing};
use crate::mm::{RW, in_mm, mmap, new_mm, release_lazy_mms, translate, write};

kernel::ktests! {
    fn equal_pages_in_one_address_space_merge_and_different_ones_do_not() {
        const N: u64 = 8;
        const M: u64 = 4;
        ksm_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, N * PAGE_SIZE, RW);
            let d = mmap(&mm, M * PAGE_SIZE, RW);
            in_mm(&mm, move || {
                for i in 0..N {
                    fill(a + i * PAGE_SIZE, 0x5a5a_0001);
                }
                for i in 0..M {
                    fill(d + i * PAGE_SIZE, 0x7000 + i);
                }
            });
            m::madvise(&mm, a.as_u64(), N * PAGE_SIZE, advice::MERGEABLE).unwrap();
            m::madvise(&mm, d.as_u64(), M * PAGE_SIZE, advice::MERGEABLE).unwrap();
            let s0 = ksm::stats();
            merge_all();
            let s = ksm::stats();
            assert_eq!(sharing(), (1, N - 1), "{N} equal pages must make 1 KSM page mapped {N} times: {s:?}");
            assert_eq!(s.merges - s0.merges, N - 1, "{s:?}");
            assert!(s.pages_scanned - s0.pages_scanned >= 3 * (N + M));
            let (k, _) = mapped(&mm, a);
            for i in 0..N {
                assert_maps_ksm(&mm, a + i * PAGE_SIZE, k);
            }
            assert_eq!(k.mapcount() as u64, N);
            check_phys(k.phys(), 0x5a5a_0001);
            let mut frames = Vec::new();
            for i in 0..M {
                let p = assert_private(&mm, d + i * PAGE_SIZE);
                let (_, e) = mapped(&mm, d + i * PAGE_SIZE);
                assert!(e.flags().contains(PteFlags::WRITABLE), "a page that merged with nothing was write-protected");
                assert!(!frames.contains(&p.phys()));
                frames.push(p.phys());
            }
            in_mm(&mm, move || {
                for i in 0..N {
                    check(a + i * PAGE_SIZE, 0x5a5a_0001);
                }
                for i in 0..M {
                    check(d + i * PAGE_SIZE, 0x7000 + i);
                }
            });
        });
    }

    fn max_page_sharing_caps_the_mappings_of_one_ksm_page() {
        // Linux max_page_sharing: with a cap of 4, ten equal pages make KSM
        // pages of 4, 4 and 2 mappings (a full one takes no more; the next
        // equal pages pair up into a new one), not one page mapped 10 times.
        const N: u64 = 10;
        ksm::set_max_page_sharing(4);
        ksm_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, N * PAGE_SIZE, RW);
            in_mm(&mm, move || {
                for i in 0..N {
                    fill(a + i * PAGE_SIZE, 0x5a5a_0002);
                }
            });
            m::madvise(&mm, a.as_u64(), N * PAGE_SIZE, advice::MERGEABLE).unwrap();
            merge_all();
            let s = ksm::stats();
            assert_eq!(sharing(), (3, N - 3), "{N} equal pages, cap 4: 3 KSM pages: {s:?}");
            let mut ksm_pages: Vec<u64> = Vec::new();
            for i in 0..N {
                let (k, _) = mapped(&mm, a + i * PAGE_SIZE);
                assert_maps_ksm(&mm, a + i * PAGE_SIZE, k);
                assert!(k.mapcount() <= 4, "KSM page {:#x} mapped {} times, above the cap", k.phys(), k.mapcount());
                if !ksm_pages.contains(&k.phys().as_u64()) {
                    ksm_pages.push(k.phys().as_u64());
                }
                check_phys(k.phys(), 0x5a5a_0002);
            }
            assert_eq!(ksm_pages.len(), 3);
        });
        ksm::set_max_page_sharing(ksm::MAX_PAGE_SHARING_DEFAULT);
        assert_eq!(ksm::max_page_sharing(), 256);
    }

    fn equal_pages_in_two_address_spaces_merge() {
        ksm_no_leaks(|| {
            let one = new_mm();
            let two = new_mm();
            let a = mmap(&one, 2 * PAGE_SIZE, RW);
            let b = mmap(&two, 2 * PAGE_SIZE, RW);
            in_mm(&one, move || {
                fill(a, 0xc0ffee);
                fill(a + PAGE_SIZE, 0xbeef);
            });
            in_mm(&two, move || {
                fill(b, 0xbeef);
                fill(b + PAGE_SIZE, 0xc0ffee);
            });
            m::madvise(&one, a.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            m::madvise(&two, b.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            merge_all();
            assert_eq!(sharing(), (2, 2), "two pairs across two address spaces: {:?}", ksm::stats());
            let (k1, _) = mapped(&one, a);
            let (k2, _) = mapped(&one, a + PAGE_SIZE);
            assert_ne!(k1.phys(), k2.phys(), "pages of different contents were merged");
            assert_maps_ksm(&one, a, k1);
            assert_maps_ksm(&two, b + PAGE_SIZE, k1);
            assert_maps_ksm(&one, a + PAGE_SIZE, k2);
            assert_maps_ksm(&two, b, k2);
            in_mm(&one, move || {
                check(a, 0xc0ffee);
                check(a + PAGE_SIZE, 0xbeef);
            });
            in_mm(&two, move || {
                check(b, 0xbeef);
                check(b + PAGE_SIZE, 0xc0ffee);
            });
        });
    }

    fn a_write_to_a_merged_page_gets_a_private_copy() {
        ksm_no_leaks(|| {
            let one = new_mm();
            let two = new_mm();
            let a = mmap(&one, 2 * PAGE_SIZE, RW);
            let b = mmap(&two, PAGE_SIZE, RW);
            in_mm(&one, move || {
                fill(a, 0x1111);
                fill(a + PAGE_SIZE, 0x1111);
            });
            in_mm(&two, move || fill(b, 0x1111));
            m::madvise(&one, a.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            m::madvise(&two, b.as_u64(), PAGE_SIZE, advice::MERGEABLE).unwrap();
            merge_all();
            assert_eq!(sharing(), (1, 2));
            let (k, _) = mapped(&one, a);
            assert_maps_ksm(&two, b, k);
            // A write in the second address space copies; the first keeps
            // the KSM page and its contents.
            in_mm(&two, move || {
                fill(b, 0x2222);
                check(b, 0x2222);
            });
            let p = assert_private(&two, b);
            assert_ne!(p.phys(), k.phys());
            assert!(mapped(&two, b).1.flags().contains(PteFlags::WRITABLE));
            // Then a write in the first: one copy, the other mapping stays.
            in_mm(&one, move || fill(a + PAGE_SIZE, 0x3333));
            assert_private(&one, a + PAGE_SIZE);
            assert_maps_ksm(&one, a, k);
            assert_eq!(sharing(), (1, 0));
            check_phys(k.phys(), 0x1111);
            in_mm(&one, move || {
                check(a, 0x1111);
                check(a + PAGE_SIZE, 0x3333);
            });
            in_mm(&two, move || check(b, 0x2222));
            // The last mapping of a KSM page is copied too, never reused in place.
            in_mm(&one, move || write(a, 0x4444));
            assert_private(&one, a);
            check_phys(k.phys(), 0x1111);
            assert_eq!(sharing(), (0, 0));
        });
    }

    fn madv_unmergeable_gives_private_copies() {
        const N: u64 = 4;
        ksm_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, N * PAGE_SIZE, RW);
            in_mm(&mm, move || {
                for i in 0..N {
                    fill(a + i * PAGE_SIZE, 0xabcd);
                }
            });
            m::madvise(&mm, a.as_u64(), N * PAGE_SIZE, advice::MERGEABLE).unwrap();
            merge_all();
            assert_eq!(sharing(), (1, N - 1));
            m::madvise(&mm, a.as_u64(), N * PAGE_SIZE, advice::UNMERGEABLE).unwrap();
            let mut frames = Vec::new();
            for i in 0..N {
                let p = assert_private(&mm, a + i * PAGE_SIZE);
                assert!(!frames.contains(&p.phys()), "two addresses map one frame after unmerge");
                frames.push(p.phys());
            }
            ksm::prune();
            assert_eq!(sharing(), (0, 0), "KSM pages left after MADV_UNMERGEABLE and prune");
            // No longer mergeable: more scans merge nothing.
            merge_all();
            assert_eq!(sharing(), (0, 0), "an unmergeable area was merged again");
            in_mm(&mm, move || {
                for i in 0..N {
                    check(a + i * PAGE_SIZE, 0xabcd);
                }
                // The private copies take writes in place.
                write(a, 1);
            });
            assert_eq!(mapped(&mm, a).0.phys(), frames[0]);
        });
    }

    fn huge_pages_are_left_alone() {
        ksm_no_leaks(|| {
            let mm = new_mm();
            let h = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, h.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let a = mmap(&mm, 2 * PAGE_SIZE, RW);
            // 512 equal (zero) subpages, and two small zero pages as a
            // witness that zero pages do merge.
            in_mm(&mm, move || {
                write(h, 0);
                write(a, 0);
                write(a + PAGE_SIZE, 0);
            });
            let t = translate(&mm, h).unwrap();
            assert_eq!(t.size, PageSize::Size2M, "no huge page to test with");
            m::madvise(&mm, h.as_u64(), HUGE_PAGE_SIZE, advice::MERGEABLE).unwrap();
            m::madvise(&mm, a.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            let s0 = ksm::stats();
            merge_all();
            let s = ksm::stats();
            assert_eq!(sharing(), (1, 1), "the small pages did not merge (or the huge page did): {s:?}");
            assert_eq!(s.merges - s0.merges, 1);
            let t2 = translate(&mm, h).unwrap();
            assert_eq!((t2.size, t2.phys, t2.leaf), (PageSize::Size2M, t.phys, t.leaf), "KSM changed the huge mapping");
            let head = kernel::mm::page::page_of(t.phys);
            assert!(!head.has(kernel::mm::page::PageFlags::KSM));
            assert_eq!(head.refcount(), 1);
            in_mm(&mm, move || {
                write(h + 5 * PAGE_SIZE, 7);
                assert_eq!(crate::mm::read(h + 5 * PAGE_SIZE), 7);
                assert_eq!(crate::mm::read(h + 6 * PAGE_SIZE), 0);
            });
            assert_eq!(translate(&mm, h).unwrap().phys, t.phys, "the huge page moved");
        });
    }

    fn a_merged_page_shared_with_a_forked_child_stays_consistent() {
        ksm_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, 2 * PAGE_SIZE, RW);
            in_mm(&parent, move || {
                fill(a, 0x600d);
                fill(a + PAGE_SIZE, 0x600d);
            });
            m::madvise(&parent, a.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            merge_all();
            let (k, _) = mapped(&parent, a);
            let child = fork_mm(&parent).expect("fork");
            for mm in [&parent, &child] {
                assert_maps_ksm(mm, a, k);
                assert_maps_ksm(mm, a + PAGE_SIZE, k);
            }
            assert_eq!(sharing(), (1, 3));
            in_mm(&child, move || fill(a, 0xc41d));
            in_mm(&parent, move || fill(a + PAGE_SIZE, 0x9a7e));
            assert_private(&child, a);
            assert_private(&parent, a + PAGE_SIZE);
            assert_maps_ksm(&parent, a, k);
            assert_maps_ksm(&child, a + PAGE_SIZE, k);
            assert_eq!(sharing(), (1, 1));
            check_phys(k.phys(), 0x600d);
            in_mm(&parent, move || {
                check(a, 0x600d);
                check(a + PAGE_SIZE, 0x9a7e);
            });
            in_mm(&child, move || {
                check(a, 0xc41d);
                check(a + PAGE_SIZE, 0x600d);
            });
            drop(child);
            release_lazy_mms();
            assert_eq!(sharing(), (1, 0));
            in_mm(&parent, move || {
                check(a, 0x600d);
                fill(a, 0x600e);
            });
            assert_private(&parent, a);
            check_phys(k.phys(), 0x600d);
        });
    }

    fn the_child_of_a_mergeable_address_space_is_scanned_too() {
        // Linux ksm_fork(): the child inherits the mergeable areas and is
        // registered with KSM at fork.
        ksm_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, 2 * PAGE_SIZE, RW);
            in_mm(&parent, move || {
                fill(a, 0xf001);
                fill(a + PAGE_SIZE, 0xf002);
            });
            m::madvise(&parent, a.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            let child = fork_mm(&parent).expect("fork");
            in_mm(&child, move || {
                fill(a, 0xf003);
                fill(a + PAGE_SIZE, 0xf003);
            });
            merge_all();
            assert_eq!(sharing(), (1, 1), "the child's equal pages were not merged: {:?}", ksm::stats());
            let (k, _) = mapped(&child, a);
            assert_maps_ksm(&child, a + PAGE_SIZE, k);
            assert_private(&parent, a);
            assert_private(&parent, a + PAGE_SIZE);
            in_mm(&child, move || check(a + PAGE_SIZE, 0xf003));
            in_mm(&parent, move || check(a + PAGE_SIZE, 0xf002));
        });
    }
}
