//! Overlap counting (controls.md "overlaps"): a GUP-fast interrupts-off
//! interval (TSC stamps) that intersects a writer's clear-to-check window on
//! the same page.
//!
//! Both sides publish their interval in a small ring and look for the other
//! side's intervals; an overlap is counted once per writer window (a flag on
//! the window's slot), whichever side notices it first. A writer publishes
//! its window as open when it starts, so a walk that ends while the window is
//! still open sees it. Each side stamps, publishes, then issues a full fence
//! before it scans (a Dekker pair), so of two intersecting intervals at least
//! one side sees the other's slot.
//!
//! This is measurement, not protocol: slots are reused, and a slot read while
//! it is rewritten is detected by its sequence word and skipped, so the count
//! can miss an overlap under heavy reuse, never invent one. Counting is off
//! (one relaxed load) unless a scenario enables it.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};

use crate::arch::tsc;

const WRITER_SLOTS: usize = 64;
const WALK_SLOTS: usize = 256;
/// `end` of a window that is still open.
const OPEN: u64 = u64::MAX;

struct Slot {
    /// Odd while being written (seqlock).
    seq: AtomicU64,
    pfn: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
    counted: AtomicBool,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            seq: AtomicU64::new(0),
            pfn: AtomicU64::new(u64::MAX),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            counted: AtomicBool::new(false),
        }
    }

    fn write(&self, pfn: u64, start: u64, end: u64) {
        // Writers of one slot are serialised by the ring's index allocation
        // (a slot is reused only after the ring wrapped); Release/Acquire on
        // the sequence makes a reader skip a half-written slot.
        self.seq.fetch_add(1, Ordering::AcqRel);
        self.pfn.store(pfn, Ordering::Relaxed);
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.counted.store(false, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// `(pfn, start, end)` if the slot was stable while read.
    fn read(&self) -> Option<(u64, u64, u64)> {
        let s = self.seq.load(Ordering::Acquire);
        if s & 1 == 1 {
            return None;
        }
        let v = (self.pfn.load(Ordering::Relaxed), self.start.load(Ordering::Relaxed), self.end.load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s).then_some(v)
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static WRITERS: [Slot; WRITER_SLOTS] = [const { Slot::new() }; WRITER_SLOTS];
static WALKS: [Slot; WALK_SLOTS] = [const { Slot::new() }; WALK_SLOTS];
static NEXT_WRITER: AtomicU64 = AtomicU64::new(0);
static NEXT_WALK: AtomicU64 = AtomicU64::new(0);
static OVERLAPS: AtomicU64 = AtomicU64::new(0);

/// Turns counting on or off and resets the count.
pub(crate) fn enable(on: bool) {
    OVERLAPS.store(0, Ordering::Relaxed);
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether counting is on.
#[inline]
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Overlaps counted since [`enable`].
pub(crate) fn count() -> u64 {
    OVERLAPS.load(Ordering::Relaxed)
}

fn intersects(a0: u64, a1: u64, b0: u64, b1: u64) -> bool {
    a0 <= b1 && b0 <= a1
}

fn note(slot: &Slot) {
    if !slot.counted.swap(true, Ordering::Relaxed) {
        OVERLAPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// A writer's window on one page, from its first step (clear, or check under
/// `ksm.check_before_clear`) to its last; closed by [`WriterWindow::close`].
pub(crate) struct WriterWindow {
    slot: Option<usize>,
    pfn: u64,
    start: u64,
}

impl WriterWindow {
    /// Opens a window on `pfn` now.
    pub(crate) fn open(pfn: u64) -> WriterWindow {
        if !enabled() {
            return WriterWindow { slot: None, pfn, start: 0 };
        }
        let i = (NEXT_WRITER.fetch_add(1, Ordering::Relaxed) as usize) % WRITER_SLOTS;
        let start = tsc::rdtsc();
        WRITERS[i].write(pfn, start, OPEN);
        WriterWindow { slot: Some(i), pfn, start }
    }

    /// Closes the window now and looks for walks of the same page inside it.
    pub(crate) fn close(self) {
        let Some(i) = self.slot else { return };
        let end = tsc::rdtsc();
        let slot = &WRITERS[i];
        // Only if the slot is still ours (not reused after the ring wrapped).
        if !slot.read().is_some_and(|(p, s, _)| p == self.pfn && s == self.start) {
            return;
        }
        slot.end.store(end, Ordering::Release);
        fence(Ordering::SeqCst);
        for w in &WALKS {
            if let Some((p, s, e)) = w.read()
                && p == self.pfn
                && intersects(s, e, self.start, end)
            {
                note(slot);
                return;
            }
        }
    }
}

/// Records a finished GUP-fast walk that read the ptes of `pfns` with
/// interrupts off from `start` to `end` (TSC), and counts the writer windows
/// on those pages that it intersects.
pub(crate) fn walk_done(start: u64, end: u64, pfns: &[u64]) {
    // `start == 0`: the walk began before counting was turned on (unstamped).
    if !enabled() || start == 0 {
        return;
    }
    for &pfn in pfns {
        let i = (NEXT_WALK.fetch_add(1, Ordering::Relaxed) as usize) % WALK_SLOTS;
        WALKS[i].write(pfn, start, end);
    }
    fence(Ordering::SeqCst);
    for w in &WRITERS {
        if let Some((p, s, e)) = w.read()
            && pfns.contains(&p)
            && intersects(start, end, s, e)
        {
            note(w);
        }
    }
}
