//! Reads an unmapped user address: the kernel must kill the process with a
//! report, not crash. Exits 0 only if the read somehow succeeded (a failure).
#![no_std]
#![no_main]

use userspace::println;

userspace::entry!(main);

/// Far from the image (0x400000..) and the stack (below 0x7fff_ffff_f000).
const UNMAPPED: usize = 0x0000_1234_5678_9000;

fn main() -> i32 {
    println!("fault: reading {UNMAPPED:#x}");
    // SAFETY: none: this read is meant to fault.
    let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    println!("fault: read {v:#x} from an unmapped address?!");
    0
}
