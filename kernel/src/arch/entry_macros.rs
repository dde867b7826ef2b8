//! The register save and restore sequences of every entry path, written once.
//!
//! [`arch_global_asm!`] wraps `global_asm!` (Intel syntax): it defines four
//! assembler macros before the caller's code and removes them after it (so each
//! block assembles on its own, whatever codegen unit it lands in), and passes
//! the [`TrapFrame`] offsets from `offset_of!`, so the assembly cannot drift
//! from the struct:
//!
//! - `SAVE_CALLEE_REGS` / `RESTORE_CALLEE_REGS`: push and pop the registers the
//!   C ABI makes callee-saved (rbp, rbx, r12-r15); the context switch and the
//!   first entry to and final exit from user mode use them.
//! - `SAVE_FRAME_REGS` / `RESTORE_FRAME_REGS`: store and load the fifteen
//!   general-purpose registers of a [`TrapFrame`] at `rsp`, which must point at
//!   the frame (its register area is below `vector`). They do not move `rsp`.
//!
//! Code that needs other frame offsets (`vector`, `rip`, ...) passes them as
//! its own `const offset_of!` operands.
//!
//! [`TrapFrame`]: super::idt::TrapFrame

/// `global_asm!` with the entry macros and the frame offsets (see the module
/// docs): `arch_global_asm!(["code", ...], operands...)`, the last operand
/// followed by a comma too.
macro_rules! arch_global_asm {
    ([$($template:expr),+ $(,)?] $(, $($operands:tt)*)?) => {
        core::arch::global_asm!(
            r#"
            .macro SAVE_CALLEE_REGS
                push rbp
                push rbx
                push r12
                push r13
                push r14
                push r15
            .endm
            .macro RESTORE_CALLEE_REGS
                pop r15
                pop r14
                pop r13
                pop r12
                pop rbx
                pop rbp
            .endm
            .macro SAVE_FRAME_REGS
                mov [rsp + {tf_rax}], rax
                mov [rsp + {tf_rbx}], rbx
                mov [rsp + {tf_rcx}], rcx
                mov [rsp + {tf_rdx}], rdx
                mov [rsp + {tf_rsi}], rsi
                mov [rsp + {tf_rdi}], rdi
                mov [rsp + {tf_rbp}], rbp
                mov [rsp + {tf_r8}], r8
                mov [rsp + {tf_r9}], r9
                mov [rsp + {tf_r10}], r10
                mov [rsp + {tf_r11}], r11
                mov [rsp + {tf_r12}], r12
                mov [rsp + {tf_r13}], r13
                mov [rsp + {tf_r14}], r14
                mov [rsp + {tf_r15}], r15
            .endm
            .macro RESTORE_FRAME_REGS
                mov rax, [rsp + {tf_rax}]
                mov rbx, [rsp + {tf_rbx}]
                mov rcx, [rsp + {tf_rcx}]
                mov rdx, [rsp + {tf_rdx}]
                mov rsi, [rsp + {tf_rsi}]
                mov rdi, [rsp + {tf_rdi}]
                mov rbp, [rsp + {tf_rbp}]
                mov r8, [rsp + {tf_r8}]
                mov r9, [rsp + {tf_r9}]
                mov r10, [rsp + {tf_r10}]
                mov r11, [rsp + {tf_r11}]
                mov r12, [rsp + {tf_r12}]
                mov r13, [rsp + {tf_r13}]
                mov r14, [rsp + {tf_r14}]
                mov r15, [rsp + {tf_r15}]
            .endm
            "#,
            $($template),+,
            r#"
            .purgem SAVE_CALLEE_REGS
            .purgem RESTORE_CALLEE_REGS
            .purgem SAVE_FRAME_REGS
            .purgem RESTORE_FRAME_REGS
            "#,
            $($($operands)*)?
            tf_rax = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rax),
            tf_rbx = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rbx),
            tf_rcx = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rcx),
            tf_rdx = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rdx),
            tf_rsi = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rsi),
            tf_rdi = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rdi),
            tf_rbp = const core::mem::offset_of!($crate::arch::idt::TrapFrame, rbp),
            tf_r8 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r8),
            tf_r9 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r9),
            tf_r10 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r10),
            tf_r11 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r11),
            tf_r12 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r12),
            tf_r13 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r13),
            tf_r14 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r14),
            tf_r15 = const core::mem::offset_of!($crate::arch::idt::TrapFrame, r15),
        );
    };
}
pub(crate) use arch_global_asm;
