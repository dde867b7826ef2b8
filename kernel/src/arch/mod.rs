//! x86_64 architecture support: the only place with inline assembly.
//!
//! The testbed runs on x86_64 only, so this module is the architecture, not one
//! of several. Everything above it uses the safe, typed interfaces exported here:
//! segment setup ([`gdt`]), exception entry and reports ([`idt`], [`exceptions`]),
//! control registers and interrupt state ([`cpu`]), the time-stamp counter
//! ([`tsc`]) and the QEMU exit port ([`qemu`]).

pub mod apic;
pub mod context;
pub mod cpu;
pub mod crash;
mod entry_macros;
pub mod exceptions;
pub(crate) mod gdt;
pub mod hpet;
pub mod idt;
pub(crate) mod percpu;
pub mod pmtimer;
pub mod qemu;
pub(crate) mod reset;
pub(crate) mod timer;
pub(crate) mod trampoline;
pub mod tsc;
pub mod uaccess;
pub mod usermode;
pub mod vectors;
