//! The default exploration policy (`explore=auto`, controls.md "Default
//! exploration"): while a scenario runs, every named point of the protocol
//! that has no explicit `widen.*` key perturbs the schedule, each arrival
//! choosing what to do from the per-CPU pseudo-random sequence seeded by
//! `seed=`. `explore=off` leaves the natural race.
//!
//! In the spirit of PCT (Burckhardt et al., ASPLOS 2010: random priority
//! change points give a probabilistic guarantee for bugs of small depth) and
//! of KCSAN's random delays, every arrival is a potential change point. At
//! GUP-fast's point, with probability 1/2 nothing happens; 1/8 a random delay
//! (up to [`GUP_DELAY_US`]); 3/8 a forced interleaving: GUP-fast pauses
//! until a writer reaches a point *on the same page or range* (the keys
//! `widen` matches: a page, or the pte table of a 2 MiB range), the target
//! half the time the writer's reference check (`writer.post_check`, where
//! the scenario has one: the reference taken after it is the ordering every
//! defence must make harmless), otherwise drawn uniformly among the writer
//! points the scenario has reached, the
//! bound drawn from [`WAIT_BOUNDS_US`] (long bounds let a slow writer come
//! round to the page: a collapse comes round to a range every few tens of
//! ms; short ones keep the run going). At `gup.pre_pte` (a walker holding a
//! pointer into a pte table) the target is always the table's free
//! (`collapse.post_free`): nothing else can hurt that walker, and drawing
//! it 1 time in 5 left bug G uncaught in 10 s in half the runs on 4 vCPUs
//! (README "The race matrix"). GUP-fast's wait also ends as soon as
//! it holds the writer back (an IPI waits in its CPU's queue while it has
//! interrupts off, or a grace period someone waits for waits for its CPU).
//!
//! At a writer's point the same draw, but a forced wait (for GUP-fast's
//! `gup.pre_ref`) is taken only on a page or range GUP-fast worked on in
//! the last [`HOT_NS`]: a writer mostly handles pages nobody pins, where a
//! wait could only run out. A writer cannot tell when it holds GUP-fast's
//! side back (a worker waiting for the mmap lock it holds): its wait ends
//! when that side reached no point at all for [`STALL_NS`].
//!
//! The forced waits do not feed on each other: a side that finds the other
//! already paused on the same key lets it go on first instead of racing it
//! or pausing too:
//! GUP-fast for a short random delay (at most
//! [`LINGER_US`], it may hold interrupts off), a writer until the walker it
//! released left its pause (at most [`RELEASE_US`]: its vCPU may not run at
//! once on a loaded host) and then a random delay up to
//! [`WRITER_LINGER_US`], time for the walker to take its reference and
//! re-read its entries. A writer that met GUP-fast in its own wait lets it
//! run on the same way. Once a writer let GUP-fast go first on a key, it
//! takes no forced wait on that key for [`RESPITE_NS`] (the rest of that
//! merge or collapse): waiting for GUP-fast again later in the same write
//! would let the device finish first and undo the interleaving.
//!
//! A paused walker also steers the writer to it ([`super::steer`]): while
//! GUP-fast waits in a forced interleaving it publishes the address space
//! and the address it walks, and the scanning daemons (ksmd, khugepaged)
//! visit that page or 2 MiB range at their next step, before going on from
//! their cursor. Without it a scanner came round to a walker's range only
//! when its cursor did (a collapse of each worker's range about once a
//! second on 4 vCPUs), so most pauses ran out their bound before the writer
//! arrived. It is a scheduling choice like the others (which page a scanner
//! visits next, not how it handles it), taken in the safe and the caught
//! rows alike.
//!
//! So a bug of depth one or two (one ordering to force: "the reference is
//! taken after the check", "the pin lands between check and clear") is hit
//! with a probability per attempt bounded below by roughly 3/8 x 1/2 (the
//! check; 3/8 x 1/points for another point) x
//! P(the writer comes round within the bound), whatever the CPU count or
//! the seed; steering makes that last factor close to one for the
//! scanning writers whenever the bound exceeds their current step. Every
//! bound is far below the cross-CPU call timeout, so a
//! GUP-fast pausing with interrupts off under `tlb=ipi` only delays the
//! writer's flush (the protocol working). The policy is generic: the points
//! are those the scenario reaches, the keys its own. The same policy runs
//! the safe and the caught rows, so a pair of rows differs by its one switch.

use super::widen::{self, Point, Widening};

/// How long a writer that released a paused walker waits at most for it to
/// leave its pause, us.
pub(crate) const RELEASE_US: u64 = 2_000;
/// How long after letting GUP-fast go first on a key a writer takes no
/// forced wait on that key, ns (the rest of that write: a collapse's flush
/// and 2 MiB copy take milliseconds under TCG).
pub(crate) const RESPITE_NS: u64 = 20_000_000;
/// Bound of GUP-fast's random delay, us.
pub(crate) const GUP_DELAY_US: u32 = 20;
/// Bound of a writer's random delay, us.
pub(crate) const WRITER_DELAY_US: u32 = 50;
/// The bounds a forced wait draws from, us.
pub(crate) const WAIT_BOUNDS_US: [u32; 4] = [100, 1000, 10_000, 100_000];
/// How recent GUP-fast's visit of a key must be for a writer to wait on it, ns.
pub(crate) const HOT_NS: u64 = 50_000_000;
/// A writer's forced wait ends when GUP-fast's side reached no point at all
/// for this long, ns (it is blocked, perhaps by the writer itself: a worker
/// waiting for the mmap lock the writer holds).
pub(crate) const STALL_NS: u64 = 5_000_000;
/// Bound of the random time GUP-fast lets a writer run on, us (it may hold
/// interrupts off meanwhile).
pub(crate) const LINGER_US: u64 = 10;
/// Bound of the random time a writer lets GUP-fast run on, us: long enough
/// for a walker released from its pause to take its reference and re-read
/// its entries under TCG, where that takes microseconds to tens of them
/// (with only [`LINGER_US`], a collapse that released a walker at its
/// isolate check usually cleared the pmd before the walker's re-read).
pub(crate) const WRITER_LINGER_US: u64 = 200;

/// What the arrival at `p` (keys `pfn`, `alt`) does, with no explicit
/// widening there.
pub(crate) fn choose(p: Point, pfn: u64, alt: u64) -> Widening {
    // `gup.pre_pte` (a walker holding a pointer into a pte table) matters
    // only where a writer frees page tables under walkers: elsewhere (KSM)
    // a wait there could only run out.
    if p == Point::GupPrePte && widen::arrivals(Point::CollapsePostFree) == 0 {
        return Widening::None;
    }
    let r = widen::random();
    let bound = WAIT_BOUNDS_US[((r >> 3) % WAIT_BOUNDS_US.len() as u64) as usize];
    // Low bits: nothing (4 in 8), a delay (1 in 8), a forced wait (3 in 8).
    match r % 8 {
        0..=3 => Widening::None,
        4 if p.is_writer() => Widening::Random(WRITER_DELAY_US),
        4 => Widening::Random(GUP_DELAY_US),
        _ if p.is_writer() => {
            if widen::let_go_recently(pfn, alt, RESPITE_NS) {
                // This writer let GUP-fast go first on this key a moment
                // ago: the interleaving was forced; waiting for GUP-fast
                // again at a later point of the same write could only undo
                // it (its device write would land before the copy or the
                // merge instead of after).
                Widening::None
            } else if widen::gup_recently_on(pfn, alt, HOT_NS) {
                Widening::Wait(Some(Point::GupPreRef), bound)
            } else {
                Widening::None
            }
        }
        // A walker holding a pointer into a pte table can be hurt only by
        // that table's free: it waits for the free, not for a point drawn
        // among all the writer's (1 in 5 of a collapse's).
        _ if p == Point::GupPrePte => Widening::Wait(Some(Point::CollapsePostFree), bound),
        // Half the time after the writer's reference check where the
        // scenario has one: a reference taken after it is what every
        // defence must make harmless; otherwise any point it reaches.
        _ if (r >> 8) & 1 == 0 && widen::arrivals(Point::WriterPostCheck) > 0 => {
            Widening::Wait(Some(Point::WriterPostCheck), bound)
        }
        _ => Widening::Wait(writer_target(r >> 9), bound),
    }
}

/// A writer point this scenario reaches (chosen by `r`), or `None` (any
/// writer point) before any was reached.
fn writer_target(r: u64) -> Option<Point> {
    reached_writer_point(r, None)
}

/// A writer point other than `except` that this scenario reached, chosen by
/// `r`.
fn reached_writer_point(r: u64, except: Option<Point>) -> Option<Point> {
    let mut reached = [Point::GupPreRef; Point::COUNT];
    let mut n = 0;
    for p in Point::ALL {
        if p.is_writer() && Some(p) != except && widen::arrivals(p) > 0 {
            reached[n] = p;
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    Some(reached[(r % n as u64) as usize])
}

/// How long a side lets the other run on, us.
pub(crate) fn linger_us(p: Point) -> u64 {
    widen::random() % (if p.is_writer() { WRITER_LINGER_US } else { LINGER_US } + 1)
}
