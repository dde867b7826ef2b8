//! `debug.wedge_cpu=N`: a CPU that stops answering, on purpose.
//!
//! After boot, CPU N is sent a cross-CPU call whose function never returns:
//! it halts with interrupts disabled inside the CALL_FUNCTION handler, as a
//! CPU hung in an interrupts-off section (a firmware SMI storm, a livelock)
//! would. It answers no further IPI. Once it is wedged, the boot CPU makes
//! the next shootdown itself (a one-page kernel-range TLB flush, as after
//! unmapping kernel memory; it goes to every online CPU, so the wedged one is
//! a target whatever the workload would have touched): the wait runs into
//! its bound (`smp.call_timeout_ms`), names the CPU and asks it by NMI where
//! it is; NMIs still reach it, and its dump shows this module's function with
//! interrupts OFF. The shootdown's caller then ends the run with the fatal
//! status (a missed TLB flush cannot be recovered): never a silent hang.
//!
//! The call is not waited for (the wedged CPU never acknowledges it); its
//! request stays parked in `smp::call` for the rest of the run.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::smp::{self, CpuSet};
use crate::time::Deadline;

/// Set by the wedged CPU just before it halts.
static WEDGED: AtomicBool = AtomicBool::new(false);

/// Why a wedge cannot be done (a usage error: the option names a CPU that is
/// not there).
pub(crate) fn check(cpu: usize) -> Result<(), alloc::string::String> {
    let online = smp::online_cpus();
    if cpu == smp::cpu_index() || !online.contains(cpu) {
        return Err(alloc::format!(
            "debug.wedge_cpu={cpu}: not an online CPU other than the boot CPU ({} online: 0..={})",
            online.len(),
            online.iter().last().unwrap_or(0)
        ));
    }
    Ok(())
}

/// Wedges `cpu` (checked by [`check`]): it halts with interrupts off for good;
/// then makes a shootdown, which does not return (see the module docs).
pub(crate) fn wedge_and_shoot_down(cpu: usize) -> ! {
    log::warn!("debug.wedge_cpu={cpu}: wedging cpu{cpu} with interrupts off");
    let mut target = CpuSet::EMPTY;
    target.insert(cpu);
    // Dropped unwaited: smp::call parks the request the CPU never acknowledges.
    drop(smp::call::call(target, wedged_here));
    let deadline = Deadline::after_ns(smp::call::call_timeout_ns());
    // Acquire: pairs with the wedged CPU's Release store.
    while !WEDGED.load(Ordering::Acquire) {
        if deadline.expired() {
            panic!("debug.wedge_cpu={cpu}: cpu{cpu} did not take the wedging IPI (already not answering)");
        }
        core::hint::spin_loop();
    }
    log::warn!("debug.wedge_cpu={cpu}: cpu{cpu} is wedged; a kernel TLB shootdown to every CPU must now time out naming it");
    let page = x86_64::VirtAddr::new(crate::mm::layout::MMIO_START);
    crate::tlb::flush_tlb_kernel_range(page, page + 4096u64);
    panic!("debug.wedge_cpu={cpu}: the shootdown returned although cpu{cpu} is wedged with interrupts off");
}

/// Runs on the wedged CPU in its CALL_FUNCTION handler (interrupts off).
#[inline(never)]
fn wedged_here() {
    // Release: the boot CPU's Acquire sees the CPU inside the wedge.
    WEDGED.store(true, Ordering::Release);
    crate::arch::cpu::halt_forever()
}
