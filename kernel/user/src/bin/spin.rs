//! Spins for 300 ms of wall time reading the clock and counts the gaps of
//! more than 3 ms between two reads (times it was not running: another task
//! had the CPU). Exits with that count (at most 100). Two of these on one CPU
//! see gaps only if a return to user mode is a preemption point.
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
    println!("spin: pid {} on cpu{}: {gaps} gaps", sys::getpid(), sys::getcpu());
    gaps.min(100)
}
