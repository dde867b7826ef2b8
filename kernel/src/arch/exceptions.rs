//! CPU exceptions: their names, the page-fault error code in words, and the
//! dispatch of vectors 0-31 to the handlers the layers above register at
//! boot ([`register`]), so arch calls nothing above it.
//!
//! Exceptions from user mode (all but NMI, double fault and machine check) go
//! to the `user` handler (`process::fault`: resolved, or the process is
//! killed, never the kernel); a kernel page fault first to
//! `kernel_page_fault` (`mm::uaccess`: a uaccess copy is resolved or returns
//! EFAULT); NMIs to `nmi` (`smp::nmi`, with this CPU's NMI depth raised);
//! breakpoints to `breakpoint`; every other kernel-mode exception, and a
//! vector with no handler, to `fatal` (`debug::exceptions`: the report with
//! registers and backtrace). Before registration (never, in practice: the
//! boot registers them before it loads the IDT) an exception halts the CPU.

use super::cpu;
use super::idt::TrapFrame;

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
    pub(crate) const PRESENT: u64 = 1 << 0;
    pub(crate) const WRITE: u64 = 1 << 1;
    pub(crate) const USER: u64 = 1 << 2;
    pub(crate) const RESERVED: u64 = 1 << 3;
    pub(crate) const FETCH: u64 = 1 << 4;
    pub(crate) const PROTECTION_KEY: u64 = 1 << 5;
    pub(crate) const SHADOW_STACK: u64 = 1 << 6;
}

/// The exception's name (vector 0-31).
pub(crate) fn name(vector: u8) -> &'static str {
    NAMES.get(usize::from(vector)).copied().unwrap_or("UNKNOWN")
}

/// The handlers of the layers above (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct Handlers {
    /// An exception taken in ring 3 (not NMI, #DF, #MC), interrupts off.
    pub(crate) user: fn(&mut TrapFrame),
    /// A kernel-mode page fault at `addr` (CR2): true if handled (the frame
    /// may have been redirected), false for a crash.
    pub(crate) kernel_page_fault: fn(frame: &mut TrapFrame, addr: u64) -> bool,
    /// An NMI (on its IST stack; the NMI depth is raised around it).
    pub(crate) nmi: fn(&mut TrapFrame),
    /// A breakpoint (int3) in kernel mode: reported, then execution goes on.
    pub(crate) breakpoint: fn(&TrapFrame),
    /// A kernel exception nothing handles, or a vector (32-255) with no
    /// handler: report and stop.
    pub(crate) fatal: fn(&TrapFrame) -> !,
}

static HANDLERS: spin::Once<Handlers> = spin::Once::new();

/// Registers the exception handlers; the first registration wins (the boot
/// does it once, before it loads the IDT).
pub(crate) fn register(handlers: Handlers) {
    HANDLERS.call_once(|| handlers);
}

fn handlers() -> &'static Handlers {
    match HANDLERS.get() {
        Some(h) => h,
        // Nothing can report yet (see the module docs).
        None => cpu::halt_forever(),
    }
}

/// Entry for vectors 0-31.
pub(crate) fn handle(frame: &mut TrapFrame) {
    let h = handlers();
    // NMI, double fault and machine check are never the user's doing.
    if frame.from_user() && !matches!(frame.vector, 2 | 8 | 18) {
        (h.user)(frame);
        return;
    }
    if frame.vector == 14 && (h.kernel_page_fault)(frame, cpu::cr2()) {
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
            (h.nmi)(frame);
            if let Some(cpu) = cpu {
                cpu.in_nmi.fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
        3 => (h.breakpoint)(frame),
        _ => (h.fatal)(frame),
    }
}

/// A vector with no registered handler.
pub(crate) fn unexpected_vector(frame: &mut TrapFrame) {
    (handlers().fatal)(frame)
}

/// Decodes a page-fault error code (and, for a kernel access to a present
/// user-half page, the supervisor protection that refused it) into words.
pub(crate) fn page_fault_cause(code: u64, addr: u64) -> &'static str {
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
