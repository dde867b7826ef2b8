//! The ACPI power-management timer: a free-running 3.579545 MHz counter, 24 or
//! 32 bits wide, read from an I/O port the FADT names.
//!
//! Probed once ([`init`]). Invariant: [`get`] returns a timer only if its port
//! was seen to count; readers mask to its width, so wrap-around (every 4.7 s at
//! 24 bits) is handled by wrapping subtraction.

use x86_64::instructions::port::Port;

use super::tsc::ReferenceClock;
use crate::time::Deadline;

/// The PM timer's frequency in Hz.
pub(crate) const HZ: u64 = 3_579_545;

/// A working PM timer.
#[derive(Clone, Copy, Debug)]
pub struct PmTimer {
    port: u16,
    mask: u64,
}

static PM_TIMER: spin::Once<Option<PmTimer>> = spin::Once::new();

/// Probes the PM timer at `port` once (later calls return the first result).
/// `None`, with a warning, if it does not count.
pub(crate) fn init(port: u16, bits32: bool) -> Option<&'static PmTimer> {
    PM_TIMER
        .call_once(|| {
            let timer = PmTimer { port, mask: if bits32 { u64::from(u32::MAX) } else { 0xff_ffff } };
            let first = timer.counter();
            // 100 us is more than 350 ticks.
            let deadline = Deadline::after_ns(100_000);
            while timer.counter() == first {
                if deadline.expired() {
                    log::warn!("pmtimer: port {port:#x} does not count; not used");
                    return None;
                }
                core::hint::spin_loop();
            }
            Some(timer)
        })
        .as_ref()
}

/// The PM timer, if [`init`] found a working one.
pub fn get() -> Option<&'static PmTimer> {
    PM_TIMER.get().and_then(Option::as_ref)
}

impl PmTimer {
    /// The counter (masked to the timer's width).
    pub fn counter(&self) -> u64 {
        // SAFETY: the FADT names this port as the PM timer, a read-only counter.
        u64::from(unsafe { Port::<u32>::new(self.port).read() }) & self.mask
    }

    /// Its I/O port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl ReferenceClock for PmTimer {
    fn read(&self) -> u64 {
        self.counter()
    }

    fn mask(&self) -> u64 {
        self.mask
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / HZ as u128) as u64
    }

    fn ns_to_ticks(&self, ns: u64) -> u64 {
        (ns as u128 * HZ as u128 / 1_000_000_000) as u64
    }
}
