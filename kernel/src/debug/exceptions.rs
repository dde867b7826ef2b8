//! Reports of the CPU exceptions the kernel cannot handle, and the kernel's
//! handlers for NMIs and breakpoints: registered with `arch::exceptions` at
//! boot (see [`handlers`]), so the arch layer calls nothing above it.
//!
//! Every kernel-mode exception except NMI and breakpoint is fatal: the report
//! names the exception, decodes the error code, prints every register,
//! CR0/CR2/CR3/CR4 and a symbolised backtrace, and diagnoses the common cause
//! of a double fault, a kernel stack overflow into a guard page.

use crate::arch::cpu;
use crate::arch::exceptions::{self, name, page_fault_cause};
use crate::arch::idt::TrapFrame;
use crate::debug::{backtrace, fatal, symbols::Symbolized};

/// The handlers the boot registers with `arch::exceptions`: user exceptions
/// to `process::fault`, kernel page faults to `mm::uaccess`, NMIs to
/// `smp::nmi`, the rest reported here.
pub(crate) fn handlers() -> exceptions::Handlers {
    exceptions::Handlers {
        user: crate::process::fault::user_exception,
        kernel_page_fault: crate::mm::uaccess::handle_kernel_fault,
        nmi,
        breakpoint,
        fatal: fatal_exception,
    }
}

fn nmi(frame: &mut TrapFrame) {
    if !crate::smp::nmi::handle(frame) {
        // Nobody asked: a watchdog or a debugger's NMI must not kill the
        // run. Report it and carry on.
        fatal::out(format_args!("unexpected NMI on cpu{} at {}\n", crate::smp::cpu_index(), Symbolized(frame.rip)));
    }
}

fn breakpoint(frame: &TrapFrame) {
    log::warn!("breakpoint at {}", Symbolized(frame.rip));
}

/// A fatal exception, or an interrupt vector with no handler (32-255).
fn fatal_exception(frame: &TrapFrame) -> ! {
    if frame.vector >= 32 {
        if !fatal::begin(format_args!("unexpected interrupt vector {} at {}", frame.vector, Symbolized(frame.rip))) {
            fatal::end();
        }
        report_registers(frame);
        fatal::end()
    }
    let name = name(frame.vector as u8);
    let cr2 = cpu::cr2();
    let overflow = match frame.vector {
        // A page fault in a guard page is an overflow; the CPU could not push the
        // fault's frame on the overflowed stack, so it usually arrives as a
        // double fault with CR2 still naming the guard page.
        8 | 14 => crate::mm::stack::guard_page_owner(cr2),
        _ => None,
    };
    let started = match (overflow, frame.vector) {
        (Some(stack), _) => fatal::begin(format_args!(
            "{name}: kernel stack overflow: {cr2:#x} is the guard page of stack '{stack}' (RIP {:#x})",
            frame.rip
        )),
        (None, 14) => fatal::begin(format_args!(
            "{name} at address {cr2:#x} ({}) at RIP {}",
            page_fault_cause(frame.error_code, cr2),
            Symbolized(frame.rip)
        )),
        (None, _) => fatal::begin(format_args!(
            "{name} (vector {}, error code {:#x}) at RIP {}",
            frame.vector,
            frame.error_code,
            Symbolized(frame.rip)
        )),
    };
    if !started {
        fatal::end();
    }
    fatal::out(format_args!(
        "  vector {} error code {:#x} on cpu{}{}\n",
        frame.vector,
        frame.error_code,
        crate::smp::cpu_index(),
        if frame.from_user() { " in user mode" } else { " in kernel mode" }
    ));
    if frame.vector == 14 || frame.vector == 8 {
        fatal::out(format_args!("  CR2 (fault address) {cr2:#018x}\n"));
    }
    report_registers(frame);
    fatal::end()
}


/// Prints registers, control registers and the backtrace.
pub(crate) fn report_registers(f: &TrapFrame) {
    let o = fatal::out;
    o(format_args!("  RIP {}\n", Symbolized(f.rip)));
    o(format_args!("  CS  {:#06x} RFLAGS {:#018x} RSP {:#018x} SS {:#06x}\n", f.cs, f.rflags, f.rsp, f.ss));
    o(format_args!("  RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}\n", f.rax, f.rbx, f.rcx, f.rdx));
    o(format_args!("  RSI {:#018x} RDI {:#018x} RBP {:#018x} R8  {:#018x}\n", f.rsi, f.rdi, f.rbp, f.r8));
    o(format_args!("  R9  {:#018x} R10 {:#018x} R11 {:#018x} R12 {:#018x}\n", f.r9, f.r10, f.r11, f.r12));
    o(format_args!("  R13 {:#018x} R14 {:#018x} R15 {:#018x}\n", f.r13, f.r14, f.r15));
    o(format_args!(
        "  CR0 {:#018x} CR2 {:#018x} CR3 {:#018x} CR4 {:#018x}\n",
        cpu::cr0(),
        cpu::cr2(),
        cpu::cr3(),
        cpu::cr4()
    ));
    if f.from_user() {
        o(format_args!("  (user-mode context: no kernel backtrace)\n"));
    } else {
        backtrace::print(f.rip, f.rbp, &mut |a| o(a));
    }
}
