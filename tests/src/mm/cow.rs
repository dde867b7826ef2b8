//! Copy-on-write after fork, in the spirit of Linux's
//! tools/testing/selftests/mm/cow.c: neither side sees the other's writes,
//! exclusive pages are reused, pinned pages are copied at fork, and a
//! read-only pin of a shared page unshares it first.

use kernel::mm::fault::{self, Access, AccessKind};
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::{self, PageFlags, PinnedPage};
use kernel::mm::PageSize;
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use x86_64::VirtAddr;

use super::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, translate, write};

kernel::ktests! {
    fn after_fork_neither_side_sees_the_others_writes() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, 4 * PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 0xaaaa));
            let child = fork_mm(&parent).expect("fork");
            let pp = translate(&parent, a).unwrap();
            let cp = translate(&child, a).unwrap();
            assert_eq!(pp.phys, cp.phys, "fork copied instead of sharing");
            let shared = page::page_of(pp.phys);
            assert!(!shared.has(PageFlags::ANON_EXCLUSIVE));
            assert_eq!((shared.refcount(), shared.mapcount()), (2, 2));
            in_mm(&child, move || {
                assert_eq!(read(a), 0xaaaa);
                write(a, 0xcccc);
            });
            in_mm(&parent, move || {
                assert_eq!(read(a), 0xaaaa, "the parent sees the child's write");
                write(a, 0xbbbb);
            });
            in_mm(&child, move || assert_eq!(read(a), 0xcccc, "the child sees the parent's write"));
            assert_ne!(translate(&child, a).unwrap().phys, translate(&parent, a).unwrap().phys);
        });
    }

    fn the_last_mapping_reuses_the_page_instead_of_copying() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let child = fork_mm(&parent).expect("fork");
            drop(child);
            super::release_lazy_mms();
            let before = translate(&parent, a).unwrap().phys;
            in_mm(&parent, move || write(a, 2));
            assert_eq!(translate(&parent, a).unwrap().phys, before, "copied a page nobody shares any more");
            assert!(page::page_of(before).has(PageFlags::ANON_EXCLUSIVE));
        });
    }

    fn a_pinned_exclusive_page_is_copied_for_the_child_at_fork() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let pa = translate(&parent, a).unwrap().phys;
            let pin = PinnedPage::pin(page::page_of(pa));
            let child = fork_mm(&parent).expect("fork");
            assert_ne!(translate(&child, a).unwrap().phys, pa, "a pinned page was shared with the child");
            // The parent keeps its page, writable: its writes reach the pin.
            in_mm(&parent, move || write(a, 42));
            assert_eq!(translate(&parent, a).unwrap().phys, pa);
            assert_eq!(super::read_phys(pin.phys()), 42, "the pin lost the parent's write");
            in_mm(&child, move || assert_eq!(read(a), 1));
            drop(pin);
        });
    }

    fn a_read_pin_of_a_shared_page_unshares_it_first() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let child = fork_mm(&parent).expect("fork");
            // What GUP does for a read-only pin of a shared anonymous page:
            // an unshare fault, then the pin of the now exclusive page.
            let pin = in_mm(&parent, move || {
                fault::handle(VirtAddr::new(a.as_u64()), Access { kind: AccessKind::Unshare, user: false }).expect("unshare");
                let t = kernel::mm::paging::translate(kernel::mm::paging::active_root(), VirtAddr::new(a.as_u64())).unwrap();
                let p = page::page_of(t.phys);
                assert!(p.has(PageFlags::ANON_EXCLUSIVE), "unshare left the page shared");
                PinnedPage::pin(p)
            });
            // Later writes by the parent land in the pinned page (no COW
            // moves the parent away from it).
            in_mm(&parent, move || write(a, 77));
            assert_eq!(super::read_phys(pin.phys()), 77, "the read pin does not see the parent's write");
            in_mm(&child, move || assert_eq!(read(a), 1));
            drop(pin);
            drop(child);
        });
    }

    fn a_shared_huge_page_is_split_and_copied_4k_on_write() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, HUGE_PAGE_SIZE, RW);
            m::madvise(&parent, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            in_mm(&parent, move || {
                for i in 0..512 {
                    write(a + i * PAGE_SIZE, i + 1);
                }
            });
            let child = fork_mm(&parent).expect("fork");
            assert_eq!(translate(&child, a).unwrap().size, PageSize::Size2M, "the huge pmd was not shared");
            in_mm(&child, move || write(a + 3 * PAGE_SIZE, 999));
            let t = translate(&child, a + 3 * PAGE_SIZE).unwrap();
            assert_eq!(t.size, PageSize::Size4K);
            in_mm(&child, move || {
                assert_eq!(read(a + 3 * PAGE_SIZE), 999);
                assert_eq!(read(a + 4 * PAGE_SIZE), 5);
            });
            in_mm(&parent, move || assert_eq!(read(a + 3 * PAGE_SIZE), 4, "the parent sees the child's write"));
        });
    }

    fn fork_shares_protnone_pages_and_copies_the_areas() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, 2 * PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 9));
            m::mprotect(&parent, a.as_u64(), PAGE_SIZE, 0).unwrap();
            let child = fork_mm(&parent).expect("fork");
            assert_eq!(child.vmas.read().len(), parent.vmas.read().len());
            m::mprotect(&child, a.as_u64(), PAGE_SIZE, RW).unwrap();
            in_mm(&child, move || assert_eq!(read(a), 9));
            assert_eq!(child.rss(), 1);
        });
    }
}
