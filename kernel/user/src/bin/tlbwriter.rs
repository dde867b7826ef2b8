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

/// Values stored per loop iteration, in straight-line code.
const RUN: u64 = 64;

/// Stores `v, v+1, ..., v+RUN-1` to `word` with no branch between them.
/// A CPU takes an interrupt or NMI only between instructions, and QEMU's
/// TCG only between translation blocks: a long branch-free block keeps
/// writing through the TLB entry it started with for as long as the
/// shootdown takes to arrive, the window `tlb.nowait` must be caught in.
/// (A one-store loop leaves almost no such window under TCG: the old frame
/// went unchanged through 40000 `tlb=nmi tlb.nowait=on` flushes.)
///
/// # Safety
/// `word` is valid for volatile writes.
#[inline(always)]
unsafe fn store_run(word: *mut u64, v: u64) {
    macro_rules! store8 {
        ($base:expr) => {{
            let b = $base;
            // SAFETY: the caller's contract.
            unsafe {
                word.write_volatile(b);
                word.write_volatile(b + 1);
                word.write_volatile(b + 2);
                word.write_volatile(b + 3);
                word.write_volatile(b + 4);
                word.write_volatile(b + 5);
                word.write_volatile(b + 6);
                word.write_volatile(b + 7);
            }
        }};
    }
    store8!(v);
    store8!(v + 8);
    store8!(v + 16);
    store8!(v + 24);
    store8!(v + 32);
    store8!(v + 40);
    store8!(v + 48);
    store8!(v + 56);
}

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
        unsafe { store_run(word, i) };
        i += RUN;
        if i.is_multiple_of(1 << 24) && sys::clock_ns() > end {
            println!("tlbwriter: nobody stopped me after {} s", MAX_NS / 1_000_000_000);
            return 2;
        }
    }
}
