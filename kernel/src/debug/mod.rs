//! Crash reporting: symbols, backtraces, the fatal path, deliberate crashes.
//!
//! A crash report must be useful without a debugger: vector, error code,
//! registers, and a backtrace with symbol names resolved inside the kernel (from
//! its own ELF symbol table, which the bootloader leaves in memory), so that a
//! physical machine shows the same report on screen as QEMU does on serial.

pub(crate) mod backtrace;
pub mod crash;
pub(crate) mod exceptions;
pub(crate) mod fatal;
pub mod symbols;
pub mod wedge;
