//! Ends with pins and GUP references still held (`gup_test` sets never
//! stopped), in itself and in a forked child, on small pages and on a THP,
//! some of them on memory already unmapped: the kernel must release them
//! all when each process ends (the `ksft` suite checks that no frame,
//! folio or page table is left and no oracle fired). Exits 0 once every
//! set was taken.
#![no_std]
#![no_main]

use abi::gup_test::{FLAG_FAST, FLAG_GET, FLAG_WRITE};
use abi::mman::MADV_HUGEPAGE;
use userspace::ksft::{self, HPAGE, PAGE};
use userspace::{println, sys};

userspace::entry!(main);

fn take(addr: usize, len: usize, flags: u64, step: i32) -> Result<(), i32> {
    sys::pin_start(addr, len, flags).map(|_| ()).map_err(|e| {
        println!("pinexit: pin_start {step} failed: {e}");
        step
    })
}

fn run() -> Result<(), i32> {
    let a = ksft::map(8 * PAGE).map_err(|_| 1)?;
    ksft::fill(a, 8 * PAGE, 0x5a);
    take(a, 4 * PAGE, FLAG_WRITE | FLAG_FAST, 2)?;
    take(a + 4 * PAGE, 4 * PAGE, FLAG_GET, 3)?;
    take(a, 8 * PAGE, 0, 4)?;
    let (_, t) = ksft::map_thp_area().map_err(|_| 5)?;
    sys::madvise(t, HPAGE, MADV_HUGEPAGE).map_err(|_| 6)?;
    ksft::fill(t, HPAGE, 0xa5);
    take(t, HPAGE, FLAG_WRITE, 7)?;
    take(t + 16 * PAGE, 16 * PAGE, FLAG_GET | FLAG_FAST, 8)?;
    // A child pins its own copies (a write pin breaks COW) and exits
    // without releasing them either.
    match sys::fork() {
        Ok(0) => {
            let r = take(a, 8 * PAGE, FLAG_WRITE, 9).and_then(|()| take(t, HPAGE, FLAG_FAST, 10));
            sys::exit(if r.is_ok() { 0 } else { 11 })
        }
        Ok(pid) => {
            if sys::wait(pid) != Ok(0) {
                return Err(12);
            }
        }
        Err(_) => return Err(13),
    }
    // Part of the pinned memory is unmapped before the exit: the pins keep
    // those frames until the process ends.
    sys::munmap(a, 4 * PAGE).map_err(|_| 14)?;
    sys::munmap(t, HPAGE / 2).map_err(|_| 15)?;
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => {
            println!("pinexit: exiting with every set held");
            0
        }
        Err(step) => step,
    }
}
