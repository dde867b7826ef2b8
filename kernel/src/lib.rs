//! A bare-metal x86_64 testbed for the race between lockless page pinning
//! (GUP-fast) and page-table changes (KSM merging, khugepaged collapse, uprobes
//! page replacement), on real hardware semantics.
//!
//! This crate is the kernel as a library: the main kernel (`src/main.rs`) and
//! each test kernel (`tests/`) are small binaries that declare an entry point
//! with [`kernel_entry!`] or [`ktest_main!`] and get the whole boot sequence
//! ([`boot`]).
//!
//! # Layers
//!
//! Modules are layered, and a module uses only modules of its own layer or
//! below: calls up the order go through hooks that the higher layer registers
//! at boot. The host test `boot/tests/layers.rs` reads this table and every
//! path into the crate (`use crate::...`, `crate::x::` in code, `super::`) and
//! fails on one that points up, or on a module the table does not place. A
//! module named with a sub-path (`mm::fault`) is placed on its own; a
//! subsystem split that way has every file placed.
//!
//! | Layer | Modules | What it is; what it may use besides the layers below |
//! |------:|---------|-------------------------------------------------------|
//! | 0 | `arch`, `arch::context`, `arch::cpu`, `arch::crash`, `arch::entry_macros`, `arch::exceptions`, `arch::gdt`, `arch::idt`, `arch::percpu`, `arch::qemu`, `arch::trampoline`, `arch::tsc`, `arch::uaccess`, `arch::usermode`, `arch::vectors`, `smp::percpu`, `smp::cpuset` | The CPU: instructions, registers, descriptor tables, interrupt and user entry, the per-CPU area. Calls nothing above: higher layers register handlers. |
//! | 1 | `time`, `console`, `power`, `stamps`, `boot_options::value` | The clock (TSC; the reference timers are passed in), the console, the exit, the TSC breakdowns of hot paths (`bench.breakdown`), the boot options' value parsers (each subsystem parses its own keys with them). |
//! | 2 | `sync`, `sync::spinlock`, `sync::rwlock`, `sync::ticket` | Spin locks (their stall detection reads the clock), and the yield hook the scheduler registers for waits below it. |
//! | 3 | `mm`, `mm::frame`, `mm::heap`, `mm::layout`, `mm::paging`, `mm::kernel_map`, `mm::mmio`, `mm::stack`, `mm::page`, `mm::user_addr`, `mm::frame_io`, `mm::quarantine`, `mm::filemap`, `debug::symbols`, `debug::backtrace` | Memory: physical frames and their `Page`s, the page-table format, the kernel's own mappings; backtraces (they read kernel memory). |
//! | 4 | `arch::apic`, `arch::hpet`, `arch::pmtimer`, `arch::reset`, `arch::timer`, `acpi`, `smp`, `smp::call`, `smp::ipi`, `smp::nmi`, `smp::startup` | Devices (their registers are mapped by `mm::mmio`, as Linux drivers use ioremap) and the other CPUs: bring-up, cross-CPU calls, NMIs. |
//! | 5 | `rcu` | Grace periods (waits yield through `sync`'s hook). |
//! | 6 | `sched`, `sync::rwsem`, `smp::work` | Tasks, run queues, wait queues and the locks that sleep on them. |
//! | 7 | `mm::addr_space`, `mm::vma`, `mm::pgtable`, `mm::scan`, `tlb` | Address spaces: the mm object with its mmap lock (a sleeping lock, so above `sched`), its page tables, the scanners' cursor over them, and TLB flushes (they reach the CPUs in the address space's set). |
//! | 8 | `mm::range`, `mm::mmap`, `mm::fault`, `mm::fork`, `mm::uaccess`, `mm::hooks`, `mm::huge_memory` | What changes user page tables: faults, mmap and madvise, fork, user copies. The writers above hook into fork and madvise at boot (`mm::hooks`). |
//! | 9 | `race`, `race::config`, `race::widen`, `race::explore`, `race::steer`, `race::overlap` | Race instrumentation: the protocol switches, widening points, the default exploration policy (and its steering of the scanning daemons) and overlap stamps the protocol code reads. |
//! | 10 | `gup`, `dma` | Pinning user pages (GUP-fast and the slow path) and the DMA engine that writes through pins. |
//! | 11 | `ksm`, `khugepaged`, `uprobes` | The page-table writers. |
//! | 12 | `process` | User processes and threads. |
//! | 13 | `scenario`, `bench` | Race scenarios and benchmarks. |
//! | 14 | `syscall` | The system-call table: it routes to every layer, the scenario's and benchmarks' calls included. |
//! | 15 | `boot`, `boot::facts`, `boot_options`, `testing`, `debug`, `debug::fatal`, `debug::crash`, `debug::wedge`, `debug::exceptions` | The boot sequence and its options, the test harness, the panic handler. |
//!
//! Unsafe code and privileged instructions: `asm!` and privileged register
//! writes only in `arch`; the policy modules (`gup`, `ksm`, `khugepaged`,
//! `uprobes`, `race`, `scenario`, `syscall`, `bench`, `rcu`, `tlb`, `dma`,
//! `process`) deny `unsafe` outright. Items are `pub(crate)` unless a test
//! kernel or the main binary uses them, so the compiler reports dead code.

#![no_std]
#![feature(btree_cursors)]
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
pub mod stamps;
pub mod sync;
pub mod syscall;
pub mod testing;
pub mod time;
pub mod tlb;
pub mod uprobes;

/// Re-exported for [`kernel_entry!`].
pub use bootloader_api;
