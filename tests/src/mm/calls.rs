//! The memory calls' argument checks: every bad argument is refused with the
//! error Linux gives, and nothing is changed.

use kernel::mm::mmap::{self as m, MmError, advice, map};
use kernel::mm::vma::{MMAP_MIN, USER_TOP};
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};

use super::{RW, assert_no_leaks, mmap, new_mm};

const PA: u32 = map::PRIVATE | map::ANONYMOUS;

kernel::ktests! {
    fn mmap_refuses_bad_arguments() {
        assert_no_leaks(|| {
            let mm = new_mm();
            assert_eq!(m::mmap(&mm, 0, 0, RW, PA), Err(MmError::Invalid), "zero length");
            assert_eq!(m::mmap(&mm, 0, PAGE_SIZE, 8, PA), Err(MmError::Invalid), "unknown prot bit");
            assert_eq!(m::mmap(&mm, 0, PAGE_SIZE, RW, map::ANONYMOUS), Err(MmError::Invalid), "not private");
            assert_eq!(m::mmap(&mm, 0, PAGE_SIZE, RW, map::PRIVATE), Err(MmError::Invalid), "not anonymous");
            assert_eq!(m::mmap(&mm, 0, PAGE_SIZE, RW, PA | 0x4000_0000), Err(MmError::Invalid), "unknown flag");
            let fixed = PA | map::FIXED;
            assert_eq!(m::mmap(&mm, MMAP_MIN + 1, PAGE_SIZE, RW, fixed), Err(MmError::Invalid), "unaligned fixed");
            assert_eq!(m::mmap(&mm, 0, PAGE_SIZE, RW, fixed), Err(MmError::Invalid), "fixed at 0");
            assert_eq!(m::mmap(&mm, USER_TOP, PAGE_SIZE, RW, fixed), Err(MmError::Invalid), "beyond the user half");
            assert_eq!(m::mmap(&mm, 0xffff_8000_0000_0000, PAGE_SIZE, RW, fixed), Err(MmError::Invalid), "kernel address");
            assert_eq!(m::mmap(&mm, 0, u64::MAX - 10, RW, PA), Err(MmError::NoMemory), "length overflows");
            assert_eq!(m::mmap(&mm, 0, USER_TOP, RW, PA), Err(MmError::NoMemory), "no room");
            assert!(mm.vmas.read().is_empty(), "a refused mmap left an area");
        });
    }

    fn fixed_mappings_replace_and_noreplace_refuses() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 4 * PAGE_SIZE, RW);
            assert_eq!(m::mmap(&mm, a.as_u64() + PAGE_SIZE, PAGE_SIZE, 1, PA | map::FIXED_NOREPLACE), Err(MmError::Exists));
            assert_eq!(m::mmap(&mm, a.as_u64() + PAGE_SIZE, PAGE_SIZE, 1, PA | map::FIXED), Ok(a + PAGE_SIZE));
            assert_eq!(mm.vmas.read().len(), 3, "the fixed mapping did not split the old area");
        });
    }

    fn munmap_mprotect_and_madvise_refuse_bad_ranges() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 4 * PAGE_SIZE, RW);
            assert_eq!(m::munmap(&mm, a.as_u64() + 1, PAGE_SIZE), Err(MmError::Invalid));
            assert_eq!(m::munmap(&mm, a.as_u64(), 0), Err(MmError::Invalid));
            assert_eq!(m::munmap(&mm, !(PAGE_SIZE - 1), PAGE_SIZE), Err(MmError::Invalid));
            assert_eq!(m::munmap(&mm, a.as_u64() + HUGE_PAGE_SIZE * 8, PAGE_SIZE), Ok(()), "unmapping nothing is fine");
            assert_eq!(m::mprotect(&mm, a.as_u64(), 8 * PAGE_SIZE, 1), Err(MmError::NoMemory), "hole in range");
            assert_eq!(m::mprotect(&mm, a.as_u64(), PAGE_SIZE, 0x10), Err(MmError::Invalid));
            assert_eq!(m::madvise(&mm, a.as_u64(), PAGE_SIZE, 9999), Err(MmError::Invalid));
            // MADV_COLLAPSE exists now (khugepaged); a range holding no whole
            // 2 MiB block has nothing to collapse, which Linux answers with 0.
            assert_eq!(m::madvise(&mm, a.as_u64(), PAGE_SIZE, advice::COLLAPSE), Ok(()), "collapse of less than a huge page");
            assert_eq!(m::madvise(&mm, a.as_u64(), 8 * PAGE_SIZE, advice::MERGEABLE), Err(MmError::NoMemory), "hole in range");
            assert_eq!(m::madvise(&mm, a.as_u64(), 8 * PAGE_SIZE, advice::DONTNEED), Err(MmError::NoMemory));
            assert_eq!(mm.vmas.read().len(), 1, "a refused call changed the areas");
        });
    }

    fn a_populate_that_runs_out_of_memory_leaves_nothing_mapped() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let keep = mmap(&mm, PAGE_SIZE, RW);
            let folios = kernel::mm::page::live_folios();
            let free = kernel::mm::frame::stats().free as u64;
            // More than every free frame: the populate loop must fail.
            let len = (free + 512) * PAGE_SIZE;
            assert_eq!(m::mmap(&mm, 0, len, RW, PA | map::POPULATE), Err(MmError::NoMemory));
            assert_eq!(mm.vmas.read().len(), 1, "the failed populate left its area");
            assert_eq!(kernel::mm::page::live_folios(), folios, "the failed populate kept the pages it filled");
            assert_eq!(mm.rss(), 0);
            // The memory is usable again: a smaller populate succeeds.
            let a = m::mmap(&mm, 0, 16 * PAGE_SIZE, RW, PA | map::POPULATE).expect("populate after the failure");
            assert_eq!(mm.rss(), 16);
            m::munmap(&mm, a.as_u64(), 16 * PAGE_SIZE).unwrap();
            m::munmap(&mm, keep.as_u64(), PAGE_SIZE).unwrap();
        });
    }

    fn areas_split_and_merge_back() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 8 * PAGE_SIZE, RW);
            m::mprotect(&mm, a.as_u64() + 2 * PAGE_SIZE, 2 * PAGE_SIZE, 1).unwrap();
            assert_eq!(mm.vmas.read().len(), 3);
            m::mprotect(&mm, a.as_u64() + 2 * PAGE_SIZE, 2 * PAGE_SIZE, RW).unwrap();
            assert_eq!(mm.vmas.read().len(), 1, "equal neighbours were not merged");
            m::munmap(&mm, a.as_u64() + 3 * PAGE_SIZE, PAGE_SIZE).unwrap();
            assert_eq!(mm.vmas.read().len(), 2);
        });
    }
}
