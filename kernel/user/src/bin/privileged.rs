//! Tries a privileged instruction (chosen by the pid's parity is not needed:
//! `cli` is enough): ring 3 must not turn interrupts off, so the kernel kills
//! the process (#GP) with a report. Exits 0 only if `cli` did not fault.
#![no_std]
#![no_main]

use userspace::println;

userspace::entry!(main);

fn main() -> i32 {
    println!("privileged: executing cli");
    // SAFETY: none: meant to fault with #GP (IOPL is 0 in user mode).
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    println!("privileged: cli did not fault?!");
    0
}
