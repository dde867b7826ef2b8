//! khugepaged's boot keys (`khugepaged.*=`): its tunables for the boot, as
//! Linux's /sys/kernel/mm/transparent_hugepage/khugepaged/* files.

use super::Tunables;
use crate::boot_options::value::{BadValue, KeyInfo, number_in as number};

/// The keys, for `boot_options`' table.
pub(crate) const KEYS: &[KeyInfo] = &[
    KeyInfo {
        key: "khugepaged.pages_to_scan",
        values: "<1..=1000000>",
        default: "4096",
        help: "ptes khugepaged scans per batch (default 4096, Linux's)",
    },
    KeyInfo {
        key: "khugepaged.scan_sleep_us",
        values: "<0..=100000000>",
        default: "10000000",
        help: "khugepaged's sleep between batches in microseconds (default 10 s, Linux's; 0 only yields)",
    },
    KeyInfo {
        key: "khugepaged.max_ptes_none",
        values: "<0..=511>",
        default: "511",
        help: "empty ptes khugepaged accepts in a range it collapses (default 511)",
    },
    KeyInfo {
        key: "khugepaged.max_ptes_shared",
        values: "<0..=511>",
        default: "256",
        help: "ptes of pages mapped more than once khugepaged accepts in a range (default 256)",
    },
];

/// Applies `key=value` if it is one of khugepaged's keys; `None` if it is not.
pub(crate) fn apply_key(t: &mut Tunables, key: &'static str, value: &'static str) -> Option<Result<(), BadValue>> {
    Some(match key {
        "khugepaged.pages_to_scan" => number(key, value, 1, 1_000_000).map(|v| t.pages_to_scan = v),
        "khugepaged.scan_sleep_us" => number(key, value, 0, 100_000_000).map(|v| t.scan_sleep_us = v),
        "khugepaged.max_ptes_none" => number(key, value, 0, 511).map(|v| t.max_ptes_none = v as u32),
        "khugepaged.max_ptes_shared" => number(key, value, 0, 511).map(|v| t.max_ptes_shared = v as u32),
        _ => return None,
    })
}
