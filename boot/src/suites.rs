//! The kernels the host tool knows by name: the main kernel and the kernel test
//! suites (one kernel ELF per file in `tests/src/bin/`, built as artifact dependencies
//! of this package, so `cargo run`/`cargo test` build them first).
//!
//! To add a suite `foo` (file `tests/src/bin/foo.rs`), add a line
//! `("foo", env!("CARGO_BIN_FILE_KTESTS_foo")),` to [`SUITES`].

use std::path::PathBuf;

/// The main kernel's ELF.
pub const MAIN_KERNEL: &str = env!("CARGO_BIN_FILE_KERNEL_kernel");

/// Test-suite name -> kernel ELF.
pub const SUITES: &[(&str, &str)] = &[
    ("boot", env!("CARGO_BIN_FILE_KTESTS_boot")),
    ("selftest_fail", env!("CARGO_BIN_FILE_KTESTS_selftest_fail")),
    ("smp", env!("CARGO_BIN_FILE_KTESTS_smp")),
    ("sched", env!("CARGO_BIN_FILE_KTESTS_sched")),
    ("sync", env!("CARGO_BIN_FILE_KTESTS_sync")),
    ("mm", env!("CARGO_BIN_FILE_KTESTS_mm")),
    ("gup", env!("CARGO_BIN_FILE_KTESTS_gup")),
    ("tlb", env!("CARGO_BIN_FILE_KTESTS_tlb")),
    ("user", env!("CARGO_BIN_FILE_KTESTS_user")),
    ("ksm", env!("CARGO_BIN_FILE_KTESTS_ksm")),
    ("khugepaged", env!("CARGO_BIN_FILE_KTESTS_khugepaged")),
    ("uprobes", env!("CARGO_BIN_FILE_KTESTS_uprobes")),
    ("history", env!("CARGO_BIN_FILE_KTESTS_history")),
    ("ksft", env!("CARGO_BIN_FILE_KTESTS_ksft")),
];

/// The kernel ELF of suite `name`.
pub fn suite_kernel(name: &str) -> Option<PathBuf> {
    SUITES.iter().find(|(n, _)| *n == name).map(|(_, p)| PathBuf::from(p))
}

/// The names of all suites.
pub fn suite_names() -> Vec<&'static str> {
    SUITES.iter().map(|(n, _)| *n).collect()
}
