//! The time-stamp counter: the clock behind `time::now()` and every timeout.
//!
//! The frequency comes from CPUID leaf 0x15 (crystal ratio) or 0x16 (base MHz)
//! when the CPU reports them, otherwise from a 20 ms calibration against PIT
//! channel 2 (the only timer every PC has; the SMP bring-up refines this with the
//! HPET or the ACPI PM timer when present).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// TSC ticks per microsecond, times 1024 (fixed point, so no floats are needed).
static TICKS_PER_US_X1024: AtomicU64 = AtomicU64::new(0);
/// How the frequency was found, for the boot log.
static SOURCE: spin::Once<&'static str> = spin::Once::new();

/// Reads the time-stamp counter (not serialising; fine for timeouts and logs).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Determines the TSC frequency once. Must run with interrupts disabled on the
/// boot CPU before anything converts TSC values to time.
pub fn calibrate() {
    let (khz, source) = match cpuid_khz() {
        Some(khz) => (khz, "cpuid"),
        None => (pit_calibrate_khz(), "pit"),
    };
    // khz * 1024 / 1000 = ticks per us * 1024.
    TICKS_PER_US_X1024.store(khz * 1024 / 1000, Ordering::Relaxed);
    SOURCE.call_once(|| source);
}

/// The TSC frequency in kHz (0 before [`calibrate`]).
pub fn khz() -> u64 {
    TICKS_PER_US_X1024.load(Ordering::Relaxed) * 1000 / 1024
}

/// Where the frequency came from ("cpuid" or "pit"), if calibrated.
pub fn source() -> &'static str {
    SOURCE.get().copied().unwrap_or("uncalibrated")
}

/// Converts TSC ticks to nanoseconds (0 before calibration).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let per_us = TICKS_PER_US_X1024.load(Ordering::Relaxed);
    if per_us == 0 {
        return 0;
    }
    ((ticks as u128 * 1024 * 1000) / per_us as u128) as u64
}

/// Converts nanoseconds to TSC ticks (saturating; 0 before calibration).
pub fn ns_to_ticks(ns: u64) -> u64 {
    let per_us = TICKS_PER_US_X1024.load(Ordering::Relaxed) as u128;
    ((ns as u128 * per_us) / (1024 * 1000)).min(u64::MAX as u128) as u64
}

fn cpuid_khz() -> Option<u64> {
    let max = core::arch::x86_64::__cpuid(0).eax;
    if max >= 0x15 {
        let l = core::arch::x86_64::__cpuid(0x15);
        // eax = denominator, ebx = numerator, ecx = crystal Hz (0 if unknown).
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax) / 1000);
        }
    }
    if max >= 0x16 {
        let l = core::arch::x86_64::__cpuid(0x16);
        if l.eax & 0xffff != 0 {
            return Some(u64::from(l.eax & 0xffff) * 1000);
        }
    }
    None
}

/// Counts TSC ticks over 20 ms of PIT channel 2 (1.193182 MHz), gated through
/// port 0x61 so no interrupt is involved.
fn pit_calibrate_khz() -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    const MS: u64 = 20;
    let count = (PIT_HZ * MS / 1000) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x61/0x43/0x42 are the PC speaker gate and PIT channel 2,
    // present on every PC (emulated by chipsets without a real PIT); channel 2
    // drives only the speaker, whose output we keep disabled (bit 1 clear).
    unsafe {
        let old = gate.read();
        gate.write((old & !0x02) | 0x01); // gate on, speaker off
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let start = rdtsc();
        // Bit 5 of port 0x61 goes high when the count reaches zero. Bound the
        // wait by TSC ticks so a missing PIT cannot hang the boot: 10^10 ticks
        // is several seconds on any CPU.
        while gate.read() & 0x20 == 0 {
            if rdtsc() - start > 10_000_000_000 {
                break;
            }
        }
        let ticks = rdtsc() - start;
        gate.write(old);
        ticks / MS
    }
}
