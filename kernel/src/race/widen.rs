//! Window widening (controls.md "Window widening"): bounded delays at named
//! points of the protocol, and forced interleavings (pause until the other
//! side reaches its point, or a bound elapses).
//!
//! The points: `gup.pre_ref` (GUP-fast, after reading the pte, before taking
//! the reference: interrupts are off there under the correct protocol),
//! `writer.post_clear` (between the clear and the flush),
//! `writer.pre_check` (between the flush and the reference check) and
//! `writer.post_check` (right after the check: before the clear under
//! `ksm.check_before_clear`, before the read-only pte goes in otherwise),
//! and `collapse.pre_copy` (a collapse between its isolate step and the
//! copy). KSM's points are keyed by the page, a collapse's by the pte
//! table of its 2 MiB range; GUP-fast arrives with both keys ([`at_keys`]).
//!
//! A forced interleaving names the point to wait for: `wait:POINT:US`
//! pauses until some CPU reaches `POINT` *on the same page* (after this
//! pause began), at most `US` microseconds; `wait:US` waits for any point of
//! the other side on the same page. For example
//! `widen.gup.pre_ref=wait:writer.post_check:500` makes a GUP-fast that has
//! read a pte take its reference only after a writer has checked the
//! references of that page: the ordering every defence must make harmless.
//! (Arrivals record the last page per point; a waiter can miss a match
//! when arrivals on other pages overwrite it, and then times out: a pause
//! is bounded either way.) A wait is skipped when the other side last
//! arrived on this very CPU: it cannot make progress while this CPU spins,
//! so the pause would only starve it.
//!
//! A pause spins on the TSC: it may run with interrupts off, so it can neither
//! sleep nor take locks. Every bound is at most [`MAX_US`] (100 ms), far below
//! the cross-CPU call timeout (2 s by default): under `tlb=ipi` a GUP-fast
//! paused with interrupts off holds the writer's flush back, which is the
//! protocol working and must not look like a dead CPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::config::RaceConfig;
use crate::arch::tsc;
use crate::smp::cpuset::MAX_CPUS;
use crate::smp::percpu;

/// The largest pause bound, in microseconds.
pub const MAX_US: u32 = 100_000;

/// A widening point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// GUP-fast between the pte read and the reference.
    GupPreRef = 0,
    /// The writer between the clear and the flush.
    WriterPostClear = 1,
    /// The writer between the flush and the check.
    WriterPreCheck = 2,
    /// The writer right after the reference check.
    WriterPostCheck = 3,
    /// A collapse between the isolation and the copy into the huge page.
    CollapsePreCopy = 4,
}

impl Point {
    /// Number of points.
    pub const COUNT: usize = 5;
    /// Every point.
    pub const ALL: [Point; Point::COUNT] =
        [Point::GupPreRef, Point::WriterPostClear, Point::WriterPreCheck, Point::WriterPostCheck, Point::CollapsePreCopy];

    /// The point's name in boot keys (after `widen.`).
    pub fn name(self) -> &'static str {
        match self {
            Point::GupPreRef => "gup.pre_ref",
            Point::WriterPostClear => "writer.post_clear",
            Point::WriterPreCheck => "writer.pre_check",
            Point::WriterPostCheck => "writer.post_check",
            Point::CollapsePreCopy => "collapse.pre_copy",
        }
    }

    /// The point named `name`.
    pub fn from_name(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }

    fn is_writer(self) -> bool {
        self != Point::GupPreRef
    }
}

/// What a point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Widening {
    /// Nothing.
    None,
    /// Spin this many microseconds.
    Fixed(u32),
    /// Spin a pseudo-random time in `0..=us` microseconds.
    Random(u32),
    /// Pause until a CPU reaches the given point on the same page (`None`:
    /// any point of the other side: a writer's for `gup.pre_ref`, GUP-fast's
    /// for the writer points), at most this many microseconds.
    Wait(Option<Point>, u32),
}

impl Widening {
    /// Parses `US`, `rand:US` or `wait:US` (1..=[`MAX_US`]).
    pub fn parse(v: &str) -> Option<Widening> {
        let us = |s: &str| s.parse::<u32>().ok().filter(|n| (1..=MAX_US).contains(n));
        if let Some(rest) = v.strip_prefix("rand:") {
            us(rest).map(Widening::Random)
        } else if let Some(rest) = v.strip_prefix("wait:") {
            match rest.rsplit_once(':') {
                Some((point, n)) => Some(Widening::Wait(Some(Point::from_name(point)?), us(n)?)),
                None => us(rest).map(|n| Widening::Wait(None, n)),
            }
        } else {
            us(v).map(Widening::Fixed)
        }
    }

    fn encode(self) -> (u8, u32) {
        match self {
            Widening::None => (0, 0),
            Widening::Fixed(u) => (1, u),
            Widening::Random(u) => (2, u),
            Widening::Wait(None, u) => (3, u),
            Widening::Wait(Some(p), u) => (4 + p as u8, u),
        }
    }
}

/// Whether any point is configured (the arrivals are counted only then, so
/// an unwidened GUP-fast pays one relaxed load per page).
static ANY: AtomicBool = AtomicBool::new(false);
static KIND: [AtomicU8; Point::COUNT] = [const { AtomicU8::new(0) }; Point::COUNT];
static US: [AtomicU32; Point::COUNT] = [const { AtomicU32::new(0) }; Point::COUNT];
/// Arrivals at each point, and at GUP-fast's and any writer point (forced
/// interleavings).
static ARRIVALS: [AtomicU64; Point::COUNT] = [const { AtomicU64::new(0) }; Point::COUNT];
static GUP_ARRIVALS: AtomicU64 = AtomicU64::new(0);
static WRITER_ARRIVALS: AtomicU64 = AtomicU64::new(0);
/// The page of the latest arrival at each point, and at each side.
static ARRIVAL_PFN: [AtomicU64; Point::COUNT] = [const { AtomicU64::new(u64::MAX) }; Point::COUNT];
static GUP_PFN: AtomicU64 = AtomicU64::new(u64::MAX);
static WRITER_PFN: AtomicU64 = AtomicU64::new(u64::MAX);
/// The second key of the latest arrival (GUP-fast: the pte table it walks,
/// which is a collapse's key), per point and per side.
static ARRIVAL_ALT: [AtomicU64; Point::COUNT] = [const { AtomicU64::new(u64::MAX) }; Point::COUNT];
static GUP_ALT: AtomicU64 = AtomicU64::new(u64::MAX);
static WRITER_ALT: AtomicU64 = AtomicU64::new(u64::MAX);
/// The CPU of the latest arrival on each side.
static GUP_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
static WRITER_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
/// Per-CPU pseudo-random state (xorshift64*), seeded from `seed=`.
static RNG: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static SEED: AtomicU64 = AtomicU64::new(1);

/// Applies the configuration's widenings.
pub fn init(c: &RaceConfig) {
    SEED.store(c.seed, Ordering::Relaxed);
    for p in Point::ALL {
        set(p, c.widen[p as usize]);
    }
}

/// Sets one point's widening (tests change it between runs).
pub fn set(p: Point, w: Widening) {
    let (kind, us) = w.encode();
    US[p as usize].store(us, Ordering::Relaxed);
    KIND[p as usize].store(kind, Ordering::Relaxed);
    ANY.store(KIND.iter().any(|k| k.load(Ordering::Relaxed) != 0), Ordering::Relaxed);
}

/// A pseudo-random number for this CPU (xorshift64*; not for security).
fn random() -> u64 {
    let cpu = percpu::cpu_index();
    let cell = &RNG[cpu];
    let mut x = cell.load(Ordering::Relaxed);
    if x == 0 {
        x = SEED.load(Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (cpu as u64 + 1);
        if x == 0 {
            x = 1;
        }
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    // Relaxed: per-CPU state; a racing NMI-context user would only repeat a value.
    cell.store(x, Ordering::Relaxed);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn spin_until(deadline: u64, mut done: impl FnMut() -> bool) {
    while tsc::rdtsc() < deadline && !done() {
        core::hint::spin_loop();
    }
}

/// The widening point `p`, reached for the page `pfn`: a no-op unless
/// configured. May run with interrupts off; never sleeps, never locks.
#[inline]
pub fn at(p: Point, pfn: u64) {
    at_keys(p, pfn, pfn);
}

/// [`at`] with a second key: GUP-fast passes the page and the pte table it
/// reads it from, so that a forced interleaving matches a KSM writer (keyed
/// by the page) and a collapse (keyed by the table of its 2 MiB range).
#[inline]
pub fn at_keys(p: Point, pfn: u64, alt: u64) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    let kind = KIND[p as usize].load(Ordering::Relaxed);
    let (mine, mine_pfn, mine_alt, mine_cpu, other, other_pfn, other_alt, other_cpu) = if p.is_writer() {
        (&WRITER_ARRIVALS, &WRITER_PFN, &WRITER_ALT, &WRITER_CPU, &GUP_ARRIVALS, &GUP_PFN, &GUP_ALT, &GUP_CPU)
    } else {
        (&GUP_ARRIVALS, &GUP_PFN, &GUP_ALT, &GUP_CPU, &WRITER_ARRIVALS, &WRITER_PFN, &WRITER_ALT, &WRITER_CPU)
    };
    let cpu = percpu::cpu_index() as u64;
    mine_cpu.store(cpu, Ordering::Relaxed);
    // Relaxed: arrivals are a hint for the other side's pause; nothing is
    // published through them. The page goes first, then the count.
    mine_pfn.store(pfn, Ordering::Relaxed);
    mine_alt.store(alt, Ordering::Relaxed);
    ARRIVAL_PFN[p as usize].store(pfn, Ordering::Relaxed);
    ARRIVAL_ALT[p as usize].store(alt, Ordering::Relaxed);
    mine.fetch_add(1, Ordering::Release);
    ARRIVALS[p as usize].fetch_add(1, Ordering::Release);
    if kind == 0 {
        return;
    }
    let us = u64::from(US[p as usize].load(Ordering::Relaxed));
    let now = tsc::rdtsc();
    match kind {
        1 => spin_until(now + tsc::ns_to_ticks(us * 1000), || false),
        2 => {
            let d = random() % (us + 1);
            spin_until(now + tsc::ns_to_ticks(d * 1000), || false);
        }
        k => {
            if other_cpu.load(Ordering::Relaxed) == cpu {
                return;
            }
            let (target, target_pfn, target_alt) = if k == 3 {
                (other, other_pfn, other_alt)
            } else {
                let i = usize::from(k - 4);
                (&ARRIVALS[i], &ARRIVAL_PFN[i], &ARRIVAL_ALT[i])
            };
            let seen = target.load(Ordering::Acquire);
            spin_until(now + tsc::ns_to_ticks(us * 1000), || {
                let (tp, ta) = (target_pfn.load(Ordering::Relaxed), target_alt.load(Ordering::Relaxed));
                target.load(Ordering::Acquire) != seen && (tp == pfn || tp == alt || ta == pfn || ta == alt)
            });
        }
    }
}
