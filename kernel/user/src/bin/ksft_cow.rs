//! A port of the cases of Linux's tools/testing/selftests/mm/cow.c that
//! apply to this kernel (written anew; see README "Linux's mm selftests,
//! ported"): COW after fork with and without the mprotect() round trip,
//! vmsplice()'s read-only GUP references (a held FOLL_GET set) in child and
//! parent, read-only long-term pins on shared, previously shared and
//! exclusive pages (slow path and GUP-fast), read-write long-term pins
//! (the io_uring fixed-buffer cases) across mprotect() and fork(), each on
//! a base page, a PMD-mapped THP, a PTE-mapped THP, a single PTE of a THP
//! and a partially shared THP; and the anonymous-THP collapse cases
//! (MADV_COLLAPSE before fork, and after it with the THP fully, lower-half
//! or upper-half shared). Parent and child meet through `ksft::Handshake` where cow.c
//! uses pipes. Exits with the number of failed cases.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use abi::Errno;
use abi::gup_test::{FLAG_FAST, FLAG_GET, FLAG_WRITE};
use abi::mman::{MADV_COLLAPSE, MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, PROT_READ, PROT_WRITE};
use abi::page_info as pi;
use userspace::ksft::{self, HPAGE, Handshake, Ksft, Outcome, PAGE};
use userspace::sys;

userspace::entry!(main);

/// The child's handshake slot and the parent's.
const CHILD: u64 = 0;
const PARENT: u64 = 1;

static CASES: AtomicU64 = AtomicU64::new(0);

/// A fresh handshake for the next case (made before fork: both sides use it).
fn handshake() -> Handshake {
    // Relaxed: one thread.
    Handshake::new(CASES.fetch_add(1, Ordering::Relaxed))
}

/// Child exit statuses (cow.c's child functions return memcmp()'s result
/// or an error).
const CHILD_SAME: i32 = 0;
const CHILD_DIFFERENT: i32 = 1;
const CHILD_ERROR: i32 = 2;

/// cow.c child_memcmp_fn(): back the memory up, tell the parent, wait for
/// its write, compare.
fn child_memcmp(mem: usize, size: usize, hs: Handshake) -> i32 {
    let Ok(old) = ksft::map(size) else { return CHILD_ERROR };
    ksft::copy(old, mem, size);
    if hs.post(CHILD, 1).is_err() || hs.wait(PARENT, 1).is_err() {
        return CHILD_ERROR;
    }
    if ksft::same(old, mem, size) { CHILD_SAME } else { CHILD_DIFFERENT }
}

/// cow.c child_vmsplice_memcmp_fn(): back up, take read-only GUP
/// references (vmsplice), unmap, let the parent write, read through the
/// references, compare.
fn child_vmsplice_memcmp(mem: usize, size: usize, hs: Handshake) -> i32 {
    let (Ok(old), Ok(new)) = (ksft::map(size), ksft::map(size)) else { return CHILD_ERROR };
    ksft::copy(old, mem, size);
    let Ok(h) = sys::pin_start(mem, size, FLAG_GET | FLAG_FAST) else { return CHILD_ERROR };
    if sys::munmap(mem, size).is_err() {
        return CHILD_ERROR;
    }
    if hs.post(CHILD, 1).is_err() || hs.wait(PARENT, 1).is_err() {
        return CHILD_ERROR;
    }
    // SAFETY: `new` is this process's mapping of `size` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(new as *mut u8, size) };
    if sys::pin_read(h, buf).is_err() {
        return CHILD_ERROR;
    }
    if ksft::same(old, new, size) { CHILD_SAME } else { CHILD_DIFFERENT }
}

type ChildFn = fn(usize, usize, Handshake) -> i32;

/// cow.c mprotect(PROT_READ) + mprotect(PROT_READ|PROT_WRITE): the
/// "mprotect() optimization" that might map a page writable without a
/// write fault.
fn mprotect_round_trip(mem: usize, size: usize) -> Result<(), &'static str> {
    sys::mprotect(mem, size, PROT_READ).map_err(|_| "mprotect() failed")?;
    sys::mprotect(mem, size, PROT_READ | PROT_WRITE).map_err(|_| "mprotect() failed")?;
    Ok(())
}

/// Waits for `pid` and turns its status into the outcome of a child check.
fn reap(pid: usize, ok: &'static str, leak: &'static str) -> Outcome {
    match sys::wait(pid) {
        Ok(CHILD_SAME) => Ok(ok),
        Ok(CHILD_DIFFERENT) => Err(leak),
        Ok(_) => Err("the child failed (handshake, mmap, GUP or munmap)"),
        Err(_) => Err("wait() failed"),
    }
}

/// cow.c do_test_cow_in_parent(): the child checks that the parent's later
/// write does not reach it.
fn cow_in_parent(mem: usize, size: usize, do_mprotect: bool, child: ChildFn) -> Outcome {
    let hs = handshake();
    let pid = match sys::fork() {
        Ok(0) => sys::exit(child(mem, size, hs)),
        Ok(pid) => pid,
        Err(_) => return Err("fork() failed"),
    };
    let prep = hs.wait(CHILD, 1).map_err(|_| "the child never got ready").and_then(|()| {
        if do_mprotect { mprotect_round_trip(mem, size) } else { Ok(()) }
    });
    if prep.is_ok() {
        // Modify the page(s).
        ksft::fill(mem, size, 0xff);
    }
    let _ = hs.post(PARENT, 1);
    let r = reap(pid, "No leak from parent into child", "Leak from parent into child");
    prep.and(r)
}

fn test_cow_in_parent(mem: usize, size: usize) -> Outcome {
    cow_in_parent(mem, size, false, child_memcmp)
}

fn test_cow_in_parent_mprotect(mem: usize, size: usize) -> Outcome {
    cow_in_parent(mem, size, true, child_memcmp)
}

fn test_vmsplice_in_child(mem: usize, size: usize) -> Outcome {
    cow_in_parent(mem, size, false, child_vmsplice_memcmp)
}

fn test_vmsplice_in_child_mprotect(mem: usize, size: usize) -> Outcome {
    cow_in_parent(mem, size, true, child_vmsplice_memcmp)
}

/// cow.c do_test_vmsplice_in_parent(): the parent's read-only GUP
/// references (before or after fork) must not see the child's write.
fn vmsplice_in_parent(mem: usize, size: usize, before_fork: bool) -> Outcome {
    let (Ok(old), Ok(new)) = (ksft::map(size), ksft::map(size)) else { return Err("mmap() failed") };
    let r = vmsplice_in_parent_with(mem, size, before_fork, old, new);
    ksft::unmap(old, size);
    ksft::unmap(new, size);
    r
}

fn vmsplice_in_parent_with(mem: usize, size: usize, before_fork: bool, old: usize, new: usize) -> Outcome {
    ksft::copy(old, mem, size);
    let hs = handshake();
    let take = || sys::pin_start(mem, size, FLAG_GET | FLAG_FAST).map_err(|_| "vmsplice() (FOLL_GET) failed");
    let early = if before_fork { Some(take()?) } else { None };
    let pid = match sys::fork() {
        Ok(0) => {
            if hs.post(CHILD, 1).is_err() || hs.wait(PARENT, 1).is_err() {
                sys::exit(CHILD_ERROR);
            }
            // Modify the page content in the child.
            ksft::fill(mem, size, 0xff);
            sys::exit(0)
        }
        Ok(pid) => pid,
        Err(_) => return Err("fork() failed"),
    };
    let h = match early {
        Some(h) => Ok(h),
        None => take(),
    };
    let ready = hs.wait(CHILD, 1).map_err(|_| "the child never got ready");
    let unmapped = sys::munmap(mem, size).map_err(|_| "munmap() failed");
    let _ = hs.post(PARENT, 1);
    let status = sys::wait(pid);
    let h = h?;
    ready?;
    unmapped?;
    if status != Ok(0) {
        return Err("the child failed");
    }
    // SAFETY: `new` is this process's mapping of `size` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(new as *mut u8, size) };
    let read = sys::pin_read(h, buf);
    let _ = sys::pin_stop(h);
    read.map_err(|_| "reading through the references failed")?;
    if ksft::same(old, new, size) { Ok("No leak from child into parent") } else { Err("Leak from child into parent") }
}

fn test_vmsplice_before_fork(mem: usize, size: usize) -> Outcome {
    vmsplice_in_parent(mem, size, true)
}

fn test_vmsplice_after_fork(mem: usize, size: usize) -> Outcome {
    vmsplice_in_parent(mem, size, false)
}

/// cow.c's `enum ro_pin_test`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RoPin {
    /// Shared with a child that stays alive.
    Shared,
    /// Shared with a child that has exited: mapped R/O, no longer shared.
    PreviouslyShared,
    /// Exclusive, mapped R/O by the mprotect() round trip.
    RoExclusive,
}

/// cow.c do_test_ro_pin(): a read-only long-term pin must see the
/// process's later write through the page table (it unshared first).
fn ro_pin(mem: usize, size: usize, test: RoPin, fast: bool) -> Outcome {
    let Ok(tmp) = ksft::map(size) else { return Err("mmap() failed") };
    let r = ro_pin_with(mem, size, test, fast, tmp);
    ksft::unmap(tmp, size);
    r
}

fn ro_pin_with(mem: usize, size: usize, test: RoPin, fast: bool, tmp: usize) -> Outcome {
    let hs = handshake();
    let mut child = None;
    match test {
        RoPin::Shared | RoPin::PreviouslyShared => {
            let pid = match sys::fork() {
                Ok(0) => {
                    let ok = hs.post(CHILD, 1).is_ok() && hs.wait(PARENT, 1).is_ok();
                    sys::exit(if ok { 0 } else { CHILD_ERROR })
                }
                Ok(pid) => pid,
                Err(_) => return Err("fork() failed"),
            };
            if hs.wait(CHILD, 1).is_err() {
                let _ = hs.post(PARENT, 1);
                let _ = sys::wait(pid);
                return Err("the child never got ready");
            }
            if test == RoPin::PreviouslyShared {
                // Let the child quit: the pages stay mapped R/O, no longer shared.
                let _ = hs.post(PARENT, 1);
                if sys::wait(pid) != Ok(0) {
                    return Err("the child failed");
                }
            } else {
                child = Some(pid);
            }
        }
        RoPin::RoExclusive => mprotect_round_trip(mem, size)?,
    }
    let r = ro_pin_check(mem, size, fast, tmp);
    if let Some(pid) = child {
        let _ = hs.post(PARENT, 1);
        if sys::wait(pid) != Ok(0) {
            return r.and(Err("the child failed"));
        }
    }
    r
}

/// Take a R/O pin, modify the page, read back through the pin.
fn ro_pin_check(mem: usize, size: usize, fast: bool, tmp: usize) -> Outcome {
    let h = sys::pin_start(mem, size, if fast { FLAG_FAST } else { 0 }).map_err(|_| "PIN_LONGTERM_TEST_START failed")?;
    ksft::fill(mem, size, 0xff);
    // SAFETY: `tmp` is this process's mapping of `size` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(tmp as *mut u8, size) };
    let read = sys::pin_read(h, buf);
    let stopped = sys::pin_stop(h);
    read.map_err(|_| "PIN_LONGTERM_TEST_READ failed")?;
    stopped.map_err(|_| "PIN_LONGTERM_TEST_STOP failed")?;
    if ksft::same(mem, tmp, size) { Ok("Longterm R/O pin is reliable") } else { Err("Longterm R/O pin is not reliable") }
}

fn test_ro_pin_on_shared(mem: usize, size: usize) -> Outcome {
    ro_pin(mem, size, RoPin::Shared, false)
}

fn test_ro_fast_pin_on_shared(mem: usize, size: usize) -> Outcome {
    ro_pin(mem, size, RoPin::Shared, true)
}

fn test_ro_pin_on_ro_previously_shared(mem: usize, size: usize) -> Outcome {
    ro_pin(mem, size, RoPin::PreviouslyShared, false)
}

fn test_ro_fast_pin_on_ro_previously_shared(mem: usize, size: usize) -> Outcome {
    ro_pin(mem, size, RoPin::PreviouslyShared, true)
}

fn test_ro_pin_on_ro_exclusive(mem: usize, size: usize) -> Outcome {
    ro_pin(mem, size, RoPin::RoExclusive, false)
}

fn test_ro_fast_pin_on_ro_exclusive(mem: usize, size: usize) -> Outcome {
    ro_pin(mem, size, RoPin::RoExclusive, true)
}

/// cow.c do_test_iouring(): a R/W long-term pin (io_uring's fixed buffer:
/// FOLL_WRITE | FOLL_PIN | FOLL_LONGTERM, pin_user_pages_fast()) must see
/// the process's later write, after a fork (the pinned page is not shared
/// with the child) or after the page was mapped R/O and back. The pin's
/// contents are read as io_uring's write_fixed would hand them to a file.
fn rw_pin(mem: usize, size: usize, use_fork: bool) -> Outcome {
    let Ok(tmp) = ksft::map(size) else { return Err("mmap() failed") };
    let r = rw_pin_with(mem, size, use_fork, tmp);
    ksft::unmap(tmp, size);
    r
}

fn rw_pin_with(mem: usize, size: usize, use_fork: bool, tmp: usize) -> Outcome {
    let h = sys::pin_start(mem, size, FLAG_WRITE | FLAG_FAST).map_err(|_| "registering the buffer (R/W pin) failed")?;
    let hs = handshake();
    let mut child = None;
    let prep = if use_fork {
        match sys::fork() {
            Ok(0) => {
                let ok = hs.post(CHILD, 1).is_ok() && hs.wait(PARENT, 1).is_ok();
                sys::exit(if ok { 0 } else { CHILD_ERROR })
            }
            Ok(pid) => {
                child = Some(pid);
                hs.wait(CHILD, 1).map_err(|_| "the child never got ready")
            }
            Err(_) => Err("fork() failed"),
        }
    } else {
        mprotect_round_trip(mem, size)
    };
    let r = prep.and_then(|()| {
        ksft::fill(mem, size, 0xff);
        // SAFETY: `tmp` is this process's mapping of `size` bytes.
        let buf = unsafe { core::slice::from_raw_parts_mut(tmp as *mut u8, size) };
        sys::pin_read(h, buf).map_err(|_| "reading through the pin failed")?;
        if ksft::same(mem, tmp, size) { Ok("Longterm R/W pin is reliable") } else { Err("Longterm R/W pin is not reliable") }
    });
    if let Some(pid) = child {
        let _ = hs.post(PARENT, 1);
        if sys::wait(pid) != Ok(0) {
            let _ = sys::pin_stop(h);
            return r.and(Err("the child failed"));
        }
    }
    let stopped = sys::pin_stop(h).map_err(|_| "unregistering (unpin) failed");
    r.and_then(|ok| stopped.map(|_| ok))
}

fn test_iouring_ro(mem: usize, size: usize) -> Outcome {
    rw_pin(mem, size, false)
}

fn test_iouring_fork(mem: usize, size: usize) -> Outcome {
    rw_pin(mem, size, true)
}

/// cow.c's `anon_test_cases[]` (those that apply; see the README).
const ANON_CASES: &[(&str, fn(usize, usize) -> Outcome)] = &[
    ("Basic COW after fork()", test_cow_in_parent),
    ("Basic COW after fork() with mprotect() optimization", test_cow_in_parent_mprotect),
    ("vmsplice() + unmap in child", test_vmsplice_in_child),
    ("vmsplice() + unmap in child with mprotect() optimization", test_vmsplice_in_child_mprotect),
    ("vmsplice() before fork(), unmap in parent after fork()", test_vmsplice_before_fork),
    ("vmsplice() + unmap in parent after fork()", test_vmsplice_after_fork),
    ("R/O-mapping a page registered as iouring fixed buffer", test_iouring_ro),
    ("fork() with an iouring fixed buffer", test_iouring_fork),
    ("R/O GUP pin on R/O-mapped shared page", test_ro_pin_on_shared),
    ("R/O GUP-fast pin on R/O-mapped shared page", test_ro_fast_pin_on_shared),
    ("R/O GUP pin on R/O-mapped previously-shared page", test_ro_pin_on_ro_previously_shared),
    ("R/O GUP-fast pin on R/O-mapped previously-shared page", test_ro_fast_pin_on_ro_previously_shared),
    ("R/O GUP pin on R/O-mapped exclusive page", test_ro_pin_on_ro_exclusive),
    ("R/O GUP-fast pin on R/O-mapped exclusive page", test_ro_fast_pin_on_ro_exclusive),
];

/// How the memory under test is mapped (cow.c run_with_base_page() and
/// `enum thp_run`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Base,
    Thp,
    PteMappedThp,
    SinglePteOfThp,
    PartiallySharedThp,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Base => "with base page",
            Layout::Thp => "with THP (2048 kB)",
            Layout::PteMappedThp => "with PTE-mapped THP (2048 kB)",
            Layout::SinglePteOfThp => "with single PTE of THP (2048 kB)",
            Layout::PartiallySharedThp => "with partially shared THP (2048 kB)",
        }
    }
}

/// Sets the memory up as `layout`, runs `f` on it, unmaps it.
fn run_with(layout: Layout, f: fn(usize, usize) -> Outcome) -> Outcome {
    if layout == Layout::Base {
        let mem = ksft::map(PAGE).map_err(|_| "mmap() failed")?;
        let r = sys::madvise(mem, PAGE, MADV_NOHUGEPAGE).map_err(|_| "MADV_NOHUGEPAGE failed").and_then(|_| {
            // Populate a base page.
            ksft::fill(mem, PAGE, 1);
            f(mem, PAGE)
        });
        ksft::unmap(mem, PAGE);
        return r;
    }
    // Twice the THP size, for alignment (at a fresh address: see
    // ksft::map_thp_area).
    let (mmap_mem, mem) = ksft::map_thp_area().map_err(|_| "mmap() failed")?;
    let r = thp_setup(mem, layout).and_then(|size| f(mem, size));
    ksft::unmap(mmap_mem, 2 * HPAGE);
    r
}

/// cow.c do_run_with_thp() up to the test: a THP populated by one touch,
/// then PTE-mapped or cut down to one PTE. Returns the size to test. Where
/// cow.c skips ("Did not get a THP populated"), this kernel must give one.
fn thp_setup(mem: usize, layout: Layout) -> Result<usize, &'static str> {
    sys::madvise(mem, HPAGE, MADV_HUGEPAGE).map_err(|_| "MADV_HUGEPAGE failed")?;
    // SAFETY: inside the mapping, writable.
    unsafe { (mem as *mut u8).write_volatile(1) };
    if !ksft::populated(mem + HPAGE - PAGE) || !ksft::pmd_mapped(mem) {
        return Err("did not get a THP populated");
    }
    ksft::fill(mem, HPAGE, 1);
    match layout {
        Layout::Base | Layout::Thp => Ok(HPAGE),
        Layout::PteMappedThp => {
            // PTE-map the THP by mapping one subpage R/O for a moment.
            mprotect_round_trip(mem + PAGE, PAGE)?;
            let w = ksft::info(mem);
            if w[pi::W_FLAGS] & pi::F_HUGE_PMD != 0 || w[pi::W_FLAGS] & pi::F_THP == 0 {
                return Err("the THP did not become PTE-mapped");
            }
            Ok(HPAGE)
        }
        Layout::SinglePteOfThp => {
            // Discard all but one subpage of the PTE-mapped THP.
            sys::madvise(mem + PAGE, HPAGE - PAGE, MADV_DONTNEED).map_err(|_| "MADV_DONTNEED failed")?;
            if ksft::info(mem)[pi::W_FLAGS] & pi::F_THP == 0 || ksft::populated(mem + PAGE) {
                return Err("not a single PTE of a THP");
            }
            Ok(PAGE)
        }
        Layout::PartiallySharedThp => {
            // Share the first page of the THP with a child that exits: some
            // parts of the THP were never shared.
            sys::madvise(mem + PAGE, HPAGE - PAGE, MADV_DONTFORK).map_err(|_| "MADV_DONTFORK failed")?;
            match sys::fork() {
                Ok(0) => sys::exit(0),
                Ok(pid) => {
                    if sys::wait(pid) != Ok(0) {
                        return Err("the child failed");
                    }
                }
                Err(_) => return Err("fork() failed"),
            }
            // Allow sharing all pages again.
            sys::madvise(mem + PAGE, HPAGE - PAGE, MADV_DOFORK).map_err(|_| "MADV_DOFORK failed")?;
            if ksft::info(mem)[pi::W_FLAGS] & (pi::F_THP | pi::F_ANON_EXCLUSIVE) != pi::F_THP {
                return Err("the first page of the THP was not shared");
            }
            Ok(HPAGE)
        }
    }
}

/// cow.c's `enum anon_thp_collapse_test`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Collapse {
    /// MADV_COLLAPSE before fork.
    Unshared,
    /// MADV_COLLAPSE after fork, of the fully COW-shared PTE-mapped THP.
    FullyShared,
    /// After fork, with only the lower half shared (MADV_DONTFORK on the upper).
    LowerShared,
    /// After fork, with only the upper half shared.
    UpperShared,
}

/// cow.c do_test_anon_thp_collapse(): after the collapse the child must
/// not see the parent's write.
fn anon_thp_collapse(mem: usize, size: usize, test: Collapse) -> Outcome {
    // PTE-map the THP, so that there is something to collapse.
    mprotect_round_trip(mem + PAGE, PAGE)?;
    match test {
        Collapse::Unshared => {
            sys::madvise(mem, size, MADV_COLLAPSE).map_err(|_| "MADV_COLLAPSE failed")?;
        }
        Collapse::FullyShared => {}
        // Do not COW-share the upper (lower) part of the THP.
        Collapse::LowerShared => {
            sys::madvise(mem + size / 2, size / 2, MADV_DONTFORK).map_err(|_| "MADV_DONTFORK failed")?;
        }
        Collapse::UpperShared => {
            sys::madvise(mem, size / 2, MADV_DONTFORK).map_err(|_| "MADV_DONTFORK failed")?;
        }
    }
    let hs = handshake();
    let pid = match sys::fork() {
        Ok(0) => sys::exit(match test {
            Collapse::Unshared | Collapse::FullyShared => child_memcmp(mem, size, hs),
            Collapse::LowerShared => child_memcmp(mem, size / 2, hs),
            Collapse::UpperShared => child_memcmp(mem + size / 2, size / 2, hs),
        }),
        Ok(pid) => pid,
        Err(_) => return Err("fork() failed"),
    };
    let prep = hs.wait(CHILD, 1).map_err(|_| "the child never got ready").and_then(|()| {
        if matches!(test, Collapse::LowerShared | Collapse::UpperShared) {
            // Revert MADV_DONTFORK so that the areas merge and can collapse.
            sys::madvise(mem, size, MADV_DOFORK).map_err(|_| "MADV_DOFORK failed")?;
        }
        if test != Collapse::Unshared {
            // Collapse before anyone modified the COW-shared page. Every
            // pte is read-only after fork: Linux refuses that as
            // SCAN_PAGE_RO (EINVAL; until its 2025 change that collapses
            // read-only anonymous ranges) and cow.c then skips; so does
            // this kernel.
            match sys::madvise(mem, size, MADV_COLLAPSE) {
                Ok(_) => {}
                Err(Errno::EINVAL) => return Err(SKIP_COLLAPSE_RO),
                Err(_) => return Err("MADV_COLLAPSE failed"),
            }
            if !ksft::pmd_mapped(mem) {
                return Err("MADV_COLLAPSE left no huge pmd");
            }
        }
        Ok(())
    });
    if prep.is_ok() {
        ksft::fill(mem, size, 0xff);
    }
    let _ = hs.post(PARENT, 1);
    let r = reap(pid, "No leak from parent into child", "Leak from parent into child");
    prep.and(r)
}

/// The fully-shared collapse refused as Linux refuses it (a skip, as cow.c's).
const SKIP_COLLAPSE_RO: &str = "MADV_COLLAPSE failed: EINVAL (every pte read-only after fork: SCAN_PAGE_RO, as Linux)";

fn test_anon_thp_collapse_unshared(mem: usize, size: usize) -> Outcome {
    anon_thp_collapse(mem, size, Collapse::Unshared)
}

fn test_anon_thp_collapse_fully_shared(mem: usize, size: usize) -> Outcome {
    anon_thp_collapse(mem, size, Collapse::FullyShared)
}

fn test_anon_thp_collapse_lower_shared(mem: usize, size: usize) -> Outcome {
    anon_thp_collapse(mem, size, Collapse::LowerShared)
}

fn test_anon_thp_collapse_upper_shared(mem: usize, size: usize) -> Outcome {
    anon_thp_collapse(mem, size, Collapse::UpperShared)
}

/// cow.c's `anon_thp_test_cases[]` (those that apply).
const ANON_THP_CASES: &[(&str, fn(usize, usize) -> Outcome)] = &[
    ("Basic COW after fork() when collapsing before fork()", test_anon_thp_collapse_unshared),
    ("Basic COW after fork() when collapsing after fork() (fully shared)", test_anon_thp_collapse_fully_shared),
    ("Basic COW after fork() when collapsing after fork() (lower shared)", test_anon_thp_collapse_lower_shared),
    ("Basic COW after fork() when collapsing after fork() (upper shared)", test_anon_thp_collapse_upper_shared),
];

fn main() -> i32 {
    let mut k = Ksft::new("cow");
    for &(desc, f) in ANON_CASES {
        for layout in [Layout::Base, Layout::Thp, Layout::PteMappedThp, Layout::SinglePteOfThp, Layout::PartiallySharedThp] {
            k.record(desc, layout.name(), run_with(layout, f));
        }
    }
    for &(desc, f) in ANON_THP_CASES {
        match run_with(Layout::Thp, f) {
            Err(why) if why == SKIP_COLLAPSE_RO => k.skip(desc, Layout::Thp.name(), why),
            outcome => k.record(desc, Layout::Thp.name(), outcome),
        }
    }
    k.finish()
}
