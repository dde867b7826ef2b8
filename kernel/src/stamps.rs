//! TSC breakdowns of the hot paths (boot option `bench.breakdown=on`; off by
//! default, when every stamp costs one relaxed load).
//!
//! A path takes `let t = stamps::start();` before a step and calls
//! `stamps::end(Step::X, t)` after it; with the breakdown off `start`
//! returns 0 and `end` does nothing. Each step keeps its last [`SLOTS`]
//! durations (ticks, saturated to u32) in a ring; a benchmark reads the
//! medians with [`summary`] after each configuration and clears them with
//! [`reset`]. Steps that span CPUs (an IPI's delivery) use [`kick_stamp`] /
//! [`take_kick`]: the sender stamps the target's slot just before the ICR
//! write, the target's handler takes it on entry. Under QEMU the vCPUs' TSCs
//! come from one host clock, so the difference is meaningful.
//!
//! NMI-safe: only atomics (the remote flush handler may run in NMI context).

#![deny(unsafe_code)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::tsc;
use crate::smp::cpuset::MAX_CPUS;

/// A timed step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Step {
    /// Cross-CPU call: building the request (allocation or per-CPU slot).
    CallAlloc,
    /// Pushing the request on the targets' lists.
    CallQueue,
    /// The ICR writes (all of them, for one call).
    CallIcr,
    /// ICR write on the sender to the handler's entry on the target.
    CallDelivery,
    /// The target's function (e.g. the INVLPG).
    CallHandler,
    /// The target's acknowledgement (the atomic clearing its pending bit).
    CallAck,
    /// The initiator's wait for every acknowledgement.
    CallWait,
    /// A TLB shootdown's local flush on the initiator.
    FlushLocal,
    /// A whole TLB shootdown on the initiator (fence to acknowledgements).
    Shootdown,
    /// The mprotect syscall in the kernel (dispatch to return).
    SysMprotect,
    /// mprotect: mmap lock, VMA checks, split/merge.
    MprotectVma,
    /// mprotect: taking the mmap lock for writing (part of the VMA step).
    MprotectLock,
    /// mprotect: the page-table walk and pte changes.
    MprotectWalk,
    /// mprotect: the gather's finish (the flush).
    MprotectGather,
    /// The madvise syscall in the kernel (dispatch to return).
    SysMadvise,
    /// KSM: one page's checksum.
    KsmChecksum,
    /// KSM: the stable-index lookup (its compares included).
    KsmStableLookup,
    /// KSM: a full 4 KiB compare of two pages.
    KsmCompare,
    /// KSM: taking a pte lock in write_protect_page / replace_page.
    KsmPtl,
    /// KSM: write_protect_page's flush.
    KsmFlushWp,
    /// KSM: replace_page's flush.
    KsmFlushReplace,
    /// KSM: one try_to_merge_one_page.
    KsmMergeOne,
    /// KSM: one scan_page (everything for one page visit).
    KsmScanPage,
    /// KSM: the pte lookup of one page with its reference (follow_page()).
    KsmFollow,
    /// KSM: recording one page's checksum (Linux's rmap_item).
    KsmRmapItem,
    /// Collapse: allocating the 2 MiB folio (step 1).
    CollapseAlloc,
    /// Collapse: taking the mmap lock for writing (step 2).
    CollapseLock,
    /// Collapse: pmdp_collapse_flush, the pmd clear and its flush (step 3).
    CollapseFlush,
    /// Collapse: the table sync IPI (step 4, `ptfree=ipi`).
    CollapseSync,
    /// Collapse: the isolate step over 512 ptes (step 5).
    CollapseIsolate,
    /// Collapse: the 2 MiB copy (step 6).
    CollapseCopy,
    /// Collapse: the huge pmd, the old mappings' puts and the table free.
    CollapseFinish,
    /// Collapse: one whole collapse_huge_page.
    Collapse,
    /// GUP-fast: the walk of one pte (read, permission, page lookup) or of
    /// one huge pmd's run, without the grab and the re-check.
    GupWalk,
    /// GUP: the add-unless-zero of the references (one per pte, one per
    /// huge pmd's run).
    GupGrab,
    /// GUP: a pin's accounting beyond the references (the large folio's
    /// pincount, the testbed's exact pin count).
    GupPinAcct,
    /// GUP-fast: the re-read of pmd/pte (SeqCst loads, no fence) and the
    /// unshare rule.
    GupRecheck,
    /// unpin_user_pages_dirty_lock: one folio's batch (dirty mark, counts,
    /// references).
    GupUnpin,
    /// Two stamps back to back: what each step above includes of the
    /// stamping itself.
    StampPair,
}

impl Step {
    /// Every step, in [`Step`] order.
    const ALL: [Step; 39] = [
        Step::CallAlloc,
        Step::CallQueue,
        Step::CallIcr,
        Step::CallDelivery,
        Step::CallHandler,
        Step::CallAck,
        Step::CallWait,
        Step::FlushLocal,
        Step::Shootdown,
        Step::SysMprotect,
        Step::MprotectVma,
        Step::MprotectLock,
        Step::MprotectWalk,
        Step::MprotectGather,
        Step::SysMadvise,
        Step::KsmChecksum,
        Step::KsmStableLookup,
        Step::KsmCompare,
        Step::KsmPtl,
        Step::KsmFlushWp,
        Step::KsmFlushReplace,
        Step::KsmMergeOne,
        Step::KsmScanPage,
        Step::KsmFollow,
        Step::KsmRmapItem,
        Step::CollapseAlloc,
        Step::CollapseLock,
        Step::CollapseFlush,
        Step::CollapseSync,
        Step::CollapseIsolate,
        Step::CollapseCopy,
        Step::CollapseFinish,
        Step::Collapse,
        Step::GupWalk,
        Step::GupGrab,
        Step::GupPinAcct,
        Step::GupRecheck,
        Step::GupUnpin,
        Step::StampPair,
    ];

    /// The key in RESULT lines (`<name>_ns=`, `<name>_n=`).
    const fn name(self) -> &'static str {
        match self {
            Step::CallAlloc => "call_alloc",
            Step::CallQueue => "call_queue",
            Step::CallIcr => "call_icr",
            Step::CallDelivery => "call_delivery",
            Step::CallHandler => "call_handler",
            Step::CallAck => "call_ack",
            Step::CallWait => "call_wait",
            Step::FlushLocal => "flush_local",
            Step::Shootdown => "shootdown",
            Step::SysMprotect => "sys_mprotect",
            Step::MprotectVma => "mprotect_vma",
            Step::MprotectLock => "mprotect_lock",
            Step::MprotectWalk => "mprotect_walk",
            Step::MprotectGather => "mprotect_gather",
            Step::SysMadvise => "sys_madvise",
            Step::KsmChecksum => "ksm_checksum",
            Step::KsmStableLookup => "ksm_stable_lookup",
            Step::KsmCompare => "ksm_compare",
            Step::KsmPtl => "ksm_ptl",
            Step::KsmFlushWp => "ksm_flush_wp",
            Step::KsmFlushReplace => "ksm_flush_replace",
            Step::KsmMergeOne => "ksm_merge_one",
            Step::KsmScanPage => "ksm_scan_page",
            Step::KsmFollow => "ksm_follow",
            Step::KsmRmapItem => "ksm_rmap_item",
            Step::CollapseAlloc => "collapse_alloc",
            Step::CollapseLock => "collapse_lock",
            Step::CollapseFlush => "collapse_flush",
            Step::CollapseSync => "collapse_sync",
            Step::CollapseIsolate => "collapse_isolate",
            Step::CollapseCopy => "collapse_copy",
            Step::CollapseFinish => "collapse_finish",
            Step::Collapse => "collapse",
            Step::GupWalk => "gup_walk",
            Step::GupGrab => "gup_grab",
            Step::GupPinAcct => "gup_pin_acct",
            Step::GupRecheck => "gup_recheck",
            Step::GupUnpin => "gup_unpin",
            Step::StampPair => "stamp_pair",
        }
    }
}

/// Durations kept per step.
pub(crate) const SLOTS: usize = 4096;

struct Ring {
    /// Durations recorded so far (the ring index is `next % SLOTS`).
    next: AtomicU64,
    /// Sum of every duration recorded (not only the kept ones).
    total: AtomicU64,
    ticks: [AtomicU32; SLOTS],
}

static RINGS: [Ring; Step::ALL.len()] =
    [const { Ring { next: AtomicU64::new(0), total: AtomicU64::new(0), ticks: [const { AtomicU32::new(0) }; SLOTS] } }; Step::ALL.len()];
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Per target CPU: the TSC of the last kick sent to it (0: none outstanding).
static KICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Turns the breakdown on or off (boot option `bench.breakdown`).
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the breakdown is on.
#[inline]
pub(crate) fn enabled() -> bool {
    // Relaxed: a switch set once at boot.
    ENABLED.load(Ordering::Relaxed)
}

/// The start of a step: the TSC, or 0 when the breakdown is off.
#[inline]
pub(crate) fn start() -> u64 {
    if enabled() { tsc::rdtsc() } else { 0 }
}

/// Records the step that began at `t` (from [`start`]); nothing when `t` is 0.
#[inline]
pub(crate) fn end(step: Step, t: u64) {
    if t != 0 {
        record(step, tsc::rdtsc().saturating_sub(t));
    }
}

/// Records a duration of `ticks`.
pub(crate) fn record(step: Step, ticks: u64) {
    let r = &RINGS[step as usize];
    // Relaxed: statistics, read after the measured work is over.
    let i = r.next.fetch_add(1, Ordering::Relaxed) as usize % SLOTS;
    r.total.fetch_add(ticks, Ordering::Relaxed);
    r.ticks[i].store(u32::try_from(ticks).unwrap_or(u32::MAX), Ordering::Relaxed);
}

/// The sender's stamp for `cpu`, just before the ICR write.
#[inline]
pub(crate) fn kick_stamp(cpu: usize) {
    if enabled() {
        KICKS[cpu].store(tsc::rdtsc(), Ordering::Relaxed);
    }
}

/// On the target's handler entry: records the delivery of an outstanding kick.
#[inline]
pub(crate) fn take_kick(cpu: usize) {
    if enabled() {
        let now = tsc::rdtsc();
        let t = KICKS[cpu].swap(0, Ordering::Relaxed);
        if t != 0 && now > t {
            record(Step::CallDelivery, now - t);
        }
    }
}

/// Forgets every recorded duration.
pub(crate) fn reset() {
    for r in &RINGS {
        r.next.store(0, Ordering::Relaxed);
        r.total.store(0, Ordering::Relaxed);
    }
}

/// (count, median in ns) of `step` since the last [`reset`] (the last
/// [`SLOTS`] durations).
fn median_ns(step: Step) -> Option<(u64, u64)> {
    let r = &RINGS[step as usize];
    let n = r.next.load(Ordering::Relaxed);
    if n == 0 {
        return None;
    }
    let kept = (n as usize).min(SLOTS);
    let mut v: Vec<u32> = r.ticks[..kept].iter().map(|t| t.load(Ordering::Relaxed)).collect();
    v.sort_unstable();
    Some((n, tsc::ticks_to_ns(u64::from(v[(kept - 1) / 2]))))
}

/// The sum of every duration of `step` since the last [`reset`], in µs.
fn total_us(step: Step) -> u64 {
    tsc::ticks_to_ns(RINGS[step as usize].total.load(Ordering::Relaxed)) / 1000
}

/// ` <step>_ns=<median> <step>_n=<count> <step>_total_us=<sum>` for every
/// step with durations.
pub(crate) fn summary() -> String {
    let mut s = String::new();
    for step in Step::ALL {
        if let Some((n, ns)) = median_ns(step) {
            let name = step.name();
            s.push_str(&format!(" {name}_ns={ns} {name}_n={n} {name}_total_us={}", total_us(step)));
        }
    }
    s
}
