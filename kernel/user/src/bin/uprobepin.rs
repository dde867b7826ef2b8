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

use abi::mman::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE};
use abi::race as r;
use userspace::race::{Failed, Oracle, PAGE, Params, WORDS, poke, should_stop};
use userspace::{println, sys};

userspace::entry!(main);

/// What the pages hold before their first use (a one-byte nop at byte 0).
const FILL: u64 = 0x7e7e_7e7e_7e7e_7e90;

fn main() -> i32 {
    let Some(p) = Params::fetch("uprobepin") else { return 1 };
    let (dio, writes) = (p.get(r::P_DIO_PAGES) as usize, p.get(r::P_WRITE_PAGES) as usize);
    let pages = dio + writes;
    let Ok(base) = sys::mmap(0, pages * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS) else {
        return 2;
    };
    for w in 0..pages * WORDS {
        poke(base + 8 * w, FILL);
    }
    // The tracer probes the pages that direct reads pin.
    if let Err(e) = sys::race(r::TARGET as u64, base as u64, dio as u64) {
        println!("uprobepin {}: race(TARGET) failed: {}", p.get(r::P_WORKER), e.name());
        return 3;
    }
    match run(&p, base) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run(p: &Params, base: usize) -> Result<(), Failed> {
    let (worker, iterations) = (p.get(r::P_WORKER), p.get(r::P_ITERATIONS));
    let (dio, writes) = (p.get(r::P_DIO_PAGES) as usize, p.get(r::P_WRITE_PAGES) as usize);
    let mut oracle = Oracle::new("uprobepin", worker);
    let page = |i: usize| base + i * PAGE;
    let mut i: u64 = 0;
    while i < iterations && !should_stop(i) {
        // Direct reads into pages the tracer keeps probing (word 0 is the
        // tracer's: its breakpoint byte).
        for j in 0..dio {
            oracle.dma_read(i, page(j), (worker << 40) ^ (i << 4) ^ j as u64, 1)?;
        }
        // User writes checked through the page table (never word 0).
        for k in 0..writes {
            let at = page(dio + k) + 8 * (1 + (i as usize + k) % (WORDS - 1));
            oracle.user_write(i, at, (worker << 48) | (i << 8) | k as u64 | 1)?;
            poke(at, FILL);
        }
        i += 1;
        oracle.iteration_done();
    }
    oracle.report();
    Ok(())
}
