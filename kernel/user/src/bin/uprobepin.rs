//! The uprobe-vs-pin worker (controls.md, bug C): a private RWX buffer whose
//! pages it has written (anonymous and exclusive, as a text page becomes
//! once COWed); its direct-read pages are offered to the scenario's tracer,
//! which installs and removes a breakpoint at byte 0 of each at full speed.
//! Meanwhile this process
//! * pins some pages by direct read (GUP-fast, then the slow path) with an
//!   iteration-unique DMA pattern, and checks words 1..512 through its own
//!   mapping when the read completes (a mismatch is a DMA loss: the pattern
//!   went to a frame the process no longer maps);
//! * writes an iteration-unique value into a word (never word 0) of other
//!   pages and asks the kernel which value the frame mapped now holds (a
//!   mismatch is a lost user write).
//!
//! Word 0 of every page is left to the tracer (its breakpoint byte, merged
//! into the word) and never checked. Parameters and reports go through the
//! `race` syscall. Exit status 0 unless a syscall failed unexpectedly (the
//! number of the failed step otherwise).
#![no_std]
#![no_main]

use abi::dio::{PATTERN, pattern_word};
use abi::mman::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE};
use abi::race as r;
use userspace::{println, sys};

userspace::entry!(main);

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;
/// What the pages hold before their first use (a one-byte nop at byte 0).
const FILL: u64 = 0x7e7e_7e7e_7e7e_7e90;

fn main() -> i32 {
    let mut p = [0u64; r::PARAM_WORDS];
    if sys::race(r::PARAMS as u64, p.as_mut_ptr() as u64, 0).is_err() {
        println!("uprobepin: not inside a scenario (race(PARAMS) failed)");
        return 1;
    }
    let worker = p[r::P_WORKER];
    let iterations = p[r::P_ITERATIONS];
    let dio = p[r::P_DIO_PAGES] as usize;
    let writes = p[r::P_WRITE_PAGES] as usize;
    let pages = dio + writes;
    let Ok(base) = sys::mmap(0, pages * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS) else {
        return 2;
    };
    let page = |i: usize| base + i * PAGE;
    for i in 0..pages {
        for w in 0..WORDS {
            // SAFETY: our mapping.
            unsafe { (page(i) as *mut u64).add(w).write_volatile(FILL) };
        }
    }
    // The tracer probes the pages that direct reads pin.
    if let Err(e) = sys::race(r::TARGET as u64, base as u64, dio as u64) {
        println!("uprobepin {worker}: race(TARGET) failed: {}", e.name());
        return 3;
    }
    let mut i: u64 = 0;
    let mut unreported: u64 = 0;
    let (mut dma_checks, mut dma_lost, mut write_checks, mut write_lost) = (0u64, 0u64, 0u64, 0u64);
    while i < iterations {
        if i % 16 == 0 && sys::race(r::SHOULD_STOP as u64, 0, 0) == Ok(1) {
            break;
        }
        // Direct reads into pages the tracer keeps probing.
        for j in 0..dio {
            let seq = (worker << 40) ^ (i << 4) ^ j as u64;
            if let Err(e) = sys::dio_read(page(j), PAGE, seq, PATTERN) {
                println!("uprobepin {worker}: dio_read failed: {}", e.name());
                return 4;
            }
            dma_checks += 1;
            let mut bad = false;
            for w in 1..WORDS {
                // SAFETY: our mapping.
                let v = unsafe { (page(j) as *const u64).add(w).read_volatile() };
                if v != pattern_word(seq, (w * 8) as u64) {
                    if !bad {
                        println!("uprobepin {worker}: DMA loss at iteration {i} page {j} word {w}: {v:#x}");
                    }
                    bad = true;
                }
            }
            dma_lost += u64::from(bad);
        }
        // User writes checked through the page table (never word 0).
        for k in 0..writes {
            let at = page(dio + k) + 8 * (1 + (i as usize + k) % (WORDS - 1));
            let value = (worker << 48) | (i << 8) | k as u64 | 1;
            // SAFETY: our mapping.
            unsafe { (at as *mut u64).write_volatile(value) };
            match sys::race(r::PROBE as u64, at as u64, 0) {
                Ok(seen) => {
                    write_checks += 1;
                    if seen as u64 != value {
                        if write_lost == 0 {
                            println!("uprobepin {worker}: user write lost at iteration {i}: wrote {value:#x}, mapped frame holds {seen:#x}");
                        }
                        write_lost += 1;
                    }
                }
                Err(e) => {
                    println!("uprobepin {worker}: race(PROBE) failed: {}", e.name());
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
