//! Control registers, interrupt state and CPU feature switches.
//!
//! Thin, safe wrappers over privileged instructions for the rest of the kernel.
//! The interrupt-state helpers are the primitive that later interrupts-off guards
//! (the GUP-fast requirement) are built on.

use core::arch::asm;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

/// Enables no-execute pages (EFER.NXE), write protection in ring 0 (CR0.WP, so the
/// kernel faults on read-only pages too, as Linux) and global pages (CR4.PGE).
pub fn enable_protection_features() {
    // SAFETY: setting NXE only makes bit 63 of page-table entries meaningful;
    // the bootloader's and our tables never set it on pages we execute.
    unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    // SAFETY: WP makes ring 0 honour read-only mappings; the kernel never writes
    // through a read-only mapping on purpose (a bug would now fault: the point).
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
    // SAFETY: PGE lets global entries survive CR3 writes; only kernel-half
    // mappings are marked global, and they are identical in every address space.
    unsafe { Cr4::update(|f| f.insert(Cr4Flags::PAGE_GLOBAL)) };
}

/// Current value of CR2 (the address of the last page fault).
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Current value of CR3 (the page-table root and flags).
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Current value of CR0.
pub fn cr0() -> u64 {
    Cr0::read_raw()
}

/// Current value of CR4.
pub fn cr4() -> u64 {
    Cr4::read_raw()
}

/// Whether maskable interrupts are enabled (RFLAGS.IF) on this CPU.
pub fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Disables maskable interrupts on this CPU.
pub fn disable_interrupts() {
    x86_64::instructions::interrupts::disable();
}

/// Enables maskable interrupts on this CPU.
pub fn enable_interrupts() {
    x86_64::instructions::interrupts::enable();
}

/// Halts this CPU forever with interrupts disabled (NMIs still wake it, so loop).
pub fn halt_forever() -> ! {
    disable_interrupts();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Reads the frame pointer of the caller's frame.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// Reads the stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reading rsp has no side effects.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

/// Spin-loop hint for busy waits.
#[inline(always)]
pub fn relax() {
    core::hint::spin_loop();
}
