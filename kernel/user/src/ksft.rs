//! What the ports of Linux's mm selftests (cow.c, gup_longterm.c,
//! ksm_functional_tests.c) share, in the spirit of kselftest.h and
//! vm_util.c: result counting and the summary line, memory and byte
//! helpers over raw mappings (the programs have no heap), page-state
//! queries through `page_info`, and a parent/child handshake.
//!
//! **The handshake** ([`Handshake`]) replaces cow.c's two pipes: a process
//! posts a value into a block of the DMA device's store (`dio_write`) and
//! the other polls that block (`dio_read`) until it holds the value. The
//! store is outside both address spaces, as a pipe's buffer is; each value
//! is unique to one step of one case, so a value left by an earlier case
//! never matches. The last 16 blocks of the store are reserved for it.

use abi::Errno;
use abi::dio::{BLOCK, DEVICE_SIZE};
use abi::mman::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use abi::page_info as pi;

use crate::{println, sys};

/// Bytes in a page.
pub const PAGE: usize = 4096;
/// Bytes in a PMD-mapped transparent huge page.
pub const HPAGE: usize = 2 << 20;

/// A case's outcome: `Ok(what held)` or `Err(why it failed)`.
pub type Outcome = Result<&'static str, &'static str>;

/// The results of one program, printed as one summary line at the end.
pub struct Ksft {
    name: &'static str,
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Ksft {
    /// A program's counters; `name` prefixes every line.
    pub fn new(name: &'static str) -> Ksft {
        Ksft { name, passed: 0, failed: 0, skipped: 0 }
    }

    /// Records one case's outcome (Linux ksft_test_result()), printing
    /// it: `Ok(what)` passed, `Err(why)` failed.
    pub fn record(&mut self, case: &str, variant: &str, outcome: Outcome) {
        match outcome {
            Ok(what) => {
                self.passed += 1;
                println!("{}: ok {case} ... {variant}: {what}", self.name);
            }
            Err(why) => {
                self.failed += 1;
                println!("{}: FAIL {case} ... {variant}: {why}", self.name);
            }
        }
    }

    /// Records a case skipped where the Linux selftest skips it too, with
    /// why (Linux ksft_test_result_skip()).
    pub fn skip(&mut self, case: &str, variant: &str, why: &str) {
        self.skipped += 1;
        println!("{}: SKIP {case} ... {variant}: {why}", self.name);
    }

    /// Prints `<name>: N passed, M failed, K skipped` and returns the exit
    /// status: the number of failures (0: no case failed).
    pub fn finish(self) -> i32 {
        println!("{}: {} passed, {} failed, {} skipped", self.name, self.passed, self.failed, self.skipped);
        self.failed as i32
    }
}

/// Maps `len` bytes of private anonymous read-write memory.
pub fn map(len: usize) -> Result<usize, Errno> {
    sys::mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
}

/// Where [`map_thp_area`] maps next.
static NEXT_THP_AREA: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0x2000_0000_0000);

/// Maps `2 * HPAGE` bytes at an address this process never used before
/// and returns (mapping, its 2 MiB-aligned THP-sized part). A THP needs an
/// empty pmd, and this kernel's munmap keeps the page tables it emptied
/// until the process ends (Linux frees them, free_pgtables()): mapping
/// again where a THP was split or COWed would find the old pte table and
/// get small pages. Linux's selftests reuse addresses freely.
pub fn map_thp_area() -> Result<(usize, usize), Errno> {
    // Relaxed: one counter, each call takes its own range.
    let hint = NEXT_THP_AREA.fetch_add(4 * HPAGE, core::sync::atomic::Ordering::Relaxed);
    let m = sys::mmap(hint, 2 * HPAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)?;
    Ok((m, (m + HPAGE - 1) & !(HPAGE - 1)))
}

/// Unmaps, ignoring errors (cleanup paths, as the selftests' munmap()).
pub fn unmap(addr: usize, len: usize) {
    let _ = sys::munmap(addr, len);
}

/// Fills `[addr, addr+len)` with `byte`, word by word.
pub fn fill(addr: usize, len: usize, byte: u8) {
    let word = u64::from_ne_bytes([byte; 8]);
    for off in (0..len).step_by(8) {
        // SAFETY: the caller's mapping, writable, 8-aligned.
        unsafe { ((addr + off) as *mut u64).write_volatile(word) };
    }
}

/// Copies `len` bytes (a multiple of 8) from `src` to `dst`.
pub fn copy(dst: usize, src: usize, len: usize) {
    for off in (0..len).step_by(8) {
        // SAFETY: both ranges are the caller's mappings, 8-aligned.
        unsafe { ((dst + off) as *mut u64).write_volatile(((src + off) as *const u64).read_volatile()) };
    }
}

/// Whether `len` bytes (a multiple of 8) at `a` and `b` are equal (memcmp() == 0).
pub fn same(a: usize, b: usize, len: usize) -> bool {
    (0..len).step_by(8).all(|off| {
        // SAFETY: both ranges are the caller's mappings, readable, 8-aligned.
        unsafe { ((a + off) as *const u64).read_volatile() == ((b + off) as *const u64).read_volatile() }
    })
}

/// Reads one byte (populates the page by a read fault).
pub fn touch_read(addr: usize) -> u8 {
    // SAFETY: the caller's mapping, readable.
    unsafe { (addr as *const u8).read_volatile() }
}

/// The `page_info` words of `addr` in this process (zeroes on error).
pub fn info(addr: usize) -> [u64; pi::WORDS] {
    sys::page_info(0, addr).unwrap_or([0; pi::WORDS])
}

/// Whether a page is mapped at `addr` (pagemap_is_populated()).
pub fn populated(addr: usize) -> bool {
    info(addr)[pi::W_FLAGS] & pi::F_PRESENT != 0
}

/// Whether a huge pmd maps `addr` (a PMD-mapped THP).
pub fn pmd_mapped(addr: usize) -> bool {
    info(addr)[pi::W_FLAGS] & pi::F_HUGE_PMD != 0
}

/// The frame number mapped at `addr`, 0 if none (pagemap_get_pfn()).
pub fn pfn(addr: usize) -> u64 {
    info(addr)[pi::W_PFN]
}

/// KSM pages mapped in `[addr, addr+len)` (this port's stand-in for
/// `/proc/self/ksm_merging_pages`, which counts the pages KSM merged in
/// this process: the same pages in these tests).
pub fn ksm_pages(addr: usize, len: usize) -> usize {
    (0..len).step_by(PAGE).filter(|off| info(addr + off)[pi::W_FLAGS] & pi::F_KSM != 0).count()
}

/// Whether one frame is mapped twice in `[addr, addr+len)`
/// (ksm_functional_tests' range_maps_duplicates()), for up to 512 pages:
/// the frame numbers are collected and sorted instead of compared pair by
/// pair.
pub fn maps_duplicates(addr: usize, len: usize) -> bool {
    let mut pfns = [0u64; 512];
    let mut n = 0;
    for off in (0..len).step_by(PAGE).take(512) {
        let p = pfn(addr + off);
        if p != 0 {
            pfns[n] = p;
            n += 1;
        }
    }
    let pfns = &mut pfns[..n];
    pfns.sort_unstable();
    pfns.windows(2).any(|w| w[0] == w[1])
}

/// A parent/child handshake through the DMA device's store (see the
/// module docs): `case` numbers the test case, so values never repeat.
#[derive(Clone, Copy)]
pub struct Handshake {
    base: u64,
}

/// The first block of the store kept for handshakes.
const HANDSHAKE_BLOCKS: u64 = DEVICE_SIZE - 16 * BLOCK;
/// How long a wait may take before the case fails.
const HANDSHAKE_TIMEOUT_NS: u64 = 20_000_000_000;

impl Handshake {
    /// The handshake of case number `case` of this process.
    pub fn new(case: u64) -> Handshake {
        Handshake { base: ((sys::getpid() as u64) << 32) | (case << 8) }
    }

    fn block(slot: u64) -> u64 {
        HANDSHAKE_BLOCKS + slot * BLOCK
    }

    /// Posts step `step` in `slot` (0: the child's, 1: the parent's).
    pub fn post(&self, slot: u64, step: u64) -> Result<(), Errno> {
        let buf = map(PAGE)?;
        // SAFETY: the page just mapped.
        unsafe { (buf as *mut u64).write_volatile(self.base | step) };
        let r = sys::dio_write(buf, PAGE, Self::block(slot), 0);
        unmap(buf, PAGE);
        r.map(|_| ())
    }

    /// Waits until `slot` holds step `step` (ETIMEDOUT after 20 s).
    pub fn wait(&self, slot: u64, step: u64) -> Result<(), Errno> {
        let buf = map(PAGE)?;
        let start = sys::clock_ns();
        let r = loop {
            if let Err(e) = sys::dio_read(buf, PAGE, Self::block(slot), 0) {
                break Err(e);
            }
            // SAFETY: the page mapped above, just filled by the device.
            if unsafe { (buf as *const u64).read_volatile() } == self.base | step {
                break Ok(());
            }
            if sys::clock_ns() - start > HANDSHAKE_TIMEOUT_NS {
                println!("handshake: step {step} in slot {slot} never came");
                break Err(Errno::ETIMEDOUT);
            }
            sys::yield_now();
        };
        unmap(buf, PAGE);
        r
    }
}
