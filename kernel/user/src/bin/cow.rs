//! Copy-on-write after fork, from user space (as Linux's cow.c checks it):
//! the child sees the parent's data, and afterwards neither side sees the
//! other's writes. Exits 0 on success, else the number of the failed check.
#![no_std]
#![no_main]

use abi::mman::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use userspace::{println, sys};

userspace::entry!(main);

const PAGES: usize = 4;

fn main() -> i32 {
    let Ok(base) = sys::mmap(0, PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) else { return 1 };
    let word = |i: usize| (base + i * 4096) as *mut u64;
    for i in 0..PAGES {
        // SAFETY: inside the mapping just made.
        unsafe { word(i).write_volatile(100 + i as u64) };
    }
    let Ok(pid) = sys::fork() else { return 2 };
    if pid == 0 {
        for i in 0..PAGES {
            // SAFETY: the child has the same mapping.
            if unsafe { word(i).read_volatile() } != 100 + i as u64 {
                sys::exit(10);
            }
            // SAFETY: as above; this write must copy the page.
            unsafe { word(i).write_volatile(200 + i as u64) };
        }
        let _ = sys::sleep_ns(2_000_000);
        // SAFETY: as above.
        let seen = unsafe { word(0).read_volatile() };
        sys::exit(if seen == 200 { 0 } else { 11 });
    }
    // The parent writes page 1 while the child may still run.
    // SAFETY: the parent's own mapping.
    unsafe { word(1).write_volatile(301) };
    match sys::wait(pid) {
        Ok(0) => {}
        Ok(s) => {
            println!("cow: child exited {s}");
            return 20 + s;
        }
        Err(_) => return 3,
    }
    for i in 0..PAGES {
        let want = if i == 1 { 301 } else { 100 + i as u64 };
        // SAFETY: the parent's own mapping.
        let got = unsafe { word(i).read_volatile() };
        if got != want {
            println!("cow: parent page {i} holds {got}, expected {want} (the child's write leaked?)");
            return 30 + i as i32;
        }
    }
    println!("cow: ok");
    0
}
