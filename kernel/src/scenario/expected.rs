//! The expected outcomes of controls.md, one table per scenario, in the
//! shape of controls.md's tables (configuration, expected, why).
//!
//! A configuration is written as the `config=` field of the `RESULT
//! scenario` line renders it ([`crate::race::RaceConfig::describe`]): the
//! non-default keys in a fixed order, `key:value`, comma-separated, or
//! `default`.

/// What controls.md expects of a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expected {
    /// Zero corruptions, uaf and invariant errors, overlaps > 0, and the
    /// writer did its work (merges or collapses > 0).
    Safe,
    /// At least one corruption or use-after-free within the time bound.
    Caught,
    /// A configuration controls.md does not list.
    Unlisted,
}

impl Expected {
    /// `safe`, `caught` or `none` (the RESULT line's `expected=`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Expected::Safe => "safe",
            Expected::Caught => "caught",
            Expected::Unlisted => "none",
        }
    }
}

/// One row of a scenario's table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    /// The `config=` string.
    pub(crate) config: &'static str,
    /// The outcome controls.md expects.
    pub(crate) expected: Expected,
    /// Why (controls.md's column).
    pub(crate) why: &'static str,
}

const fn row(config: &'static str, expected: Expected, why: &'static str) -> Row {
    Row { config, expected, why }
}

/// ksm-vs-gupfast (controls.md): a process pins pages with GUP-fast for
/// direct I/O while KSM merges them.
pub(crate) const KSM: &[Row] = &[
    row("default", Expected::Safe, "all defences"),
    row("gup.recheck:off", Expected::Safe, "claim (1): the IPI waits for the interrupts-off walk"),
    row("gup.recheck:off,tlb:nmi", Expected::Caught, "nothing serialises: ref taken after the check"),
    row("gup.recheck:off,tlb:nmi,sync:rcu", Expected::Safe, "claim (2): the grace period waits for the walk"),
    row("tlb:nmi", Expected::Safe, "the recheck (current Linux)"),
    row("gup.recheck:off,gup.irqs:on", Expected::Caught, "the IPI lands inside the walk"),
    row("ksm.check_before_clear:on", Expected::Caught, "pin taken between check and clear"),
    row("gup.recheck:off,tlb.nowait:on", Expected::Caught, "nothing serialises, as with tlb=nmi"),
    row("ksm.no_flush:on", Expected::Caught, "a user write through a stale TLB entry (never flushed) is lost"),
];

/// uprobe-vs-pin (controls.md): direct-I/O pins on pages of an executable
/// private mapping while a tracer installs and removes breakpoints there.
pub(crate) const UPROBE: &[Row] = &[
    row("default", Expected::Safe, "uprobes=fixed: COW broken, the byte written in place; the pinned page stays mapped"),
    row("uprobes:legacy", Expected::Caught, "bug C: the page is replaced with no reference check; the DMA goes to the old page"),
];

/// The row of `table` for `config`, if listed.
pub(crate) fn lookup(table: &'static [Row], config: &str) -> Option<&'static Row> {
    table.iter().find(|r| r.config == config)
}


/// collapse-vs-gupfast (controls.md): pins on subpages while khugepaged or
/// MADV_COLLAPSE collapses the range. The last two rows are not in
/// controls.md: they are the safe partner of `collapse.no_table_sync tlb=nmi`
/// and the caught partner of claim (2), so that each caught row has a safe
/// row that differs from it by exactly one switch.
pub(crate) const COLLAPSE: &[Row] = &[
    row("default", Expected::Safe, "all defences"),
    row("collapse.check_before_clear:on", Expected::Caught, "a pin taken between the isolate check and the pmd clear"),
    row("gup.pmd_recheck:off", Expected::Safe, "the IPI serialises"),
    row(
        "gup.pmd_recheck:off,tlb:nmi,ptfree:rcu",
        Expected::Caught,
        "bug F: the detached table's pte is unchanged, the pmd is not rechecked",
    ),
    row("tlb:nmi,ptfree:rcu", Expected::Safe, "pmd recheck"),
    row(
        "gup.recheck:off,gup.pmd_recheck:off,tlb:nmi,ptfree:rcu,sync:rcu",
        Expected::Safe,
        "claim (2) for collapse: the grace period between flush and isolate",
    ),
    row("collapse.no_table_sync:on,tlb:nmi", Expected::Caught, "a walker reads a freed (poisoned) table"),
    row("tlb:nmi", Expected::Safe, "the table sync IPI waits for the walk before the table is freed"),
    row(
        "gup.recheck:off,gup.pmd_recheck:off,tlb:nmi,ptfree:rcu",
        Expected::Caught,
        "as bug F, without the grace period of claim (2)",
    ),
];
