//! KSM tests (in the spirit of Linux's ksm_functional_tests.c and
//! ksm_tests.c, plus what those lack: pinned and GUP-referenced pages must not
//! be merged, and the `sync=rcu` marker path).
//!
//! The tests drive the scanner themselves with [`scan_passes`] (ksmd is not
//! running unless a test starts it), so merges happen at known points. A
//! merge needs two visits of a page: the first records its checksum, the
//! second (checksum unchanged) enters it in the unstable index or pairs it
//! with an equal page there. Three more full-scan ends give every page two
//! visits, which merges every unchanging page whose contents another
//! mergeable page shares.
//!
//! Every test ends with [`ksm_no_leaks`]: the memory helpers' leak check,
//! with [`ksm::prune`] first (the stable index holds one reference per KSM
//! page until nothing maps it). Every test also starts from an empty stable
//! index, and restores the protocol defaults it changed.

pub mod merge;
pub mod protocol;
pub mod rmap_list;

use kernel::ksm::{self, Stats};
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::page::{self, Page, PageFlags};
use kernel::mm::paging::{PteFlags, RawEntry};
use kernel::mm::{PAGE_SIZE, pgtable};
use kernel::race::{self, KsmSwitches, SyncMode};

use crate::mm::{accounts, read, release_lazy_mms, translate, write};
use kernel::mm::UserAddr;

/// The offsets [`fill`] writes and [`check`] reads.
const OFFSETS: [u64; 3] = [0, 0x800, PAGE_SIZE - 8];

/// Writes a pattern derived from `v` into the page at `addr` (faulting it in
/// writable). Pages filled with the same `v` are identical.
pub fn fill(addr: UserAddr, v: u64) {
    for off in OFFSETS {
        write(addr + off, v ^ off);
    }
}

/// Asserts the page at `addr` holds [`fill`]'s pattern for `v` (read through
/// the loaded address space, faulting it in for reading).
pub fn check(addr: UserAddr, v: u64) {
    for off in OFFSETS {
        assert_eq!(read(addr + off), v ^ off, "page at {addr:#x}, offset {off:#x}: contents changed");
    }
}

/// Asserts the frame `phys` holds [`fill`]'s pattern for `v`.
pub fn check_phys(phys: x86_64::PhysAddr, v: u64) {
    for off in OFFSETS {
        assert_eq!(crate::mm::read_phys(phys + off), v ^ off, "frame {phys:#x}, offset {off:#x}: contents changed");
    }
}

/// The pte of `addr` in `mm`, if `addr` is mapped by 4 KiB ptes (a marker or
/// an empty entry included).
pub fn raw_pte(mm: &AddressSpace, addr: UserAddr) -> Option<RawEntry> {
    let pmd = pgtable::pmd(mm, addr, false).ok().flatten()?;
    if pmd.get().is_huge() {
        return None;
    }
    let pt = pgtable::pte_table(pmd, false).ok().flatten()?;
    Some(pt.entry(addr).load(core::sync::atomic::Ordering::Acquire))
}

/// The page `addr` maps in `mm`, with its pte, asserting it is mapped.
pub fn mapped(mm: &AddressSpace, addr: UserAddr) -> (&'static Page, RawEntry) {
    let t = translate(mm, addr).unwrap_or_else(|| panic!("{addr:#x} is not mapped"));
    (page::page_of(t.phys), t.leaf)
}

/// Asserts `addr` in `mm` maps the KSM page `k` read-only.
pub fn assert_maps_ksm(mm: &AddressSpace, addr: UserAddr, k: &Page) {
    let (p, e) = mapped(mm, addr);
    assert_eq!(p.phys(), k.phys(), "{addr:#x} does not map the KSM page");
    assert!(p.has(PageFlags::KSM), "{addr:#x}: the merged page is not flagged KSM");
    assert!(!e.flags().contains(PteFlags::WRITABLE), "{addr:#x}: a KSM page is mapped writable");
}

/// Asserts `addr` in `mm` maps a private (non-KSM) page and returns it.
pub fn assert_private(mm: &AddressSpace, addr: UserAddr) -> &'static Page {
    let (p, _) = mapped(mm, addr);
    assert!(!p.has(PageFlags::KSM), "{addr:#x} maps a KSM page");
    p
}

/// Runs the scanner until `n` more full scans have ended (bounded: 20 s).
/// One page per call: a batch goes on past the end of a full scan, so
/// larger batches would run more passes than asked (a pass may end at the
/// start of a call, which then also scans the next pass's first page).
pub fn scan_passes(n: u64) {
    let target = ksm::stats().full_scans + n;
    let deadline = kernel::time::now_ns() + 20_000_000_000;
    while ksm::stats().full_scans < target {
        assert!(kernel::time::now_ns() < deadline, "{n} full KSM scans did not end within 20 s");
        ksm::scan::scan_pages(1);
    }
}

/// Enough scans to merge every group of equal pages (see the module docs):
/// the first of three full-scan ends may come before any page is visited.
pub fn merge_all() {
    scan_passes(3);
}

/// (pages_shared, pages_sharing) now.
pub fn sharing() -> (u64, u64) {
    let s: Stats = ksm::stats();
    (s.pages_shared, s.pages_sharing)
}

/// The protocol defaults: every defence in place, no widening.
pub fn restore_defaults() {
    race::set_sync_mode(SyncMode::None);
    race::set_ksm_switches(KsmSwitches::default());
    for p in [
        race::widen::Point::GupPreRef,
        race::widen::Point::WriterPostClear,
        race::widen::Point::WriterPreCheck,
        race::widen::Point::WriterPostCheck,
    ] {
        race::widen::set(p, race::widen::Widening::None);
    }
}

/// Runs `f` from an empty stable index and checks that, once its address
/// spaces are gone and the stable index pruned, no folio or page table leaked
/// and no oracle fired. Restores the protocol defaults afterwards.
pub fn ksm_no_leaks<R>(f: impl FnOnce() -> R) -> R {
    release_lazy_mms();
    ksm::prune();
    assert_eq!(sharing(), (0, 0), "a KSM page of an earlier test is still in use");
    let before = accounts();
    let r = f();
    restore_defaults();
    release_lazy_mms();
    ksm::prune();
    assert_eq!(sharing(), (0, 0), "KSM pages still in use after the test's address spaces are gone");
    assert_eq!(accounts(), before, "leak or oracle event (before/after)");
    r
}
