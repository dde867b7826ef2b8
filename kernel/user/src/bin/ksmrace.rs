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

use abi::mman::{MADV_MERGEABLE, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use abi::race as r;
use userspace::race::{Failed, Oracle, PAGE, Params, WORDS, poke, should_stop};
use userspace::sys;

userspace::entry!(main);

/// Pages that only ever hold the common contents: they keep a KSM page of
/// that contents in the stable index (the idle pages of two workers pair
/// up), so a refilled page merges at ksmd's next visit. One: every page
/// more lengthens ksmd's round over the working set.
const IDLE_PAGES: usize = 1;
/// The common contents (one word repeated): equal across pages and workers.
const FILL: u64 = 0x5eed_f111_5eed_f111;

fn fill(page: usize) {
    for w in 0..WORDS {
        poke(page + 8 * w, FILL);
    }
}

fn main() -> i32 {
    let Some(p) = Params::fetch("ksmrace") else { return 1 };
    let (dio, writes) = (p.get(r::P_DIO_PAGES) as usize, p.get(r::P_WRITE_PAGES) as usize);
    let pages = dio + writes + IDLE_PAGES;
    let Ok(base) = sys::mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) else { return 2 };
    for i in 0..pages {
        fill(base + i * PAGE);
    }
    if sys::madvise(base, pages * PAGE, MADV_MERGEABLE).is_err() {
        return 3;
    }
    match run(&p, base) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

fn run(p: &Params, base: usize) -> Result<(), Failed> {
    let (worker, iterations, prep_us) = (p.get(r::P_WORKER), p.get(r::P_ITERATIONS), p.get(r::P_PREP_US));
    let (dio, writes) = (p.get(r::P_DIO_PAGES) as usize, p.get(r::P_WRITE_PAGES) as usize);
    let mut rng = p.rng();
    let mut oracle = Oracle::new("ksmrace", worker);
    let page = |i: usize| base + i * PAGE;
    let mut i: u64 = 0;
    while i < iterations && !should_stop(i) {
        // Direct reads into freshly refilled (so mergeable) pages.
        for j in 0..dio {
            // Refill just before the read: the page is mergeable only from
            // here until GUP-fast pins it, which is the window of the race.
            fill(page(j));
            // "Preparing the I/O": the page is mergeable meanwhile.
            rng.spin_up_to_us(prep_us);
            oracle.dma_read(i, page(j), (worker << 40) ^ (i << 4) ^ j as u64, 0)?;
        }
        // User writes checked through the page table; the page is refilled
        // after each, so it is mergeable again.
        for k in 0..writes {
            let at = page(dio + k) + 8 * ((i as usize + k) % WORDS);
            oracle.user_write(i, at, (worker << 48) | (i << 8) | k as u64 | 1)?;
            poke(at, FILL);
        }
        i += 1;
        oracle.iteration_done();
    }
    oracle.report();
    Ok(())
}
