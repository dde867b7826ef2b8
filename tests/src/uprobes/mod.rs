//! uprobes: installing and removing a breakpoint in a process's executable
//! private mapping, in both modes (`uprobes=fixed`, `uprobes=legacy`), on a
//! pinned page (bug C shown directly: the legacy writer moves the mapping
//! away from the pinned frame, the fixed one writes in place), after fork
//! (only the probed address space sees the breakpoint), the errors, and the
//! `uprobes` user program (the syscall, a breakpoint that traps and is
//! emulated, one that kills).

use alloc::sync::Arc;
use kernel::gup::{self, Foll};
use kernel::mm::PAGE_SIZE;
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::fork::fork_mm;
use kernel::mm::page::{self, PageFlags};
use kernel::process;
use kernel::race;
use kernel::uprobes::{self, UprobeError};

use crate::mm::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, read_phys, translate, write, write_phys};
use kernel::mm::UserAddr;


/// A one-page page-cache file (created once, outside the leak checks: files
/// live for ever) whose byte 0 is a nop, and an address space mapping it
/// privately with `prot` (text: R-X; bug C's "MAP_PRIVATE RWX": RWX) at `a`,
/// faulted in for reading (the page-cache page mapped).
fn file_page(prot: u32) -> (Arc<AddressSpace>, UserAddr, x86_64::PhysAddr) {
    use kernel::mm::filemap;
    use kernel::mm::mmap::mmap_file;
    use kernel::mm::vma::FileMap;
    let mut text = [0u8; 64];
    text[0] = 0x90;
    text[1] = 0xc3;
    let id = filemap::create(0x7570_726f_6265_7331, &text).expect("page-cache file");
    let cached = filemap::find_get_page(id, 0).expect("page 0").phys();
    let mm = new_mm();
    let a = mmap_file(&mm, 0x7000_0000, PAGE_SIZE, prot, FileMap { id, pgoff: 0 }).expect("mmap_file");
    in_mm(&mm, move || read(a));
    assert_eq!(frame(&mm, a), cached, "a read fault must map the page-cache page");
    (mm, a, cached)
}

/// PROT_READ | PROT_EXEC.
const RX: u32 = 5;

/// PROT_READ | PROT_WRITE | PROT_EXEC: a private mapping uprobes may probe
/// whose pages a direct read may target (bug C's "MAP_PRIVATE RWX").
const RWX: u32 = 7;
/// Word 0 of the page holds the probed byte; the device writes word 1.
const WORD0: u64 = 0x1111_2222_3333_4490;

/// Runs `f` with `uprobes=legacy` set to `legacy`, restoring the default.
fn with_mode<R>(legacy: bool, f: impl FnOnce() -> R) -> R {
    race::set_uprobes_legacy(legacy);
    let r = f();
    race::set_uprobes_legacy(false);
    r
}

/// An address space with one RWX page at `a`, written (so it is an
/// exclusive anonymous page, as a COWed text page is).
fn rwx_page() -> (Arc<AddressSpace>, UserAddr) {
    let mm = new_mm();
    let a = mmap(&mm, PAGE_SIZE, RWX);
    in_mm(&mm, move || write(a, WORD0));
    (mm, a)
}

fn frame(mm: &AddressSpace, a: UserAddr) -> x86_64::PhysAddr {
    translate(mm, a).expect("mapped").phys
}

/// The byte at `a` as the page table maps it now.
fn byte(mm: &AddressSpace, a: UserAddr) -> u8 {
    (read_phys(frame(mm, a - a.as_u64() % 8)) >> ((a.as_u64() % 8) * 8)) as u8
}

/// Pins the page at `a` for a device write (FOLL_PIN | FOLL_WRITE, as
/// direct I/O does), registers a probe at `a`, lets the "device" write word
/// 1 of the pinned frame, and returns (frame mapped before, frame after,
/// what the mapping shows in word 1).
fn probe_over_a_pin(mm: &Arc<AddressSpace>, a: UserAddr) -> (x86_64::PhysAddr, x86_64::PhysAddr, u64) {
    let pins = gup::get_user_pages(mm, a, 1, Foll::PIN | Foll::WRITE).expect("pin");
    let before = frame(mm, a);
    assert_eq!(pins[0].phys(), before);
    uprobes::uprobe_register(mm, a).expect("register");
    // The DMA completes into the pinned frame after the breakpoint went in.
    write_phys(pins[0].phys() + 8u64, 0xd0d0_d0d0);
    let after = frame(mm, a);
    let seen = read_phys(after + 8u64);
    drop(pins);
    (before, after, seen)
}

kernel::ktests! {
    fn fixed_writes_the_breakpoint_in_place_and_a_pinned_page_stays_mapped() {
        assert_no_leaks(|| with_mode(false, || {
            let (mm, a) = rwx_page();
            let s0 = uprobes::stats();
            let (before, after, seen) = probe_over_a_pin(&mm, a);
            assert_eq!(after, before, "the fixed writer must not move the mapping off a pinned page");
            assert_eq!(seen, 0xd0d0_d0d0, "the device's write is not visible through the mapping");
            assert_eq!(byte(&mm, a), 0xcc, "no int3 at the probe");
            assert!(page::page_of(after).has(PageFlags::ANON_EXCLUSIVE));
            uprobes::uprobe_unregister(&mm, a).expect("unregister");
            assert_eq!(frame(&mm, a), before, "unregister moved the page");
            assert_eq!(byte(&mm, a), 0x90, "the original byte is not back");
            let s = uprobes::stats();
            assert_eq!((s.installed - s0.installed, s.removed - s0.removed), (1, 1), "{s:?}");
            assert_eq!((s.in_place - s0.in_place, s.replaced - s0.replaced), (2, 0), "{s:?}");
            assert_eq!(uprobes::registered(), 0);
        }));
    }

    fn legacy_replaces_a_pinned_page_and_the_device_write_is_lost() {
        // Bug C, deterministically: the negative control shows the loss.
        assert_no_leaks(|| with_mode(true, || {
            let (mm, a) = rwx_page();
            let s0 = uprobes::stats();
            let (before, after, seen) = probe_over_a_pin(&mm, a);
            assert_ne!(after, before, "the legacy writer replaces the page");
            assert_ne!(seen, 0xd0d0_d0d0, "the device wrote the old frame, which the process no longer maps");
            assert_eq!(byte(&mm, a), 0xcc, "no int3 at the probe");
            assert_eq!(read_phys(after) >> 8, WORD0 >> 8, "the copy lost the page's other bytes");
            uprobes::uprobe_unregister(&mm, a).expect("unregister");
            assert_ne!(frame(&mm, a), after, "legacy unregister replaces the page again");
            assert_eq!(byte(&mm, a), 0x90, "the original byte is not back");
            let s = uprobes::stats();
            assert_eq!((s.replaced - s0.replaced, s.in_place - s0.in_place), (2, 0), "{s:?}");
        }));
    }

    fn a_probe_in_a_fork_child_breaks_cow_and_the_parent_keeps_its_page() {
        for legacy in [false, true] {
            assert_no_leaks(|| with_mode(legacy, || {
                let (parent, a) = rwx_page();
                let child = fork_mm(&parent).expect("fork");
                let shared = frame(&parent, a);
                assert_eq!(frame(&child, a), shared, "fork shares the page");
                uprobes::uprobe_register(&child, a).expect("register in the child");
                assert_eq!(frame(&parent, a), shared, "legacy={legacy}: the parent's mapping moved");
                assert_eq!(byte(&parent, a), 0x90, "legacy={legacy}: the child's breakpoint shows in the parent");
                assert_ne!(frame(&child, a), shared, "legacy={legacy}: the child still maps the shared page");
                assert_eq!(byte(&child, a), 0xcc, "legacy={legacy}");
                uprobes::uprobe_unregister(&child, a).expect("unregister");
                assert_eq!(byte(&child, a), 0x90, "legacy={legacy}");
                drop(child);
            }));
        }
    }

    fn in_a_file_mapping_the_first_breakpoint_cows_and_unregister_zaps_back_to_the_page_cache() {
        for legacy in [false, true] {
            // The file exists before the baseline (files live for ever).
            drop(file_page(RX));
            crate::mm::release_lazy_mms();
            assert_no_leaks(|| with_mode(legacy, || {
                let (mm, a, cached) = file_page(RX);
                let s0 = uprobes::stats();
                uprobes::uprobe_register(&mm, a).expect("register");
                assert_ne!(frame(&mm, a), cached, "legacy={legacy}: the breakpoint must go into a private copy");
                assert_eq!(byte(&mm, a), 0xcc, "legacy={legacy}");
                assert_eq!(read_phys(cached) & 0xff, 0x90, "legacy={legacy}: the page cache was written");
                uprobes::uprobe_unregister(&mm, a).expect("unregister");
                assert!(translate(&mm, a).is_none(), "legacy={legacy}: unregister must zap the copy");
                assert_eq!(uprobes::stats().zapped - s0.zapped, 1, "legacy={legacy}");
                in_mm(&mm, move || read(a));
                assert_eq!(frame(&mm, a), cached, "legacy={legacy}: the next fault maps the page cache again");
            }));
        }
    }

    fn unregister_zaps_a_pinned_page_under_legacy_and_leaves_it_mapped_under_fixed() {
        // Bug C's worse variant (2019-2025): the anonymous copy is pinned
        // for DMA when the probe goes; legacy zaps it anyway.
        for legacy in [false, true] {
            drop(file_page(RWX));
            crate::mm::release_lazy_mms();
            assert_no_leaks(|| with_mode(legacy, || {
                let (mm, a, cached) = file_page(RWX);
                uprobes::uprobe_register(&mm, a).expect("register");
                let pins = gup::get_user_pages(&mm, a, 1, Foll::PIN | Foll::WRITE).expect("pin");
                let pinned = pins[0].phys();
                assert_ne!(pinned, cached);
                uprobes::uprobe_unregister(&mm, a).expect("unregister");
                write_phys(pinned + 8u64, 0xd0d0_d0d0);
                let seen = in_mm(&mm, move || read(a + 8));
                if legacy {
                    assert!(frame(&mm, a) == cached, "legacy: the pinned copy must be zapped (the bug)");
                    assert_ne!(seen, 0xd0d0_d0d0, "legacy: the device's write must be lost");
                } else {
                    assert_eq!(frame(&mm, a), pinned, "fixed: a pinned page must stay mapped");
                    assert_eq!(seen, 0xd0d0_d0d0, "fixed: the device's write is not seen");
                    assert_eq!(byte(&mm, a), 0x90, "fixed: the original byte is not back");
                }
                drop(pins);
            }));
        }
    }

    fn bad_requests_get_clear_errors() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let x = mmap(&mm, PAGE_SIZE, RWX);
            let data = mmap(&mm, PAGE_SIZE, RW);
            assert_eq!(uprobes::uprobe_register(&mm, UserAddr::from_const(0x1000)), Err(UprobeError::NotMapped));
            // A kernel address is no user address (the syscall answers
            // NotMapped's EFAULT for it); the user half's end is mapped by
            // nothing.
            assert_eq!(UserAddr::new(0xffff_8000_0000_1000), None);
            assert_eq!(uprobes::uprobe_register(&mm, UserAddr::END), Err(UprobeError::NotMapped));
            assert_eq!(uprobes::uprobe_register(&mm, data), Err(UprobeError::NotExecutable));
            assert_eq!(uprobes::uprobe_unregister(&mm, x), Err(UprobeError::NoProbe));
            assert_eq!(uprobes::hits(&mm, x), Err(UprobeError::NoProbe));
            // A page never touched: the forced lookup faults it in (zero).
            uprobes::uprobe_register(&mm, x + 5).expect("register on an untouched page");
            assert_eq!(uprobes::uprobe_register(&mm, x + 5), Err(UprobeError::Exists));
            assert_eq!(byte(&mm, x + 5), 0xcc);
            uprobes::uprobe_unregister(&mm, x + 5).expect("unregister");
            assert_eq!(byte(&mm, x + 5), 0);
            assert_eq!(uprobes::registered(), 0);
        });
    }

    fn the_uprobes_program_probes_itself_and_its_children() {
        for legacy in [false, true] {
            with_mode(legacy, || {
                let pid = process::spawn("uprobes", 0).expect("spawn uprobes");
                let info = process::wait_info(pid).expect("wait");
                assert_eq!(info.status, 0, "legacy={legacy}: the uprobes program failed at step {}", info.status);
            });
        }
        assert_eq!(uprobes::registered(), 0, "probes of ended processes are forgotten");
    }
}
