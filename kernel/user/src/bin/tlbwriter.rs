//! The writer of the TLB suite's user stale-write test
//! (`tests/src/tlb/user.rs`): maps one private page at [`PAGE`] (a fixed
//! address the test knows), then writes an incrementing counter (1, 2, 3,
//! ...) to its first word in a tight loop, in ring 3, while the kernel test
//! moves the page between frames and flushes on another CPU. Every value is
//! unique, so the test can tell which write landed where.
//!
//! The loop never ends by itself in a test: the test makes the process exit.
//! As a safety net against a forgotten writer it stops after 120 s with
//! status 2. Status 1: the mapping failed.
#![no_std]
#![no_main]

use abi::mman::*;
use userspace::{println, sys};

userspace::entry!(main);

/// The page's address (also in `tests/src/tlb/user.rs`).
const PAGE: usize = 0x5000_0000;
/// The safety net.
const MAX_NS: u64 = 120_000_000_000;

fn main() -> i32 {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE;
    if let Err(e) = sys::mmap(PAGE, 4096, PROT_READ | PROT_WRITE, flags) {
        println!("tlbwriter: mmap at {PAGE:#x} failed: {e}");
        return 1;
    }
    let word = PAGE as *mut u64;
    let end = sys::clock_ns() + MAX_NS;
    let mut i = 1u64;
    loop {
        // SAFETY: the page is mapped read-write for the life of the process.
        unsafe { word.write_volatile(i) };
        i += 1;
        if i.is_multiple_of(1 << 24) && sys::clock_ns() > end {
            println!("tlbwriter: nobody stopped me after {} s", MAX_NS / 1_000_000_000);
            return 2;
        }
    }
}
