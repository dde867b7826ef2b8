//! KSM's boot-wide key (`ksm.max_page_sharing=`, Linux's
//! /sys/kernel/mm/ksm/max_page_sharing). The scenario's ksmd parameters
//! (`ksm.pages_to_scan=`, `ksm.sleep_us=`) and the protocol switches are
//! `race::config`'s.

use crate::boot_options::value::{BadValue, KeyInfo, number_in as number};

/// The keys, for `boot_options`' table.
pub(crate) const KEYS: &[KeyInfo] = &[KeyInfo {
    key: "ksm.max_page_sharing",
    values: "<2..=1000000>",
    default: "256",
    help: "most ptes one KSM page takes before an equal page starts a new one (Linux max_page_sharing, default 256)",
}];

/// Applies `key=value` if it is KSM's boot-wide key; `None` if it is not.
pub(crate) fn apply_key(max_page_sharing: &mut u64, key: &'static str, value: &'static str) -> Option<Result<(), BadValue>> {
    Some(match key {
        "ksm.max_page_sharing" => number(key, value, 2, 1_000_000).map(|v| *max_page_sharing = v),
        _ => return None,
    })
}
