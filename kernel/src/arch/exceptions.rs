//! CPU exceptions: reports for the ones the kernel cannot handle.
//!
//! Every kernel-mode exception except NMI and breakpoint is fatal at this stage:
//! the report names the exception, decodes the error code, prints every register,
//! CR0/CR2/CR3/CR4 and a symbolised backtrace, and diagnoses the common cause of a
//! double fault, a kernel stack overflow into a guard page. Exceptions from
//! user mode go to `process::fault` (resolved or the process is killed,
//! never the kernel); a kernel page fault on a uaccess copy goes to
//! `mm::uaccess` (resolved, or the copy returns EFAULT).

use super::cpu;
use super::idt::TrapFrame;
use crate::debug::{backtrace, fatal, symbols::Symbolized};

const NAMES: [&str; 32] = [
    "DIVIDE ERROR",
    "DEBUG",
    "NMI",
    "BREAKPOINT",
    "OVERFLOW",
    "BOUND RANGE EXCEEDED",
    "INVALID OPCODE",
    "DEVICE NOT AVAILABLE",
    "DOUBLE FAULT",
    "COPROCESSOR SEGMENT OVERRUN",
    "INVALID TSS",
    "SEGMENT NOT PRESENT",
    "STACK-SEGMENT FAULT",
    "GENERAL PROTECTION FAULT",
    "PAGE FAULT",
    "RESERVED (15)",
    "x87 FLOATING-POINT ERROR",
    "ALIGNMENT CHECK",
    "MACHINE CHECK",
    "SIMD FLOATING-POINT ERROR",
    "VIRTUALIZATION EXCEPTION",
    "CONTROL PROTECTION EXCEPTION",
    "RESERVED (22)",
    "RESERVED (23)",
    "RESERVED (24)",
    "RESERVED (25)",
    "RESERVED (26)",
    "RESERVED (27)",
    "HYPERVISOR INJECTION EXCEPTION",
    "VMM COMMUNICATION EXCEPTION",
    "SECURITY EXCEPTION",
    "RESERVED (31)",
];

/// Page-fault error code bits (Intel SDM vol. 3, 4.7).
mod pf {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const RESERVED: u64 = 1 << 3;
    pub const FETCH: u64 = 1 << 4;
    pub const PROTECTION_KEY: u64 = 1 << 5;
    pub const SHADOW_STACK: u64 = 1 << 6;
}

/// The exception's name (vector 0-31).
pub fn name(vector: u8) -> &'static str {
    NAMES.get(usize::from(vector)).copied().unwrap_or("UNKNOWN")
}

/// Entry for vectors 0-31.
pub fn handle(frame: &mut TrapFrame) {
    // NMI, double fault and machine check are never the user's doing.
    if frame.from_user() && !matches!(frame.vector, 2 | 8 | 18) {
        crate::process::fault::user_exception(frame);
        return;
    }
    if frame.vector == 14 && crate::mm::uaccess::handle_kernel_fault(frame, cpu::cr2()) {
        return;
    }
    match frame.vector {
        2 => {
            // The NMI depth lets the lock checks refuse locks in NMI context
            // (Relaxed: only this CPU reads its own depth).
            let cpu = crate::smp::percpu::try_current();
            if let Some(cpu) = cpu {
                cpu.in_nmi.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
            let expected = crate::smp::nmi::handle(frame);
            if let Some(cpu) = cpu {
                cpu.in_nmi.fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
            }
            if !expected {
                // Nobody asked: a watchdog or a debugger's NMI must not kill
                // the run. Report it and carry on.
                fatal::out(format_args!(
                    "unexpected NMI on cpu{} at {}\n",
                    crate::smp::cpu_index(),
                    Symbolized(frame.rip)
                ));
            }
        }
        3 => {
            log::warn!("breakpoint at {}", Symbolized(frame.rip));
        }
        _ => fatal_exception(frame),
    }
}

/// A vector with no registered handler.
pub fn unexpected_vector(frame: &mut TrapFrame) {
    if !fatal::begin(format_args!(
        "unexpected interrupt vector {} at {}",
        frame.vector,
        Symbolized(frame.rip)
    )) {
        fatal::end();
    }
    report_registers(frame);
    fatal::end()
}

fn fatal_exception(frame: &TrapFrame) -> ! {
    let name = NAMES[frame.vector as usize];
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

/// Decodes a page-fault error code (and, for a kernel access to a present
/// user-half page, the supervisor protection that refused it) into words.
fn page_fault_cause(code: u64, addr: u64) -> &'static str {
    let user_half = addr < 0x0000_8000_0000_0000;
    if user_half && code & (pf::PRESENT | pf::USER | pf::RESERVED) == pf::PRESENT {
        if code & pf::FETCH != 0 {
            return "SMEP: kernel instruction fetch from a user page";
        }
        if super::uaccess::smap_on() {
            return "SMAP: kernel access to a user page outside uaccess";
        }
    }
    if code & pf::RESERVED != 0 {
        return "reserved bit set in a paging entry";
    }
    if code & pf::PROTECTION_KEY != 0 {
        return "protection-key violation";
    }
    if code & pf::SHADOW_STACK != 0 {
        return "shadow-stack access";
    }
    match (code & pf::PRESENT != 0, code & pf::FETCH != 0, code & pf::WRITE != 0, code & pf::USER != 0) {
        (false, true, _, false) => "kernel instruction fetch from a not-present page",
        (false, _, true, false) => "kernel write to a not-present page",
        (false, _, false, false) => "kernel read from a not-present page",
        (true, true, _, false) => "kernel instruction fetch from a no-execute page",
        (true, _, true, false) => "kernel write to a read-only page",
        (true, _, false, false) => "kernel read: protection violation",
        (false, _, _, true) => "user access to a not-present page",
        (true, true, _, true) => "user instruction fetch from a no-execute page",
        (true, _, true, true) => "user write to a read-only or kernel page",
        (true, _, false, true) => "user read of a kernel page",
    }
}

/// Prints registers, control registers and the backtrace.
pub fn report_registers(f: &TrapFrame) {
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
