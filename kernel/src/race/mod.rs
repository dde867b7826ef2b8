//! The race instrumentation: the writer-side protocol switches of
//! `../shared/reference/controls.md` (`sync=`, `ksm.*`, `collapse.*`), the window-widening
//! points, and overlap counting.
//!
//! * [`config`]: the boot keys of the race tests, parsed into [`RaceConfig`]
//!   and applied once at boot ([`init`]). Each negative-control switch is read
//!   at exactly one decision point (named in its key's documentation).
//! * [`widen`]: bounded delays and forced interleavings at the named points
//!   (`gup.pre_ref`, `writer.post_clear`, `writer.pre_check`,
//!   `writer.post_check`, `collapse.pre_copy`). With no widening configured a point costs one
//!   relaxed load.
//! * [`explore`]: the default exploration policy (`explore=auto`): random
//!   delays and bounded forced interleavings at every point without an
//!   explicit widening, drawn per arrival from the seed, while a scenario
//!   runs.
//! * [`steer`]: part of that policy: a walker it pauses steers the scanning
//!   daemons' (ksmd's, khugepaged's) next step to the page or range it walks.
//! * [`overlap`]: TSC-stamped intervals of GUP-fast's interrupts-off walks and
//!   of writers' clear-to-check windows, and the count of the pairs that
//!   intersect on the same page (controls.md "overlaps": a safe result with no
//!   overlap proves nothing).
//!
//! Nothing here changes the protocol unless a switch asks for it: the
//! defaults are the correct kernel.

#![deny(unsafe_code)]

pub(crate) mod config;
pub(crate) mod explore;
pub(crate) mod overlap;
pub(crate) mod steer;
pub mod widen;

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

pub(crate) use config::RaceConfig;

/// How a writer orders "flush" before "check" against lockless walkers
/// (controls.md `sync=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// The flush alone (with `tlb=ipi` it cannot complete while a walker has
    /// interrupts off).
    None,
    /// The flush, then an RCU grace period before the check: the seed's "RCU
    /// version", for flushes that do not wait for interrupts-off sections.
    Rcu,
}

static SYNC: AtomicU8 = AtomicU8::new(0);
static KSM_CHECK_BEFORE_CLEAR: AtomicBool = AtomicBool::new(false);
static KSM_NO_FLUSH: AtomicBool = AtomicBool::new(false);
static COLLAPSE_CHECK_BEFORE_CLEAR: AtomicBool = AtomicBool::new(false);
static COLLAPSE_NO_TABLE_SYNC: AtomicBool = AtomicBool::new(false);
static UPROBES_LEGACY: AtomicBool = AtomicBool::new(false);
static KSM_GATE: AtomicU8 = AtomicU8::new(KsmGate::AnonExclusive as u8);

/// Applies the boot configuration (once, before any writer or walker runs).
/// GUP-fast's switches and khugepaged's tunables are applied by the boot
/// (`gup::set_controls`, `khugepaged::set_tunables`): both sit above `race`
/// in the layer order.
pub(crate) fn init(c: &RaceConfig) {
    // Relaxed: set on the boot CPU before the APs and every thread start;
    // starting them orders these stores before their first loads.
    SYNC.store(c.sync as u8, Ordering::Relaxed);
    KSM_CHECK_BEFORE_CLEAR.store(c.ksm_check_before_clear, Ordering::Relaxed);
    KSM_NO_FLUSH.store(c.ksm_no_flush, Ordering::Relaxed);
    COLLAPSE_CHECK_BEFORE_CLEAR.store(c.collapse_check_before_clear, Ordering::Relaxed);
    COLLAPSE_NO_TABLE_SYNC.store(c.collapse_no_table_sync, Ordering::Relaxed);
    UPROBES_LEGACY.store(c.uprobes_legacy, Ordering::Relaxed);
    KSM_GATE.store(c.ksm_gate as u8, Ordering::Relaxed);
    crate::mm::fault::set_cow_reuse(c.cow_reuse);
    crate::mm::fork::set_early_cow(c.fork_early_cow);
    crate::mm::fork::set_share_hook(|pfn| widen::at(widen::Point::WriterPostCheck, pfn));
    widen::init(c);
}

/// The writers' `sync=` mode.
pub(crate) fn sync_mode() -> SyncMode {
    if SYNC.load(Ordering::Relaxed) == SyncMode::Rcu as u8 { SyncMode::Rcu } else { SyncMode::None }
}

/// Sets the `sync=` mode (tests that compare both modes in one boot).
pub fn set_sync_mode(m: SyncMode) {
    SYNC.store(m as u8, Ordering::Relaxed);
}

/// KSM's negative controls in force.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KsmSwitches {
    /// `ksm.check_before_clear=on`: reference and pin checks before the
    /// clear and flush (the order Kirill suspected; controls.md).
    pub check_before_clear: bool,
    /// `ksm.no_flush=on`: the pte is cleared but no TLB is flushed.
    pub no_flush: bool,
}

/// KSM's switches (read once per merge attempt).
pub(crate) fn ksm_switches() -> KsmSwitches {
    KsmSwitches {
        check_before_clear: KSM_CHECK_BEFORE_CLEAR.load(Ordering::Relaxed),
        no_flush: KSM_NO_FLUSH.load(Ordering::Relaxed),
    }
}

/// Sets KSM's switches (tests that exercise both orders in one boot).
pub fn set_ksm_switches(s: KsmSwitches) {
    KSM_CHECK_BEFORE_CLEAR.store(s.check_before_clear, Ordering::Relaxed);
    KSM_NO_FLUSH.store(s.no_flush, Ordering::Relaxed);
}

/// The collapse path's negative controls in force (controls.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollapseSwitches {
    /// `collapse.check_before_clear=on`: `__collapse_huge_page_isolate`
    /// (reference and pin checks) runs on the live table, then the pmd is
    /// cleared and flushed.
    pub check_before_clear: bool,
    /// `collapse.no_table_sync=on`: the detached pte table is poisoned and
    /// freed at once, with no table sync for lockless walkers (bug G).
    pub no_table_sync: bool,
}

/// The collapse switches (read once per collapse).
pub(crate) fn collapse_switches() -> CollapseSwitches {
    CollapseSwitches {
        check_before_clear: COLLAPSE_CHECK_BEFORE_CLEAR.load(Ordering::Relaxed),
        no_table_sync: COLLAPSE_NO_TABLE_SYNC.load(Ordering::Relaxed),
    }
}

/// Sets the collapse switches (tests that exercise both in one boot).
pub fn set_collapse_switches(s: CollapseSwitches) {
    COLLAPSE_CHECK_BEFORE_CLEAR.store(s.check_before_clear, Ordering::Relaxed);
    COLLAPSE_NO_TABLE_SYNC.store(s.no_table_sync, Ordering::Relaxed);
}

/// `uprobes=legacy`: uprobes writes breakpoints the 2016-2025 way (read
/// once per breakpoint write).
pub(crate) fn uprobes_legacy() -> bool {
    UPROBES_LEGACY.load(Ordering::Relaxed)
}

/// Sets the uprobes mode (tests that exercise both in one boot).
pub fn set_uprobes_legacy(legacy: bool) {
    UPROBES_LEGACY.store(legacy, Ordering::Relaxed);
}

/// Which ptes KSM's write_protect_page() clears and flushes before its
/// checks (`ksm.gate=`; the others it leaves as they are): Linux's gate
/// through its history (bug K of linux-protocol.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KsmGate {
    /// Today's: writable, dirty, anon-exclusive, or a flush pending for the
    /// mm (the default).
    AnonExclusive,
    /// 2017-2022 (b3a81d0841a9, Minchan Kim): writable, dirty, or a flush
    /// pending (no anon-exclusive flag yet).
    FlushPending,
    /// Before 2017 (negative control): writable or dirty only. A pte another
    /// writer made read-only and clean but has not flushed yet is taken as
    /// is, while another CPU may still write through its stale writable
    /// TLB entry.
    WriteDirty,
}

/// KSM's gate (read once per merge attempt).
pub(crate) fn ksm_gate() -> KsmGate {
    match KSM_GATE.load(Ordering::Relaxed) {
        0 => KsmGate::AnonExclusive,
        1 => KsmGate::FlushPending,
        _ => KsmGate::WriteDirty,
    }
}

/// Sets KSM's gate (tests that compare them in one boot).
pub fn set_ksm_gate(g: KsmGate) {
    KSM_GATE.store(g as u8, Ordering::Relaxed);
}
