//! cow.c's THP cases: a read-only pin (GUP-fast and the slow path) of a
//! subpage of a transparent huge page that is shared with a child, was
//! shared once, or is exclusive; then a write through the mapping. The pin
//! must see the write (CVE-2020-29374 for THPs): a pin of a shared page is
//! taken only after the page was unshared. The anon flag is a folio flag, so
//! a tail page is as anonymous as the head.

use kernel::gup::{self, Foll, Grabbed};
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::{self, PageFlags};
use kernel::mm::PageSize;
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};

use crate::mm::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, read_phys, translate, write};
use kernel::mm::UserAddr;

/// The subpage the tests pin: a tail page (the head had the flag already).
const SUB: u64 = 5 * PAGE_SIZE;

/// A THP-backed 2 MiB area of `mm`, filled (faulted in as one huge pmd) with
/// `v` at the pinned subpage.
fn thp(mm: &alloc::sync::Arc<AddressSpace>, v: u64) -> UserAddr {
    let h = mmap(mm, HUGE_PAGE_SIZE, RW);
    m::madvise(mm, h.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
    in_mm(mm, move || write(h + SUB, v));
    assert_eq!(translate(mm, h).unwrap().size, PageSize::Size2M, "not a huge mapping");
    h
}

/// A read-only pin of `h + SUB`, from GUP-fast (falling back to the slow
/// path) or from the slow path only.
fn ro_pin(mm: &alloc::sync::Arc<AddressSpace>, h: UserAddr, fast: bool) -> Grabbed {
    let m2 = mm.clone();
    in_mm(mm, move || {
        let g = if fast {
            gup::get_user_pages_fast(h + SUB, 1, Foll::PIN)
        } else {
            gup::get_user_pages(&m2, h + SUB, 1, Foll::PIN)
        };
        g.expect("read-only pin").pop().unwrap()
    })
}

/// The pin sees a later write through the mapping, and the page it holds is
/// the one mapped now, exclusive.
fn pin_sees_write(mm: &alloc::sync::Arc<AddressSpace>, h: UserAddr, pin: &Grabbed) {
    in_mm(mm, move || write(h + SUB, 0xbeef));
    assert_eq!(read_phys(pin.phys()), 0xbeef, "the read-only pin lost a later write through the mapping");
    assert_eq!(translate(mm, h + SUB).unwrap().phys, pin.phys());
    assert!(pin.page().has(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE));
}

fn shared(fast: bool) {
    assert_no_leaks(|| {
        let parent = new_mm();
        let h = thp(&parent, 1);
        let child = fork_mm(&parent).unwrap();
        let shared = translate(&parent, h + SUB).unwrap().phys;
        assert_eq!(translate(&child, h + SUB).unwrap().phys, shared, "fork did not share the THP");
        assert!(page::page_of(shared).has(PageFlags::ANON), "a THP tail page does not look anonymous");
        let pin = ro_pin(&parent, h, fast);
        assert_ne!(pin.phys(), shared, "a read-only pin of a shared THP subpage was granted on the shared page");
        pin_sees_write(&parent, h, &pin);
        in_mm(&child, move || assert_eq!(read(h + SUB), 1, "the child saw the parent's write"));
        drop(pin);
        drop(child);
    });
}

fn previously_shared(fast: bool) {
    assert_no_leaks(|| {
        let parent = new_mm();
        let h = thp(&parent, 1);
        drop(fork_mm(&parent).unwrap());
        // Mapped once again, but not marked exclusive: a pin must still
        // unshare (which reuses the page, being its only user).
        let pin = ro_pin(&parent, h, fast);
        pin_sees_write(&parent, h, &pin);
        drop(pin);
    });
}

fn exclusive(fast: bool) {
    assert_no_leaks(|| {
        let mm = new_mm();
        let h = thp(&mm, 1);
        let before = translate(&mm, h + SUB).unwrap().phys;
        let pin = ro_pin(&mm, h, fast);
        assert_eq!(pin.phys(), before, "an exclusive THP subpage was copied for a read-only pin");
        pin_sees_write(&mm, h, &pin);
        drop(pin);
    });
}

kernel::ktests! {
    fn ro_pin_fast_of_a_shared_thp_subpage_sees_later_writes() {
        shared(true);
    }

    fn ro_pin_slow_of_a_shared_thp_subpage_sees_later_writes() {
        shared(false);
    }

    fn ro_pin_fast_of_a_previously_shared_thp_subpage_sees_later_writes() {
        previously_shared(true);
    }

    fn ro_pin_slow_of_a_previously_shared_thp_subpage_sees_later_writes() {
        previously_shared(false);
    }

    fn ro_pin_fast_of_an_exclusive_thp_subpage_sees_later_writes() {
        exclusive(true);
    }

    fn ro_pin_slow_of_an_exclusive_thp_subpage_sees_later_writes() {
        exclusive(false);
    }
}
