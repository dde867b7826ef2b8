//! khugepaged: the scan's limits (max_ptes_none, max_ptes_shared), the
//! thread collapsing a MADV_HUGEPAGE area on its own CPU, its statistics.

use kernel::khugepaged::{self, Tunables};
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::PageSize;
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};

use super::{check_contents, collapse_no_leaks, mapped_size, populated};
use crate::mm::{in_mm, write};

/// Scans until khugepaged's full-scan count moved by 2 (bounded).
fn scan_all() {
    let target = khugepaged::stats().full_scans + 2;
    for _ in 0..10_000 {
        if khugepaged::stats().full_scans >= target {
            return;
        }
        if khugepaged::scan::scan_ptes(512) == 0 && khugepaged::stats().full_scans >= target {
            return;
        }
    }
    panic!("khugepaged scans did not end");
}

kernel::ktests! {
    fn max_ptes_none_is_respected() {
        collapse_no_leaks(|| {
            khugepaged::set_tunables(Tunables { max_ptes_none: 10, ..Tunables::DEFAULT });
            // 12 none ptes: refused; 7: collapsed.
            let (mm, a) = populated(0..500);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let s0 = khugepaged::stats();
            scan_all();
            let s = khugepaged::stats();
            assert!(s.refused_none_ptes > s0.refused_none_ptes, "{s:?}");
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K), "collapsed beyond max_ptes_none");
            in_mm(&mm, move || {
                for i in 500..505 {
                    write(a + i * PAGE_SIZE, super::word(i));
                }
            });
            scan_all();
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size2M), "not collapsed within max_ptes_none: {:?}", khugepaged::stats());
            check_contents(&mm, a, |i| i < 505);
        });
    }

    fn max_ptes_shared_is_respected() {
        collapse_no_leaks(|| {
            khugepaged::set_tunables(Tunables { max_ptes_shared: 0, ..Tunables::DEFAULT });
            let (mm, a) = populated(0..512);
            let child = fork_mm(&mm).expect("fork");
            // One private (written) page; the other 511 shared with the child.
            in_mm(&mm, move || write(a, super::word(0)));
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let s0 = khugepaged::stats();
            scan_all();
            assert!(khugepaged::stats().refused_shared > s0.refused_shared);
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size4K));
            khugepaged::set_tunables(Tunables { max_ptes_shared: 511, ..Tunables::DEFAULT });
            scan_all();
            assert_eq!(mapped_size(&mm, a), Some(PageSize::Size2M), "{:?}", khugepaged::stats());
            check_contents(&mm, a, |_| true);
            check_contents(&child, a, |_| true);
            drop(child);
        });
    }

    fn khugepaged_collapses_a_madv_hugepage_area_on_its_own() {
        collapse_no_leaks(|| {
            let me = kernel::smp::cpu_index();
            let other = kernel::smp::online_cpus().iter().find(|&c| c != me).expect("2 CPUs");
            let (mm, a) = populated(0..512);
            let (plain, b) = populated(0..512);
            m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let s0 = khugepaged::stats();
            khugepaged::start_khugepaged(other, Tunables { scan_sleep_us: 1000, ..Tunables::DEFAULT }).unwrap();
            assert!(khugepaged::start_khugepaged(other, Tunables::DEFAULT).is_err(), "started twice");
            let deadline = kernel::time::now_ns() + 10_000_000_000;
            while mapped_size(&mm, a) != Some(PageSize::Size2M) {
                assert!(kernel::time::now_ns() < deadline, "khugepaged did not collapse within 10 s: {:?}", khugepaged::stats());
                kernel::sched::sleep_ns(1_000_000);
            }
            khugepaged::stop_khugepaged().unwrap();
            let s = khugepaged::stats();
            assert!(s.pages_collapsed > s0.pages_collapsed && s.full_scans > s0.full_scans && s.pages_scanned > s0.pages_scanned, "{s:?}");
            assert_eq!(s.madvise_collapsed, s0.madvise_collapsed);
            assert_eq!(mapped_size(&plain, b), Some(PageSize::Size4K), "an area without MADV_HUGEPAGE was collapsed");
            check_contents(&mm, a, |_| true);
        });
    }
}
