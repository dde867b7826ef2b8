//! Deliberate crashes (`crash=` boot option), to check on any machine that each
//! kind of failure produces a useful report rather than a silent reset or hang.

use crate::arch;
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
        Crash::InvalidOpcode => arch::crash::invalid_opcode(),
        Crash::DoubleFault => {
            // Point rsp at unmapped kernel memory (the MMIO region, which is
            // empty now) and push: the page fault cannot push its own frame
            // either, so the CPU raises a double fault, taken on its IST stack.
            // SAFETY: not safe: the fault is the point; nothing returns here.
            unsafe { arch::crash::double_fault(crate::mm::layout::MMIO_START + 0x10_0000) }
        }
        Crash::StackOverflow => {
            recurse(0);
            unreachable!()
        }
        Crash::TripleFault => arch::crash::triple_fault(),
        Crash::UserAccess => user_access(),
    }
}

/// Maps a user page in a fresh address space and, in a thread running in it,
/// reads the page directly instead of through `mm::uaccess`: with SMAP the
/// read faults (reported as a kernel read of a user page); without SMAP it
/// succeeds, which the panic reports.
fn user_access() -> ! {
    use crate::mm::fault::{Access, AccessKind};
    use crate::mm::mmap::{self, map};
    let mm = alloc::sync::Arc::new(crate::mm::addr_space::AddressSpace::new().expect("no address space"));
    let m = mm.clone();
    let me = crate::smp::cpu_index();
    let thread = crate::sched::spawn_in(me, "crash-useraccess", Some(mm), move || {
        let va = mmap::mmap(&m, 0, crate::mm::PAGE_SIZE, 3, map::PRIVATE | map::ANONYMOUS).expect("mmap");
        crate::mm::fault::handle(x86_64::VirtAddr::new(va.as_u64()), Access { kind: AccessKind::Write, user: false })
            .expect("fault-in of the user page");
        log::warn!("reading user page {va:#x} without uaccess (SMAP {})", arch::uaccess::smap_on());
        // SAFETY: not safe: the page is mapped in the loaded address space,
        // but the kernel may touch user memory only through uaccess; the
        // fault SMAP raises is the point.
        let v = unsafe { core::ptr::read_volatile(va.as_u64() as *const u64) };
        panic!("kernel read of user page {va:#x} returned {v:#x} instead of faulting (SMAP off)");
    })
    .expect("spawn");
    thread.join();
    unreachable!("the user-access thread returned")
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
