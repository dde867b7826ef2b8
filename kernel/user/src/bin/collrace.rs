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
//! * `COLLAPSER_MADVISE`: a second thread of this process, on the next CPU,
//!   calls `MADV_COLLAPSE` on the range whenever it is not huge, yielding
//!   the CPU between attempts (so the worker sharing that CPU keeps going);
//! * `COLLAPSER_KHUGEPAGED`: the range is `MADV_HUGEPAGE` and the khugepaged
//!   thread collapses it.
//!
//! Parameters and reports go through the `race` syscall. Exit status 0 unless
//! a syscall failed unexpectedly (the number of the failed step otherwise).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use abi::dio::{PATTERN, pattern_word};
use abi::mman::{MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use abi::race as r;
use userspace::{println, sys, thread};

userspace::entry!(main);

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;
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

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn write(at: usize, v: u64) {
    // SAFETY: `at` is an aligned word of our mapping.
    unsafe { (at as *mut u64).write_volatile(v) };
}

fn read(at: usize) -> u64 {
    // SAFETY: `at` is an aligned word of our mapping.
    unsafe { (at as *const u64).read_volatile() }
}

fn is_huge(base: usize) -> bool {
    sys::race(r::HUGE as u64, base as u64, 0) == Ok(1)
}

/// The madvise collapser: MADV_COLLAPSE whenever the range is not huge.
fn collapser(_: usize) -> i32 {
    let base = BASE.load(Ordering::Acquire);
    while !DONE.load(Ordering::Acquire) {
        if !is_huge(base) {
            // EAGAIN (a pinned or locked page, a changed range) is the race
            // working; anything else is a failure of the scenario.
            match sys::madvise(base, HUGE, MADV_COLLAPSE) {
                Ok(_) | Err(abi::Errno::EAGAIN) => {}
                Err(e) => {
                    println!("collrace: MADV_COLLAPSE failed: {}", e.name());
                    return 10;
                }
            }
        }
        sys::yield_now();
    }
    0
}

fn main() -> i32 {
    let mut p = [0u64; r::PARAM_WORDS];
    if sys::race(r::PARAMS as u64, p.as_mut_ptr() as u64, 0).is_err() {
        println!("collrace: not inside a scenario (race(PARAMS) failed)");
        return 1;
    }
    let worker = p[r::P_WORKER];
    let workers = p[r::P_WORKERS];
    let khugepaged = p[r::P_COLLAPSER] == r::COLLAPSER_KHUGEPAGED;
    let mut rng = p[r::P_SEED].wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (worker + 1);
    let Ok(base) = sys::mmap(0, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) else { return 2 };
    if base % HUGE != 0 {
        println!("collrace {worker}: the 2 MiB mapping is not 2 MiB aligned ({base:#x})");
        return 2;
    }
    if khugepaged && sys::madvise(base, HUGE, MADV_HUGEPAGE).is_err() {
        return 3;
    }
    for i in 0..PAGES {
        write(base + i * PAGE, FILL);
    }
    BASE.store(base, Ordering::Release);
    let helper = if khugepaged {
        None
    } else {
        let cpu = ((worker + 1) % workers) as usize;
        match thread::spawn(cpu, collapser, 0) {
            Ok(t) => Some(t),
            Err(e) => {
                println!("collrace {worker}: spawning the collapser on cpu{cpu}: {}", e.name());
                return 6;
            }
        }
    };
    let status = run(worker, base, &p, &mut rng);
    DONE.store(true, Ordering::Release);
    let helper_status = helper.map_or(Ok(0), |t| t.join());
    match (status, helper_status) {
        (0, Ok(0)) => 0,
        (0, Ok(s)) => s,
        (0, Err(_)) => 7,
        (s, _) => s,
    }
}

fn run(worker: u64, base: usize, p: &[u64; r::PARAM_WORDS], rng: &mut u64) -> i32 {
    let (iterations, dio, writes, prep_us) =
        (p[r::P_ITERATIONS], p[r::P_DIO_PAGES] as usize, p[r::P_WRITE_PAGES] as usize, p[r::P_PREP_US]);
    let page = |i: usize| base + i * PAGE;
    let mut i: u64 = 0;
    let mut unreported: u64 = 0;
    let mut c = Counts::default();
    while i < iterations {
        if i % 16 == 0 && sys::race(r::SHOULD_STOP as u64, 0, 0) == Ok(1) {
            break;
        }
        // Collapsed since we last looked: back to 512 ptes (split, refault
        // the hole).
        if is_huge(base) {
            let hole = (xorshift(rng) as usize) % PAGES;
            if let Err(e) = sys::madvise(page(hole), PAGE, MADV_DONTNEED) {
                println!("collrace {worker}: MADV_DONTNEED of a subpage failed: {}", e.name());
                return 8;
            }
            write(page(hole), FILL);
        }
        // Direct reads into random subpages.
        for j in 0..dio {
            let sub = (xorshift(rng) as usize) % PIN_SUBPAGES;
            if prep_us > 0 {
                let until = sys::clock_ns() + (xorshift(rng) % (prep_us + 1)) * 1000;
                while sys::clock_ns() < until {
                    core::hint::spin_loop();
                }
            }
            let seq = (worker << 40) ^ (i << 4) ^ j as u64;
            if let Err(e) = sys::dio_read(page(sub), PAGE, seq, PATTERN) {
                println!("collrace {worker}: dio_read failed: {}", e.name());
                return 4;
            }
            c.dma_checks += 1;
            let mut bad = false;
            for w in 0..WORDS {
                let v = read(page(sub) + 8 * w);
                if v != pattern_word(seq, (w * 8) as u64) {
                    if !bad {
                        println!("collrace {worker}: DMA loss at iteration {i} subpage {sub} word {w}: {v:#x}");
                    }
                    bad = true;
                }
            }
            c.dma_lost += u64::from(bad);
        }
        // User writes checked through the page table.
        for k in 0..writes {
            let sub = (xorshift(rng) as usize) % PAGES;
            let at = page(sub) + 8 * ((i as usize + k) % WORDS);
            let value = (worker << 48) | (i << 8) | k as u64 | 1;
            write(at, value);
            match sys::race(r::PROBE as u64, at as u64, 0) {
                Ok(seen) => {
                    c.write_checks += 1;
                    if seen as u64 != value {
                        if c.write_lost == 0 {
                            println!("collrace {worker}: user write lost at iteration {i}: wrote {value:#x}, mapped frame holds {seen:#x}");
                        }
                        c.write_lost += 1;
                    }
                }
                Err(e) => {
                    println!("collrace {worker}: race(PROBE) failed: {}", e.name());
                    return 5;
                }
            }
        }
        i += 1;
        unreported += 1;
        // Report in chunks (and at once after a loss, so a caught run can
        // end early).
        if unreported == 64 || c.dma_lost + c.write_lost > 0 {
            c.report(unreported);
            unreported = 0;
        }
    }
    c.report(unreported);
    0
}

#[derive(Default)]
struct Counts {
    dma_checks: u64,
    dma_lost: u64,
    write_checks: u64,
    write_lost: u64,
}

impl Counts {
    fn report(&mut self, iters: u64) {
        for (what, n) in [
            (r::R_ITERATIONS, iters),
            (r::R_DMA_CHECKS, self.dma_checks),
            (r::R_DMA_LOST, self.dma_lost),
            (r::R_WRITE_CHECKS, self.write_checks),
            (r::R_WRITE_LOST, self.write_lost),
        ] {
            if n > 0 {
                let _ = sys::race(r::REPORT as u64, what as u64, n);
            }
        }
        *self = Counts::default();
    }
}
