//! Window widening (controls.md "Window widening"): bounded delays at named
//! points of the protocol, and forced interleavings (pause until the other
//! side reaches its point, or a bound elapses).
//!
//! The points: `gup.pre_ref` (GUP-fast, after reading the pte, before taking
//! the reference: interrupts are off there under the correct protocol),
//! `writer.pre_clear` (right before the writer clears the entry: a walker
//! that reads the entry while the writer waits here read it before the
//! clear), `writer.post_clear` (between the clear and the flush),
//! `writer.pre_check` (between the flush and the reference check) and
//! `writer.post_check` (right after the check: before the clear under
//! `ksm.check_before_clear`, before the read-only pte goes in otherwise),
//! `collapse.pre_copy` (a collapse between its isolate step and the
//! copy), `gup.pre_pte` (GUP-fast between reading a pmd that points to a
//! pte table and reading its first pte) and `collapse.post_free` (a
//! collapse right after freeing the old table). KSM's points are keyed by the page, a collapse's by the pte
//! table of its 2 MiB range; GUP-fast arrives with both keys, and with the address space and
//! address it walks ([`at_walk`]: while the exploration pauses it there,
//! that steers the scanning daemons, [`super::steer`]).
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
pub(crate) const MAX_US: u32 = 100_000;

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
    /// GUP-fast between reading a pmd that points to a pte table and
    /// reading the first pte of that table (the walker holds a pointer into
    /// the table: bug G's window).
    GupPrePte = 5,
    /// A collapse right after it freed the old pte table (or queued its
    /// free after a grace period, `ptfree=rcu`).
    CollapsePostFree = 6,
    /// The writer right before it clears the entry (KSM: after the check
    /// under `ksm.check_before_clear`, before everything otherwise).
    WriterPreClear = 7,
}

impl Point {
    /// Number of points.
    pub(crate) const COUNT: usize = 8;
    /// Every point.
    pub(crate) const ALL: [Point; Point::COUNT] = [
        Point::GupPreRef,
        Point::WriterPostClear,
        Point::WriterPreCheck,
        Point::WriterPostCheck,
        Point::CollapsePreCopy,
        Point::GupPrePte,
        Point::CollapsePostFree,
        Point::WriterPreClear,
    ];

    /// The point's name in boot keys (after `widen.`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Point::GupPreRef => "gup.pre_ref",
            Point::WriterPostClear => "writer.post_clear",
            Point::WriterPreCheck => "writer.pre_check",
            Point::WriterPostCheck => "writer.post_check",
            Point::CollapsePreCopy => "collapse.pre_copy",
            Point::GupPrePte => "gup.pre_pte",
            Point::CollapsePostFree => "collapse.post_free",
            Point::WriterPreClear => "writer.pre_clear",
        }
    }

    /// The point named `name`.
    pub(crate) fn from_name(name: &str) -> Option<Point> {
        Point::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the point is on the writer's side (all but `gup.pre_ref`
    /// and `gup.pre_pte`).
    pub(crate) fn is_writer(self) -> bool {
        !matches!(self, Point::GupPreRef | Point::GupPrePte)
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
    pub(crate) fn parse(v: &str) -> Option<Widening> {
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

/// Whether any point is configured or the exploration policy is on (the
/// arrivals are counted only then, so an unwidened GUP-fast pays one relaxed
/// load per page).
static ANY: AtomicBool = AtomicBool::new(false);
/// The exploration policy ([`super::explore`]) acts at the points with no
/// explicit widening (on while a scenario runs with `explore=auto`).
static EXPLORE: AtomicBool = AtomicBool::new(false);
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
/// The keys each CPU is paused on in a forced wait (`u64::MAX`: not
/// waiting), and whether that CPU waits as a writer.
static PAUSED_PFN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static PAUSED_ALT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static PAUSED_WRITER: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The point each CPU is paused at (valid while its `PAUSED_PFN` is set).
static PAUSED_POINT: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// GUP-fast's recent keys while exploring: a small ring of `(pfn, alt,
/// tsc)` so that a writer can tell a page or range GUP-fast works on now
/// from one it never touches ([`gup_recently_on`]).
const RECENT: usize = 32;
static RECENT_PFN: [AtomicU64; RECENT] = [const { AtomicU64::new(u64::MAX) }; RECENT];
static RECENT_ALT: [AtomicU64; RECENT] = [const { AtomicU64::new(u64::MAX) }; RECENT];
static RECENT_TSC: [AtomicU64; RECENT] = [const { AtomicU64::new(0) }; RECENT];
static RECENT_NEXT: AtomicU64 = AtomicU64::new(0);
/// Per CPU, the key on which this CPU, as a writer, last let GUP-fast go
/// first (a forced interleaving that happened), and when.
static LET_GO_KEY: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static LET_GO_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Forced waits the exploration policy started, and those that met the
/// other side (since the last [`set_explore`]).
/// Index 0: GUP-fast's, 1: the writers'.
static EXPLORE_WAITS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static EXPLORE_MET: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// Per-CPU pseudo-random state (xorshift64*), seeded from `seed=`.
static RNG: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static SEED: AtomicU64 = AtomicU64::new(1);

/// Applies the configuration's widenings.
pub(crate) fn init(c: &RaceConfig) {
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
    update_any();
}

fn update_any() {
    let any = EXPLORE.load(Ordering::Relaxed) || KIND.iter().any(|k| k.load(Ordering::Relaxed) != 0);
    ANY.store(any, Ordering::Relaxed);
}

/// The widening configured at `p` (explicitly, by a `widen.*` key or
/// [`set`]).
pub(crate) fn configured(p: Point) -> Widening {
    let us = US[p as usize].load(Ordering::Relaxed);
    match KIND[p as usize].load(Ordering::Relaxed) {
        0 => Widening::None,
        1 => Widening::Fixed(us),
        2 => Widening::Random(us),
        3 => Widening::Wait(None, us),
        k => Widening::Wait(Point::ALL.get(usize::from(k - 4)).copied(), us),
    }
}

/// Turns the exploration policy on or off at the points without an explicit
/// widening, and restarts the pseudo-random sequences from `seed` (so that a
/// run's choices depend on its seed only, not on earlier runs in the same
/// boot) and the arrival counts (the policy picks its wait targets among
/// the points the scenario reaches).
pub(crate) fn set_explore(on: bool, seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    for r in &RNG {
        r.store(0, Ordering::Relaxed);
    }
    for a in &ARRIVALS {
        a.store(0, Ordering::Relaxed);
    }
    for c in EXPLORE_WAITS.iter().chain(&EXPLORE_MET) {
        c.store(0, Ordering::Relaxed);
    }
    for t in &RECENT_TSC {
        t.store(0, Ordering::Relaxed);
    }
    super::steer::reset();
    EXPLORE.store(on, Ordering::Relaxed);
    update_any();
}

/// Whether GUP-fast arrived at its point with one of these keys within the
/// last `ns` nanoseconds (while exploring).
pub(super) fn gup_recently_on(pfn: u64, alt: u64, ns: u64) -> bool {
    let since = tsc::rdtsc().saturating_sub(tsc::ns_to_ticks(ns));
    (0..RECENT).any(|i| {
        // Relaxed: a hint; a torn entry only makes one guess wrong.
        let (p, a) = (RECENT_PFN[i].load(Ordering::Relaxed), RECENT_ALT[i].load(Ordering::Relaxed));
        RECENT_TSC[i].load(Ordering::Relaxed) >= since && (p == pfn || p == alt || a == pfn || a == alt)
    })
}

/// Records that this CPU, as a writer on `key`, let GUP-fast go first.
fn note_let_go(key: u64) {
    let c = percpu::cpu_index();
    // Relaxed: per-CPU hints.
    LET_GO_KEY[c].store(key, Ordering::Relaxed);
    LET_GO_TSC[c].store(tsc::rdtsc(), Ordering::Relaxed);
}

/// Whether this CPU, as a writer, let GUP-fast go first on one of these
/// keys within the last `ns` nanoseconds.
pub(super) fn let_go_recently(pfn: u64, alt: u64, ns: u64) -> bool {
    let c = percpu::cpu_index();
    let k = LET_GO_KEY[c].load(Ordering::Relaxed);
    (k == pfn || k == alt) && LET_GO_TSC[c].load(Ordering::Relaxed) >= tsc::rdtsc().saturating_sub(tsc::ns_to_ticks(ns))
}

/// The exploration's forced waits since the last [`set_explore`], GUP-fast's
/// and the writers': `[(started, met); 2]` (a wait that did not meet the
/// other side ran out its bound).
pub(crate) fn explore_waits() -> [(u64, u64); 2] {
    [0, 1].map(|i| (EXPLORE_WAITS[i].load(Ordering::Relaxed), EXPLORE_MET[i].load(Ordering::Relaxed)))
}

/// Arrivals at `p` since the last [`set_explore`] (or boot); tests wait on
/// it to know that a walker has reached a point.
pub fn arrivals(p: Point) -> u64 {
    // Acquire: pairs with the arrival's Release increment.
    ARRIVALS[p as usize].load(Ordering::Acquire)
}

/// A pseudo-random number for this CPU (xorshift64*; not for security).
pub(super) fn random() -> u64 {
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

/// Whether a CPU of the other side (GUP-fast if `writer`, else a writer) is
/// paused in a forced wait on one of these keys.
fn other_side_paused(writer: bool, pfn: u64, alt: u64) -> bool {
    paused_at(writer, pfn, alt).is_some()
}

/// The point where a CPU of the other side (GUP-fast if `writer`, else a
/// writer) is paused in a forced wait on one of these keys, if one is.
fn paused_at(writer: bool, pfn: u64, alt: u64) -> Option<Point> {
    (0..MAX_CPUS).find_map(|c| {
        let k = PAUSED_PFN[c].load(Ordering::Acquire);
        let here = k != u64::MAX && PAUSED_WRITER[c].load(Ordering::Relaxed) != writer && {
            let a = PAUSED_ALT[c].load(Ordering::Relaxed);
            k == pfn || k == alt || a == pfn || a == alt
        };
        let at = PAUSED_POINT[c].load(Ordering::Relaxed) as usize;
        if here { Point::ALL.get(at).copied() } else { None }
    })
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
pub(crate) fn at_keys(p: Point, pfn: u64, alt: u64) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    arrive(p, pfn, alt, None);
}

/// [`at_keys`] for GUP-fast's points, which also name what the walker
/// walks: the address space's id and the user address. While the
/// exploration pauses the walker, that pair is a hint that steers the
/// scanning daemons' next step there ([`super::steer`]).
#[inline]
pub(crate) fn at_walk(p: Point, pfn: u64, alt: u64, mm_id: u64, addr: u64) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    arrive(p, pfn, alt, Some((mm_id, addr)));
}

/// An arrival at `p` with some widening or the exploration on.
fn arrive(p: Point, pfn: u64, alt: u64, walk: Option<(u64, u64)>) {
    let (mine, mine_pfn, mine_alt, mine_cpu, other, other_pfn, other_alt, other_cpu) = if p.is_writer() {
        (&WRITER_ARRIVALS, &WRITER_PFN, &WRITER_ALT, &WRITER_CPU, &GUP_ARRIVALS, &GUP_PFN, &GUP_ALT, &GUP_CPU)
    } else {
        (&GUP_ARRIVALS, &GUP_PFN, &GUP_ALT, &GUP_CPU, &WRITER_ARRIVALS, &WRITER_PFN, &WRITER_ALT, &WRITER_CPU)
    };
    let cpu = percpu::cpu_index() as u64;
    let exploring_here = KIND[p as usize].load(Ordering::Relaxed) == 0 && EXPLORE.load(Ordering::Relaxed);
    // Whether the other side already waits for us on this page or range
    // (its forced interleaving), and where, looked at before this arrival
    // releases it.
    let others_wait = if exploring_here { paused_at(p.is_writer(), pfn, alt) } else { None };
    mine_cpu.store(cpu, Ordering::Relaxed);
    // Relaxed: arrivals are a hint for the other side's pause; nothing is
    // published through them. The page goes first, then the count.
    mine_pfn.store(pfn, Ordering::Relaxed);
    mine_alt.store(alt, Ordering::Relaxed);
    ARRIVAL_PFN[p as usize].store(pfn, Ordering::Relaxed);
    ARRIVAL_ALT[p as usize].store(alt, Ordering::Relaxed);
    mine.fetch_add(1, Ordering::Release);
    ARRIVALS[p as usize].fetch_add(1, Ordering::Release);
    if !p.is_writer() && EXPLORE.load(Ordering::Relaxed) {
        let i = (RECENT_NEXT.fetch_add(1, Ordering::Relaxed) as usize) % RECENT;
        RECENT_PFN[i].store(pfn, Ordering::Relaxed);
        RECENT_ALT[i].store(alt, Ordering::Relaxed);
        RECENT_TSC[i].store(tsc::rdtsc(), Ordering::Relaxed);
    }
    // (GUP-fast that met a paused writer went after it half the time from
    // 2d3fe3f: on a quiet host it left the 2-CPU `gup.recheck=off` rows with
    // `gup.irqs=on` / `tlb.nowait=on` uncaught in 20 s now and then, with a
    // thousand overlaps; without it every run measured was caught, see
    // README "The race matrix".)
    if others_wait.is_some() {
        // Let the other side go on first rather than race it, whatever this
        // arrival would have drawn (pausing too could only let both bounds
        // run out). A writer waits until the walker it released has left
        // its pause (its vCPU runs: under TCG on a loaded host it may not
        // for a while), at most [`super::explore::RELEASE_US`], then lingers
        // a random time, long enough for the walker to take its reference.
        if p.is_writer() {
            note_let_go(pfn);
            let bound = tsc::rdtsc() + tsc::ns_to_ticks(super::explore::RELEASE_US * 1000);
            spin_until(bound, || !other_side_paused(true, pfn, alt));
        }
        let d = super::explore::linger_us(p);
        spin_until(tsc::rdtsc() + tsc::ns_to_ticks(d * 1000), || false);
        return;
    }
    let (w, explored) = match KIND[p as usize].load(Ordering::Relaxed) {
        0 if EXPLORE.load(Ordering::Relaxed) => (super::explore::choose(p, pfn, alt), true),
        0 => return,
        _ => (configured(p), false),
    };
    let now = tsc::rdtsc();
    match w {
        Widening::None => {}
        Widening::Fixed(us) => spin_until(now + tsc::ns_to_ticks(u64::from(us) * 1000), || false),
        Widening::Random(us) => {
            let d = random() % (u64::from(us) + 1);
            spin_until(now + tsc::ns_to_ticks(d * 1000), || false);
        }
        Widening::Wait(target, us) => {
            if other_cpu.load(Ordering::Relaxed) == cpu {
                return;
            }
            let (target, target_pfn, target_alt) = match target {
                None => (other, other_pfn, other_alt),
                Some(t) => (&ARRIVALS[t as usize], &ARRIVAL_PFN[t as usize], &ARRIVAL_ALT[t as usize]),
            };
            let seen = target.load(Ordering::Acquire);
            let deadline = now + tsc::ns_to_ticks(u64::from(us) * 1000);
            let mut met = false;
            let c = cpu as usize;
            PAUSED_WRITER[c].store(p.is_writer(), Ordering::Relaxed);
            PAUSED_POINT[c].store(p as u8, Ordering::Relaxed);
            PAUSED_ALT[c].store(alt, Ordering::Relaxed);
            PAUSED_PFN[c].store(pfn, Ordering::Release);
            // The policy's pause of a walker steers the scanning daemons
            // to what it walks (`steer`): otherwise a scanner comes round
            // to this page or range only when its cursor does.
            let steering = match walk {
                Some((mm, addr)) if explored => {
                    super::steer::publish(c, mm, addr);
                    true
                }
                _ => false,
            };
            // The policy's waits also end when waiting on could only run
            // out the bound, because this pause blocks the other side:
            // * GUP-fast knows exactly when it does: an IPI (a flush, a
            //   table sync) waits in its CPU's queue while it holds
            //   interrupts off, or a task waits for a grace period this CPU
            //   has not reported for. Otherwise it waits on: a writer may
            //   come round to its range only every few tens of ms (a
            //   collapse takes milliseconds under TCG);
            // * a writer cannot tell (a worker may wait for the mmap lock it
            //   holds): its wait ends when the other side reached no point
            //   at all for `STALL_NS`.
            let stall = tsc::ns_to_ticks(super::explore::STALL_NS);
            let ipi_ack_free = crate::tlb::config().nowait || crate::arch::cpu::interrupts_enabled();
            let (mut other_seen, mut other_at) = (other.load(Ordering::Relaxed), now);
            let mut stalled = false;
            spin_until(deadline, || {
                let (tp, ta) = (target_pfn.load(Ordering::Relaxed), target_alt.load(Ordering::Relaxed));
                met = target.load(Ordering::Acquire) != seen && (tp == pfn || tp == alt || ta == pfn || ta == alt);
                if explored && !met {
                    if !p.is_writer() {
                        // A queued IPI holds the writer back only when the
                        // writer waits for its acknowledgement and this CPU
                        // cannot take it: not under `tlb.nowait` (the
                        // shootdown returns at once) nor with interrupts on
                        // (`gup.irqs=on`: it is taken during this spin).
                        // Ending the wait there handed the walker its
                        // reference just before the writer's check, and the
                        // 2-CPU rows with those switches went uncaught for
                        // 20 s on a quiet host.
                        stalled = (!ipi_ack_free && crate::smp::call::ipi_queued_for(c)) || crate::rcu::waiter_held_by(c);
                    } else {
                        let o = other.load(Ordering::Relaxed);
                        let t = tsc::rdtsc();
                        if o != other_seen {
                            (other_seen, other_at) = (o, t);
                        } else if t - other_at > stall {
                            stalled = true;
                        }
                    }
                }
                met || stalled
            });
            PAUSED_PFN[c].store(u64::MAX, Ordering::Relaxed);
            if steering {
                super::steer::withdraw(c);
            }
            if explored {
                // Relaxed: statistics.
                let side = usize::from(p.is_writer());
                EXPLORE_WAITS[side].fetch_add(1, Ordering::Relaxed);
                EXPLORE_MET[side].fetch_add(u64::from(met), Ordering::Relaxed);
            }
            if met && explored && p.is_writer() {
                // The policy's forced interleavings let the other side go
                // on a little before this one does (see `explore`).
                note_let_go(pfn);
                let d = super::explore::linger_us(p);
                spin_until(tsc::rdtsc() + tsc::ns_to_ticks(d * 1000), || false);
            }
        }
    }
}
