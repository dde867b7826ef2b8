//! The GS base as the per-CPU pointer: the privileged half of `smp::percpu`.
//!
//! Each CPU's per-CPU block starts with a pointer to itself and the CPU's
//! `IA32_GS_BASE` points at the block, so reading the current block is one
//! `mov reg, gs:[0]`.

use core::arch::asm;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Points this CPU's GS base at `block`.
///
/// # Safety
/// `block` must be a per-CPU block that lives forever and whose first word is
/// its own address, and nothing else may use GS in ring 0.
pub(crate) unsafe fn set_gs_base(block: VirtAddr) {
    GsBase::write(block);
}

/// The first word at the GS base: the current CPU's block (see [`set_gs_base`]).
///
/// # Safety
/// [`set_gs_base`] must have run on this CPU.
#[inline(always)]
pub(crate) unsafe fn gs_self_pointer() -> *const u8 {
    let ptr: *const u8;
    // SAFETY: as the caller guarantees, GS points at a block whose first word
    // is readable; the read has no side effects.
    unsafe { asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, preserves_flags, readonly)) };
    ptr
}
