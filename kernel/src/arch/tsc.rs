//! The time-stamp counter: the clock behind `time::now()` and every timeout.
//!
//! The frequency comes from CPUID leaf 0x15 (crystal ratio) or 0x16 (base MHz)
//! when the CPU reports them. Otherwise it is measured: early in boot against
//! PIT channel 2 (the only timer every PC has, and the only one usable before
//! ACPI is parsed), then, once ACPI is known, again against the HPET or the ACPI
//! PM timer ([`calibrate_against`]); the PIT stays the last resort.
//!
//! Measurements are robust to a vCPU being descheduled (QEMU TCG on a loaded
//! host): each window's endpoints pair a reference read with the narrowest of
//! several TSC brackets, windows with wide brackets are retried, and the median
//! window wins. Every wait is bounded. Invariant: the frequency only changes
//! through [`calibrate`] and [`set_khz`], and `time` re-bases its clock when it
//! calls the latter, so converted times stay monotonic.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// TSC frequency in kHz (0 = not calibrated).
static KHZ: AtomicU64 = AtomicU64::new(0);
/// How the frequency was found ([`Source`] as u8).
static SOURCE: AtomicU8 = AtomicU8::new(Source::Uncalibrated as u8);

/// Where the TSC frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// Not calibrated yet.
    Uncalibrated,
    /// CPUID leaf 0x15 or 0x16.
    Cpuid,
    /// PIT channel 2.
    Pit,
    /// The HPET main counter.
    Hpet,
    /// The ACPI PM timer.
    PmTimer,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Uncalibrated => "uncalibrated",
            Source::Cpuid => "cpuid",
            Source::Pit => "pit",
            Source::Hpet => "hpet",
            Source::PmTimer => "acpi-pm-timer",
        })
    }
}

/// A clock to measure the TSC against.
pub trait ReferenceClock {
    /// The counter (only the bits in [`mask`](Self::mask) are meaningful; it wraps).
    fn read(&self) -> u64;
    /// The counter's width as a mask.
    fn mask(&self) -> u64;
    /// Converts a tick count to nanoseconds.
    fn ticks_to_ns(&self, ticks: u64) -> u64;
    /// Converts nanoseconds to a tick count.
    fn ns_to_ticks(&self, ns: u64) -> u64;
}

/// Reads the time-stamp counter (not serialising; fine for timeouts and logs).
#[inline(always)]
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Determines the TSC frequency early: CPUID, else the PIT when `pit` (the
/// platform has one), else it stays uncalibrated (0) until the HPET or the
/// PM timer measures it. Must run with interrupts disabled on the boot CPU
/// before anything converts TSC values.
pub(crate) fn calibrate(pit: bool) {
    match cpuid_khz() {
        Some(khz) => set_khz(khz, Source::Cpuid),
        None if pit => set_khz(pit_calibrate_khz(20), Source::Pit),
        None => set_khz(0, Source::Uncalibrated),
    }
}

/// The frequency bounded waits assume before the TSC is calibrated: higher
/// than any CPU's, so a wait lasts at least as long as asked.
pub(crate) const UNCALIBRATED_ASSUMED_KHZ: u64 = 10_000_000;

/// Records a new frequency. Only `time` calls this after boot (it re-bases).
pub(crate) fn set_khz(khz: u64, source: Source) {
    KHZ.store(khz, Ordering::Relaxed);
    SOURCE.store(source as u8, Ordering::Relaxed);
}

/// The TSC frequency in kHz (0 before [`calibrate`]).
pub fn khz() -> u64 {
    KHZ.load(Ordering::Relaxed)
}

/// Where the frequency came from.
pub fn source() -> Source {
    match SOURCE.load(Ordering::Relaxed) {
        1 => Source::Cpuid,
        2 => Source::Pit,
        3 => Source::Hpet,
        4 => Source::PmTimer,
        _ => Source::Uncalibrated,
    }
}

/// Converts TSC ticks to nanoseconds at `khz` (0 if `khz` is 0).
pub(crate) fn ticks_to_ns_at(ticks: u64, khz: u64) -> u64 {
    if khz == 0 {
        return 0;
    }
    (ticks as u128 * 1_000_000 / khz as u128).min(u64::MAX as u128) as u64
}

/// Converts TSC ticks to nanoseconds (0 before calibration).
pub(crate) fn ticks_to_ns(ticks: u64) -> u64 {
    ticks_to_ns_at(ticks, khz())
}

/// Converts nanoseconds to TSC ticks (saturating; 0 before calibration).
pub(crate) fn ns_to_ticks(ns: u64) -> u64 {
    (ns as u128 * khz() as u128 / 1_000_000).min(u64::MAX as u128) as u64
}

/// Whether the TSC is invariant: it ticks at a constant rate in every
/// P-, C- and T-state (CPUID 0x8000_0007 EDX bit 8; Linux's
/// X86_FEATURE_NONSTOP_TSC / constant_tsc). A TSC that is not may slow down or
/// stop while a CPU idles, so its timings cannot be trusted across CPUs.
pub(crate) fn invariant() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
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

/// Counts TSC ticks over `ms` milliseconds of PIT channel 2 (1.193182 MHz),
/// gated through port 0x61 so no interrupt is involved.
pub(crate) fn pit_calibrate_khz(ms: u64) -> u64 {
    const PIT_HZ: u64 = 1_193_182;
    let count = (PIT_HZ * ms / 1000).min(0xffff) as u16;
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
        ticks * PIT_HZ / u64::from(count) / 1000
    }
}

/// Reads `reference` between two TSC reads, keeping the narrowest of a few
/// tries: (TSC at the middle of the bracket, reference value, bracket width).
fn paired_read(reference: &dyn ReferenceClock) -> (u64, u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..5 {
        let before = rdtsc();
        let value = reference.read();
        let after = rdtsc();
        let width = after.wrapping_sub(before);
        if width < best.2 {
            best = (before + width / 2, value, width);
        }
    }
    best
}

/// Measures one window of about `window_ns`: (TSC ticks, reference ns), or
/// `None` if the reference stalls or the endpoints are too uncertain.
fn measure_window(reference: &dyn ReferenceClock, window_ns: u64) -> Option<(u64, u64)> {
    let target = reference.ns_to_ticks(window_ns).max(1);
    // The bound uses the early frequency, off by far less than the 50x slack.
    let bound = match ns_to_ticks(window_ns.saturating_mul(50)) {
        0 => 10_000_000_000,
        ticks => ticks,
    };
    let (tsc0, ref0, width0) = paired_read(reference);
    loop {
        if reference.read().wrapping_sub(ref0) & reference.mask() >= target {
            break;
        }
        if rdtsc().wrapping_sub(tsc0) > bound {
            return None;
        }
        core::hint::spin_loop();
    }
    let (tsc1, ref1, width1) = paired_read(reference);
    let tsc_ticks = tsc1.wrapping_sub(tsc0);
    // Reject windows whose endpoint uncertainty exceeds 0.2% of the window.
    if (width0 + width1).saturating_mul(500) > tsc_ticks {
        return None;
    }
    Some((tsc_ticks, reference.ticks_to_ns(ref1.wrapping_sub(ref0) & reference.mask())))
}

/// Measures the TSC frequency (kHz) against `reference`: the median of
/// `windows` windows of `window_ns` each. `None` when fewer than three windows
/// could be measured. Runs with interrupts disabled.
pub(crate) fn calibrate_against(reference: &dyn ReferenceClock, windows: usize, window_ns: u64) -> Option<u64> {
    const MAX_WINDOWS: usize = 15;
    let mut khz = [0u64; MAX_WINDOWS];
    let mut n = 0;
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut attempts = 0;
        while n < windows.min(MAX_WINDOWS) && attempts < 2 * windows + 2 {
            attempts += 1;
            match measure_window(reference, window_ns) {
                Some((ticks, ns)) if ns > 0 => {
                    khz[n] = (ticks as u128 * 1_000_000 / ns as u128) as u64;
                    n += 1;
                }
                _ => {}
            }
        }
    });
    if n < 3 {
        return None;
    }
    let sorted = &mut khz[..n];
    sorted.sort_unstable();
    let median = sorted[n / 2];
    if (sorted[n - 1] - sorted[0]) * 50 > median {
        log::warn!("tsc: calibration windows disagree by more than 2% ({} .. {} kHz); using the median", sorted[0], sorted[n - 1]);
    }
    Some(median)
}

/// Compares TSC-derived time with `reference` over one window of `window_ns`:
/// (TSC-derived ns, reference ns), or `None` if the reference stalled.
pub(crate) fn compare_with(reference: &dyn ReferenceClock, window_ns: u64) -> Option<(u64, u64)> {
    let mut result = None;
    for _ in 0..3 {
        result = x86_64::instructions::interrupts::without_interrupts(|| measure_window(reference, window_ns));
        if result.is_some() {
            break;
        }
    }
    result.map(|(ticks, ref_ns)| (ticks_to_ns(ticks), ref_ns))
}
