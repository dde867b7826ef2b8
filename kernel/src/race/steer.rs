//! Steering the scanning daemons to a paused walker (part of the default
//! exploration, `explore=auto`, see [`super::explore`]).
//!
//! A forced interleaving pauses GUP-fast until a writer reaches a point on
//! the same page or range, at most 100 ms; but a scanning writer (ksmd,
//! khugepaged) comes round to a given page or range only when its cursor
//! gets there: a collapse of each worker's range about once a second on 4
//! vCPUs under TCG, so a pause and the writer's visit rarely coincided and
//! the collapse rows missed issue 13's target (README "The race matrix").
//! So while GUP-fast is paused in a forced wait of the policy, it publishes
//! the address space (its id) and the user address it walks as a *hint*,
//! and the daemons look at the hints before each step of their scan: a
//! fresh one makes the next step visit that page (ksmd) or that 2 MiB range
//! (khugepaged) first, out of the cursor's order, and the cursor goes on
//! where it stood afterwards.
//!
//! That is a scheduling choice, like PCT's change points: which page or
//! range a scanner visits next is the daemon's policy, not the protocol
//! (Linux's own scanners visit in an order of their own too). The visit
//! itself is the daemon's ordinary step (the same checks, locks, clears and
//! flushes), so a safe row stays safe, and the same steering runs the safe
//! and the caught rows, which still differ by their one switch.
//!
//! Invariants: a hint exists only while its CPU is paused in a forced wait
//! of the policy (published before the pause, withdrawn after it) and is
//! taken by one daemon step at most (a claim by compare-exchange), so a
//! pause steers one visit and a daemon never stops scanning its address
//! spaces in order for long. Explicit `widen.*` keys publish no hint: a
//! recipe stays what it was.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::smp::cpuset::MAX_CPUS;

/// Per CPU: the hint's generation (0: no hint), address space id and user
/// address.
static GEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static MM: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ADDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// The last generation each CPU published (only that CPU writes it).
static LAST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// How many CPUs have a hint up: what [`pending`] reads, one load in the
/// daemons' per-page loop instead of one per possible CPU (256 loads a
/// page made ksmd's first full scan of `bench=ksm` about half as slow
/// again). Each hint is counted once when published and uncounted once by
/// whichever of [`withdraw`] and [`take`] turns its generation to 0 (both
/// see the old value in their RMW).
static UP: AtomicU32 = AtomicU32::new(0);
/// Hints published and taken since the last [`reset`].
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// CPU `cpu`'s walker, about to pause, walks `addr` of the address space
/// `mm_id`: a hint for the daemons until [`withdraw`].
pub(crate) fn publish(cpu: usize, mm_id: u64, addr: u64) {
    // Relaxed: only this CPU writes its slot's generation counter.
    let g = LAST[cpu].load(Ordering::Relaxed).wrapping_add(1).max(1);
    LAST[cpu].store(g, Ordering::Relaxed);
    MM[cpu].store(mm_id, Ordering::Relaxed);
    ADDR[cpu].store(addr, Ordering::Relaxed);
    // Counted before it can be seen, so the count never lags a visible hint
    // (Relaxed: `pending` is only a cheap look; `take` claims properly).
    UP.fetch_add(1, Ordering::Relaxed);
    // Release: a daemon that reads this generation (Acquire) reads the
    // address space and address stored before it. (A hint is only a
    // scheduling choice: a stale pair would only steer one visit wrong.)
    // The slot is 0 here (this CPU's previous hint was withdrawn or taken);
    // a swap keeps the count right even if it were not.
    if GEN[cpu].swap(g, Ordering::Release) != 0 {
        UP.fetch_sub(1, Ordering::Relaxed);
    }
    PUBLISHED.fetch_add(1, Ordering::Relaxed);
}

/// CPU `cpu`'s pause ended: its hint, if not taken, is gone.
pub(crate) fn withdraw(cpu: usize) {
    // Relaxed: a daemon that still claims the old generation (its
    // compare-exchange ran first) only visits a page the walker has just
    // left. The swap tells whether the hint was still up (not taken).
    if GEN[cpu].swap(0, Ordering::Relaxed) != 0 {
        UP.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes one hint that `accept` turns into a visit (`accept(mm_id, addr)`:
/// `None` when this daemon does not scan that address space or address, and
/// the hint stays for another). The hint is claimed: no other step visits
/// it.
pub(crate) fn take<R>(mut accept: impl FnMut(u64, u64) -> Option<R>) -> Option<R> {
    for c in 0..MAX_CPUS {
        // Acquire: pairs with `publish`'s Release.
        let g = GEN[c].load(Ordering::Acquire);
        if g == 0 {
            continue;
        }
        let (mm, addr) = (MM[c].load(Ordering::Relaxed), ADDR[c].load(Ordering::Relaxed));
        let Some(r) = accept(mm, addr) else { continue };
        // Relaxed: the claim orders nothing else; it only makes sure that
        // one step takes the hint of one pause.
        if GEN[c].compare_exchange(g, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            UP.fetch_sub(1, Ordering::Relaxed);
            TAKEN.fetch_add(1, Ordering::Relaxed);
            return Some(r);
        }
    }
    None
}

/// Whether any CPU has a hint up (a cheap look for a daemon's inner loop).
pub(crate) fn pending() -> bool {
    // Relaxed: a hint; `take` claims it properly.
    UP.load(Ordering::Relaxed) != 0
}

/// Hints published and taken since the last [`reset`].
pub(crate) fn counts() -> (u64, u64) {
    (PUBLISHED.load(Ordering::Relaxed), TAKEN.load(Ordering::Relaxed))
}

/// Forgets every hint and the counts (a new run).
pub(crate) fn reset() {
    for g in &GEN {
        // Each hint still up is uncounted by the RMW that clears it, as in
        // `withdraw` (a walker still paused then finds its slot 0).
        if g.swap(0, Ordering::Relaxed) != 0 {
            UP.fetch_sub(1, Ordering::Relaxed);
        }
    }
    PUBLISHED.store(0, Ordering::Relaxed);
    TAKEN.store(0, Ordering::Relaxed);
}
