//! The instructions behind the deliberate crashes of `debug::crash` (`crash=`
//! boot option). Each raises its exception on purpose and never returns.

use core::arch::asm;

/// Raises #UD with `ud2`.
pub(crate) fn invalid_opcode() -> ! {
    // SAFETY: ud2 raises #UD, which is the point; the fatal handler ends the run.
    unsafe { asm!("ud2", options(noreturn)) }
}

/// Points rsp at `unmapped` and pushes: the page fault cannot push its own
/// frame on that stack either, so the CPU raises a double fault, taken on its
/// IST stack.
///
/// # Safety
/// Not safe at all: the fault is the point. `unmapped` must be a kernel address
/// with nothing mapped, or the push corrupts memory.
pub(crate) unsafe fn double_fault(unmapped: u64) -> ! {
    // SAFETY: as the caller guarantees; nothing returns here.
    unsafe { asm!("mov rsp, {bad}", "push rax", bad = in(reg) unmapped, options(noreturn)) }
}

/// Loads an empty IDT and raises #UD: every exception escalates to a triple
/// fault and the CPU resets.
pub(crate) fn triple_fault() -> ! {
    let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
    // SAFETY: not safe for the run: with an empty IDT the next exception resets
    // the CPU, which is the point; no memory is touched.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        asm!("ud2", options(noreturn))
    }
}
