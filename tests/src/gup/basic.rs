//! get_user_pages and pin_user_pages, fast and slow, on 4 KiB and 2 MiB
//! mappings (in the spirit of Linux's gup_test and cow.c).

use alloc::vec::Vec;
use kernel::gup::{self, Foll, GupError, Grabbed};
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::{self, PIN_BIAS, PageFlags};
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};

use crate::mm::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, read_phys, translate, write};
use kernel::mm::UserAddr;

fn phys(g: &[Grabbed]) -> Vec<u64> {
    g.iter().map(|g| g.phys().as_u64()).collect()
}

kernel::ktests! {
    fn gup_fast_grabs_mapped_pages_and_the_slow_path_faults_in_the_rest() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 8 * PAGE_SIZE, RW);
            let (falls, got) = in_mm(&mm, move || {
                for i in 0..4 {
                    write(a + i * PAGE_SIZE, i);
                }
                let falls = gup::fast::slow_falls();
                let g = gup::get_user_pages_fast(a, 8, Foll::GET).expect("gup");
                (gup::fast::slow_falls() - falls, phys(&g))
            });
            assert_eq!(got.len(), 8);
            assert_eq!(falls, 4, "the four unmapped pages must come from the slow path, the rest from GUP-fast");
            for (i, pa) in got.iter().enumerate() {
                assert_eq!(translate(&mm, a + i as u64 * PAGE_SIZE).unwrap().phys.as_u64(), *pa);
            }
        });
    }

    fn pin_counts_balance_on_small_and_huge_pages() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, PAGE_SIZE, RW);
            let h = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, h.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let m2 = mm.clone();
            in_mm(&mm, move || {
                write(a, 1);
                write(h, 1);
                let p = page::page_of(translate(&m2, a).unwrap().phys);
                let pins = gup::get_user_pages_fast(a, 1, Foll::PIN | Foll::WRITE).unwrap();
                assert_eq!(p.refcount(), 1 + PIN_BIAS);
                assert!(p.maybe_dma_pinned());
                drop(pins);
                assert_eq!(p.refcount(), 1);
                let head = page::page_of(translate(&m2, h).unwrap().phys);
                let pins = gup::get_user_pages_fast(h + 3 * PAGE_SIZE, 100, Foll::PIN | Foll::WRITE).unwrap();
                assert_eq!(head.pincount(), 100);
                assert_eq!(head.refcount(), 101);
                let refs = gup::get_user_pages_fast(h, 512, Foll::GET).unwrap();
                assert_eq!(head.refcount(), 101 + 512);
                drop(pins);
                drop(refs);
                assert_eq!((head.pincount(), head.refcount()), (0, 1));
            });
        });
    }

    fn unpin_user_pages_batches_per_folio_and_leaves_the_counts_of_one_by_one() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, PAGE_SIZE, RW);
            let h = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, h.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let m2 = mm.clone();
            in_mm(&mm, move || {
                write(a, 1);
                write(h, 1);
                let small = page::page_of(translate(&m2, a).unwrap().phys);
                let head = page::page_of(translate(&m2, h).unwrap().phys);
                assert!(head.is_large(), "the THP area must be backed by a huge page");
                small.clear(PageFlags::DIRTY);
                head.clear(PageFlags::DIRTY);
                let pin = |va, n| gup::get_user_pages_fast(va, n, Foll::PIN | Foll::WRITE).unwrap();
                // A run of 100 THP subpages, then part of it unpinned as a batch:
                // the 40 left still count, on the folio, as 40 pins.
                let mut run = pin(h + 3 * PAGE_SIZE, 100);
                let rest = run.split_off(60);
                gup::unpin_user_pages(run);
                assert_eq!((head.pincount(), head.dma_pins(), head.refcount()), (40, 40, 41));
                assert!(head.maybe_dma_pinned());
                assert!(!head.has(PageFlags::DIRTY), "unpin_user_pages must not dirty");
                // Not consecutive by folio: THP, small, THP again, small twice.
                let mut mixed = rest;
                mixed.extend(pin(a, 1));
                mixed.extend(pin(h, 512));
                mixed.extend(pin(a, 1));
                mixed.extend(pin(a, 1));
                assert_eq!((head.pincount(), head.dma_pins(), head.refcount()), (552, 552, 553));
                assert_eq!((small.dma_pins(), small.refcount()), (3, 1 + 3 * PIN_BIAS));
                gup::unpin_user_pages_dirty_lock(mixed, true);
                assert_eq!((head.pincount(), head.dma_pins(), head.refcount()), (0, 0, 1));
                assert_eq!((small.dma_pins(), small.refcount()), (0, 1));
                assert!(head.has(PageFlags::DIRTY) && small.has(PageFlags::DIRTY));
                assert!(!head.maybe_dma_pinned() && !small.maybe_dma_pinned());
            });
        });
    }

    fn a_pin_keeps_the_frame_alive_across_munmap() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, PAGE_SIZE, RW);
            let pin = in_mm(&mm, move || {
                write(a, 0x5555);
                gup::get_user_pages_fast(a, 1, Foll::PIN | Foll::WRITE).unwrap().pop().unwrap()
            });
            m::munmap(&mm, a.as_u64(), PAGE_SIZE).unwrap();
            assert_eq!(pin.page().mapcount(), 0);
            assert_eq!(read_phys(pin.phys()), 0x5555, "the pinned frame was freed (poisoned) by munmap");
            assert_eq!(pin.page().refcount(), PIN_BIAS);
            drop(pin);
        });
    }

    fn a_write_pin_breaks_cow() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let child = fork_mm(&parent).unwrap();
            let shared = translate(&parent, a).unwrap().phys;
            let pin = in_mm(&parent, move || gup::get_user_pages_fast(a, 1, Foll::PIN | Foll::WRITE).unwrap().pop().unwrap());
            assert_ne!(pin.phys(), shared, "a write pin of a shared page did not break COW");
            assert_eq!(translate(&parent, a).unwrap().phys, pin.phys());
            in_mm(&parent, move || write(a, 2));
            assert_eq!(read_phys(pin.phys()), 2);
            in_mm(&child, move || assert_eq!(read(a), 1));
            drop(pin);
        });
    }

    fn a_read_pin_of_a_shared_page_unshares_and_sees_later_writes() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let child = fork_mm(&parent).unwrap();
            let shared = translate(&parent, a).unwrap().phys;
            let pin = in_mm(&parent, move || gup::get_user_pages_fast(a, 1, Foll::PIN).unwrap().pop().unwrap());
            assert_ne!(pin.phys(), shared, "the read pin did not unshare");
            assert!(pin.page().has(PageFlags::ANON_EXCLUSIVE));
            // cow.c: the pin must see the parent's later writes.
            in_mm(&parent, move || write(a, 99));
            assert_eq!(read_phys(pin.phys()), 99, "the read pin lost the parent's write");
            in_mm(&child, move || assert_eq!(read(a), 1));
            drop(pin);
            // A plain reference (FOLL_GET) does not unshare.
            let parent2 = fork_mm(&parent).unwrap();
            let r = in_mm(&parent, move || gup::get_user_pages_fast(a, 1, Foll::GET).unwrap().pop().unwrap());
            assert_eq!(r.phys(), translate(&parent, a).unwrap().phys);
            drop(r);
            drop(parent2);
        });
    }

    fn bad_addresses_and_flags_are_refused() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let ro = mmap(&mm, PAGE_SIZE, 1);
            let none = mmap(&mm, PAGE_SIZE, 0);
            in_mm(&mm, move || {
                // A raw address as a system call gives it: converted first,
                // as the syscall layer does (beyond the user half: EFAULT).
                let f = |a: u64, n: usize, fl: Foll| {
                    UserAddr::new(a).ok_or(GupError::Fault).and_then(|a| gup::get_user_pages_fast(a, n, fl)).map(|v| v.len())
                };
                assert_eq!(f(0, 1, Foll::GET), Err(GupError::Fault), "null");
                assert_eq!(f(0x1000_0000, 1, Foll::GET), Err(GupError::Fault), "unmapped");
                assert_eq!(f(0xffff_8000_0000_0000, 1, Foll::GET), Err(GupError::Fault), "kernel address");
                assert_eq!(f(0x0000_8000_0000_0000, 1, Foll::GET), Err(GupError::Fault), "non-canonical");
                assert_eq!(f(0x7fff_ffff_f000, 2, Foll::GET), Err(GupError::Fault), "runs past the user half");
                assert_eq!(f(!0xfff, 2, Foll::GET), Err(GupError::Fault), "wraps");
                assert_eq!(f(ro.as_u64(), 1, Foll::GET | Foll::WRITE), Err(GupError::Fault), "write to read-only");
                assert_eq!(f(none.as_u64(), 1, Foll::GET), Err(GupError::Fault), "PROT_NONE");
                assert_eq!(f(ro.as_u64(), 1, Foll::GET | Foll::PIN), Err(GupError::Invalid), "GET and PIN");
                assert_eq!(f(ro.as_u64(), 1, Foll::WRITE), Err(GupError::Invalid), "neither GET nor PIN");
                assert_eq!(f(ro.as_u64() + 1, 1, Foll::GET), Err(GupError::Invalid), "unaligned");
                assert_eq!(f(ro.as_u64(), 0, Foll::GET), Err(GupError::Invalid), "no pages");
                assert_eq!(f(ro.as_u64(), 1, Foll::PIN), Ok(1), "read pin of read-only memory");
                // A failure half way releases what was taken.
                assert_eq!(f(ro.as_u64(), 2, Foll::GET), Err(GupError::Fault));
            });
        });
    }

    fn gup_fast_reading_garbage_counts_a_uaf_and_never_panics() {
        use kernel::mm::paging::{PteFlags, RawEntry};
        let mm = new_mm();
        let a = mmap(&mm, PAGE_SIZE, RW);
        in_mm(&mm, move || write(a, 1));
        let pmd = kernel::mm::pgtable::pmd(&mm, a, false).unwrap().unwrap();
        let pt = kernel::mm::pgtable::pte_table(pmd, false).unwrap().unwrap();
        let ptep = pt.entry(a);
        // What a reused table can hold: a present user entry whose frame
        // number is far outside physical memory.
        let garbage = RawEntry::new(x86_64::PhysAddr::new(0x000f_ffff_ffff_f000), PteFlags::PRESENT | PteFlags::USER);
        let good = ptep.swap(garbage, core::sync::atomic::Ordering::AcqRel);
        let uaf = page::uaf_events();
        let got = in_mm(&mm, move || gup::get_user_pages_fast_only(a, 1, Foll::GET).unwrap().len());
        ptep.store(good, core::sync::atomic::Ordering::Release);
        assert_eq!(got, 0, "GUP-fast took a page from a garbage entry");
        assert_eq!(page::uaf_events(), uaf + 1, "GUP-fast read garbage without reporting a use after free");
        drop(mm);
        crate::mm::release_lazy_mms();
    }

    fn gup_fast_declines_what_needs_the_slow_path() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 2 * PAGE_SIZE, RW);
            in_mm(&mm, move || {
                write(a, 1);
                // Mapped and writable: all from the fast path.
                assert_eq!(gup::get_user_pages_fast_only(a, 1, Foll::PIN | Foll::WRITE).unwrap().len(), 1);
                // Not mapped: the fast path stops there.
                assert_eq!(gup::get_user_pages_fast_only(a, 2, Foll::GET).unwrap().len(), 1);
            });
            // Shared after fork: a write pin must not come from the fast path
            // (read-only pte), nor a read pin (must unshare).
            let child = fork_mm(&mm).unwrap();
            in_mm(&mm, move || {
                assert_eq!(gup::get_user_pages_fast_only(a, 1, Foll::PIN | Foll::WRITE).unwrap().len(), 0);
                assert_eq!(gup::get_user_pages_fast_only(a, 1, Foll::PIN).unwrap().len(), 0);
                assert_eq!(gup::get_user_pages_fast_only(a, 1, Foll::GET).unwrap().len(), 1);
            });
            drop(child);
        });
    }
}
