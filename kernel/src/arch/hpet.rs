//! The HPET (high precision event timer), used here as a clock: its main
//! counter, with the period its capabilities register gives.
//!
//! Probed once ([`init`]) at the address the ACPI HPET table names. Invariant:
//! [`get`] returns an HPET only if its capabilities were sane (a vendor id, a
//! period of at most 100 ns as the specification requires), its counter is
//! enabled, and the counter was seen to advance; otherwise `init` warned and the
//! machine has no HPET as far as the kernel is concerned.

use x86_64::PhysAddr;

use super::tsc::ReferenceClock;
use crate::mm::mmio::{self, MmioRegion};
use crate::time::Deadline;

/// General capabilities and id register.
pub const CAPABILITIES: u64 = 0x000;
/// General configuration register (bit 0: counter enabled).
pub(crate) const CONFIG: u64 = 0x010;
/// Main counter value.
pub const MAIN_COUNTER: u64 = 0x0f0;
/// Size of the register block.
pub const REGISTER_BLOCK: u64 = 0x400;
/// Largest period the specification allows: 100 ns in femtoseconds.
pub(crate) const MAX_PERIOD_FS: u64 = 100_000_000;

const CONFIG_ENABLE: u64 = 1;
/// Capabilities bit 13: the main counter is 64 bits wide.
const CAP_COUNTER_64: u64 = 1 << 13;

/// A working HPET.
#[derive(Debug)]
pub struct Hpet {
    regs: MmioRegion,
    period_fs: u64,
    mask: u64,
}

static HPET: spin::Once<Option<Hpet>> = spin::Once::new();

/// Probes the HPET at physical `base` once (later calls return the first
/// result). `None`, with a warning, if it is absent or broken.
pub(crate) fn init(base: u64) -> Option<&'static Hpet> {
    HPET.call_once(|| match probe(base) {
        Ok(hpet) => Some(hpet),
        Err(why) => {
            log::warn!("hpet: {why}; not used");
            None
        }
    })
    .as_ref()
}

/// The HPET, if [`init`] found a working one.
pub fn get() -> Option<&'static Hpet> {
    HPET.get().and_then(Option::as_ref)
}

fn probe(base: u64) -> Result<Hpet, alloc::string::String> {
    use alloc::format;
    // SAFETY: the ACPI HPET table names this block as the HPET's registers.
    let regs = unsafe { mmio::map(PhysAddr::new(base), REGISTER_BLOCK) }
        .map_err(|e| format!("cannot map registers at {base:#x} ({e:?})"))?;
    let caps = regs.read64(CAPABILITIES);
    if caps == u64::MAX {
        return Err(format!("no device answers at {base:#x}"));
    }
    let period_fs = caps >> 32;
    let vendor = (caps >> 16) & 0xffff;
    if vendor == 0 || period_fs == 0 || period_fs > MAX_PERIOD_FS {
        return Err(format!("implausible capabilities {caps:#018x} at {base:#x}"));
    }
    let mask = if caps & CAP_COUNTER_64 != 0 { u64::MAX } else { u64::from(u32::MAX) };
    let config = regs.read64(CONFIG);
    if config & CONFIG_ENABLE == 0 {
        regs.write64(CONFIG, config | CONFIG_ENABLE);
    }
    let hpet = Hpet { regs, period_fs, mask };
    // Sees the counter move within 1 ms (at least 10 ticks at the slowest period).
    let first = hpet.counter();
    let deadline = Deadline::after_ns(1_000_000);
    while hpet.counter() == first {
        if deadline.expired() {
            return Err(format!("main counter at {base:#x} does not advance"));
        }
        core::hint::spin_loop();
    }
    log::info!(
        "hpet: at {base:#x}, {} MHz, {}-bit counter, vendor {vendor:#06x}",
        1_000_000_000 / period_fs,
        if mask == u64::MAX { 64 } else { 32 }
    );
    Ok(hpet)
}

impl Hpet {
    /// The main counter.
    pub(crate) fn counter(&self) -> u64 {
        self.regs.read64(MAIN_COUNTER) & self.mask
    }

    /// The register block.
    pub fn registers(&self) -> MmioRegion {
        self.regs
    }
}

impl ReferenceClock for Hpet {
    fn read(&self) -> u64 {
        self.counter()
    }

    fn mask(&self) -> u64 {
        self.mask
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * self.period_fs as u128 / 1_000_000).min(u64::MAX as u128) as u64
    }

    fn ns_to_ticks(&self, ns: u64) -> u64 {
        (ns as u128 * 1_000_000 / self.period_fs as u128).min(u64::MAX as u128) as u64
    }
}
