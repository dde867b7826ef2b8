//! Kernel test suites.
//!
//! Each binary in `src/bin/` is a test kernel: `kernel::ktest_main!` gives it
//! the full boot sequence, then it runs its suite's tests (defined in the
//! modules here with `kernel::ktests!`) and reports each on serial. The host
//! tool (`boot/`) boots each suite under QEMU from `cargo test`, with the tiers
//! the README lists.

#![no_std]

extern crate alloc;

pub mod boot;
pub mod gup;
pub mod history;
pub mod khugepaged;
pub mod ksft;
pub mod ksm;
pub mod mm;
pub mod sched;
pub mod selftest;
pub mod smp;
pub mod sync;
pub mod tlb;
pub mod uprobes;
pub mod user;
pub mod util;
