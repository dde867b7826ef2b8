//! The local APIC, in x2APIC mode (MSRs) when the CPU offers it and xAPIC mode
//! (MMIO) otherwise, behind one interface; the legacy 8259 PICs are masked
//! where the machine has them.
//!
//! What the rest of the kernel uses: [`send_ipi`] (fixed vectors, NMI, INIT,
//! start-up), [`eoi`], [`id`], the per-CPU set-up [`init_this_cpu`] and the
//! logical destinations ([`set_logical_id`], [`logical_id`]).
//!
//! Logical destinations (SDM vol. 3, 11.6.2.2): one ICR write reaches every
//! CPU whose logical id matches the destination field, so a call to several
//! CPUs is one write per *cluster* instead of one per CPU. Three models, one
//! per machine (every CPU must use the same): xAPIC *flat* (DFR all ones; the
//! 8-bit LDR is a bit mask, up to 8 CPUs in one write), xAPIC *cluster* (DFR
//! model 0; LDR = 4-bit cluster, 4-bit mask: 15 clusters of 4) and x2APIC
//! *cluster* (the LDR is read-only and derived from the x2APIC id: cluster
//! id >> 4, bit id & 15; 16 CPUs per write). Which model and which id each
//! CPU gets is the caller's policy (`smp::ipi`); this module only writes and
//! encodes them. A CPU whose LDR is 0 (not started, or not given an id)
//! matches no logical destination.
//!
//! The xAPIC send (SDM 11.6.1): the destination goes into ICR high, the
//! command into ICR low, whose write sends. ICR high keeps its value, so it
//! is written only when the destination changed since this CPU's previous
//! send (a per-CPU copy; every send runs with interrupts off and none is
//! made from NMI context, so nothing else writes ICR high in between). The
//! delivery-status bit is polled before the write on bare metal, as the SDM
//! asks; under a hypervisor (CPUID.1:ECX[31]) the ICR write is trapped and
//! the IPI delivered before the write completes (QEMU's and KVM's APICs never
//! set the bit), so the poll is skipped ([`set_icr_poll`] overrides it). An
//! IPI lost by a wrong guess would still show: every cross-CPU wait is
//! bounded and names the CPU that did not answer.
//!
//! Ordering: an IPI often announces data written just before it (a call
//! request, a flush range). In xAPIC mode the ICR write is an uncached MMIO
//! store, which x86 does not reorder with earlier stores. In x2APIC mode the
//! ICR is an MSR, and WRMSR to the x2APIC registers is *not* serialising (SDM
//! vol. 3, 11.12.3): an `mfence; lfence` first makes earlier stores globally
//! visible before the IPI can be observed (Linux: weak_wrmsr_fence()).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use x86_64::registers::model_specific::Msr;

use super::vectors;
use crate::mm::mmio::{self, MmioRegion};
use crate::smp::cpuset::MAX_CPUS;
use crate::smp::percpu;
use crate::time::Deadline;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

/// Register offsets in xAPIC MMIO space; the x2APIC MSR is 0x800 + offset/16.
mod reg {
    pub(crate) const ID: u32 = 0x20;
    pub(crate) const TPR: u32 = 0x80;
    pub(crate) const EOI: u32 = 0xb0;
    pub(crate) const LDR: u32 = 0xd0;
    pub(crate) const DFR: u32 = 0xe0;
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
const ICR_DEST_LOGICAL: u32 = 1 << 11;

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
/// Whether an xAPIC send polls the delivery-status bit first (module docs).
static ICR_POLL: AtomicBool = AtomicBool::new(true);
/// The xAPIC logical model set by [`set_logical_id`] (LOGICAL_*).
static LOGICAL_MODEL: AtomicU8 = AtomicU8::new(LOGICAL_NONE);
const LOGICAL_NONE: u8 = 0;
const LOGICAL_FLAT: u8 = 1;
const LOGICAL_CLUSTER: u8 = 2;

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
    // The hypervisor bit: the ICR is emulated (module docs).
    let emulated = core::arch::x86_64::__cpuid(1).ecx & (1 << 31) != 0;
    ICR_POLL.store(!emulated, Ordering::Relaxed);
    MODE.store(if mode == Mode::X2Apic { MODE_X2APIC } else { MODE_XAPIC }, Ordering::Release);
    mode
}

/// Whether xAPIC sends poll the ICR's delivery-status bit before writing
/// (default: on bare metal only, see the module docs).
pub(crate) fn set_icr_poll(on: bool) {
    ICR_POLL.store(on, Ordering::Relaxed);
}

/// Whether xAPIC sends poll the delivery-status bit.
pub fn icr_poll() -> bool {
    ICR_POLL.load(Ordering::Relaxed)
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

/// How logical destinations address CPUs (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalModel {
    /// xAPIC flat: one cluster, an 8-bit mask.
    XApicFlat,
    /// xAPIC cluster: clusters 0..=14 of 4 CPUs each.
    XApicCluster,
    /// x2APIC cluster: fixed by the hardware, 16 CPUs per cluster.
    X2ApicCluster,
}

impl LogicalModel {
    /// The model this machine can use with `cpus` CPUs in xAPIC mode (flat
    /// up to 8, cluster beyond), or the x2APIC's.
    pub fn for_cpus(mode: Mode, cpus: usize) -> Self {
        match mode {
            Mode::X2Apic => LogicalModel::X2ApicCluster,
            Mode::XApic if cpus <= 8 => LogicalModel::XApicFlat,
            Mode::XApic => LogicalModel::XApicCluster,
        }
    }

    /// CPUs per cluster (the width of the mask).
    pub fn cluster_width(self) -> u32 {
        match self {
            LogicalModel::XApicFlat => 8,
            LogicalModel::XApicCluster => 4,
            LogicalModel::X2ApicCluster => 16,
        }
    }

    /// How many clusters software may assign (xAPIC cluster 15 is the
    /// broadcast cluster); the x2APIC's come from the ids.
    pub fn clusters(self) -> u32 {
        match self {
            LogicalModel::XApicFlat => 1,
            LogicalModel::XApicCluster => 15,
            LogicalModel::X2ApicCluster => 1 << 16,
        }
    }
}

/// A logical destination: a cluster and a mask of CPUs in it (one bit per
/// CPU, [`LogicalModel::cluster_width`] bits). One CPU's logical id has one
/// bit; the OR of several ids in one cluster addresses all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogicalId {
    /// The cluster (0 in the flat model).
    pub cluster: u32,
    /// The CPUs of the cluster.
    pub mask: u32,
}

/// Gives this CPU the logical id `id` in `model` (xAPIC: writes DFR, then
/// LDR; call on every CPU with the same model before any logical IPI can be
/// meant for it). In x2APIC mode the LDR is read-only: nothing is written.
/// Returns the id the CPU now answers to ([`logical_id`]).
pub(crate) fn set_logical_id(model: LogicalModel, id: LogicalId) -> Option<LogicalId> {
    match (mode(), model) {
        (Some(Mode::XApic), LogicalModel::XApicFlat) => {
            assert!(id.cluster == 0 && id.mask.count_ones() == 1 && id.mask <= 0xff, "bad flat logical id {id:?}");
            LOGICAL_MODEL.store(LOGICAL_FLAT, Ordering::Relaxed);
            write(reg::DFR, 0xffff_ffff);
            write(reg::LDR, id.mask << 24);
        }
        (Some(Mode::XApic), LogicalModel::XApicCluster) => {
            assert!(id.cluster < 15 && id.mask.count_ones() == 1 && id.mask <= 0xf, "bad cluster logical id {id:?}");
            LOGICAL_MODEL.store(LOGICAL_CLUSTER, Ordering::Relaxed);
            write(reg::DFR, 0x0fff_ffff);
            write(reg::LDR, (id.cluster << 4 | id.mask) << 24);
        }
        (Some(Mode::X2Apic), LogicalModel::X2ApicCluster) => {}
        (m, _) => panic!("logical model {model:?} in APIC mode {m:?}"),
    }
    logical_id()
}

/// The logical id this CPU answers to, read back from its LDR (`None`: none
/// set, or no model chosen in xAPIC mode).
pub fn logical_id() -> Option<LogicalId> {
    let ldr = read(reg::LDR);
    let id = match (mode()?, LOGICAL_MODEL.load(Ordering::Relaxed)) {
        (Mode::X2Apic, _) => LogicalId { cluster: ldr >> 16, mask: ldr & 0xffff },
        (Mode::XApic, LOGICAL_FLAT) => LogicalId { cluster: 0, mask: ldr >> 24 },
        (Mode::XApic, LOGICAL_CLUSTER) => LogicalId { cluster: ldr >> 28, mask: (ldr >> 24) & 0xf },
        (Mode::XApic, _) => return None,
    };
    (id.mask != 0).then_some(id)
}

/// The destination field of a logical IPI to `id` in the current model.
fn logical_field(id: LogicalId) -> Result<u32, IpiError> {
    match (mode(), LOGICAL_MODEL.load(Ordering::Relaxed)) {
        (Some(Mode::X2Apic), _) if id.cluster <= 0xffff && id.mask <= 0xffff => Ok(id.cluster << 16 | id.mask),
        (Some(Mode::XApic), LOGICAL_FLAT) if id.cluster == 0 && id.mask <= 0xff => Ok(id.mask),
        (Some(Mode::XApic), LOGICAL_CLUSTER) if id.cluster < 15 && id.mask <= 0xf => Ok(id.cluster << 4 | id.mask),
        _ => Err(IpiError::BadLogical(id)),
    }
}

/// Where an IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// One CPU, by APIC id.
    Apic(u32),
    /// The CPUs of one logical cluster (see [`LogicalId`]).
    Logical(LogicalId),
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
    /// A logical destination the current model cannot encode (or none set).
    BadLogical(LogicalId),
}

/// Sends an IPI. In xAPIC mode on bare metal, waits (bounded, 100 ms) for
/// the previous command to leave the ICR (module docs); the x2APIC needs no
/// such wait.
pub fn send_ipi(dest: Destination, delivery: Delivery) -> Result<(), IpiError> {
    let (vector, delivery_mode, level) = match delivery {
        Delivery::Fixed(v) => (v, 0b000u32, 1u32),
        Delivery::Nmi => (0, 0b100, 1),
        Delivery::Init => (0, 0b101, 1),
        Delivery::Startup(page) => (page, 0b110, 1),
    };
    let (shorthand, dest_mode, field) = match dest {
        Destination::Apic(id) => (0b00u32, 0, id),
        Destination::Logical(id) => (0b00, ICR_DEST_LOGICAL, logical_field(id)?),
        Destination::All => (0b10, 0, 0),
        Destination::AllButSelf => (0b11, 0, 0),
    };
    let low = u32::from(vector) | delivery_mode << 8 | dest_mode | level << 14 | shorthand << 18;
    x86_64::instructions::interrupts::without_interrupts(|| match mode() {
        Some(Mode::X2Apic) => {
            // SAFETY: fences only order memory accesses (see module docs).
            unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
            // SAFETY: ICR write in x2APIC mode; the value is a valid command.
            unsafe { Msr::new(0x830).write(u64::from(field) << 32 | u64::from(low)) };
            Ok(())
        }
        Some(Mode::XApic) => {
            if field > 0xff {
                return Err(IpiError::ApicIdTooLarge(field));
            }
            if ICR_POLL.load(Ordering::Relaxed) {
                let deadline = Deadline::after_ns(100_000_000);
                while read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
                    if deadline.expired() {
                        return Err(IpiError::IcrBusy);
                    }
                    core::hint::spin_loop();
                }
            }
            // Shorthands ignore the destination field: leave ICR high as it is.
            let high = field << 24;
            if shorthand == 0 {
                write_icr_high(high);
            }
            write(reg::ICR_LOW, low);
            Ok(())
        }
        None => panic!("IPI sent before apic::init_global"),
    })
}

/// Per CPU: the value of its ICR high, or `ICR_HIGH_UNKNOWN`.
static ICR_HIGH: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(ICR_HIGH_UNKNOWN) }; MAX_CPUS];
/// Not a value this module writes (bits 23:0 are reserved, written as 0).
const ICR_HIGH_UNKNOWN: u32 = u32::MAX;

/// Writes ICR high unless it already holds `high` (module docs). Interrupts
/// are off: no other send on this CPU runs in between.
fn write_icr_high(high: u32) {
    let Some(cpu) = percpu::try_current().map(|c| c.index as usize) else {
        write(reg::ICR_HIGH, high);
        return;
    };
    // Relaxed: only this CPU reads or writes its entry.
    if ICR_HIGH[cpu].load(Ordering::Relaxed) != high {
        write(reg::ICR_HIGH, high);
        ICR_HIGH[cpu].store(high, Ordering::Relaxed);
    }
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
