//! The kernel's interrupt vectors (above the 32 exceptions).
//!
//! Higher vectors have higher priority in the local APIC; IPIs sit at the top
//! so that a TLB shootdown or a cross-CPU call is not held behind device
//! interrupts.

/// First vector of the remapped (and masked) legacy PICs: a spurious IRQ 7 or
/// 15 arrives here instead of aliasing an exception.
pub(crate) const LEGACY_PIC_BASE: u8 = 0x20;
/// Local APIC timer.
pub(crate) const TIMER: u8 = 0xf0;
/// Cross-CPU function call.
pub(crate) const CALL_FUNCTION: u8 = 0xf1;
/// Reschedule request.
pub(crate) const RESCHEDULE: u8 = 0xf3;
/// Local APIC error.
pub(crate) const APIC_ERROR: u8 = 0xfe;
/// Local APIC spurious interrupt (must end in 0xf on old xAPICs).
pub(crate) const SPURIOUS: u8 = 0xff;
