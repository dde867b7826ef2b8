//! The collapse protocol under a forced interleaving: a GUP-fast pin taken
//! right after the isolate step checked the references. With every defence
//! (clear, flush, then isolate) the pin finds the pmd cleared and takes
//! nothing; under `collapse.check_before_clear` it pins the old page, which
//! the collapse then replaces: a device write through the pin is lost (the
//! controls.md "caught" outcome, made deterministic). The two runs differ by
//! that one switch.

use alloc::vec::Vec;
use kernel::gup::{self, Foll, Grabbed};
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::{self, PageFlags};
use kernel::mm::PageSize;
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use kernel::race::widen::{self, Point, Widening};
use kernel::race::{self, CollapseSwitches};

use super::{collapse_no_leaks, mapped_size, populated};
use crate::mm::{in_mm, read, translate, write_phys};

/// What the pinner got, and whether a device write through its pin is
/// seen through the mapping afterwards.
struct Outcome {
    pinned: bool,
    lost: bool,
}

fn pin_right_after_the_check(check_before_clear: bool) -> Outcome {
    let me = kernel::smp::cpu_index();
    let other = kernel::smp::online_cpus().iter().find(|&c| c != me).expect("2 CPUs");
    race::set_collapse_switches(CollapseSwitches { check_before_clear, no_table_sync: false });
    // 20 ms after the check, with every page still locked by the collapse.
    widen::set(Point::WriterPostCheck, Widening::Fixed(20_000));
    let (mm, a) = populated(0..512);
    let last = page::page_of(translate(&mm, a + 511 * PAGE_SIZE).unwrap().phys);
    let pinner = kernel::sched::spawn_in(other, "pinner", Some(mm.clone()), move || -> Vec<Grabbed> {
        // Page 511 locked: the isolate step has checked page 0 already.
        let deadline = kernel::time::now_ns() + 5_000_000_000;
        while !last.has(PageFlags::LOCKED) {
            assert!(kernel::time::now_ns() < deadline, "the collapse never locked the range's pages");
            core::hint::spin_loop();
        }
        gup::get_user_pages_fast_only(a, 1, Foll::PIN | Foll::WRITE).expect("GUP-fast arguments")
    })
    .expect("spawn");
    let r = m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::COLLAPSE);
    let pins = pinner.join();
    widen::set(Point::WriterPostCheck, Widening::None);
    race::set_collapse_switches(CollapseSwitches::default());
    r.expect("MADV_COLLAPSE");
    assert_eq!(mapped_size(&mm, a), Some(PageSize::Size2M));
    let out = match pins.first() {
        None => Outcome { pinned: false, lost: false },
        Some(g) => {
            write_phys(g.page().phys(), 0xd1a_0000);
            Outcome { pinned: true, lost: in_mm(&mm, move || read(a)) != 0xd1a_0000 }
        }
    };
    drop(pins);
    out
}

kernel::ktests! {
    fn a_pin_after_the_check_finds_the_pmd_cleared() {
        collapse_no_leaks(|| {
            let o = pin_right_after_the_check(false);
            assert!(!o.pinned, "GUP-fast pinned a page of a range whose pmd the collapse had cleared");
            assert!(!o.lost);
        });
    }

    fn under_check_before_clear_a_pin_after_the_check_loses_the_device_write() {
        collapse_no_leaks(|| {
            let o = pin_right_after_the_check(true);
            assert!(o.pinned, "GUP-fast could not pin the live range after the check");
            assert!(o.lost, "the pin taken after the check was coherent with the collapsed mapping");
        });
    }
}
