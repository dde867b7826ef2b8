//! A bare-metal x86_64 testbed for the race between lockless page pinning
//! (GUP-fast) and page-table changes (KSM merging, khugepaged collapse, uprobes
//! page replacement), on real hardware semantics.
//!
//! This crate is the kernel as a library: the main kernel (`src/main.rs`) and
//! each test kernel (`tests/`) are small binaries that declare an entry point
//! with [`kernel_entry!`] or [`ktest_main!`] and get the whole boot sequence
//! ([`boot`]). Subsystems, bottom up: [`arch`] (the only inline assembly),
//! [`console`], [`debug`] (crash reports), [`mm`], [`testing`].

#![no_std]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod acpi;
pub mod arch;
pub mod bench;
pub mod boot;
pub mod boot_options;
pub mod console;
pub mod debug;
pub mod dma;
pub mod gup;
pub mod khugepaged;
pub mod ksm;
pub mod mm;
pub mod power;
pub mod process;
pub mod race;
pub mod rcu;
pub mod scenario;
pub mod sched;
pub mod smp;
pub mod sync;
pub mod syscall;
pub mod testing;
pub mod time;
pub mod tlb;

/// Re-exported for [`kernel_entry!`].
pub use bootloader_api;
