//! The local APIC, in x2APIC mode (MSRs) when the CPU offers it and xAPIC mode
//! (MMIO) otherwise, behind one interface; the legacy 8259 PICs are masked
//! where the machine has them.
//!
//! What the rest of the kernel uses: [`send_ipi`] (fixed vectors, NMI, INIT,
//! start-up), [`eoi`], [`id`], and the per-CPU set-up [`init_this_cpu`].
//!
//! Ordering: an IPI often announces data written just before it (a call
//! request, a flush range). In xAPIC mode the ICR write is an uncached MMIO
//! store, which x86 does not reorder with earlier stores. In x2APIC mode the
//! ICR is an MSR, and WRMSR to the x2APIC registers is *not* serialising (SDM
//! vol. 3, 11.12.3): an `mfence; lfence` first makes earlier stores globally
//! visible before the IPI can be observed (Linux: weak_wrmsr_fence()).

use core::sync::atomic::{AtomicU8, Ordering};
use x86_64::registers::model_specific::Msr;

use super::vectors;
use crate::mm::mmio::{self, MmioRegion};
use crate::time::Deadline;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

/// Register offsets in xAPIC MMIO space; the x2APIC MSR is 0x800 + offset/16.
mod reg {
    pub(crate) const ID: u32 = 0x20;
    pub(crate) const TPR: u32 = 0x80;
    pub(crate) const EOI: u32 = 0xb0;
    pub(crate) const SVR: u32 = 0xf0;
    pub(crate) const ESR: u32 = 0x280;
    pub(crate) const ICR_LOW: u32 = 0x300;
    pub(crate) const ICR_HIGH: u32 = 0x310;
    pub(crate) const LVT_TIMER: u32 = 0x320;
    pub(crate) const TIMER_INITIAL: u32 = 0x380;
    pub(crate) const TIMER_CURRENT: u32 = 0x390;
    pub(crate) const TIMER_DIVIDE: u32 = 0x3e0;
    pub(crate) const LVT_LINT0: u32 = 0x350;
    pub(crate) const LVT_LINT1: u32 = 0x360;
    pub(crate) const LVT_ERROR: u32 = 0x370;
}

const LVT_MASKED: u32 = 1 << 16;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// The APIC's operating mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Memory-mapped registers, 8-bit APIC ids.
    XApic,
    /// MSR registers, 32-bit APIC ids, one-write ICR.
    X2Apic,
}

const MODE_UNSET: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;
static MODE: AtomicU8 = AtomicU8::new(MODE_UNSET);
static XAPIC_REGS: spin::Once<MmioRegion> = spin::Once::new();

/// The mode chosen at boot.
pub fn mode() -> Option<Mode> {
    match MODE.load(Ordering::Relaxed) {
        MODE_XAPIC => Some(Mode::XApic),
        MODE_X2APIC => Some(Mode::X2Apic),
        _ => None,
    }
}

/// Whether the CPU offers x2APIC mode (CPUID.1:ECX[21]).
pub(crate) fn x2apic_supported() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

/// Chooses the mode for all CPUs (x2APIC if offered and not refused by
/// `force_xapic`) and maps the xAPIC registers if needed; masks the 8259
/// PICs when the machine has them (`legacy_pics`: the MADT's PCAT_COMPAT on a
/// platform that is not hardware-reduced; elsewhere their ports may be
/// something else, so they are not touched). Boot CPU, once.
pub(crate) fn init_global(lapic_phys: u64, force_xapic: bool, legacy_pics: bool) -> Mode {
    if legacy_pics {
        mask_legacy_pics();
    }
    let mode = if x2apic_supported() && !force_xapic { Mode::X2Apic } else { Mode::XApic };
    if mode == Mode::XApic {
        XAPIC_REGS.call_once(|| {
            // SAFETY: the local APIC's register page (from the MADT) is device
            // memory, not RAM.
            unsafe { mmio::map(x86_64::PhysAddr::new(lapic_phys), 0x1000) }
                .unwrap_or_else(|e| panic!("cannot map the local APIC at {lapic_phys:#x}: {e:?}"))
        });
    }
    MODE.store(if mode == Mode::X2Apic { MODE_X2APIC } else { MODE_XAPIC }, Ordering::Release);
    mode
}

fn read(offset: u32) -> u32 {
    match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: x2APIC mode is enabled on this CPU (init_this_cpu) and the
            // MSR is an architectural APIC register.
            unsafe { Msr::new(0x800 + offset / 16).read() as u32 }
        }
        Some(Mode::XApic) => XAPIC_REGS.get().expect("xAPIC not mapped").read32(u64::from(offset)),
        None => panic!("local APIC used before apic::init_global"),
    }
}

fn write(offset: u32, value: u32) {
    match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: as in `read`; writing APIC registers has no memory effects.
            unsafe { Msr::new(0x800 + offset / 16).write(u64::from(value)) }
        }
        Some(Mode::XApic) => XAPIC_REGS.get().expect("xAPIC not mapped").write32(u64::from(offset), value),
        None => panic!("local APIC used before apic::init_global"),
    }
}

/// Remaps both 8259 PICs to [`vectors::LEGACY_PIC_BASE`] and masks every line:
/// the kernel uses the local APIC (and IOAPIC) only.
fn mask_legacy_pics() {
    use x86_64::instructions::port::Port;
    let (mut cmd1, mut data1) = (Port::<u8>::new(0x20), Port::<u8>::new(0x21));
    let (mut cmd2, mut data2) = (Port::<u8>::new(0xa0), Port::<u8>::new(0xa1));
    let base = vectors::LEGACY_PIC_BASE;
    // SAFETY: the standard 8259 initialisation sequence on the PC's fixed PIC
    // ports; it only changes where (masked) PIC interrupts would be delivered.
    unsafe {
        cmd1.write(0x11);
        cmd2.write(0x11);
        data1.write(base);
        data2.write(base + 8);
        data1.write(4);
        data2.write(2);
        data1.write(1);
        data2.write(1);
        data1.write(0xff);
        data2.write(0xff);
    }
}

/// Enables this CPU's local APIC in the chosen mode: spurious vector, error
/// vector, LINT0 masked, LINT1 as NMI, timer masked, task priority 0.
pub(crate) fn init_this_cpu() {
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE is architectural; setting the enable bits (and the
    // x2APIC bit in x2APIC mode, after the global enable, as the SDM requires)
    // keeps the APIC at its address.
    unsafe {
        let mut base = base_msr.read() | APIC_BASE_ENABLE;
        base_msr.write(base);
        if mode() == Some(Mode::X2Apic) {
            base |= APIC_BASE_X2APIC;
            base_msr.write(base);
        }
    }
    write(reg::TPR, 0);
    write(reg::SVR, 0x100 | u32::from(vectors::SPURIOUS));
    write(reg::LVT_ERROR, u32::from(vectors::APIC_ERROR));
    write(reg::LVT_LINT0, LVT_MASKED);
    write(reg::LVT_LINT1, 0b100 << 8); // NMI delivery
    write(reg::LVT_TIMER, LVT_MASKED);
    // The ESR is cleared by a write before reading (twice: once for stale bits).
    write(reg::ESR, 0);
    write(reg::ESR, 0);
}

/// This CPU's local APIC id.
pub fn id() -> u32 {
    match mode() {
        Some(Mode::X2Apic) => read(reg::ID),
        Some(Mode::XApic) => read(reg::ID) >> 24,
        None => core::arch::x86_64::__cpuid(1).ebx >> 24,
    }
}

/// Signals the end of an interrupt (not for spurious interrupts or NMIs).
pub(crate) fn eoi() {
    write(reg::EOI, 0);
}

/// Reads and clears the error status register.
pub(crate) fn read_error_status() -> u32 {
    write(reg::ESR, 0);
    read(reg::ESR)
}

/// Whether an IPI can reach APIC id `id` in the chosen mode: any 32-bit id
/// in x2APIC mode, ids up to 255 in xAPIC mode (its 8-bit destination field).
pub fn can_address(id: u32) -> bool {
    mode() == Some(Mode::X2Apic) || id <= 0xff
}

/// Where an IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// One CPU, by APIC id.
    Apic(u32),
    /// Every CPU but the sender.
    AllButSelf,
    /// Every CPU including the sender.
    All,
}

/// What an IPI delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// An interrupt at a vector (>= 32).
    Fixed(u8),
    /// A non-maskable interrupt: taken even with interrupts disabled.
    Nmi,
    /// INIT (assert, level-triggered): puts the target in wait-for-SIPI.
    Init,
    /// Start-up at physical page `vector * 4096`.
    Startup(u8),
}

/// Why an IPI could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiError {
    /// The previous IPI was still pending in the xAPIC's ICR after the bound.
    IcrBusy,
    /// An APIC id that does not fit the xAPIC's 8-bit destination field.
    ApicIdTooLarge(u32),
}

/// Sends an IPI. Waits (bounded, 100 ms) for the xAPIC's previous command to
/// leave the ICR; the x2APIC needs no such wait.
pub fn send_ipi(dest: Destination, delivery: Delivery) -> Result<(), IpiError> {
    let (vector, delivery_mode, level) = match delivery {
        Delivery::Fixed(v) => (v, 0b000u32, 1u32),
        Delivery::Nmi => (0, 0b100, 1),
        Delivery::Init => (0, 0b101, 1),
        Delivery::Startup(page) => (page, 0b110, 1),
    };
    let (shorthand, apic_id) = match dest {
        Destination::Apic(id) => (0b00u32, id),
        Destination::All => (0b10, 0),
        Destination::AllButSelf => (0b11, 0),
    };
    let low = u32::from(vector) | delivery_mode << 8 | level << 14 | shorthand << 18;
    x86_64::instructions::interrupts::without_interrupts(|| match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: fences only order memory accesses (see module docs).
            unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
            // SAFETY: ICR write in x2APIC mode; the value is a valid command.
            unsafe { Msr::new(0x830).write(u64::from(apic_id) << 32 | u64::from(low)) };
            Ok(())
        }
        Some(Mode::XApic) => {
            if apic_id > 0xff {
                return Err(IpiError::ApicIdTooLarge(apic_id));
            }
            let deadline = Deadline::after_ns(100_000_000);
            while read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
                if deadline.expired() {
                    return Err(IpiError::IcrBusy);
                }
                core::hint::spin_loop();
            }
            write(reg::ICR_HIGH, apic_id << 24);
            write(reg::ICR_LOW, low);
            Ok(())
        }
        None => panic!("IPI sent before apic::init_global"),
    })
}

/// How the local APIC timer counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimerMode {
    /// Counts down once.
    OneShot,
    /// Reloads the initial count at zero.
    Periodic,
    /// Fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

/// Programs the timer's LVT entry and divide register (`divide`: the SDM's
/// encoding, 0b0011 = divide by 16).
pub(crate) fn timer_configure(mode: TimerMode, vector: u8, masked: bool, divide: u32) {
    let mode_bits = match mode {
        TimerMode::OneShot => 0b00,
        TimerMode::Periodic => 0b01,
        TimerMode::TscDeadline => 0b10,
    };
    write(reg::TIMER_DIVIDE, divide);
    write(reg::LVT_TIMER, u32::from(vector) | mode_bits << 17 | if masked { LVT_MASKED } else { 0 });
}

/// Sets the timer's initial count (starts one-shot and periodic modes).
pub(crate) fn timer_set_initial_count(count: u32) {
    write(reg::TIMER_INITIAL, count);
}

/// The timer's current count.
pub(crate) fn timer_current_count() -> u32 {
    read(reg::TIMER_CURRENT)
}
