//! The collapse-vs-gupfast worker (controls.md): a 2 MiB-aligned range that
//! a collapser keeps collapsing into one huge page, while this process
//! * rebuilds it as 512 ptes as soon as it finds it huge (see below);
//! * pins random subpages among the first [`PIN_SUBPAGES`] by direct read (GUP-fast, then the slow path) with
//!   an iteration-unique DMA pattern and checks the pattern through its own
//!   mapping when the read completes (a mismatch is a DMA loss: the device
//!   wrote into a subpage the collapse had already copied and dropped);
//! * writes an iteration-unique value into other random subpages and asks
//!   the kernel which value the frame mapped now holds (a lost user write).
//!
//! Rebuilding, cheaply: `MADV_DONTNEED` of one random subpage (the "hole")
//! splits the huge pmd into a table of 512 ptes mapping the huge folio's
//! subpages (a pte-mapped THP, Linux __split_huge_pmd()) and clears the
//! hole's pte; a write to the hole faults in a small page. The range is 512
//! ptes again (511 subpages of the old folio and one small page), ready to
//! collapse, after one split and one fault instead of 512 faults. The first
//! population writes all 512 pages (small pages, or a huge page at once
//! where the `thp=` policy gives one).
//!
//! Who collapses (`P_COLLAPSER`):
//! * `COLLAPSER_MADVISE`: a second thread of this process, on the CPU after
//!   the worker's, calls `MADV_COLLAPSE` on the range while the worker's
//!   pins and probes run on it ([`PINNING`]) and it is not huge, again and
//!   again without yielding (an `EAGAIN` for a pinned subpage is retried at
//!   once; the tick shares the CPU with the worker there); otherwise it
//!   yields. It waits while the worker rebuilds the range: a collapse right
//!   after the rebuild's `MADV_DONTNEED` (MADV_COLLAPSE ignores
//!   `max_ptes_none`) would come before the pins, whose walks would then
//!   only meet a huge pmd, and nothing would race;
//! * `COLLAPSER_KHUGEPAGED`: the range is `MADV_HUGEPAGE` and the khugepaged
//!   thread collapses it.
//!
//! Parameters and reports go through the `race` syscall. Exit status 0 unless
//! a syscall failed unexpectedly (the number of the failed step otherwise).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use abi::mman::{MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use abi::race as r;
use userspace::race::{Failed, Oracle, PAGE, Params, WORDS, poke, should_stop};
use userspace::{println, sys, thread};

userspace::entry!(main);

const HUGE: usize = 2 << 20;
const PAGES: usize = HUGE / PAGE;
/// Pins go to the first subpages of the range: a collapse copies them
/// first, right after its isolate step, so a device write through a pin that
/// slipped past the isolate step lands after their copy (a DMA loss) even
/// when the device is quick.
const PIN_SUBPAGES: usize = 16;
/// What a populated page holds (not zero).
const FILL: u64 = 0xc011_a95e_c011_a95e;

/// The range (set before the collapser starts).
static BASE: AtomicUsize = AtomicUsize::new(0);
/// The worker is done: the collapser ends.
static DONE: AtomicBool = AtomicBool::new(false);
/// The range is rebuilt and the worker's pins and probes of this iteration
/// run on it: the madvise collapser collapses it meanwhile.
static PINNING: AtomicBool = AtomicBool::new(false);

fn is_huge(base: usize) -> bool {
    sys::race(r::HUGE as u64, base as u64, 0) == Ok(1)
}

/// The madvise collapser: MADV_COLLAPSE whenever the worker's pins run on
/// the range and it is not huge.
fn collapser(_: usize) -> i32 {
    let base = BASE.load(Ordering::Acquire);
    while !DONE.load(Ordering::Acquire) {
        // Relaxed: only a hint of when to collapse; the kernel decides
        // under its own locks.
        if PINNING.load(Ordering::Relaxed) && !is_huge(base) {
            // EAGAIN (a pinned or locked page, a changed range) is the race
            // working; anything else is a failure of the scenario.
            match sys::madvise(base, HUGE, MADV_COLLAPSE) {
                Ok(_) | Err(abi::Errno::EAGAIN) => {}
                Err(e) => {
                    println!("collrace: MADV_COLLAPSE failed: {}", e.name());
                    return 10;
                }
            }
        } else {
            sys::yield_now();
        }
    }
    0
}

fn main() -> i32 {
    let Some(p) = Params::fetch("collrace") else { return 1 };
    let (worker, workers) = (p.get(r::P_WORKER), p.get(r::P_WORKERS));
    let khugepaged = p.get(r::P_COLLAPSER) == r::COLLAPSER_KHUGEPAGED;
    let Ok(base) = sys::mmap(0, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) else { return 2 };
    if base % HUGE != 0 {
        println!("collrace {worker}: the 2 MiB mapping is not 2 MiB aligned ({base:#x})");
        return 2;
    }
    if khugepaged && sys::madvise(base, HUGE, MADV_HUGEPAGE).is_err() {
        return 3;
    }
    for i in 0..PAGES {
        poke(base + i * PAGE, FILL);
    }
    BASE.store(base, Ordering::Release);
    let helper = if khugepaged {
        None
    } else {
        // The CPU after this worker's own (worker numbers are handed out
        // in start order, not by CPU): never the worker's CPU, where its
        // interrupts-off walks would keep the collapser off the CPU.
        let cpu = (sys::getcpu() + 1) % workers as usize;
        match thread::spawn(cpu, collapser, 0) {
            Ok(t) => Some(t),
            Err(e) => {
                println!("collrace {worker}: spawning the collapser on cpu{cpu}: {}", e.name());
                return 6;
            }
        }
    };
    let status = run(&p, base).err().unwrap_or(0);
    DONE.store(true, Ordering::Release);
    let helper_status = helper.map_or(Ok(0), |t| t.join());
    match (status, helper_status) {
        (0, Ok(0)) => 0,
        (0, Ok(s)) => s,
        (0, Err(_)) => 7,
        (s, _) => s,
    }
}

fn run(p: &Params, base: usize) -> Result<(), Failed> {
    let (worker, iterations, prep_us) = (p.get(r::P_WORKER), p.get(r::P_ITERATIONS), p.get(r::P_PREP_US));
    let (dio, writes) = (p.get(r::P_DIO_PAGES) as usize, p.get(r::P_WRITE_PAGES) as usize);
    let mut rng = p.rng();
    let mut oracle = Oracle::new("collrace", worker);
    let page = |i: usize| base + i * PAGE;
    let mut i: u64 = 0;
    while i < iterations && !should_stop(i) {
        // Collapsed since we last looked: back to 512 ptes (split, refault
        // the hole).
        if is_huge(base) {
            let hole = (rng.next() as usize) % PAGES;
            if let Err(e) = sys::madvise(page(hole), PAGE, MADV_DONTNEED) {
                println!("collrace {worker}: MADV_DONTNEED of a subpage failed: {}", e.name());
                return Err(8);
            }
            poke(page(hole), FILL);
        }
        // Relaxed: a hint for the collapser (see PINNING).
        PINNING.store(true, Ordering::Relaxed);
        // Direct reads into random subpages.
        for j in 0..dio {
            let sub = (rng.next() as usize) % PIN_SUBPAGES;
            rng.spin_up_to_us(prep_us);
            oracle.dma_read(i, page(sub), (worker << 40) ^ (i << 4) ^ j as u64, 0)?;
        }
        // User writes checked through the page table.
        for k in 0..writes {
            let sub = (rng.next() as usize) % PAGES;
            let at = page(sub) + 8 * ((i as usize + k) % WORDS);
            oracle.user_write(i, at, (worker << 48) | (i << 8) | k as u64 | 1)?;
        }
        PINNING.store(false, Ordering::Relaxed);
        i += 1;
        oracle.iteration_done();
    }
    oracle.report();
    Ok(())
}
