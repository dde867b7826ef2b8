//! The context switch: callee-saved registers on the old stack, stack pointer
//! swap, callee-saved registers off the new stack.
//!
//! A new task's stack is prepared by [`initial_stack`] so that the first switch
//! to it "returns" into [`task_trampoline`], which calls `sched::task_main`.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.sched_switch, "ax"
    .global sched_switch_to
sched_switch_to:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global sched_task_trampoline
sched_task_trampoline:
    xor ebp, ebp
    call {task_main}
    ud2
    .text
    "#,
    task_main = sym super::task_main,
);

unsafe extern "C" {
    fn sched_switch_to(save_rsp: *mut u64, next_rsp: u64);
    fn sched_task_trampoline();
}

/// Saves the current context into `*save_rsp` and resumes the context whose
/// stack pointer is `next_rsp`. Returns when something switches back.
///
/// # Safety
/// Interrupts must be off; `next_rsp` must be a stack pointer saved by this
/// function (or prepared by [`initial_stack`]) of a task that is not running
/// anywhere, and `save_rsp` must stay valid until this context is resumed.
pub unsafe fn switch_to(save_rsp: *mut u64, next_rsp: u64) {
    // SAFETY: as the caller guarantees; the callee-saved registers are preserved
    // across the call by the assembly, the others are clobbered per the C ABI.
    unsafe { sched_switch_to(save_rsp, next_rsp) }
}

/// Prepares a fresh stack whose top is `top` (16-byte aligned) and returns the
/// stack pointer to switch to: six zeroed callee-saved registers, then the
/// trampoline as return address. After the `ret`, rsp is `top`, so the
/// trampoline's `call` sees the 16-byte alignment the ABI requires.
///
/// # Safety
/// `top` must be the top of a mapped, unused stack of at least 64 bytes.
pub unsafe fn initial_stack(top: u64) -> u64 {
    let rsp = top - 7 * 8;
    // SAFETY: the caller guarantees the 56 bytes below `top` are ours.
    unsafe {
        let words = rsp as *mut u64;
        for i in 0..6 {
            words.add(i).write(0);
        }
        words.add(6).write(sched_task_trampoline as *const () as u64);
    }
    rsp
}
