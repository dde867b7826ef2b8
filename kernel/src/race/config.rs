//! The race tests' boot keys (controls.md): modes, negative-control switches,
//! widening points and the scenario run's parameters.
//!
//! Values are `key=value` words like every boot option; switches take
//! `on|off`. [`RaceConfig::describe`] renders the non-default switches as the
//! `config=` field of the `RESULT scenario` line (`gup.recheck:off,tlb:nmi`).

use core::fmt;

use super::SyncMode;
use super::widen::{Point, Widening};
use crate::boot_options::value::{BadValue, KeyInfo, bad_value, number_in as number, on_off};

/// A scenario the kernel can run (`scenario=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioName {
    /// Direct-I/O pins by GUP-fast while KSM merges the same pages.
    KsmVsGupfast,
    /// Direct-I/O pins on an executable private mapping while a tracer
    /// installs and removes uprobes on its pages.
    UprobeVsPin,
    /// Direct-I/O pins by GUP-fast on subpages while MADV_COLLAPSE or
    /// khugepaged collapses their 2 MiB ranges.
    CollapseVsGupfast,
}

/// Who collapses in collapse-vs-gupfast (`scenario.collapser=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Collapser {
    /// The khugepaged thread scans the workers' `MADV_HUGEPAGE` ranges
    /// (the default).
    Khugepaged,
    /// A thread of each worker process calls `MADV_COLLAPSE` on its range.
    Madvise,
}

/// The race tests' configuration.
#[derive(Clone, Copy, Debug)]
pub struct RaceConfig {
    /// `sync=`.
    pub(crate) sync: SyncMode,
    /// `gup.recheck=` (on by default).
    pub(crate) gup_recheck: bool,
    /// `gup.pmd_recheck=` (on by default).
    pub(crate) gup_pmd_recheck: bool,
    /// `gup.irqs=on`: the lockless walk with interrupts enabled.
    pub(crate) gup_irqs_on: bool,
    /// `gup.head_recheck=` (on by default; bug H when off).
    pub(crate) gup_head_recheck: bool,
    /// `ksm.check_before_clear=`.
    pub(crate) ksm_check_before_clear: bool,
    /// `ksm.no_flush=`.
    pub(crate) ksm_no_flush: bool,
    /// `collapse.check_before_clear=`.
    pub(crate) collapse_check_before_clear: bool,
    /// `collapse.no_table_sync=`.
    pub(crate) collapse_no_table_sync: bool,
    /// `uprobes=legacy`: the 2016-2025 page replacement (bug C).
    pub(crate) uprobes_legacy: bool,
    /// `cow.reuse=`: the write fault's reuse rule (bug D).
    pub(crate) cow_reuse: crate::mm::fault::CowReuse,
    /// `unshare=` (on by default): read-only pins of shared anonymous pages
    /// unshare them first (bug J when off).
    pub(crate) unshare: bool,
    /// `fork.early_cow=` (on by default): fork copies a possibly pinned
    /// exclusive page for the child at once (bug E when off).
    pub(crate) fork_early_cow: bool,
    /// `ksm.gate=`: which ptes KSM clears and flushes (bug K).
    pub(crate) ksm_gate: super::KsmGate,
    /// `fork.seqcount=` (on by default): GUP-fast pins check fork's
    /// `write_protect_seq` (bug E when off).
    pub(crate) fork_seqcount: bool,
    /// `widen.<point>=`: one entry per [`Point`].
    pub(crate) widen: [Widening; Point::COUNT],
    /// `explore=`: `Some(true)` auto, `Some(false)` off, `None` not given
    /// (auto unless a `widen.*` key is given: see [`RaceConfig::exploring`]).
    pub(crate) explore: Option<bool>,
    /// `scenario=`.
    pub scenario: Option<ScenarioName>,
    /// `secs=`: run length bound (default 5 when neither bound is given).
    pub(crate) secs: Option<u64>,
    /// `iterations=`: run length in iterations of each worker.
    pub(crate) iterations: Option<u64>,
    /// `seed=`.
    pub(crate) seed: u64,
    /// `cpus=`: CPUs the scenario uses (default: every online CPU).
    pub(crate) cpus: Option<usize>,
    /// `scenario.prep_us=`: the workers' random pause between refilling a
    /// page and pinning it.
    pub(crate) prep_us: u64,
    /// `scenario.collapser=`: who collapses in collapse-vs-gupfast.
    pub(crate) collapser: Collapser,
    /// `ksm.pages_to_scan=`: the scenario's ksmd batch (Linux's
    /// pages_to_scan).
    pub(crate) ksm_pages_to_scan: u64,
    /// `ksm.sleep_us=`: the scenario's ksmd sleep between batches (Linux's
    /// sleep_millisecs, in microseconds; 0 only yields).
    pub(crate) ksm_sleep_us: u64,
}

impl RaceConfig {
    /// Every defence in place, nothing widened, no scenario.
    pub(crate) const DEFAULT: RaceConfig = RaceConfig {
        sync: SyncMode::None,
        gup_recheck: true,
        gup_pmd_recheck: true,
        gup_irqs_on: false,
        gup_head_recheck: true,
        ksm_check_before_clear: false,
        ksm_no_flush: false,
        collapse_check_before_clear: false,
        collapse_no_table_sync: false,
        uprobes_legacy: false,
        cow_reuse: crate::mm::fault::CowReuse::AnonExclusive,
        unshare: true,
        fork_early_cow: true,
        ksm_gate: super::KsmGate::AnonExclusive,
        fork_seqcount: true,
        widen: [Widening::None; Point::COUNT],
        explore: None,
        scenario: None,
        secs: None,
        iterations: None,
        seed: 1,
        cpus: None,
        prep_us: 0,
        collapser: Collapser::Khugepaged,
        ksm_pages_to_scan: 64,
        ksm_sleep_us: 0,
    };

    /// Whether a scenario run explores (`race::explore`): `explore=auto`
    /// or `off` as given; by default on, unless an explicit `widen.*` key
    /// asks for one particular interleaving (a reproduction), which then
    /// replaces the policy. With `explore=auto` *and* `widen.*` keys the
    /// keys override the policy at their points only.
    pub(crate) fn exploring(&self) -> bool {
        self.explore.unwrap_or_else(|| self.widen.iter().all(|w| *w == Widening::None))
    }

    /// The `config=` field: the protocol keys that differ from the defaults,
    /// TLB options included, or `default`.
    pub(crate) fn describe(&self, tlb: &crate::tlb::TlbConfig) -> ConfigString {
        let mut s = ConfigString::default();
        if !self.gup_recheck {
            s.push("gup.recheck:off");
        }
        if !self.gup_pmd_recheck {
            s.push("gup.pmd_recheck:off");
        }
        if self.gup_irqs_on {
            s.push("gup.irqs:on");
        }
        if !self.gup_head_recheck {
            s.push("gup.head_recheck:off");
        }
        if self.ksm_check_before_clear {
            s.push("ksm.check_before_clear:on");
        }
        if self.ksm_no_flush {
            s.push("ksm.no_flush:on");
        }
        if self.collapse_check_before_clear {
            s.push("collapse.check_before_clear:on");
        }
        if self.collapse_no_table_sync {
            s.push("collapse.no_table_sync:on");
        }
        if self.uprobes_legacy {
            s.push("uprobes:legacy");
        }
        match self.cow_reuse {
            crate::mm::fault::CowReuse::AnonExclusive => {}
            crate::mm::fault::CowReuse::Refcount => s.push("cow.reuse:refcount"),
            crate::mm::fault::CowReuse::Mapcount => s.push("cow.reuse:mapcount"),
        }
        if !self.unshare {
            s.push("unshare:off");
        }
        if !self.fork_early_cow {
            s.push("fork.early_cow:off");
        }
        if !self.fork_seqcount {
            s.push("fork.seqcount:off");
        }
        match self.ksm_gate {
            super::KsmGate::AnonExclusive => {}
            super::KsmGate::FlushPending => s.push("ksm.gate:flush_pending"),
            super::KsmGate::WriteDirty => s.push("ksm.gate:write_dirty"),
        }
        if tlb.mode == crate::tlb::FlushMode::Nmi {
            s.push("tlb:nmi");
        }
        if tlb.nowait {
            s.push("tlb.nowait:on");
        }
        if tlb.ptfree == crate::tlb::PtFree::Rcu {
            s.push("ptfree:rcu");
        }
        if self.sync == SyncMode::Rcu {
            s.push("sync:rcu");
        }
        s
    }
}

/// A short string built without allocation (the config is rendered early).
pub(crate) struct ConfigString {
    buf: [u8; 192],
    len: usize,
}

impl Default for ConfigString {
    fn default() -> Self {
        ConfigString { buf: [0; 192], len: 0 }
    }
}

impl ConfigString {
    fn push(&mut self, part: &str) {
        let sep = usize::from(self.len > 0);
        if self.len + sep + part.len() > self.buf.len() {
            return;
        }
        if sep == 1 {
            self.buf[self.len] = b',';
            self.len += 1;
        }
        self.buf[self.len..self.len + part.len()].copy_from_slice(part.as_bytes());
        self.len += part.len();
    }
}

impl fmt::Display for ConfigString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 {
            return f.write_str("default");
        }
        // The buffer holds only whole ASCII parts.
        f.write_str(core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?"))
    }
}

/// The keys, for `boot_options::KEYS`.
pub(crate) const KEYS: &[KeyInfo] = &[
    KeyInfo {
        key: "sync",
        values: "none|rcu",
        default: "none",
        help: "writers (KSM) wait for an RCU grace period between the TLB flush and the reference check",
    },
    KeyInfo {
        key: "gup.recheck",
        values: "on|off",
        default: "on",
        help: "negative control: off = GUP-fast does not re-read the pte/pmd after taking its reference",
    },
    KeyInfo {
        key: "gup.pmd_recheck",
        values: "on|off",
        default: "on",
        help: "negative control: off = GUP-fast re-reads the pte but not the pmd",
    },
    KeyInfo {
        key: "gup.irqs",
        values: "off|on",
        default: "off",
        help: "negative control: on = GUP-fast's lockless walk runs with interrupts enabled",
    },
    KeyInfo {
        key: "gup.head_recheck",
        values: "on|off",
        default: "on",
        help: "negative control: off = GUP-fast does not re-check that its page is still in the folio it took the reference on (bug H: a split in between leaves the reference on the old head)",
    },
    KeyInfo {
        key: "ksm.check_before_clear",
        values: "on|off",
        default: "off",
        help: "negative control: KSM checks references and pins first, then clears the pte and flushes",
    },
    KeyInfo {
        key: "ksm.no_flush",
        values: "on|off",
        default: "off",
        help: "negative control: KSM clears the pte without flushing any TLB",
    },
    KeyInfo {
        key: "collapse.check_before_clear",
        values: "on|off",
        default: "off",
        help: "negative control: a collapse isolates the 512 pages (reference and pin checks) first, then clears the pmd and flushes",
    },
    KeyInfo {
        key: "collapse.no_table_sync",
        values: "on|off",
        default: "off",
        help: "negative control: the pte table a collapse detached is poisoned and freed at once, with no table sync (IPI or grace period) for lockless walkers",
    },
    KeyInfo {
        key: "widen.collapse.pre_copy",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in a collapse between the isolation and the copy into the huge page",
    },
    KeyInfo {
        key: "widen.gup.pre_pte",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in GUP-fast between reading a pmd that points to a pte table and reading its first pte (bug G's window)",
    },
    KeyInfo {
        key: "widen.collapse.post_free",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in a collapse right after it freed (or queued the free of) the old pte table",
    },
    KeyInfo {
        key: "widen.gup.pre_ref",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in GUP-fast between reading the pte and taking the reference: a fixed or random delay, or a pause until a writer reaches any of its points (or POINT) on the same page, at most US microseconds",
    },
    KeyInfo {
        key: "widen.writer.pre_clear",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in the writer right before it clears the entry (after the check under ksm.check_before_clear)",
    },
    KeyInfo {
        key: "widen.writer.post_clear",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in the writer between the clear and the flush",
    },
    KeyInfo {
        key: "widen.writer.pre_check",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in the writer between the flush and the reference check",
    },
    KeyInfo {
        key: "widen.writer.post_check",
        values: "US|rand:US|wait:US|wait:POINT:US",
        default: "<none>",
        help: "window widening in the writer right after the reference check (before the clear under ksm.check_before_clear)",
    },
    KeyInfo {
        key: "uprobes",
        values: "fixed|legacy",
        default: "fixed",
        help: "uprobes' breakpoint writer: fixed (default, Linux 2025: break COW, write in place) or legacy (negative control, 2016-2025: copy into a new page and replace it with no reference check, bug C)",
    },
    KeyInfo {
        key: "cow.reuse",
        values: "anon_exclusive|refcount|mapcount",
        default: "anon_exclusive",
        help: "the rule by which a write fault reuses a read-only anonymous page: anon_exclusive (default, Linux 5.19), refcount (2020) or mapcount (negative control, before 5.8: bug D, CVE-2020-29374)",
    },
    KeyInfo {
        key: "unshare",
        values: "on|off",
        default: "on",
        help: "negative control: off = a read-only pin of a COW-shared anonymous page pins it as it is instead of unsharing it first (bug J, before Linux 5.19)",
    },
    KeyInfo {
        key: "fork.seqcount",
        values: "on|off",
        default: "on",
        help: "negative control: off = GUP-fast pins without checking fork's write_protect_seq (bug E, before Linux 5.11); a pin may land on a page fork is sharing with the child",
    },
    KeyInfo {
        key: "fork.early_cow",
        values: "on|off",
        default: "on",
        help: "negative control: off = fork shares a possibly pinned exclusive page with the child like any other (bug E, before Linux 5.9); the parent's next write copies it away from the pin",
    },
    KeyInfo {
        key: "ksm.gate",
        values: "anon_exclusive|flush_pending|write_dirty",
        default: "anon_exclusive",
        help: "which ptes KSM clears and flushes before its checks: anon_exclusive (default, today's), flush_pending (2017-2022) or write_dirty (negative control, before 2017: bug K, a pte another writer has not flushed yet is taken as is)",
    },
    KeyInfo {
        key: "explore",
        values: "auto|off",
        default: "<auto, or off when a widen.* key is given>",
        help: "scenario runs: auto = random delays and bounded forced interleavings at every named point, drawn per arrival from seed= (default, unless a widen.* key is given); off = the natural race",
    },
    KeyInfo {
        key: "scenario.collapser",
        values: "khugepaged|madvise",
        default: "khugepaged",
        help: "collapse-vs-gupfast: the khugepaged thread (default) or the workers' own MADV_COLLAPSE collapses their ranges",
    },
    KeyInfo {
        key: "scenario",
        values: "ksm-vs-gupfast|uprobe-vs-pin|collapse-vs-gupfast",
        default: "<none>",
        help: "main kernel: run this race scenario and print its RESULT line",
    },
    KeyInfo {
        key: "secs",
        values: "<1..=3600>",
        default: "<5 for scenario=; the main job's per-row bounds>",
        help: "scenario length bound in seconds (default 5)",
    },
    KeyInfo {
        key: "iterations",
        values: "<1..=1000000000>",
        default: "<no bound>",
        help: "scenario length in iterations per worker (with secs=, whichever ends first)",
    },
    KeyInfo {
        key: "seed",
        values: "<0..>",
        default: "1",
        help: "seed of the scenario's and the widening's pseudo-random choices",
    },
    KeyInfo {
        key: "ksm.pages_to_scan",
        values: "<1..=1000000>",
        default: "64",
        help: "pages the scenario's ksmd scans per batch (default 64: every worker's buffer)",
    },
    KeyInfo {
        key: "ksm.sleep_us",
        values: "<0..=1000000>",
        default: "0",
        help: "the scenario's ksmd sleep between batches in microseconds (default 0: it only yields)",
    },
    KeyInfo {
        key: "scenario.prep_us",
        values: "<0..=100000>",
        default: "0",
        help: "ksm-vs-gupfast workers pause a random 0..N us between refilling a page and pinning it (default 0)",
    },
    KeyInfo {
        key: "cpus",
        values: "<2..=64>",
        default: "<all online>",
        help: "CPUs the scenario uses (default: all online); a race needs 2; more than are online is a usage error",
    },
];

/// Applies `key=value` if it is one of the race keys; `None` if it is not.
pub(crate) fn apply(c: &mut RaceConfig, key: &'static str, value: &'static str) -> Option<Result<(), BadValue>> {
    let r = match key {
        "sync" => match value {
            "none" => Ok(SyncMode::None),
            "rcu" => Ok(SyncMode::Rcu),
            _ => Err(bad_value(key, value)),
        }
        .map(|m| c.sync = m),
        "gup.recheck" => on_off(key, value).map(|v| c.gup_recheck = v),
        "gup.pmd_recheck" => on_off(key, value).map(|v| c.gup_pmd_recheck = v),
        "gup.irqs" => on_off(key, value).map(|v| c.gup_irqs_on = v),
        "gup.head_recheck" => on_off(key, value).map(|v| c.gup_head_recheck = v),
        "ksm.check_before_clear" => on_off(key, value).map(|v| c.ksm_check_before_clear = v),
        "ksm.no_flush" => on_off(key, value).map(|v| c.ksm_no_flush = v),
        "collapse.check_before_clear" => on_off(key, value).map(|v| c.collapse_check_before_clear = v),
        "collapse.no_table_sync" => on_off(key, value).map(|v| c.collapse_no_table_sync = v),
        "uprobes" => match value {
            "fixed" => Ok(false),
            "legacy" => Ok(true),
            _ => Err(bad_value(key, value)),
        }
        .map(|v| c.uprobes_legacy = v),
        "cow.reuse" => match value {
            "anon_exclusive" => Ok(crate::mm::fault::CowReuse::AnonExclusive),
            "refcount" => Ok(crate::mm::fault::CowReuse::Refcount),
            "mapcount" => Ok(crate::mm::fault::CowReuse::Mapcount),
            _ => Err(bad_value(key, value)),
        }
        .map(|v| c.cow_reuse = v),
        "unshare" => on_off(key, value).map(|v| c.unshare = v),
        "fork.early_cow" => on_off(key, value).map(|v| c.fork_early_cow = v),
        "fork.seqcount" => on_off(key, value).map(|v| c.fork_seqcount = v),
        "ksm.gate" => match value {
            "anon_exclusive" => Ok(super::KsmGate::AnonExclusive),
            "flush_pending" => Ok(super::KsmGate::FlushPending),
            "write_dirty" => Ok(super::KsmGate::WriteDirty),
            _ => Err(bad_value(key, value)),
        }
        .map(|v| c.ksm_gate = v),
        "scenario" => match value {
            "ksm-vs-gupfast" => Ok(ScenarioName::KsmVsGupfast),
            "uprobe-vs-pin" => Ok(ScenarioName::UprobeVsPin),
            "collapse-vs-gupfast" => Ok(ScenarioName::CollapseVsGupfast),
            _ => Err(bad_value(key, value)),
        }
        .map(|s| c.scenario = Some(s)),
        "explore" => match value {
            "auto" => Ok(true),
            "off" => Ok(false),
            _ => Err(bad_value(key, value)),
        }
        .map(|v| c.explore = Some(v)),
        "secs" => number(key, value, 1, 3600).map(|v| c.secs = Some(v)),
        "iterations" => number(key, value, 1, 1_000_000_000).map(|v| c.iterations = Some(v)),
        "seed" => number(key, value, 0, u64::MAX).map(|v| c.seed = v),
        "cpus" => number(key, value, 2, 64).map(|v| c.cpus = Some(v as usize)),
        "ksm.pages_to_scan" => number(key, value, 1, 1_000_000).map(|v| c.ksm_pages_to_scan = v),
        "ksm.sleep_us" => number(key, value, 0, 1_000_000).map(|v| c.ksm_sleep_us = v),
        "scenario.collapser" => match value {
            "madvise" => Ok(Collapser::Madvise),
            "khugepaged" => Ok(Collapser::Khugepaged),
            _ => Err(bad_value(key, value)),
        }
        .map(|v| c.collapser = v),
        "scenario.prep_us" => number(key, value, 0, 100_000).map(|v| c.prep_us = v),
        _ => {
            let point = key.strip_prefix("widen.").and_then(Point::from_name)?;
            Widening::parse(value).map(|w| c.widen[point as usize] = w).ok_or_else(|| bad_value(key, value))
        }
    };
    Some(r)
}
