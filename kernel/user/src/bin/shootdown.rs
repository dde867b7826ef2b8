//! The user-level TLB shootdown benchmark, the same measurement as the Linux
//! peer's `bench/shootdown.c` (read there for the method; nothing is copied).
//!
//! The main thread runs on CPU 0 (the kernel's `bench=shootdown` starts it
//! there). A touched private 4 KiB page sits between two PROT_NONE guard
//! pages, so its area never merges with a neighbour. Three operations, each
//! needing exactly one flush of that page, are timed with `rdtsc_ordered`
//! around the syscall alone:
//! * `mprotect_ro`: RW -> RO (untimed setup: make it RW and dirty it);
//! * `mprotect_rw`: RO -> RW (setup: RW, dirty, RO);
//! * `madv_dontneed`: MADV_DONTNEED (setup: RW and write, faulting in a
//!   fresh page): zap + flush + free.
//!
//! For K = 0, 1, ... spinner threads of this process run on CPUs 1..K,
//! reading a 64 KiB buffer in a loop, so each of those CPUs is running in the
//! address space and every flush must reach it. K grows until spawning a
//! spinner on CPU K fails (EINVAL: CPU K is not online), so K = 0 .. CPUs-1.
//! Because K only grows, CPUs whose spinners ended (and which may keep the
//! address space lazily) are always among the next K's spinner CPUs: each
//! configuration flushes exactly K remote CPUs.
//!
//! Per (op, K): 200 untimed warm-up operations, then at most 20000 timed ones
//! within 1 s (the clock checked every 64 samples); ticks are converted to ns
//! with a frequency calibrated against the kernel clock (`clock_ns`) over
//! 100 ms of busy waiting, as the peer calibrates against CLOCK_MONOTONIC.
//! Statistics as the peer's `stats_of`: mean, median (the mean of the two
//! middle samples for an even count), p10 = sorted[n/10], p90 =
//! sorted[9n/10], min; `delta_median_ns` = median(K) - median(0), printed for
//! K >= 1. Each line goes to the kernel with `bench_result`, which prints
//! `RESULT shootdown op=... remote_cpus=K n=N mean_ns=N median_ns=N p10_ns=N p90_ns=N min_ns=N [delta_median_ns=N]`
//! (plus ` flush=nmi` under `tlb=nmi`).
//!
//! Exit status 0 on success; 1 when a call fails (the message names it).
#![no_std]
#![no_main]

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use abi::mman::*;
use userspace::thread::{self, MAX_THREADS, Thread};
use userspace::{Errno, println, sys};

userspace::entry!(main);

const PAGE: usize = 4096;
/// Most timed operations per (op, K) (the peer's `iters`).
const ITERS: usize = 20_000;
/// Time cap per (op, K) (the peer's `secs`).
const SECS_NS: u64 = 1_000_000_000;
/// Untimed operations before sampling.
const WARMUP: usize = 200;
/// The spinners' buffer.
const SPIN_LEN: usize = 64 << 10;

#[derive(Clone, Copy)]
enum Op {
    MprotectRo,
    MprotectRw,
    MadvDontneed,
}

const OPS: [(Op, &str); 3] =
    [(Op::MprotectRo, "mprotect_ro"), (Op::MprotectRw, "mprotect_rw"), (Op::MadvDontneed, "madv_dontneed")];

fn die(what: &str, e: Errno) -> ! {
    println!("shootdown: {what} failed: {e}");
    sys::exit(1)
}

fn ok(r: Result<usize, Errno>, what: &str) -> usize {
    r.unwrap_or_else(|e| die(what, e))
}

/// Increments the page's first byte (makes it dirty, faults it in if needed).
fn touch(page: usize) {
    let p = page as *mut u8;
    // SAFETY: `page` is the benchmark's page, mapped read-write here.
    unsafe { p.write_volatile(p.read_volatile().wrapping_add(1)) };
}

/// One timed operation on `page`; returns TSC ticks.
fn do_op(op: Op, page: usize) -> u64 {
    let rw = PROT_READ | PROT_WRITE;
    match op {
        Op::MprotectRo => {
            ok(sys::mprotect(page, PAGE, rw), "mprotect rw");
            touch(page);
            let t0 = sys::rdtsc_ordered();
            let r = sys::mprotect(page, PAGE, PROT_READ);
            let t1 = sys::rdtsc_ordered();
            ok(r, "mprotect ro");
            t1 - t0
        }
        Op::MprotectRw => {
            ok(sys::mprotect(page, PAGE, rw), "mprotect rw");
            touch(page);
            ok(sys::mprotect(page, PAGE, PROT_READ), "mprotect ro");
            let t0 = sys::rdtsc_ordered();
            let r = sys::mprotect(page, PAGE, rw);
            let t1 = sys::rdtsc_ordered();
            ok(r, "mprotect rw");
            t1 - t0
        }
        Op::MadvDontneed => {
            ok(sys::mprotect(page, PAGE, rw), "mprotect rw");
            // SAFETY: as in `touch`; a fresh (zero) page is faulted in.
            unsafe { (page as *mut u8).write_volatile(1) };
            let t0 = sys::rdtsc_ordered();
            let r = sys::madvise(page, PAGE, MADV_DONTNEED);
            let t1 = sys::rdtsc_ordered();
            ok(r, "madvise dontneed");
            t1 - t0
        }
    }
}

/// TSC ticks per ns as the ratio `ticks / ns` measured over 100 ms.
#[derive(Clone, Copy)]
struct Clock {
    ticks: u128,
    ns: u128,
}

impl Clock {
    /// Busy-waits 100 ms on the kernel clock, counting TSC ticks (the
    /// peer's tsc_calibrate()).
    fn calibrate() -> Clock {
        let (t0, c0) = (sys::clock_ns(), sys::rdtsc_ordered());
        let mut t1;
        loop {
            t1 = sys::clock_ns();
            if t1 - t0 >= 100_000_000 {
                break;
            }
        }
        let c1 = sys::rdtsc_ordered();
        Clock { ticks: u128::from(c1 - c0).max(1), ns: u128::from(t1 - t0) }
    }

    /// `ticks / div` in ns, rounded to the nearest.
    fn ns(&self, ticks: u128, div: u128) -> u64 {
        let den = self.ticks * div;
        ((ticks * self.ns + den / 2) / den) as u64
    }
}

/// The peer's `struct stats`, in ns.
struct Stats {
    n: usize,
    mean: u64,
    median: u64,
    p10: u64,
    p90: u64,
    min: u64,
}

fn stats_of(v: &mut [u64], clock: Clock) -> Stats {
    v.sort_unstable();
    let n = v.len();
    let sum: u128 = v.iter().map(|&x| u128::from(x)).sum();
    let median = if n % 2 == 1 {
        clock.ns(u128::from(v[n / 2]), 1)
    } else {
        clock.ns(u128::from(v[n / 2 - 1]) + u128::from(v[n / 2]), 2)
    };
    Stats {
        n,
        mean: clock.ns(sum, n as u128),
        median,
        p10: clock.ns(u128::from(v[n / 10]), 1),
        p90: clock.ns(u128::from(v[n * 9 / 10]), 1),
        min: clock.ns(u128::from(v[0]), 1),
    }
}

// The spinners' shared state (one set of spinners at a time).
static STOP: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static SPIN_BUF: AtomicUsize = AtomicUsize::new(0);
static SINK: AtomicU64 = AtomicU64::new(0);

/// A spinner: reads its 64 KiB buffer, one byte per cache line, until told
/// to stop (the peer's spinner_fn).
fn spinner(_: usize) -> i32 {
    // Acquire: pairs with the Release store of the buffer's address.
    let buf = SPIN_BUF.load(Ordering::Acquire) as *const u8;
    RUNNING.fetch_add(1, Ordering::AcqRel);
    let mut sum = 0u64;
    // Relaxed: the stop flag orders nothing; the join does.
    while !STOP.load(Ordering::Relaxed) {
        for i in (0..SPIN_LEN).step_by(64) {
            // SAFETY: the buffer is mapped until every spinner is joined.
            sum = sum.wrapping_add(u64::from(unsafe { buf.add(i).read_volatile() }));
        }
    }
    SINK.fetch_add(sum, Ordering::Relaxed);
    0
}

struct Spinners {
    threads: [Option<Thread>; MAX_THREADS],
    buf: usize,
}

impl Spinners {
    /// Starts spinners on CPUs 1..=k and returns once all run and had 20 ms
    /// to get going. `None` when CPU k is not online (or k is more threads
    /// than the runtime has).
    fn start(k: usize) -> Option<Spinners> {
        if k > MAX_THREADS {
            return None;
        }
        let buf = ok(
            sys::mmap(0, SPIN_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE),
            "mmap spinner buffer",
        );
        // SAFETY: a fresh mapping of SPIN_LEN bytes.
        unsafe { core::ptr::write_bytes(buf as *mut u8, 1, SPIN_LEN) };
        STOP.store(false, Ordering::Relaxed);
        RUNNING.store(0, Ordering::Relaxed);
        SPIN_BUF.store(buf, Ordering::Release);
        let mut sp = Spinners { threads: core::array::from_fn(|_| None), buf };
        for i in 0..k {
            match thread::spawn(1 + i, spinner, 0) {
                Ok(t) => sp.threads[i] = Some(t),
                Err(Errno::EINVAL) => {
                    sp.stop();
                    return None;
                }
                Err(e) => die("thread_spawn", e),
            }
        }
        while RUNNING.load(Ordering::Acquire) < k {
            sys::yield_now();
        }
        let _ = sys::sleep_ns(20_000_000);
        Some(sp)
    }

    fn stop(self) {
        STOP.store(true, Ordering::Relaxed);
        for t in self.threads.into_iter().flatten() {
            match t.join() {
                Ok(0) => {}
                Ok(s) => {
                    println!("shootdown: a spinner exited with status {s}");
                    sys::exit(1)
                }
                Err(e) => die("thread_join", e),
            }
        }
        ok(sys::munmap(self.buf, SPIN_LEN), "munmap spinner buffer");
    }
}

/// A result line, formatted on the stack.
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(core::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn main() -> i32 {
    if sys::getcpu() != 0 {
        println!("shootdown: the main thread must run on CPU 0 (spinners use CPUs 1..K), not {}", sys::getcpu());
        return 1;
    }
    // The kernel must refuse what is not `<bench> key=value ...` (so no
    // program can print a test verdict or an end marker this way).
    for bad in ["shootdown", "shootdown op", "test x ... ok", "shootdown n=1\nTESTBED-END status=pass", "shootdown flush=nmi"] {
        if sys::bench_result(bad) != Err(Errno::EINVAL) {
            println!("shootdown: bench_result accepted {bad:?}");
            return 1;
        }
    }
    let clock = Clock::calibrate();
    println!(
        "shootdown: tsc_per_ns={}.{:04} (calibrated against clock_ns over 100 ms)",
        clock.ticks / clock.ns,
        clock.ticks * 10_000 / clock.ns % 10_000
    );
    // Three PROT_NONE pages; the middle one is the test page.
    let area = ok(sys::mmap(0, 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS), "mmap");
    let page = area + PAGE;
    ok(sys::mprotect(page, PAGE, PROT_READ | PROT_WRITE), "mprotect");
    // SAFETY: the page is mapped read-write.
    unsafe { core::ptr::write_bytes(page as *mut u8, 0x11, PAGE) };
    let samples_at = ok(
        sys::mmap(0, ITERS * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE),
        "mmap samples",
    );
    // SAFETY: a fresh private mapping of ITERS u64s, used only here.
    let samples = unsafe { core::slice::from_raw_parts_mut(samples_at as *mut u64, ITERS) };
    let mut base_median = [0u64; 3];
    let mut k = 0;
    while let Some(sp) = Spinners::start(k) {
        for (i, &(op, name)) in OPS.iter().enumerate() {
            for _ in 0..WARMUP {
                do_op(op, page);
            }
            let deadline = sys::clock_ns() + SECS_NS;
            let mut m = 0;
            while m < ITERS {
                samples[m] = do_op(op, page);
                m += 1;
                if m % 64 == 0 && sys::clock_ns() > deadline {
                    break;
                }
            }
            let s = stats_of(&mut samples[..m], clock);
            if k == 0 {
                base_median[i] = s.median;
            }
            let mut line = Line { bytes: [0; 256], len: 0 };
            let _ = write!(
                line,
                "shootdown op={name} remote_cpus={k} n={} mean_ns={} median_ns={} p10_ns={} p90_ns={} min_ns={}",
                s.n, s.mean, s.median, s.p10, s.p90, s.min
            );
            if k > 0 {
                let _ = write!(line, " delta_median_ns={}", s.median as i64 - base_median[i] as i64);
            }
            let text = core::str::from_utf8(&line.bytes[..line.len]).unwrap_or("");
            ok(sys::bench_result(text), "bench_result");
        }
        sp.stop();
        k += 1;
    }
    if k == 0 {
        println!("shootdown: could not start even with no spinner");
        return 1;
    }
    0
}
