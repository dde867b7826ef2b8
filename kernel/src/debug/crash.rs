//! Deliberate crashes (`crash=` boot option), to check on any machine that each
//! kind of failure produces a useful report rather than a silent reset or hang.

use crate::boot_options::Crash;

/// Performs the crash. Never returns (each path ends in the fatal handler or,
/// for a triple fault, in a CPU reset).
pub fn perform(kind: Crash) -> ! {
    log::warn!("crashing deliberately: {kind:?}");
    match kind {
        Crash::Panic => panic!("deliberate panic (crash=panic)"),
        Crash::PageFault => {
            // A canonical user-half address that nothing maps at this stage.
            let p = 0x0000_0dea_dbee_f000 as *const u64;
            // SAFETY: not safe at all: the point is the page fault it raises.
            let v = unsafe { core::ptr::read_volatile(p) };
            panic!("read of unmapped {p:p} returned {v:#x} instead of faulting");
        }
        Crash::GeneralProtection => {
            let p = 0x8000_0000_0000_0000u64 as *const u64;
            // SAFETY: not safe: a non-canonical access raises #GP, the point.
            let v = unsafe { core::ptr::read_volatile(p) };
            panic!("non-canonical read returned {v:#x}");
        }
        Crash::InvalidOpcode => {
            // SAFETY: ud2 raises #UD, which is the point.
            unsafe { core::arch::asm!("ud2") };
            panic!("ud2 returned");
        }
        Crash::DoubleFault => {
            // Point rsp at unmapped kernel memory (the MMIO region, which is
            // empty now) and push: the page fault cannot push its own frame
            // either, so the CPU raises a double fault, taken on its IST stack.
            // SAFETY: not safe: the fault is the point; nothing returns here.
            unsafe {
                core::arch::asm!(
                    "mov rsp, {bad}",
                    "push rax",
                    bad = in(reg) crate::mm::layout::MMIO_START + 0x10_0000,
                    options(noreturn)
                )
            }
        }
        Crash::StackOverflow => {
            recurse(0);
            unreachable!()
        }
        Crash::TripleFault => {
            let empty = x86_64::structures::DescriptorTablePointer { limit: 0, base: x86_64::VirtAddr::new(0) };
            // SAFETY: not safe: with an empty IDT every exception escalates to a
            // triple fault and the CPU resets, which is the point.
            unsafe {
                x86_64::instructions::tables::lidt(&empty);
                core::arch::asm!("ud2", options(noreturn));
            }
        }
    }
}

/// Recurses until the stack's guard page stops it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0; // never reached; keeps the recursion formally bounded
    }
    let mut pad = [depth; 64];
    // Keep the frame alive so the compiler cannot turn this into a loop.
    core::hint::black_box(&mut pad);
    recurse(depth + 1) + pad[1]
}
