//! Exceptions from user mode: a page fault first goes to the memory manager
//! (`mm::fault::handle`), a breakpoint to uprobes (`uprobes::handle_swbp`);
//! whatever cannot be resolved — and every other exception (#GP, #UD, #DE,
//! an int3 no probe handles, ...) — kills the whole process with a report
//! line, never the kernel:
//!
//! `user fault: pid P tid T addr A rip R reason ...`
//!
//! The process exits with `abi::status::KILLED_BY_FAULT` (139); its threads
//! end at their next return to user, the faulting one right after this
//! handler (`usermode::prepare_return`).

use x86_64::VirtAddr;

use super::KillReport;
use crate::arch::idt::TrapFrame;
use crate::mm::fault::{self, Access};
use crate::mm::layout::USER_END;
use crate::uprobes::Swbp;

/// Handles exception `frame.vector` taken in ring 3 (called from the
/// exception dispatcher with interrupts off).
pub(crate) fn user_exception(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    let cr2 = crate::arch::cpu::cr2();
    let reason: &str = if vector == 14 {
        let access = Access::from_error_code(frame.error_code);
        // User mode: interrupts were on; the fault handler may sleep.
        x86_64::instructions::interrupts::enable();
        let result = match VirtAddr::try_new(cr2) {
            Ok(addr) if cr2 < USER_END => fault::handle(addr, access),
            _ => Err(fault::FaultError::NotMapped),
        };
        x86_64::instructions::interrupts::disable();
        match result {
            Ok(()) => return,
            Err(e) => e.as_str(),
        }
    } else if vector == 3 {
        // A breakpoint: a uprobe's (Linux handle_swbp()) or the program's.
        // The trap left rip after the one-byte int3.
        let bp_vaddr = frame.rip.wrapping_sub(1);
        x86_64::instructions::interrupts::enable();
        // rip is a user address (ring 3); 0 - 1 is none.
        let action = match (fault::current_mm(), crate::mm::UserAddr::new(bp_vaddr)) {
            (Some(mm), Some(at)) => crate::uprobes::handle_swbp(&mm, at),
            _ => Swbp::Signal,
        };
        x86_64::instructions::interrupts::disable();
        match action {
            Swbp::Continue => return,
            Swbp::Restart => {
                frame.rip = bp_vaddr;
                return;
            }
            Swbp::Signal => "breakpoint (no uprobe can handle it)",
        }
    } else {
        crate::arch::exceptions::name(vector)
    };
    let (pid, tid) = super::current_thread().map_or((0, 0), |t| (t.process.pid, t.tid));
    let addr = if vector == 14 { cr2 } else { 0 };
    log::warn!(
        "user fault: pid {pid} tid {tid} addr {addr:#x} rip {:#x} reason {reason} (vector {vector}, error code {:#x}, cpu{}); killing the process",
        frame.rip,
        frame.error_code,
        crate::smp::cpu_index()
    );
    log::warn!(
        "  rsp {:#x} rflags {:#x} rax {:#x} rdi {:#x} rsi {:#x} rdx {:#x}",
        frame.rsp,
        frame.rflags,
        frame.rax,
        frame.rdi,
        frame.rsi,
        frame.rdx
    );
    super::kill_current(KillReport { tid, vector, addr, rip: frame.rip });
}
