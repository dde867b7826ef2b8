//! Time since boot, from the TSC.
//!
//! The clock starts early ([`init`], TSC frequency from CPUID or the PIT) so
//! the log has timestamps from the start, and is refined once ACPI has named
//! the HPET and the PM timer ([`recalibrate`]). A frequency change starts a new
//! *epoch* (TSC value, nanoseconds at that value, frequency) a little in the
//! future of the switch, with its nanoseconds computed by the old epoch: so
//! `now_ns()` is continuous and monotonic across the switch. Epochs are written
//! once before they are published and never changed, so readers (the logger,
//! NMI handlers included) need no lock.
//!
//! `now_ns()` is monotonic on one CPU; across CPUs it relies on the TSCs being
//! synchronised (true under QEMU and on CPUs with an invariant TSC, which the SMP
//! bring-up checks).

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch::tsc::{self, ReferenceClock, Source};

/// One clock epoch: from TSC `base_tsc` on, time is `base_ns` plus the ticks
/// since, at `khz`.
struct Epoch {
    base_tsc: AtomicU64,
    base_ns: AtomicU64,
    khz: AtomicU64,
}

/// How many frequency changes the clock can take (the boot needs two epochs).
const MAX_EPOCHS: usize = 4;
static EPOCHS: [Epoch; MAX_EPOCHS] =
    [const { Epoch { base_tsc: AtomicU64::new(0), base_ns: AtomicU64::new(0), khz: AtomicU64::new(0) } }; MAX_EPOCHS];
/// Number of published epochs; the last one is current (0 = clock not started).
static PUBLISHED: AtomicUsize = AtomicUsize::new(0);

/// Calibrates the TSC early and starts the clock. Called once on the boot CPU.
/// `pit`: whether the platform has a legacy PIT (false on hardware-reduced
/// ACPI platforms: the clock then reads 0 until [`recalibrate`], unless CPUID
/// reports the frequency).
pub(crate) fn init(pit: bool) {
    tsc::calibrate(pit);
    EPOCHS[0].base_tsc.store(tsc::rdtsc(), Ordering::Relaxed);
    EPOCHS[0].khz.store(tsc::khz(), Ordering::Relaxed);
    PUBLISHED.store(1, Ordering::Release);
}

/// Nanoseconds since [`init`] (0 before it).
pub fn now_ns() -> u64 {
    let n = PUBLISHED.load(Ordering::Acquire);
    if n == 0 {
        return 0;
    }
    let e = &EPOCHS[n - 1];
    let ticks = tsc::rdtsc().saturating_sub(e.base_tsc.load(Ordering::Relaxed));
    e.base_ns.load(Ordering::Relaxed) + tsc::ticks_to_ns_at(ticks, e.khz.load(Ordering::Relaxed))
}

/// Switches the clock to `khz` without a jump (see the module docs).
fn rebase(khz: u64, source: Source) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let n = PUBLISHED.load(Ordering::Acquire);
        if n == 0 || n == MAX_EPOCHS {
            log::warn!("time: cannot change the TSC frequency now (epoch {n}); keeping {} kHz", tsc::khz());
            return;
        }
        let old = &EPOCHS[n - 1];
        // 50 us ahead: readers of either epoch before that TSC value see at most
        // `base_ns`, so no reader can see time go back across the switch.
        let switch = tsc::rdtsc() + tsc::ns_to_ticks(50_000);
        let old_ticks = switch.saturating_sub(old.base_tsc.load(Ordering::Relaxed));
        let base_ns = old.base_ns.load(Ordering::Relaxed) + tsc::ticks_to_ns_at(old_ticks, old.khz.load(Ordering::Relaxed));
        let new = &EPOCHS[n];
        new.base_tsc.store(switch, Ordering::Relaxed);
        new.base_ns.store(base_ns, Ordering::Relaxed);
        new.khz.store(khz, Ordering::Relaxed);
        tsc::set_khz(khz, source);
        PUBLISHED.store(n + 1, Ordering::Release);
    })
}

/// Windows per calibration and their length: 5 x 10 ms.
const WINDOWS: usize = 5;
const WINDOW_NS: u64 = 10_000_000;

/// Refines the TSC frequency with the best timer the platform has: kept as is
/// when CPUID reports it, else measured against the HPET, else the ACPI PM
/// timer, else (last resort) the PIT again where the platform has one (`pit`).
/// The caller probes the HPET and the PM timer (drivers above this layer) and
/// passes what it found.
pub(crate) fn recalibrate(hpet: Option<&dyn ReferenceClock>, pm_timer: Option<&dyn ReferenceClock>, pit: bool) {
    if tsc::invariant() {
        log::info!("time: TSC invariant (CPUID 0x80000007 EDX[8])");
    } else {
        log::warn!(
            "time: TSC NOT invariant (CPUID 0x80000007 EDX[8] clear): its rate may change or stop in \
             power states; timings on this machine are suspect"
        );
    }
    let early = tsc::khz();
    if tsc::source() == Source::Cpuid {
        log::info!("time: TSC {early} kHz as CPUID reports it; not re-measured");
        return;
    }
    let mut result = None;
    if let Some(h) = hpet {
        result = tsc::calibrate_against(h, WINDOWS, WINDOW_NS).map(|k| (k, Source::Hpet));
        if result.is_none() {
            log::warn!("time: TSC calibration against the HPET failed (stalled or too noisy)");
        }
    }
    if let (None, Some(p)) = (result, pm_timer) {
        result = tsc::calibrate_against(p, WINDOWS, WINDOW_NS).map(|k| (k, Source::PmTimer));
        if result.is_none() {
            log::warn!("time: TSC calibration against the ACPI PM timer failed (stalled or too noisy)");
        }
    }
    let (khz, source) = match result {
        Some(r) => r,
        None if pit => {
            log::warn!("time: no HPET or PM timer to calibrate the TSC; using the PIT (least precise)");
            // A late PIT edge only lengthens a run, so the shortest run is best.
            let best = (0..3).map(|_| tsc::pit_calibrate_khz(10)).min().unwrap_or(early);
            (best, Source::Pit)
        }
        None => {
            // Hardware-reduced ACPI without an HPET: nothing left to measure with.
            const GUESS_KHZ: u64 = 2_000_000;
            log::error!(
                "time: no HPET, no PM timer and no PIT (hardware-reduced ACPI) to calibrate the TSC; \
                 assuming {GUESS_KHZ} kHz: every time figure on this machine is off by an unknown factor"
            );
            (GUESS_KHZ, Source::Uncalibrated)
        }
    };
    if khz == 0 {
        log::warn!("time: TSC calibration gave 0 kHz; keeping {early} kHz");
        return;
    }
    rebase(khz, source);
    if early == 0 {
        log::info!("time: TSC {khz} kHz from {source} (no early estimate: no PIT on this platform)");
    } else {
        let ppm = (khz as i128 - early as i128) * 1_000_000 / early as i128;
        log::info!("time: TSC {khz} kHz from {source} (early PIT estimate {early} kHz, {ppm:+} ppm)");
    }
}

/// The result of [`verify_tsc`].
#[derive(Clone, Copy, Debug)]
pub struct TscCheck {
    /// The timer compared against.
    pub reference: Source,
    /// Elapsed time by the TSC.
    pub tsc_ns: u64,
    /// Elapsed time by the reference.
    pub reference_ns: u64,
}

impl TscCheck {
    /// The TSC's deviation from the reference, in parts per million.
    pub fn error_ppm(&self) -> i64 {
        ((self.tsc_ns as i128 - self.reference_ns as i128) * 1_000_000 / self.reference_ns.max(1) as i128) as i64
    }
}

/// Checks over about 50 ms that TSC-derived time agrees with the HPET or the
/// PM timer (preferring one the TSC was not calibrated against) within 2%.
/// `Err` says why not: no reference timer, a stalled one, or disagreement.
/// `hpet` and `pm_timer` are the timers the boot found (`arch::hpet::get`,
/// `arch::pmtimer::get`).
pub fn verify_tsc(hpet: Option<&dyn ReferenceClock>, pm_timer: Option<&dyn ReferenceClock>) -> Result<TscCheck, String> {
    let hpet = hpet.map(|h| (h, Source::Hpet));
    let pm = pm_timer.map(|p| (p, Source::PmTimer));
    let (reference, source) = match (tsc::source(), hpet, pm) {
        (Source::Hpet, _, Some(pm)) => pm,
        (_, Some(hpet), _) => hpet,
        (_, None, Some(pm)) => pm,
        (_, None, None) => return Err(String::from("no HPET or PM timer to check the TSC against")),
    };
    let (tsc_ns, reference_ns) =
        tsc::compare_with(reference, 50_000_000).ok_or_else(|| format!("{source} stalled or too noisy"))?;
    let check = TscCheck { reference: source, tsc_ns, reference_ns };
    if check.error_ppm().abs() > 20_000 {
        return Err(format!("TSC says {tsc_ns} ns, {source} says {reference_ns} ns ({} ppm)", check.error_ppm()));
    }
    Ok(check)
}

/// A deadline `ns` nanoseconds from now, for bounded waits.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(u64);

impl Deadline {
    /// A deadline `ns` from now.
    /// Before the TSC is calibrated it assumes
    /// [`tsc::UNCALIBRATED_ASSUMED_KHZ`]: the wait is then longer, never shorter.
    pub fn after_ns(ns: u64) -> Self {
        let ticks = match tsc::khz() {
            0 => (ns as u128 * tsc::UNCALIBRATED_ASSUMED_KHZ as u128 / 1_000_000).min(u64::MAX as u128) as u64,
            _ => tsc::ns_to_ticks(ns),
        };
        Deadline(tsc::rdtsc().saturating_add(ticks))
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        tsc::rdtsc() >= self.0
    }
}
