//! What every race-scenario worker program shares (ksmrace, collrace,
//! uprobepin): the scenario's parameters, the seeded random stream, and the
//! two oracles with their chunked reports through the `race` syscall.
//!
//! * [`Oracle::dma_read`]: a direct read (GUP-fast, then the slow path) of
//!   one page with an iteration-unique DMA pattern, checked through the
//!   process's own mapping when it completes. A mismatch is a DMA loss: the
//!   device wrote into a frame the process no longer maps.
//! * [`Oracle::user_write`]: a store through the mapping, then the kernel is
//!   asked which value the frame mapped *now* holds. A mismatch is a lost
//!   user write: the store went through a stale TLB entry to a frame the
//!   process no longer maps.
//!
//! Counts go to the kernel every 64 iterations, and at once after a loss so
//! that a caught run can end early.

use abi::dio::{PATTERN, pattern_word};
use abi::race as r;

use crate::{println, sys};

/// Bytes in a page.
pub const PAGE: usize = 4096;
/// 64-bit words in a page.
pub const WORDS: usize = PAGE / 8;

/// The scenario's parameters for this worker (`race(PARAMS)`).
pub struct Params([u64; r::PARAM_WORDS]);

impl Params {
    /// Fetches them; `None` (after saying so) outside a scenario.
    pub fn fetch(program: &str) -> Option<Params> {
        let mut p = [0u64; r::PARAM_WORDS];
        if sys::race(r::PARAMS as u64, p.as_mut_ptr() as u64, 0).is_err() {
            println!("{program}: not inside a scenario (race(PARAMS) failed)");
            return None;
        }
        Some(Params(p))
    }

    /// Parameter `index` (`abi::race::P_*`).
    pub fn get(&self, index: usize) -> u64 {
        self.0[index]
    }

    /// This worker's random stream, from the run's seed and its number: the
    /// same seed gives every worker the same choices run after run.
    pub fn rng(&self) -> Rng {
        Rng(self.0[r::P_SEED].wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (self.0[r::P_WORKER] + 1))
    }
}

/// A xorshift64 stream (never zero: the seed is mixed with worker + 1).
pub struct Rng(u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Spins for a random time of up to `max_us` microseconds ("preparing
    /// the I/O": the page stays exposed to the writer meanwhile).
    pub fn spin_up_to_us(&mut self, max_us: u64) {
        if max_us == 0 {
            return;
        }
        let until = sys::clock_ns() + (self.next() % (max_us + 1)) * 1000;
        while sys::clock_ns() < until {
            core::hint::spin_loop();
        }
    }
}

/// Whether the scenario asks the workers to stop (asked every iteration:
/// one syscall next to an iteration's direct reads and probes, each a
/// syscall too, and a caught run ends soon after its first corruption even
/// when a loaded host runs a few iterations a second).
pub fn should_stop(_iteration: u64) -> bool {
    sys::race(r::SHOULD_STOP as u64, 0, 0) == Ok(1)
}

/// Stores `v` at `at`, an aligned word of this process's mapping.
pub fn poke(at: usize, v: u64) {
    // SAFETY: the workers pass only aligned words of anonymous mappings they
    // made and never unmap (MADV_DONTNEED keeps the range mapped); a wrong
    // address faults the process, never the kernel.
    unsafe { (at as *mut u64).write_volatile(v) };
}

/// Loads the word at `at` (as [`poke`]).
pub fn peek(at: usize) -> u64 {
    // SAFETY: as in `poke`.
    unsafe { (at as *const u64).read_volatile() }
}

/// A failed step: the worker's exit status (the number of the step).
pub type Failed = i32;

/// The two oracles of one worker and the counts not yet reported.
pub struct Oracle {
    program: &'static str,
    worker: u64,
    unreported: u64,
    dma_checks: u64,
    dma_lost: u64,
    write_checks: u64,
    write_lost: u64,
}

impl Oracle {
    /// The oracles of worker `worker` of `program` (named in messages).
    pub fn new(program: &'static str, worker: u64) -> Oracle {
        Oracle { program, worker, unreported: 0, dma_checks: 0, dma_lost: 0, write_checks: 0, write_lost: 0 }
    }

    /// Direct read of the page at `page` with the pattern of `seq`, then the
    /// check of words `first_word..` through the mapping (a word before it
    /// may belong to someone else, as uprobes' breakpoint byte). Exit status
    /// 4 when the read itself fails.
    pub fn dma_read(&mut self, iteration: u64, page: usize, seq: u64, first_word: usize) -> Result<(), Failed> {
        if let Err(e) = sys::dio_read(page, PAGE, seq, PATTERN) {
            println!("{} {}: dio_read failed: {}", self.program, self.worker, e.name());
            return Err(4);
        }
        self.dma_checks += 1;
        let bad = (first_word..WORDS).find(|&w| peek(page + 8 * w) != pattern_word(seq, (w * 8) as u64));
        if let Some(w) = bad {
            let v = peek(page + 8 * w);
            println!("{} {}: DMA loss at iteration {iteration} page {page:#x} word {w}: {v:#x}", self.program, self.worker);
            self.dma_lost += 1;
        }
        Ok(())
    }

    /// Stores `value` at `at` and checks that the frame mapped there now
    /// holds it. Exit status 5 when the kernel cannot answer.
    pub fn user_write(&mut self, iteration: u64, at: usize, value: u64) -> Result<(), Failed> {
        poke(at, value);
        match sys::race(r::PROBE as u64, at as u64, 0) {
            Ok(seen) => {
                self.write_checks += 1;
                if seen as u64 != value {
                    if self.write_lost == 0 {
                        println!(
                            "{} {}: user write lost at iteration {iteration}: wrote {value:#x}, mapped frame holds {seen:#x}",
                            self.program, self.worker
                        );
                    }
                    self.write_lost += 1;
                }
                Ok(())
            }
            Err(e) => {
                println!("{} {}: race(PROBE) failed: {}", self.program, self.worker, e.name());
                Err(5)
            }
        }
    }

    /// Ends an iteration: reports every 64, and at once after a loss.
    pub fn iteration_done(&mut self) {
        self.unreported += 1;
        if self.unreported == 64 || self.dma_lost + self.write_lost > 0 {
            self.report();
        }
    }

    /// Reports what is left (at the end of the run).
    pub fn report(&mut self) {
        for (what, n) in [
            (r::R_ITERATIONS, self.unreported),
            (r::R_DMA_CHECKS, self.dma_checks),
            (r::R_DMA_LOST, self.dma_lost),
            (r::R_WRITE_CHECKS, self.write_checks),
            (r::R_WRITE_LOST, self.write_lost),
        ] {
            if n > 0 {
                let _ = sys::race(r::REPORT as u64, what as u64, n);
            }
        }
        self.unreported = 0;
        self.dma_checks = 0;
        self.dma_lost = 0;
        self.write_checks = 0;
        self.write_lost = 0;
    }
}
