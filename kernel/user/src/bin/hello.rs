//! Prints a greeting with its pid, CPU and the clock, checks the clock moves,
//! exits 0.
#![no_std]
#![no_main]

use userspace::{println, sys};

userspace::entry!(main);

fn main() -> i32 {
    let t0 = sys::clock_ns();
    println!("hello from user mode: pid {} tid {} on cpu{} at {} ns", sys::getpid(), sys::gettid(), sys::getcpu(), t0);
    if sys::sleep_ns(1_000_000).is_err() {
        return 2;
    }
    let t1 = sys::clock_ns();
    if t1 < t0 + 1_000_000 {
        println!("hello: clock did not advance over a 1 ms sleep ({t0} -> {t1})");
        return 1;
    }
    0
}
