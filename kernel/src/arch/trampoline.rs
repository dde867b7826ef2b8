//! The AP start-up trampoline: real mode -> protected mode -> long mode.
//!
//! A start-up IPI starts an AP in real mode at `vector * 4096`. The code below
//! is assembled into the kernel image and copied to [`TRAMPOLINE_PHYS`] before
//! the IPI. It loads a small GDT, enters protected mode, enables PAE, global
//! pages, long mode and no-execute, loads [`Params::cr3`] (a low page-table
//! root that identity-maps the first 2 MiB and shares the kernel half, since
//! CR3 is loaded from 32-bit code), enables paging, far-jumps to 64-bit code,
//! and calls [`Params::entry`] with [`Params::arg`] on [`Params::stack`].
//!
//! The code is position-dependent on `TRAMPOLINE_PHYS`: every absolute address
//! is `TRAMPOLINE_PHYS + (label - ap_trampoline_start)`.

use core::arch::global_asm;

/// Where the trampoline is copied (start-up IPI vector 0x08).
pub(crate) const TRAMPOLINE_PHYS: u64 = 0x8000;
/// Start-up IPI vector for the trampoline page.
pub(crate) const STARTUP_VECTOR: u8 = (TRAMPOLINE_PHYS >> 12) as u8;

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 4096
    .global ap_trampoline_start
    .global ap_trampoline_end
    .global ap_trampoline_params
    .set TB, 0x8000
ap_trampoline_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    lgdtl TB + (ap_gdt_pointer - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    // ljmpl $0x08, $protected (a 32-bit offset from 16-bit code)
    .byte 0x66, 0xea
    .long TB + (ap_protected - ap_trampoline_start)
    .word 0x08

    .code32
ap_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    // CR4: PAE (5) and PGE (7)
    movl %cr4, %eax
    orl $0xa0, %eax
    movl %eax, %cr4
    movl TB + (ap_trampoline_params - ap_trampoline_start), %eax
    movl %eax, %cr3
    // EFER: LME (8) and NXE (11)
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    // CR0: PG (31), WP (16), PE (0)
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    // ljmp $0x18, $long
    .byte 0xea
    .long TB + (ap_long - ap_trampoline_start)
    .word 0x18

    .code64
ap_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $(TB + (ap_trampoline_params - ap_trampoline_start)), %ebx
    movq 8(%rbx), %rsp
    movq 16(%rbx), %rax
    movq 24(%rbx), %rdi
    xorl %ebp, %ebp
    callq *%rax
    ud2

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_gdt_pointer:
    .word ap_gdt_pointer - ap_gdt - 1
    .long TB + (ap_gdt - ap_trampoline_start)

    .balign 8
ap_trampoline_params:
    .quad 0
    .quad 0
    .quad 0
    .quad 0
ap_trampoline_end:
    .code64
    .text
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_trampoline_params: u8;
}

/// The parameters block at the end of the trampoline (layout fixed by the asm).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    /// Page-table root below 4 GiB (loaded from 32-bit code).
    pub(crate) cr3: u64,
    /// Initial stack pointer.
    pub(crate) stack: u64,
    /// 64-bit entry point, `extern "C" fn(arg) -> !`.
    pub(crate) entry: u64,
    /// First argument of the entry point.
    pub(crate) arg: u64,
}

/// The trampoline's code and where its parameters sit in it.
pub(crate) fn image() -> (&'static [u8], usize) {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let end = core::ptr::addr_of!(ap_trampoline_end) as usize;
    let params = core::ptr::addr_of!(ap_trampoline_params) as usize;
    let len = end - start as usize;
    // SAFETY: start..end is the trampoline in the kernel's read-only data.
    (unsafe { core::slice::from_raw_parts(start, len) }, params - start as usize)
}
