//! The interrupt descriptor table and the assembly entry path for all 256 vectors.
//!
//! Every vector enters through a 16-byte stub that pushes a zero error code (when
//! the CPU does not push one) and the vector number, then jumps to a common entry
//! that saves all general-purpose registers into a [`TrapFrame`] and calls
//! [`interrupt_dispatch`]. A full register frame for every vector costs a few
//! cycles more than `extern "x86-interrupt"` handlers, and buys complete crash
//! reports and NMI backtraces of whatever a CPU was doing.
//!
//! Exceptions (vectors 0-31) go to [`super::exceptions`]; other vectors go to the
//! handler registered for them with [`register_handler`].
//!
//! GS: the kernel's GS base is its per-CPU block, user mode's is 0 (see
//! `usermode`). An entry from ring 3 (CS RPL 3 in the frame) runs `swapgs`
//! first and again before its `iretq`. NMI, double fault and machine check
//! (on IST stacks) can also arrive in ring 0 *between* a `syscall` and its
//! `swapgs`, so their entry is paranoid (Linux: paranoid_entry): it reads
//! `IA32_GS_BASE` and swaps only if it is not a kernel address, restoring the
//! same state on exit. A return to ring 3 from an ordinary vector first does
//! the return-to-user work (`usermode::prepare_return`: exit, RCU, preemption).

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

use super::entry_macros::arch_global_asm;
use super::gdt;

/// The registers saved on entry, in memory order (lowest address first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub(crate) struct TrapFrame {
    pub(crate) r15: u64,
    pub(crate) r14: u64,
    pub(crate) r13: u64,
    pub(crate) r12: u64,
    pub(crate) r11: u64,
    pub(crate) r10: u64,
    pub(crate) r9: u64,
    pub(crate) r8: u64,
    pub(crate) rbp: u64,
    pub(crate) rdi: u64,
    pub(crate) rsi: u64,
    pub(crate) rdx: u64,
    pub(crate) rcx: u64,
    pub(crate) rbx: u64,
    pub(crate) rax: u64,
    /// The vector number pushed by the stub.
    pub(crate) vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub(crate) error_code: u64,
    // The frame the CPU pushed.
    pub(crate) rip: u64,
    pub(crate) cs: u64,
    pub(crate) rflags: u64,
    pub(crate) rsp: u64,
    pub(crate) ss: u64,
}

impl TrapFrame {
    /// Whether the interrupted code ran in ring 3.
    pub(crate) fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

// The frame the entries build: the register area, then the vector and error
// code the stubs push, then the CPU's frame, in this order with no gaps.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(TrapFrame, error_code) == offset_of!(TrapFrame, vector) + 8);
    assert!(offset_of!(TrapFrame, rip) == offset_of!(TrapFrame, error_code) + 8);
    assert!(offset_of!(TrapFrame, cs) == offset_of!(TrapFrame, rip) + 8);
    assert!(offset_of!(TrapFrame, rflags) == offset_of!(TrapFrame, cs) + 8);
    assert!(offset_of!(TrapFrame, rsp) == offset_of!(TrapFrame, rflags) + 8);
    assert!(offset_of!(TrapFrame, ss) == offset_of!(TrapFrame, rsp) + 8);
    assert!(size_of::<TrapFrame>() == offset_of!(TrapFrame, ss) + 8);
};

// The stubs. Vectors 8, 10-14, 17, 21, 29 and 30 get an error code from the CPU.
// Each stub is at most 2 + 5 + 5 bytes, so a 16-byte stride holds any of them.
global_asm!(
    r#"
    .section .text.interrupt_entry, "ax"
    .balign 16
    .global interrupt_stubs
interrupt_stubs:
    .set vector, 0
    .rept 256
        .balign 16
        .if vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30
        .else
            pushq $0
        .endif
        pushq $vector
        .if vector == 2 || vector == 8 || vector == 18
            jmp interrupt_paranoid
        .else
            jmp interrupt_common
        .endif
        .set vector, vector + 1
    .endr
    .text
    "#,
    options(att_syntax)
);

// The common entries. rsp points at the vector the stub pushed; below it goes
// the register area (`tf_vector` bytes), so rsp then points at a TrapFrame.
// The CPU aligned rsp to 16 before pushing its 5-word frame; with the error
// code, the vector and the register area that is 22 words, so rsp is 16-byte
// aligned at the call, as the C ABI wants.
arch_global_asm!([
    r#"
    .section .text.interrupt_entry, "ax"
    .global interrupt_common
interrupt_common:
    // The CPU leaves RFLAGS.AC as it was: close the SMAP window (a fault on a
    // uaccess copy is handled with it closed; iretq restores it).
    cmp byte ptr [rip + {smap}], 0
    je 1f
    clac
1:
    // From ring 3 (the CS the CPU pushed, above the vector and error code):
    // switch to the kernel's GS base.
    test byte ptr [rsp + {tf_cs} - {tf_vector}], 3
    jz 2f
    swapgs
2:
    sub rsp, {tf_vector}
    SAVE_FRAME_REGS
    cld
    mov rdi, rsp
    call {dispatch}
    RESTORE_FRAME_REGS
    add rsp, {tf_rip}
    test byte ptr [rsp + {tf_cs} - {tf_rip}], 3
    jz 3f
    swapgs
3:
    iretq

    // NMI, double fault, machine check: GS by the MSR, not by the frame's CS.
    .global interrupt_paranoid
interrupt_paranoid:
    cmp byte ptr [rip + {smap}], 0
    je 4f
    clac
4:
    sub rsp, {tf_vector}
    SAVE_FRAME_REGS
    cld
    // IA32_GS_BASE: the kernel's is a kernel-half (negative) address, user
    // mode's is 0. rbx (callee-saved) remembers whether we swapped.
    mov ecx, 0xc0000101
    rdmsr
    xor ebx, ebx
    test edx, edx
    js 5f
    swapgs
    mov ebx, 1
5:
    mov rdi, rsp
    call {dispatch}
    test ebx, ebx
    jz 6f
    swapgs
6:
    RESTORE_FRAME_REGS
    add rsp, {tf_rip}
    iretq
    .text
    "#,
],
    dispatch = sym interrupt_dispatch,
    smap = sym super::uaccess::UACCESS_SMAP_ON,
    tf_vector = const core::mem::offset_of!(TrapFrame, vector),
    tf_rip = const core::mem::offset_of!(TrapFrame, rip),
    tf_cs = const core::mem::offset_of!(TrapFrame, cs),
);

unsafe extern "C" {
    /// First byte of the stub table (256 stubs, 16 bytes apart).
    static interrupt_stubs: u8;
}

/// An interrupt handler for a non-exception vector.
pub(crate) type Handler = fn(&mut TrapFrame);

/// Registered handlers for vectors 32-255 (0 = none), as `fn` addresses.
static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Registers `handler` for `vector` (32-255). Release pairs with the Acquire in
/// dispatch, so the handler's code and data are visible when it first runs.
pub(crate) fn register_handler(vector: u8, handler: Handler) {
    assert!(vector >= 32, "vectors below 32 are exceptions");
    HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Called by the common entry with the saved frame.
extern "C" fn interrupt_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as usize;
    if vector < 32 {
        super::exceptions::handle(frame);
        // The paranoid vectors never do return-to-user work: an NMI may have
        // interrupted anything, even the return path itself.
        if frame.from_user() && !matches!(vector, 2 | 8 | 18) {
            super::usermode::prepare_return(frame);
        }
        return;
    }
    let handler = HANDLERS[vector].load(Ordering::Acquire);
    if handler == 0 {
        super::exceptions::unexpected_vector(frame);
    } else {
        // SAFETY: only `register_handler` stores non-zero values, and it stores
        // `Handler` function pointers.
        let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
        let cpu = crate::smp::percpu::try_current();
        if let Some(cpu) = cpu {
            cpu.irq_depth.fetch_add(1, Ordering::Relaxed);
            cpu.interrupts.fetch_add(1, Ordering::Relaxed);
        }
        handler(frame);
        if let Some(cpu) = cpu {
            cpu.irq_depth.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if frame.from_user() {
        super::usermode::prepare_return(frame);
    }
}

/// One 16-byte gate descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate =
        Gate { offset_low: 0, selector: 0, ist: 0, type_attr: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

    /// A present 64-bit interrupt gate (interrupts disabled on entry).
    fn interrupt(handler: u64, ist: Option<u16>, user_callable: bool) -> Gate {
        let dpl = if user_callable { 3 } else { 0 };
        Gate {
            offset_low: handler as u16,
            selector: gdt::selectors::KERNEL_CODE.0,
            // The x86_64 crate counts IST slots from 0; the descriptor from 1.
            ist: ist.map_or(0, |i| (i + 1) as u8),
            type_attr: 0x80 | (dpl << 5) | 0x0e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

/// One IDT for all CPUs: it never changes after [`install`] fills it.
static IDT: spin::Once<Idt> = spin::Once::new();

/// Builds the IDT once and loads it on this CPU.
pub(crate) fn install() {
    let idt = IDT.call_once(|| {
        let base = core::ptr::addr_of!(interrupt_stubs) as u64;
        let mut gates = [Gate::MISSING; 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let ist = match vector {
                2 => Some(gdt::IST_NMI),
                8 => Some(gdt::IST_DOUBLE_FAULT),
                18 => Some(gdt::IST_MACHINE_CHECK),
                _ => None,
            };
            // Breakpoints (int3) may come from user mode; nothing else may.
            *gate = Gate::interrupt(base + 16 * vector as u64, ist, vector == 3);
        }
        Idt(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is 'static and every present gate points into the stub
    // table with the kernel code selector loaded by `gdt`.
    unsafe { lidt(&pointer) };
}
