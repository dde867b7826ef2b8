//! Direct I/O from user space: `dio_read` and `dio_write` against the DMA
//! agent, from a thread on every CPU at once (pattern reads checked word by
//! word, store round trips), into a page shared with a forked child (the
//! pin must break COW: the child keeps its data), and every errno. Exits 0
//! when every check passed, else the number of the first one that failed
//! (worker failures: 100 + 10 * cpu + check).
#![no_std]
#![no_main]

use abi::dio::{BLOCK, DEVICE_SIZE, MAX_LEN, PATTERN, pattern_word};
use abi::mman::*;
use userspace::{Errno, println, sys, thread};
use userspace::check::check;

userspace::entry!(main);

const PAGE: usize = 4096;
/// Pages each worker transfers per call.
const WORKER_PAGES: usize = 4;
/// Rounds per worker.
const ROUNDS: u64 = 25;
/// Something no transfer writes (the kernel's free poison).
const POISON: u64 = 0x6b6b_6b6b_6b6b_6b6b;


fn words(buf: usize, len: usize) -> impl Iterator<Item = (u64, *mut u64)> {
    (0..len / 8).map(move |i| ((i * 8) as u64, (buf + i * 8) as *mut u64))
}

fn fill(buf: usize, len: usize, f: impl Fn(u64) -> u64) {
    for (off, w) in words(buf, len) {
        // SAFETY: callers pass a mapped, writable buffer of `len` bytes.
        unsafe { w.write_volatile(f(off)) };
    }
}

/// The offset of the first word that differs from `f(offset)`, if any.
fn mismatch(buf: usize, len: usize, f: impl Fn(u64) -> u64) -> Option<(u64, u64)> {
    // SAFETY: callers pass a mapped, readable buffer of `len` bytes.
    words(buf, len).map(|(off, w)| (off, unsafe { w.read_volatile() })).find(|&(off, v)| v != f(off))
}

/// One worker per CPU: pattern reads with fresh sequence numbers, and a
/// round trip through its own part of the device store.
fn worker(cpu: usize) -> i32 {
    match work(cpu) {
        Ok(()) => 0,
        Err(case) => 100 + 10 * cpu as i32 + case,
    }
}

fn work(cpu: usize) -> Result<(), i32> {
    let len = WORKER_PAGES * PAGE;
    let buf = sys::mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS).map_err(|_| 1)?;
    let dev_off = (cpu * len) as u64;
    check(2, "device too small for every CPU's part", dev_off + len as u64 <= DEVICE_SIZE)?;
    for round in 0..ROUNDS {
        let seq = ((cpu as u64) << 20) | round;
        fill(buf, len, |_| POISON);
        check(3, "pattern dio_read", sys::dio_read(buf, len, seq, PATTERN) == Ok(len))?;
        if let Some((off, v)) = mismatch(buf, len, |off| pattern_word(seq, off)) {
            println!("dio: cpu{cpu} seq {seq:#x}: word at {off:#x} is {v:#x}, want {:#x}", pattern_word(seq, off));
            return Err(4);
        }
        let tag = 0x5eed_0000_0000_0000 | ((cpu as u64) << 40) | (round << 24);
        fill(buf, len, |off| tag | off);
        check(5, "dio_write", sys::dio_write(buf, len, dev_off, 0) == Ok(len))?;
        fill(buf, len, |_| POISON);
        check(6, "store dio_read", sys::dio_read(buf, len, dev_off, 0) == Ok(len))?;
        if let Some((off, v)) = mismatch(buf, len, |off| tag | off) {
            println!("dio: cpu{cpu} round trip: word at {off:#x} is {v:#x}, want {:#x}", tag | off);
            return Err(7);
        }
    }
    check(8, "munmap", sys::munmap(buf, len).is_ok())
}

fn on_every_cpu() -> Result<(), i32> {
    let mut handles = [const { None }; thread::MAX_THREADS];
    let mut n = 0;
    while n < thread::MAX_THREADS {
        match thread::spawn(n, worker, n) {
            Ok(t) => handles[n] = Some(t),
            Err(Errno::EINVAL) => break,
            Err(e) => {
                println!("dio: spawn on cpu{n}: {e}");
                return Err(10);
            }
        }
        n += 1;
    }
    let mut first = Ok(());
    for h in handles.iter_mut().take(n) {
        match h.take().unwrap().join() {
            Ok(0) => {}
            Ok(s) => first = first.and(Err(s)),
            Err(_) => first = first.and(Err(11)),
        }
    }
    check(12, "no worker thread ran", n > 0)?;
    first
}

/// A pattern read into a page shared with a forked child: the pin breaks
/// COW, the parent sees the pattern through its mapping, the child keeps
/// its data.
fn into_a_shared_page() -> Result<(), i32> {
    let buf = sys::mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS).map_err(|_| 20)?;
    fill(buf, PAGE, |off| 0x1111_0000 + off);
    let pid = sys::fork().map_err(|_| 21)?;
    if pid == 0 {
        // Give the parent time to do its read first (the check holds in
        // either order; this order is the one that matters).
        let _ = sys::sleep_ns(20_000_000);
        sys::exit(if mismatch(buf, PAGE, |off| 0x1111_0000 + off).is_none() { 0 } else { 1 });
    }
    let seq = 0xc0_ffee;
    check(22, "dio_read into a COW-shared page", sys::dio_read(buf, PAGE, seq, PATTERN) == Ok(PAGE))?;
    check(23, "the parent sees the DMA through its mapping", mismatch(buf, PAGE, |off| pattern_word(seq, off)).is_none())?;
    check(24, "the child kept its data (COW broken by the pin)", sys::wait(pid) == Ok(0))?;
    check(25, "munmap", sys::munmap(buf, PAGE).is_ok())
}

fn errnos() -> Result<(), i32> {
    let rw = PROT_READ | PROT_WRITE;
    let pa = MAP_PRIVATE | MAP_ANONYMOUS;
    // 4 mapped pages followed by 4 unmapped ones.
    let buf = sys::mmap(0, 8 * PAGE, rw, pa).map_err(|_| 30)?;
    check(29, "munmap of the upper half", sys::munmap(buf + 4 * PAGE, 4 * PAGE).is_ok())?;
    let ro = sys::mmap(0, PAGE, PROT_READ, pa).map_err(|_| 31)?;
    let none = sys::mmap(0, PAGE, PROT_NONE, pa).map_err(|_| 32)?;
    let big = MAX_LEN as usize;
    let inval = Err(Errno::EINVAL);
    let fault = Err(Errno::EFAULT);
    check(33, "unaligned buffer", sys::dio_read(buf + 8, PAGE, 0, 0) == inval)?;
    check(34, "unaligned length", sys::dio_read(buf, PAGE + 8, 0, 0) == inval)?;
    check(35, "zero length", sys::dio_write(buf, 0, 0, 0) == inval)?;
    check(36, "longer than MAX_LEN", sys::dio_read(buf, big + PAGE, 0, PATTERN) == inval)?;
    check(37, "unaligned device offset", sys::dio_write(buf, PAGE, BLOCK / 2, 0) == inval)?;
    check(38, "past the device's end", sys::dio_read(buf, 2 * PAGE, DEVICE_SIZE - BLOCK, 0) == inval)?;
    check(39, "device offset overflow", sys::dio_write(buf, PAGE, u64::MAX - 4095, 0) == inval)?;
    check(40, "unknown read flag", sys::dio_read(buf, PAGE, 0, 2) == inval)?;
    check(41, "write with the pattern flag", sys::dio_write(buf, PAGE, 0, PATTERN) == inval)?;
    check(42, "null buffer", sys::dio_read(0, PAGE, 0, PATTERN) == fault)?;
    check(43, "kernel buffer", sys::dio_write(0xffff_8000_0000_0000, PAGE, 0, 0) == fault)?;
    check(44, "non-canonical buffer", sys::dio_read(0x0000_8000_0000_0000, PAGE, 0, 0) == fault)?;
    check(45, "read into read-only memory", sys::dio_read(ro, PAGE, 0, 0) == fault)?;
    check(46, "write from PROT_NONE", sys::dio_write(none, PAGE, 0, 0) == fault)?;
    check(47, "range running into unmapped memory", sys::dio_read(buf, 8 * PAGE, 1, PATTERN) == fault)?;
    check(48, "write from read-only memory works", sys::dio_write(ro, PAGE, 0, 0) == Ok(PAGE))?;
    check(49, "munmap", sys::munmap(buf, 4 * PAGE).is_ok())?;
    check(50, "unmapped buffer", sys::dio_read(buf, PAGE, 7, PATTERN) == fault)?;
    check(51, "munmap", sys::munmap(ro, PAGE).is_ok() && sys::munmap(none, PAGE).is_ok())
}

fn main() -> i32 {
    match errnos().and_then(|_| into_a_shared_page()).and_then(|_| on_every_cpu()) {
        Ok(()) => {
            println!("dio: ok");
            0
        }
        Err(case) => case,
    }
}
