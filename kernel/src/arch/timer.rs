//! The local APIC timer: a periodic tick on every CPU.
//!
//! In TSC-deadline mode (CPUID.1:ECX[24]) the handler re-arms an absolute TSC
//! deadline one period after the previous one, so ticks do not drift. Without
//! it the timer runs in periodic mode with a count calibrated against the TSC
//! (which is calibrated against the HPET or the ACPI PM timer).
//!
//! The tick drives scheduling decisions and RCU; it does not preempt kernel
//! code (see `sched`).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

use super::{apic, tsc, vectors};
use crate::time::Deadline;

/// Ticks per second.
pub(crate) const HZ: u64 = 250;
const IA32_TSC_DEADLINE: u32 = 0x6e0;

static DEADLINE_MODE: AtomicBool = AtomicBool::new(false);
/// Periodic mode: initial count for one tick (divide by 16).
static PERIOD_COUNT: AtomicU32 = AtomicU32::new(0);
/// TSC ticks per timer tick.
static PERIOD_TSC: AtomicU64 = AtomicU64::new(0);

/// Whether the CPU offers TSC-deadline mode.
pub(crate) fn tsc_deadline_supported() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 24) != 0
}

/// Chooses the mode and calibrates (boot CPU, once, after the TSC is
/// calibrated and the local APIC is enabled).
pub(crate) fn init_global() -> &'static str {
    let period_tsc = tsc::khz() * 1000 / HZ;
    PERIOD_TSC.store(period_tsc, Ordering::Relaxed);
    if tsc_deadline_supported() {
        DEADLINE_MODE.store(true, Ordering::Relaxed);
        return "TSC-deadline";
    }
    // Count down from the maximum for 10 ms of TSC time, divide by 16.
    apic::timer_configure(apic::TimerMode::OneShot, vectors::TIMER, true, 0b0011);
    apic::timer_set_initial_count(u32::MAX);
    let d = Deadline::after_ns(10_000_000);
    while !d.expired() {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - apic::timer_current_count();
    apic::timer_set_initial_count(0);
    let per_tick = (u64::from(elapsed) * 100 / HZ).clamp(1, u64::from(u32::MAX)) as u32;
    PERIOD_COUNT.store(per_tick, Ordering::Relaxed);
    "periodic"
}

/// Starts this CPU's tick.
pub(crate) fn start_this_cpu() {
    if DEADLINE_MODE.load(Ordering::Relaxed) {
        apic::timer_configure(apic::TimerMode::TscDeadline, vectors::TIMER, false, 0b0011);
        arm_deadline(tsc::rdtsc() + PERIOD_TSC.load(Ordering::Relaxed));
    } else {
        apic::timer_configure(apic::TimerMode::Periodic, vectors::TIMER, false, 0b0011);
        apic::timer_set_initial_count(PERIOD_COUNT.load(Ordering::Relaxed));
    }
}

fn arm_deadline(at: u64) {
    // SAFETY: IA32_TSC_DEADLINE exists in TSC-deadline mode (checked at init);
    // writing it only arms this CPU's timer. The SDM asks for a fence so the
    // earlier LVT write is ordered before the deadline write.
    unsafe {
        core::arch::asm!("mfence", options(nostack, preserves_flags));
        Msr::new(IA32_TSC_DEADLINE).write(at);
    }
}

/// Called by the timer interrupt handler: re-arms a deadline timer.
pub(crate) fn rearm() {
    if DEADLINE_MODE.load(Ordering::Relaxed) {
        let period = PERIOD_TSC.load(Ordering::Relaxed);
        // One period from now, not from the old deadline: a vCPU that was
        // descheduled for many periods must not take a burst of catch-up ticks.
        arm_deadline(tsc::rdtsc() + period);
    }
}
