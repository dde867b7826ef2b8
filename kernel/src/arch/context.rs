//! The context switch: callee-saved registers on the old stack, stack pointer
//! swap, callee-saved registers off the new stack.
//!
//! A new task's stack is prepared by [`initial_stack`] so that the first switch
//! to it "returns" into a trampoline that calls the entry function stored in
//! the new task's saved r12. The entry is passed in, so this module calls
//! nothing above it.

use super::entry_macros::arch_global_asm;

arch_global_asm!([
    r#"
    .section .text.context_switch, "ax"
    .global arch_switch_to
arch_switch_to:
    SAVE_CALLEE_REGS
    mov [rdi], rsp
    mov rsp, rsi
    RESTORE_CALLEE_REGS
    ret

    .global arch_task_trampoline
arch_task_trampoline:
    // r12 holds the entry (see initial_stack); rbp is zero, so backtraces stop.
    call r12
    ud2
    .text
    "#,
]);

unsafe extern "C" {
    fn arch_switch_to(save_rsp: *mut u64, next_rsp: u64);
    fn arch_task_trampoline();
}

/// Saves the current context into `*save_rsp` and resumes the context whose
/// stack pointer is `next_rsp`. Returns when something switches back.
///
/// # Safety
/// Interrupts must be off; `next_rsp` must be a stack pointer saved by this
/// function (or prepared by [`initial_stack`]) of a task that is not running
/// anywhere, and `save_rsp` must stay valid until this context is resumed.
pub(crate) unsafe fn switch_to(save_rsp: *mut u64, next_rsp: u64) {
    // SAFETY: as the caller guarantees; the callee-saved registers are preserved
    // across the call by the assembly, the others are clobbered per the C ABI.
    unsafe { arch_switch_to(save_rsp, next_rsp) }
}

/// Prepares a fresh stack whose top is `top` (16-byte aligned) and returns the
/// stack pointer to switch to: the six callee-saved registers of
/// `SAVE_CALLEE_REGS` (all zero but r12 = `entry`), then the trampoline as
/// return address. After the `ret`, rsp is `top`, so the trampoline's `call`
/// sees the 16-byte alignment the ABI requires.
///
/// # Safety
/// `top` must be the top of a mapped, unused stack of at least 64 bytes.
pub(crate) unsafe fn initial_stack(top: u64, entry: extern "C" fn() -> !) -> u64 {
    let rsp = top - 7 * 8;
    // Pop order of RESTORE_CALLEE_REGS: r15, r14, r13, r12, rbx, rbp.
    let words: [u64; 7] = [0, 0, 0, entry as usize as u64, 0, 0, arch_task_trampoline as *const () as u64];
    // SAFETY: the caller guarantees the 56 bytes below `top` are ours.
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), rsp as *mut u64, words.len()) };
    rsp
}
