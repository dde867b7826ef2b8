//! Starts a thread on every CPU (CPU numbers counted up until the kernel
//! answers EINVAL), each checks it runs on its CPU and returns it; joins them.
//! Exits with the number of CPUs that ran a thread on the right CPU, or 200 +
//! the CPU whose thread failed.
#![no_std]
#![no_main]

use userspace::{Errno, println, sys, thread};

userspace::entry!(main);

fn worker(cpu: usize) -> i32 {
    let got = sys::getcpu();
    println!("threads: tid {} wants cpu{cpu}, runs on cpu{got}", sys::gettid());
    if got == cpu { cpu as i32 } else { -1 }
}

fn main() -> i32 {
    let mut handles = [const { None }; thread::MAX_THREADS];
    let mut n = 0;
    while n < thread::MAX_THREADS {
        match thread::spawn(n, worker, n) {
            Ok(t) => handles[n] = Some(t),
            Err(Errno::EINVAL) => break,
            Err(e) => {
                println!("threads: spawn on cpu{n}: {e}");
                return 200 + n as i32;
            }
        }
        n += 1;
    }
    for (cpu, h) in handles.iter_mut().enumerate().take(n) {
        match h.take().unwrap().join() {
            Ok(s) if s == cpu as i32 => {}
            other => {
                println!("threads: thread on cpu{cpu} ended with {other:?}");
                return 200 + cpu as i32;
            }
        }
    }
    println!("threads: {n} CPUs ran their thread");
    n as i32
}
