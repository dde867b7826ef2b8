//! A multi-threaded exit: threads on every CPU, one spinning in user mode,
//! one sleeping in the kernel, the rest yielding; then the main thread calls
//! `exit(42)`, which must end them all (the process ends only when the last
//! thread is gone, so `wait` returning 42 proves it).
#![no_std]
#![no_main]

use userspace::{Errno, println, sys, thread};

userspace::entry!(main);

fn spinner(_: usize) -> i32 {
    loop {
        core::hint::spin_loop();
    }
}

fn sleeper(_: usize) -> i32 {
    let _ = sys::sleep_ns(3_600_000_000_000);
    7
}

fn yielder(_: usize) -> i32 {
    loop {
        sys::yield_now();
    }
}

fn main() -> i32 {
    let kinds: [fn(usize) -> i32; 3] = [spinner, sleeper, yielder];
    let mut started = 0;
    for cpu in 0..thread::MAX_THREADS {
        match thread::spawn(cpu, kinds[cpu % 3], 0) {
            // Never joined: exit ends them.
            Ok(_) => started += 1,
            Err(Errno::EINVAL) => break,
            Err(e) => {
                println!("exit_threads: spawn: {e}");
                return 1;
            }
        }
    }
    // Extra spinner on this CPU too.
    if thread::spawn(sys::getcpu(), spinner, 0).is_ok() {
        started += 1;
    }
    let _ = sys::sleep_ns(20_000_000);
    println!("exit_threads: {started} threads running; exit(42)");
    sys::exit(42)
}
