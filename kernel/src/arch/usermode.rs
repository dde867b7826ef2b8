//! Ring 3: `syscall`/`sysret` set-up, the syscall entry, the first entry of a
//! user thread and its way back out.
//!
//! **Stacks.** A user thread is a scheduler task whose kernel code called
//! [`run_user`]. That call's stack pointer (below its saved registers) is the
//! thread's *entry stack*: every entry from ring 3 (`syscall`, interrupts,
//! exceptions through TSS.rsp0) starts there, and [`exit_to_kernel`] unwinds
//! to it, so `run_user` returns the exit status to the task's code. The
//! scheduler loads a task's entry stack into the per-CPU block and the TSS at
//! each switch ([`set_entry_stack`]). So code running on behalf of a user
//! thread must not keep owned values on the stack across a call that may
//! end in `exit_to_kernel`: [`prepare_return`] is called only by the entry
//! assembly, with nothing owned above it.
//!
//! **GS.** The kernel's GS base is its per-CPU block; user mode's is 0 and
//! stays 0 (CR4.FSGSBASE is off, so ring 3 cannot change it), which is what the
//! paranoid entries in `idt` rely on. `swapgs` exchanges the two on every
//! ring crossing.
//!
//! **Flags.** `IA32_FMASK` clears IF, DF, TF, AC, NT and IOPL on `syscall`; every
//! return to ring 3 rewrites the saved RFLAGS to IF set, IOPL 0, no NT/VM/RF
//! ([`sanitize_flags`]), so user mode never runs with interrupts off or I/O
//! privilege, whatever a frame held.
//!
//! **Calls up.** The syscall dispatcher and the return-to-user work
//! (exit, RCU, preemption) belong to the layers above; they reach this
//! module as [`UserHandlers`] the boot registers ([`register`]), so arch
//! calls nothing above it.
//!
//! **sysret.** Intel CPUs raise #GP *in ring 0, on the user stack* when
//! `sysret` loads a non-canonical RIP (CVE-2012-0217), so the fast path is
//! taken only for a syscall frame whose RIP is below 2^47; anything else
//! returns with `iretq` (Linux: the same check in entry_SYSCALL_64).

use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, KernelGsBase, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

use super::entry_macros::arch_global_asm;
use super::gdt::selectors;
use super::idt::TrapFrame;
use crate::smp::percpu::{self, PerCpu};

/// The `vector` a syscall's frame carries (outside the IDT's 0-255).
pub(crate) const SYSCALL_VECTOR: u64 = 0x100;

/// RFLAGS bits user mode may keep (arithmetic flags, TF for debuggers, DF, AC).
const USER_FLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | (1 << 18);
/// IF and the always-one bit 1.
const FORCED_FLAGS: u64 = 0x200 | 0x2;

// The register save and restore sequences are entry_macros' (the frame
// offsets come from `offset_of!`, so the assembly cannot drift from
// `TrapFrame`).
arch_global_asm!([
    r#"
    .section .text.usermode, "ax"

    // syscall: RCX = user RIP, R11 = user RFLAGS, IF/DF/TF/AC already clear.
    .global usermode_syscall_entry
usermode_syscall_entry:
    swapgs
    mov gs:[{scratch}], rsp
    mov rsp, gs:[{entry}]
    // The hardware part of the frame, as an interrupt from ring 3 has it,
    // then the vector (no error code) and the register area.
    push {user_ss}
    push qword ptr gs:[{scratch}]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {syscall_vector}
    sub rsp, {tf_vector}
    SAVE_FRAME_REGS
    cld
    // Backtraces stop here instead of following the user's rbp.
    xor ebp, ebp
    mov rdi, rsp
    // The entry stack is 16-byte aligned and the frame is 22 words.
    call {syscall_rust}
    // Interrupts are off and the return work is done: back to ring 3.
    cmp qword ptr [rsp + {tf_vector}], {syscall_vector}
    jne usermode_iret
    mov rax, [rsp + {tf_rip}]
    shr rax, 47
    jnz usermode_iret
    RESTORE_FRAME_REGS
    mov rcx, [rsp + {tf_rip}]
    mov r11, [rsp + {tf_rflags}]
    mov rsp, [rsp + {tf_rsp}]
    swapgs
    sysretq

    // Return to ring 3 through the full frame at rsp.
usermode_iret:
    RESTORE_FRAME_REGS
    add rsp, {tf_rip}
    swapgs
    iretq

    // rdi = &TrapFrame (the first user state), rsi = &task's entry-stack slot.
    // Interrupts are off.
    .global usermode_run
usermode_run:
    SAVE_CALLEE_REGS
    sub rsp, 8
    mov [rsi], rsp
    mov gs:[{entry}], rsp
    mov rax, gs:[{tss}]
    mov [rax + 4], rsp
    sub rsp, {tf_size}
    mov rsi, rdi
    mov rdi, rsp
    mov ecx, {tf_words}
    rep movsq
    jmp usermode_iret

    // edi = exit status. Unwinds to the current task's usermode_run call.
    .global usermode_exit_to_kernel
usermode_exit_to_kernel:
    mov rsp, gs:[{entry}]
    add rsp, 8
    RESTORE_CALLEE_REGS
    mov eax, edi
    ret
    .text
    "#,
],
    scratch = const offset_of!(PerCpu, user_rsp_scratch),
    entry = const offset_of!(PerCpu, user_entry_rsp),
    tss = const offset_of!(PerCpu, tss),
    user_ss = const selectors::USER_DATA.0 as u64,
    user_cs = const selectors::USER_CODE.0 as u64,
    syscall_vector = const SYSCALL_VECTOR,
    syscall_rust = sym syscall_from_user,
    tf_vector = const offset_of!(TrapFrame, vector),
    tf_rip = const offset_of!(TrapFrame, rip),
    tf_rflags = const offset_of!(TrapFrame, rflags),
    tf_rsp = const offset_of!(TrapFrame, rsp),
    tf_size = const size_of::<TrapFrame>(),
    tf_words = const size_of::<TrapFrame>() / 8,
);

// The assembly above pushes the hardware part, the error code and the vector
// in this order: the frame's tail must be laid out so.
const _: () = {
    assert!(offset_of!(TrapFrame, error_code) == offset_of!(TrapFrame, vector) + 8);
    assert!(offset_of!(TrapFrame, rip) == offset_of!(TrapFrame, vector) + 16);
    assert!(offset_of!(TrapFrame, ss) == offset_of!(TrapFrame, vector) + 48);
    assert!(size_of::<TrapFrame>() == offset_of!(TrapFrame, ss) + 8);
    assert!(size_of::<TrapFrame>() == 22 * 8);
};

unsafe extern "C" {
    fn usermode_syscall_entry();
    fn usermode_run(frame: *const TrapFrame, slot: *const AtomicU64) -> i32;
    fn usermode_exit_to_kernel(status: i32) -> !;
}

/// What the return-to-user work asks for (see [`UserHandlers::return_work`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReturnWork {
    /// End the thread with this status ([`exit_to_kernel`]).
    Exit(i32),
    /// Something ran (a switch): ask again, with interrupts off.
    Again,
    /// Nothing left: return to ring 3.
    Done,
}

/// The handlers of the layers above (registered by the boot).
#[derive(Clone, Copy)]
pub(crate) struct UserHandlers {
    /// A syscall, with interrupts on: dispatch it and put the result in the
    /// frame (the `syscall` module).
    pub(crate) syscall: fn(&mut TrapFrame),
    /// The work before every return to ring 3 (Linux:
    /// exit_to_user_mode_loop; `process`): called with interrupts off, in a
    /// loop until it answers [`ReturnWork::Done`].
    pub(crate) return_work: fn() -> ReturnWork,
}

static HANDLERS: spin::Once<UserHandlers> = spin::Once::new();

/// Registers the syscall and return-to-user handlers; the first registration
/// wins (the boot does it once, before any user thread runs).
pub(crate) fn register(handlers: UserHandlers) {
    HANDLERS.call_once(|| handlers);
}

fn handlers() -> &'static UserHandlers {
    HANDLERS.get().expect("a ring-3 entry before the user handlers were registered")
}

/// Enables `syscall` on this CPU: EFER.SCE, the selectors (STAR), the entry
/// (LSTAR), the flags cleared on entry (FMASK) and user mode's GS base (0).
/// Called on every CPU after its GDT and TSS are installed.
pub(crate) fn init_this_cpu() {
    // SAFETY: SCE only makes `syscall` legal; LSTAR is set right below, before
    // any user code can run on this CPU.
    unsafe { Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
    Star::write(selectors::USER_CODE, selectors::USER_DATA, selectors::KERNEL_CODE, selectors::KERNEL_DATA)
        .expect("GDT layout does not fit STAR");
    LStar::write(VirtAddr::new(usermode_syscall_entry as *const () as u64));
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK
            | RFlags::IOPL_LOW
            | RFlags::IOPL_HIGH,
    );
    KernelGsBase::write(VirtAddr::new(0));
}

/// Makes `rsp` the kernel stack for entries from ring 3 on this CPU (per-CPU
/// block for `syscall`, TSS.rsp0 for interrupts). Called by the scheduler,
/// interrupts off, when it switches to a user task.
pub(crate) fn set_entry_stack(rsp: u64) {
    let cpu = percpu::current();
    // Relaxed: only this CPU reads these, and only in ring-3 entries, which
    // cannot happen before this CPU returns to ring 3.
    cpu.user_entry_rsp.store(rsp, Ordering::Relaxed);
    let tss = cpu.tss.load(Ordering::Relaxed);
    if tss != 0 {
        // SAFETY: `tss` is this CPU's leaked TSS (gdt::install), written only
        // by this CPU through raw pointers; rsp0 is the u64 at offset 4.
        unsafe { ((tss + 4) as *mut u64).write_unaligned(rsp) };
    }
}

/// Forces the RFLAGS user mode gets: interrupts on, IOPL 0, no NT/VM/RF.
pub(crate) fn sanitize_flags(rflags: u64) -> u64 {
    (rflags & USER_FLAGS) | FORCED_FLAGS
}

/// A frame for a thread's first entry into ring 3 at `rip` with `rsp` and
/// `rdi = arg`, every other register zero.
pub(crate) fn initial_frame(rip: u64, rsp: u64, arg: u64) -> TrapFrame {
    TrapFrame {
        rip,
        rsp,
        rdi: arg,
        cs: u64::from(selectors::USER_CODE.0),
        ss: u64::from(selectors::USER_DATA.0),
        rflags: FORCED_FLAGS,
        ..TrapFrame::default()
    }
}

/// Runs the current task in ring 3 from `frame` until the thread exits
/// ([`exit_to_kernel`]), and returns its exit status. `entry_slot` is the
/// task's entry-stack slot, which the scheduler loads at every switch to it.
///
/// The frame's selectors are forced to the user ones and its flags sanitised,
/// so no frame can enter ring 0 or run without interrupts.
pub(crate) fn run_user(frame: &TrapFrame, entry_slot: &AtomicU64) -> i32 {
    let mut frame = *frame;
    frame.cs = u64::from(selectors::USER_CODE.0);
    frame.ss = u64::from(selectors::USER_DATA.0);
    frame.rflags = sanitize_flags(frame.rflags);
    frame.vector = 0;
    frame.error_code = 0;
    x86_64::instructions::interrupts::disable();
    // SAFETY: interrupts are off; the frame is a ring-3 frame (forced above)
    // whose RIP, if bad, faults in ring 3 (reported and killed there); the slot
    // lives in the task, which outlives this call; the assembly keeps the
    // callee-saved registers and returns only through exit_to_kernel, with
    // the stack as it was at the call.
    let status = unsafe { usermode_run(&frame, entry_slot) };
    x86_64::instructions::interrupts::enable();
    status
}

/// Ends the current user thread: unwinds to its [`run_user`] call, which
/// returns `status`. Everything on the stack below is abandoned without drops.
///
/// # Safety
/// The current task must be in a `run_user` call (a user thread in a ring-3
/// entry), and no frame between here and there may own anything that needs a
/// drop (see the module docs). Interrupts must be off.
pub(crate) unsafe fn exit_to_kernel(status: i32) -> ! {
    // SAFETY: as the caller guarantees, the per-CPU entry stack is this task's
    // and holds usermode_run's saved registers.
    unsafe { usermode_exit_to_kernel(status) }
}

/// The Rust side of `syscall`: dispatch, then the return-to-user work.
extern "C" fn syscall_from_user(frame: &mut TrapFrame) {
    // Syscalls run with interrupts on (the entry had them masked only until the
    // stack switch): they sleep, wait, and must answer IPIs.
    x86_64::instructions::interrupts::enable();
    (handlers().syscall)(frame);
    prepare_return(frame);
}

/// The work before every return to ring 3 (Linux: exit_to_user_mode_loop),
/// through the registered `return_work` (end the thread if it or its process
/// is exiting, report an RCU quiescent state, switch if the tick asked for
/// it). Returns with interrupts off and the frame's flags sanitised.
pub(crate) fn prepare_return(frame: &mut TrapFrame) {
    let return_work = handlers().return_work;
    loop {
        x86_64::instructions::interrupts::disable();
        match return_work() {
            // SAFETY: called only from the entry paths of a user thread
            // (syscall_from_user, interrupt_dispatch with a ring-3 frame),
            // which own nothing; interrupts are off.
            ReturnWork::Exit(status) => unsafe { exit_to_kernel(status) },
            ReturnWork::Again => continue,
            ReturnWork::Done => break,
        }
    }
    frame.rflags = sanitize_flags(frame.rflags);
}
