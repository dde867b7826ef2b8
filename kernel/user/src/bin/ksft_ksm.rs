//! A port of the cases of Linux's
//! tools/testing/selftests/mm/ksm_functional_tests.c that apply here
//! (written anew; see README "Linux's mm selftests, ported"), driving ksmd
//! through `ksm_ctl` as the test drives `/sys/kernel/mm/ksm/run` and
//! `full_scans`: merge a range of equal pages (ksm_merge(): run=1, then
//! two more full scans), then unmerge it with MADV_UNMERGEABLE, with part
//! of it discarded first, and zero-filled pages (use_zero_pages absent:
//! they merge into an ordinary KSM page, unmerged half by
//! MADV_UNMERGEABLE and half by writes); and unmerge everything with run=2
//! (KSM_RUN_UNMERGE, what the test's ksm_unmerge() does before each case);
//! and test_prot_none: a PROT_NONE range merges, half of it is written
//! through FOLL_FORCE (gup_test with FLAG_WRITE | FLAG_FORCE, where the
//! test writes /proc/self/mem) and the other half unmerged by
//! MADV_UNMERGEABLE.
//! `range_maps_duplicates()` reads frame numbers through `page_info`
//! (pagemap); `ksm_merging_pages` is the count of KSM pages mapped in the
//! range. Exits with the number of failed cases.
#![no_std]
#![no_main]

use abi::ksm_ctl as k;
use abi::gup_test as g;
use abi::mman::{MADV_DONTNEED, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_UNMERGEABLE, PROT_NONE, PROT_READ, PROT_WRITE};
use userspace::ksft::{self, Ksft, Outcome, PAGE};
use userspace::{println, sys};

userspace::entry!(main);

/// The tests' range: 2 MiB.
const SIZE: usize = 2 << 20;
/// How long two full scans may take.
const MERGE_TIMEOUT_NS: u64 = 30_000_000_000;

fn full_scans() -> Result<usize, &'static str> {
    sys::ksm_ctl(k::GET, k::FULL_SCANS, 0).map_err(|_| "reading full_scans failed")
}

/// ksm_merge(): start ksmd and wait for two full scans, so that any
/// possible merging happened.
fn ksm_merge() -> Result<(), &'static str> {
    let start = full_scans()?;
    sys::ksm_ctl(k::SET, k::RUN, k::RUN_MERGE).map_err(|_| "run=1 failed")?;
    let t0 = sys::clock_ns();
    while full_scans()? < start + 2 {
        if sys::clock_ns() - t0 > MERGE_TIMEOUT_NS {
            return Err("ksmd did not make two full scans in 30 s");
        }
        let _ = sys::sleep_ns(1_000_000);
    }
    Ok(())
}

/// ksm_unmerge(): run=2.
fn ksm_unmerge() -> Result<(), &'static str> {
    sys::ksm_ctl(k::SET, k::RUN, k::RUN_UNMERGE).map(|_| ()).map_err(|_| "run=2 failed")
}

/// __mmap_and_merge_range() with read/write protection.
fn mmap_and_merge_range(val: u8) -> Result<usize, &'static str> {
    mmap_and_merge_range_prot(val, PROT_READ | PROT_WRITE)
}

/// __mmap_and_merge_range(): unmerge everything, map 2 MiB without THP,
/// fill it with `val`, mprotect it to `prot` if that is not read/write,
/// MADV_MERGEABLE, merge; something must have merged.
fn mmap_and_merge_range_prot(val: u8, prot: usize) -> Result<usize, &'static str> {
    ksm_unmerge().map_err(|_| "Disabling (unmerging) KSM failed")?;
    let map = ksft::map(SIZE).map_err(|_| "mmap() failed")?;
    let r = (|| {
        sys::madvise(map, SIZE, MADV_NOHUGEPAGE).map_err(|_| "MADV_NOHUGEPAGE failed")?;
        ksft::fill(map, SIZE, val);
        if prot != PROT_READ | PROT_WRITE {
            sys::mprotect(map, SIZE, prot).map_err(|_| "mprotect() failed")?;
        }
        sys::madvise(map, SIZE, MADV_MERGEABLE).map_err(|_| "MADV_MERGEABLE failed")?;
        ksm_merge()?;
        // Linux skips this check for the zero page, which it may account
        // differently; here zero-filled pages are ordinary KSM pages.
        if ksft::ksm_pages(map, SIZE) == 0 {
            return Err("No pages got merged");
        }
        if !ksft::maps_duplicates(map, SIZE) {
            return Err("KSM pages merged, but no frame is mapped twice");
        }
        Ok(map)
    })();
    if r.is_err() {
        ksft::unmap(map, SIZE);
    }
    r
}

/// Neither a KSM page nor a frame mapped twice is left in the range.
fn unmerged(map: usize, len: usize, what: &'static str) -> Outcome {
    if ksft::ksm_pages(map, len) != 0 {
        return Err("KSM pages left in the range");
    }
    if ksft::maps_duplicates(map, len) { Err("a frame is still mapped twice") } else { Ok(what) }
}

/// test_unmerge(); also the statistics after the merge (pages_shared,
/// pages_sharing as ksm_tests.c reads them).
fn test_unmerge() -> Outcome {
    let map = mmap_and_merge_range(0xcf)?;
    let r = (|| {
        let shared = sys::ksm_ctl(k::GET, k::PAGES_SHARED, 0).map_err(|_| "reading pages_shared failed")?;
        let sharing = sys::ksm_ctl(k::GET, k::PAGES_SHARING, 0).map_err(|_| "reading pages_sharing failed")?;
        println!("ksm: after the merge pages_shared={shared} pages_sharing={sharing}");
        if shared == 0 || sharing == 0 {
            return Err("pages_shared or pages_sharing is 0 after a merge");
        }
        sys::madvise(map, SIZE, MADV_UNMERGEABLE).map_err(|_| "MADV_UNMERGEABLE failed")?;
        unmerged(map, SIZE, "Pages were unmerged")
    })();
    ksft::unmap(map, SIZE);
    r
}

/// test_unmerge_zero_pages(), without use_zero_pages (see the module docs).
fn test_unmerge_zero_pages() -> Outcome {
    let map = mmap_and_merge_range(0x00)?;
    let r = (|| {
        // Unmerge half of the region.
        sys::madvise(map, SIZE / 2, MADV_UNMERGEABLE).map_err(|_| "MADV_UNMERGEABLE failed")?;
        if ksft::ksm_pages(map, SIZE / 2) != 0 {
            return Err("KSM pages left in the unmerged half");
        }
        // Unmerge the other half by writing to the pages.
        for off in (SIZE / 2..SIZE).step_by(PAGE) {
            // SAFETY: inside the mapping, writable.
            unsafe { ((map + off) as *mut u32).write_volatile(off as u32) };
        }
        unmerged(map, SIZE, "KSM zero pages were unmerged")
    })();
    ksft::unmap(map, SIZE);
    r
}

/// test_unmerge_discarded(): half of the range discarded (pte_none entries)
/// before MADV_UNMERGEABLE.
fn test_unmerge_discarded() -> Outcome {
    let map = mmap_and_merge_range(0xcf)?;
    let r = (|| {
        sys::madvise(map, SIZE / 2, MADV_DONTNEED).map_err(|_| "MADV_DONTNEED failed")?;
        sys::madvise(map, SIZE, MADV_UNMERGEABLE).map_err(|_| "MADV_UNMERGEABLE failed")?;
        unmerged(map, SIZE, "Pages were unmerged")
    })();
    ksft::unmap(map, SIZE);
    r
}

/// run=2 unmerges every merged page and leaves the range mergeable: the
/// next run=1 merges it again (what test_prctl_unmerge() checks for
/// prctl(PR_SET_MEMORY_MERGE, 0), the testbed having no prctl).
fn test_run_unmerge() -> Outcome {
    let map = mmap_and_merge_range(0xcf)?;
    let r = (|| {
        ksm_unmerge()?;
        if sys::ksm_ctl(k::GET, k::RUN, 0) != Ok(0) {
            return Err("ksmd still runs after run=2");
        }
        unmerged(map, SIZE, "")?;
        ksm_merge()?;
        if ksft::ksm_pages(map, SIZE) == 0 {
            return Err("the range did not merge again after run=2 and run=1");
        }
        Ok("Pages were unmerged, and merge again")
    })();
    ksft::unmap(map, SIZE);
    r
}

/// What a write of `word` at `addr` through /proc/self/mem does
/// (mem_rw(): access_remote_vm() with FOLL_FORCE | FOLL_WRITE, which
/// breaks COW even where the area is not writable): a FOLL_FORCE |
/// FOLL_WRITE pin of the page, the page written through it, unpinned.
fn force_write_page(addr: usize, word: u64) -> Result<(), &'static str> {
    let h = sys::gup_test(g::START, addr, PAGE, (g::FLAG_WRITE | g::FLAG_FORCE) as usize).map_err(|_| "ptrace write failed")?;
    let mut buf = [0x11u8; PAGE];
    buf[..8].copy_from_slice(&word.to_le_bytes());
    let w = sys::gup_test(g::WRITE, h, buf.as_ptr() as usize, PAGE);
    let s = sys::gup_test(g::STOP, h, 0, 0);
    if w != Ok(PAGE) || s.is_err() {
        return Err("ptrace write failed");
    }
    Ok(())
}

/// test_prot_none().
fn test_prot_none() -> Outcome {
    let map = mmap_and_merge_range_prot(0x11, PROT_NONE)?;
    let r = (|| {
        // Store a unique value in each page of one half (the test: through
        // /proc/self/mem, i.e. FOLL_FORCE).
        for i in (0..SIZE / 2).step_by(PAGE) {
            force_write_page(map + i, i as u64)?;
        }
        // Trigger unsharing on the other half.
        sys::madvise(map + SIZE / 2, SIZE / 2, MADV_UNMERGEABLE).map_err(|_| "MADV_UNMERGEABLE failed")?;
        if ksft::maps_duplicates(map, SIZE) {
            return Err("a frame is still mapped twice");
        }
        // Not in the test: the forced writes landed and the range stayed
        // PROT_NONE throughout.
        sys::mprotect(map, SIZE, PROT_READ).map_err(|_| "mprotect() failed")?;
        for i in (0..SIZE / 2).step_by(PAGE) {
            // SAFETY: inside the mapping, readable now.
            if unsafe { ((map + i) as *const u64).read_volatile() } != i as u64 {
                return Err("a forced write did not land in its page");
            }
        }
        Ok("Pages were unmerged")
    })();
    ksft::unmap(map, SIZE);
    r
}

fn main() -> i32 {
    let mut kt = Ksft::new("ksm");
    let cases: [(&str, fn() -> Outcome); 5] = [
        ("test_unmerge", test_unmerge),
        ("test_unmerge_zero_pages", test_unmerge_zero_pages),
        ("test_unmerge_discarded", test_unmerge_discarded),
        ("run=2 (KSM_RUN_UNMERGE)", test_run_unmerge),
        ("test_prot_none", test_prot_none),
    ];
    for (name, f) in cases {
        kt.record(name, "2 MiB of base pages", f());
    }
    // ksm_stop(): leave ksmd stopped and nothing merged.
    if ksm_unmerge().is_err() {
        kt.record("cleanup", "run=2", Err("run=2 failed"));
    }
    kt.finish()
}
