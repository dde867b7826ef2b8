//! Spins for 300 ms of wall time reading the clock, then exits with the time
//! it started, in ms since boot. Two of these on one CPU overlap (the second
//! starts before the first ends) only if a return to user mode is a
//! preemption point; without it the second starts after the first ended.
//! It also prints the gaps of more than 3 ms between two clock reads (times
//! another task had the CPU, or the host did not run this vCPU).
#![no_std]
#![no_main]

use userspace::{println, sys};

userspace::entry!(main);

fn main() -> i32 {
    let start = sys::clock_ns();
    let mut last = start;
    let mut gaps = 0;
    while last - start < 300_000_000 {
        let now = sys::clock_ns();
        if now - last > 3_000_000 {
            gaps += 1;
        }
        last = now;
    }
    println!("spin: pid {} on cpu{}: started at {} ms, {gaps} gaps", sys::getpid(), sys::getcpu(), start / 1_000_000);
    (start / 1_000_000) as i32
}
