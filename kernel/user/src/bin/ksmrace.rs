//! The ksm-vs-gupfast worker (controls.md): a mergeable buffer whose pages
//! are kept equal so that ksmd keeps merging them, while this process
//! * pins some of them by direct read (GUP-fast, then the slow path) with an
//!   iteration-unique DMA pattern, and checks the pattern through its own
//!   mapping when the read completes (a mismatch is a DMA loss: the pattern
//!   went to a frame the process no longer maps);
//! * writes an iteration-unique value into others and asks the kernel which
//!   value the frame mapped now holds (a mismatch is a lost user write: it
//!   went through a stale TLB entry to a frame the process no longer maps);
//! * refills every page with the common contents right before its use, so
//!   that ksmd finds it mergeable just then.
//!
//! Parameters and reports go through the `race` syscall. Exit status 0 unless
//! a syscall failed unexpectedly (the number of the failed step otherwise).
#![no_std]
#![no_main]

use abi::dio::{PATTERN, pattern_word};
use abi::mman::{MADV_MERGEABLE, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use abi::race as r;
use userspace::{println, sys};

userspace::entry!(main);

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;
/// Pages that only ever hold the common contents: they keep a KSM page of
/// that contents in the stable index, so a refilled page merges at ksmd's
/// next visit.
const IDLE_PAGES: usize = 2;
/// The common contents (one word repeated): equal across pages and workers.
const FILL: u64 = 0x5eed_f111_5eed_f111;

fn fill(page: usize) {
    let p = page as *mut u64;
    for i in 0..WORDS {
        // SAFETY: `page` is a page of our mapping.
        unsafe { p.add(i).write_volatile(FILL) };
    }
}

fn main() -> i32 {
    let mut p = [0u64; r::PARAM_WORDS];
    if sys::race(r::PARAMS as u64, p.as_mut_ptr() as u64, 0).is_err() {
        println!("ksmrace: not inside a scenario (race(PARAMS) failed)");
        return 1;
    }
    let worker = p[r::P_WORKER];
    let iterations = p[r::P_ITERATIONS];
    let dio = p[r::P_DIO_PAGES] as usize;
    let writes = p[r::P_WRITE_PAGES] as usize;
    let prep_us = p[r::P_PREP_US];
    let mut rng = p[r::P_SEED].wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (worker + 1);
    let pages = dio + writes + IDLE_PAGES;
    let Ok(base) = sys::mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) else { return 2 };
    for i in 0..pages {
        fill(base + i * PAGE);
    }
    if sys::madvise(base, pages * PAGE, MADV_MERGEABLE).is_err() {
        return 3;
    }
    let page = |i: usize| base + i * PAGE;
    let mut i: u64 = 0;
    let mut unreported: u64 = 0;
    let (mut dma_checks, mut dma_lost, mut write_checks, mut write_lost) = (0u64, 0u64, 0u64, 0u64);
    while i < iterations {
        if i % 16 == 0 && sys::race(r::SHOULD_STOP as u64, 0, 0) == Ok(1) {
            break;
        }
        // Direct reads into freshly refilled (so mergeable) pages.
        for j in 0..dio {
            // Refill just before the read: the page is mergeable only from
            // here until GUP-fast pins it, which is the window of the race.
            fill(page(j));
            if prep_us > 0 {
                // "Preparing the I/O": the page is mergeable meanwhile.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let until = sys::clock_ns() + (rng % (prep_us + 1)) * 1000;
                while sys::clock_ns() < until {
                    core::hint::spin_loop();
                }
            }
            let seq = (worker << 40) ^ (i << 4) ^ j as u64;
            if let Err(e) = sys::dio_read(page(j), PAGE, seq, PATTERN) {
                println!("ksmrace {worker}: dio_read failed: {}", e.name());
                return 4;
            }
            dma_checks += 1;
            let mut bad = false;
            for w in 0..WORDS {
                // SAFETY: our mapping.
                let v = unsafe { (page(j) as *const u64).add(w).read_volatile() };
                if v != pattern_word(seq, (w * 8) as u64) {
                    if !bad {
                        println!("ksmrace {worker}: DMA loss at iteration {i} page {j} word {w}: {v:#x}");
                    }
                    bad = true;
                }
            }
            dma_lost += u64::from(bad);
        }
        // User writes checked through the page table.
        for k in 0..writes {
            let at = page(dio + k) + 8 * ((i as usize + k) % WORDS);
            let value = (worker << 48) | (i << 8) | k as u64 | 1;
            // SAFETY: our mapping.
            unsafe { (at as *mut u64).write_volatile(value) };
            match sys::race(r::PROBE as u64, at as u64, 0) {
                Ok(seen) => {
                    write_checks += 1;
                    if seen as u64 != value {
                        if write_lost == 0 {
                            println!("ksmrace {worker}: user write lost at iteration {i}: wrote {value:#x}, mapped frame holds {seen:#x}");
                        }
                        write_lost += 1;
                    }
                }
                Err(e) => {
                    println!("ksmrace {worker}: race(PROBE) failed: {}", e.name());
                    return 5;
                }
            }
            // SAFETY: our mapping.
            unsafe { (at as *mut u64).write_volatile(FILL) };
        }
        i += 1;
        unreported += 1;
        // Report in chunks (and at once after a loss, so a caught run can
        // end early).
        if unreported == 64 || dma_lost + write_lost > 0 {
            report(unreported, &mut dma_checks, &mut dma_lost, &mut write_checks, &mut write_lost);
            unreported = 0;
        }
    }
    report(unreported, &mut dma_checks, &mut dma_lost, &mut write_checks, &mut write_lost);
    0
}

fn report(iters: u64, dma_checks: &mut u64, dma_lost: &mut u64, write_checks: &mut u64, write_lost: &mut u64) {
    for (what, n) in [
        (r::R_ITERATIONS, iters),
        (r::R_DMA_CHECKS, *dma_checks),
        (r::R_DMA_LOST, *dma_lost),
        (r::R_WRITE_CHECKS, *write_checks),
        (r::R_WRITE_LOST, *write_lost),
    ] {
        if n > 0 {
            let _ = sys::race(r::REPORT as u64, what as u64, n);
        }
    }
    *dma_checks = 0;
    *dma_lost = 0;
    *write_checks = 0;
    *write_lost = 0;
}
