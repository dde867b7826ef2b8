//! What the firmware's ACPI tables say about the machine: CPUs and interrupt
//! controllers (MADT), the HPET (HPET table) and the ACPI PM timer (FADT).
//!
//! Parsed once at boot ([`init`], after the heap) into a [`Platform`] that never
//! changes afterwards ([`platform`]). Only static tables are read (no AML).
//! Invariant: a platform always exists after `init` and always lists the boot
//! CPU, enabled: a missing RSDP or a bad root table or MADT gives a warning
//! naming what was wrong and the single-CPU fallback (boot CPU only, its APIC id
//! from CPUID, local APIC at its architectural default); a bad HPET or FADT only
//! loses that timer.

pub mod early;
mod handler;
mod madt;
pub use madt::{MadtInfo, parse_bytes as parse_madt};
pub mod poweroff;
pub mod reset;
mod tables;

use alloc::vec::Vec;
use core::fmt;

use acpi::sdt::fadt::Fadt;
use acpi::sdt::hpet::HpetTable;
use acpi::sdt::madt::Madt;

/// The local APIC's architectural default physical address.
pub(crate) const DEFAULT_LOCAL_APIC_ADDRESS: u64 = 0xfee0_0000;

/// One CPU (local APIC) the firmware lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Its (x2)APIC id.
    pub apic_id: u32,
    /// Its ACPI processor UID (what NMI entries refer to).
    pub acpi_uid: u32,
    /// Usable now.
    pub enabled: bool,
    /// Not enabled, but may be brought online later (hot-plug).
    pub online_capable: bool,
}

/// An IOAPIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its APIC id.
    pub(crate) id: u8,
    /// Physical address of its registers.
    pub(crate) address: u64,
    /// The first global system interrupt it handles.
    pub gsi_base: u32,
}

/// Interrupt line polarity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Polarity {
    /// As the bus defines it (ISA: active high).
    Bus,
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// Interrupt trigger mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// As the bus defines it (ISA: edge).
    Bus,
    /// Edge triggered.
    Edge,
    /// Level triggered.
    Level,
}

/// An ISA IRQ wired to a different global system interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InterruptOverride {
    /// The ISA IRQ.
    pub(crate) isa_irq: u8,
    /// The GSI it arrives on.
    pub(crate) gsi: u32,
    /// Its polarity.
    pub(crate) polarity: Polarity,
    /// Its trigger mode.
    pub(crate) trigger: Trigger,
}

/// Which CPUs a local APIC NMI entry applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmiCpus {
    /// Every CPU.
    All,
    /// The CPU with this ACPI processor UID.
    Uid(u32),
}

/// A local APIC LINT pin wired to NMI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapicNmi {
    /// The CPUs concerned.
    pub cpus: NmiCpus,
    /// LINT0 or LINT1.
    pub lint: u8,
    /// Its polarity.
    pub(crate) polarity: Polarity,
    /// Its trigger mode.
    pub(crate) trigger: Trigger,
}

/// The HPET, from the HPET table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetInfo {
    /// Physical address of its registers.
    pub base: u64,
    /// Its sequence number.
    pub(crate) number: u8,
}

/// The ACPI PM timer (3.579545 MHz), from the FADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimerInfo {
    /// Its I/O port.
    pub port: u16,
    /// 32 bits wide (else 24).
    pub(crate) bits32: bool,
}

/// The machine as the firmware describes it (see the module docs).
#[derive(Debug)]
pub struct Platform {
    /// CPUs, enabled and online-capable; the boot CPU is always among them.
    /// Only enabled ones are started (online-capable ones would need hot-plug).
    pub cpus: Vec<Cpu>,
    /// MADT CPU entries that are neither enabled nor online-capable: counted
    /// and reported, never started or waited for.
    pub(crate) disabled_cpus: usize,
    /// The boot CPU's APIC id (from CPUID).
    pub boot_apic_id: u32,
    /// Physical address of the local APICs.
    pub local_apic_address: u64,
    /// IOAPICs.
    pub io_apics: Vec<IoApic>,
    /// ISA interrupt overrides.
    pub(crate) overrides: Vec<InterruptOverride>,
    /// Local APIC NMI wiring.
    pub(crate) lapic_nmis: Vec<LapicNmi>,
    /// Dual 8259 PICs present (the MADT's PCAT_COMPAT flag; they must be
    /// masked when the IOAPIC is used).
    pub legacy_pics: bool,
    /// The FADT says hardware-reduced ACPI: no legacy PIT and no 8259 PICs
    /// (nor a PM timer or other fixed hardware).
    pub hardware_reduced: bool,
    /// The HPET, if the firmware describes one.
    pub hpet: Option<HpetInfo>,
    /// The ACPI PM timer, if the firmware describes one.
    pub pm_timer: Option<PmTimerInfo>,
    /// The FADT's reset register, or why there is none.
    pub(crate) reset: Result<reset::ResetRegister, &'static str>,
    /// An 8042 keyboard controller (its reset line is `end=reboot`'s
    /// fallback): IAPC_BOOT_ARCH's 8042 flag, or a PC with an ACPI 1.0 FADT.
    pub(crate) has_8042: bool,
    /// Whether CPUs and interrupt controllers come from the MADT (else the
    /// single-CPU fallback).
    pub from_madt: bool,
}

impl Platform {
    /// The fallback: the boot CPU alone, nothing else known.
    fn single_cpu(boot_apic_id: u32) -> Self {
        Platform {
            cpus: alloc::vec![Cpu { apic_id: boot_apic_id, acpi_uid: 0, enabled: true, online_capable: false }],
            disabled_cpus: 0,
            boot_apic_id,
            local_apic_address: DEFAULT_LOCAL_APIC_ADDRESS,
            io_apics: Vec::new(),
            overrides: Vec::new(),
            lapic_nmis: Vec::new(),
            legacy_pics: true,
            hardware_reduced: false,
            hpet: None,
            pm_timer: None,
            reset: Err("no ACPI tables"),
            has_8042: true,
            from_madt: false,
        }
    }

    /// The enabled CPUs.
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &Cpu> {
        self.cpus.iter().filter(|c| c.enabled)
    }

    /// Whether the 8259 PICs may be programmed: the MADT says they exist
    /// (PCAT_COMPAT) and the platform is not hardware-reduced.
    pub fn has_8259_pics(&self) -> bool {
        self.legacy_pics && !self.hardware_reduced
    }

    /// Whether the legacy PIT may be used: not a hardware-reduced platform
    /// (as Linux, which installs no PIT there).
    pub fn has_pit(&self) -> bool {
        !self.hardware_reduced
    }

    /// The one-line summary for the boot log.
    pub(crate) fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

static PLATFORM: spin::Once<Platform> = spin::Once::new();

/// Reads the tables behind `rsdp` (physical address) once; later calls do
/// nothing. Needs the heap and the kernel's page tables.
pub(crate) fn init(rsdp: Option<u64>) {
    PLATFORM.call_once(|| discover(rsdp));
}

/// The platform found by [`init`] (panics before it: a boot-order bug).
pub fn platform() -> &'static Platform {
    PLATFORM.get().expect("acpi::platform() called before acpi::init()")
}

/// The boot CPU's APIC id: the x2APIC id from CPUID leaf 0xb when the CPU has
/// it, else the 8-bit id from leaf 1.
pub(crate) fn boot_apic_id() -> u32 {
    use core::arch::x86_64::__cpuid;
    if __cpuid(0).eax >= 0xb {
        let topology = __cpuid(0xb);
        if topology.ebx != 0 {
            return topology.edx;
        }
    }
    __cpuid(1).ebx >> 24
}

fn discover(rsdp: Option<u64>) -> Platform {
    let boot = boot_apic_id();
    let mut platform = Platform::single_cpu(boot);
    let fallback = "assuming a single CPU";
    let Some(rsdp) = rsdp else {
        log::warn!("ACPI: the firmware gave no RSDP; {fallback} (APIC id {boot}), no HPET, no PM timer");
        return platform;
    };
    let tables = match tables::open(rsdp) {
        Ok(t) => t,
        Err(why) => {
            log::warn!("ACPI: {why}; {fallback} (APIC id {boot}), no HPET, no PM timer");
            return platform;
        }
    };
    match tables::find::<Madt>(&tables, size_of::<Madt>() as u32).and_then(|m| m.map(|m| madt::parse(&m)).transpose()) {
        Ok(Some(info)) => {
            platform.cpus = info.cpus;
            platform.local_apic_address = info.local_apic_address;
            platform.io_apics = info.io_apics;
            platform.overrides = info.overrides;
            platform.lapic_nmis = info.lapic_nmis;
            platform.legacy_pics = info.legacy_pics;
            platform.disabled_cpus = info.disabled_cpus;
            platform.from_madt = true;
        }
        Ok(None) => log::warn!("ACPI: no MADT; {fallback} (APIC id {boot})"),
        Err(why) => log::warn!("ACPI: {why}; {fallback} (APIC id {boot})"),
    }
    match platform.cpus.iter_mut().find(|c| c.apic_id == boot) {
        Some(cpu) if !cpu.enabled => {
            log::warn!("ACPI: the MADT marks the boot CPU (APIC id {boot}) disabled; it is running, so it is enabled");
            cpu.enabled = true;
            cpu.online_capable = false;
        }
        Some(_) => {}
        None => {
            log::warn!("ACPI: the boot CPU (APIC id {boot}) is not in the MADT; added");
            platform.cpus.insert(0, Cpu { apic_id: boot, acpi_uid: u32::MAX, enabled: true, online_capable: false });
        }
    }
    if platform.local_apic_address & 0xfff != 0 {
        log::warn!("ACPI: local APIC address {:#x} is not page aligned; using the default", platform.local_apic_address);
        platform.local_apic_address = DEFAULT_LOCAL_APIC_ADDRESS;
    }
    platform.hpet = hpet(&tables);
    (platform.pm_timer, platform.hardware_reduced) = pm_timer(&tables);
    platform.reset = reset::find(&tables);
    platform.has_8042 = reset::has_8042(&tables);
    platform
}

fn hpet(tables: &tables::Tables) -> Option<HpetInfo> {
    let table = match tables::find::<HpetTable>(tables, size_of::<HpetTable>() as u32) {
        Ok(Some(t)) => t,
        Ok(None) => {
            log::info!("ACPI: no HPET table");
            return None;
        }
        Err(why) => {
            log::warn!("ACPI: {why}; no HPET");
            return None;
        }
    };
    let (space, base) = (table.base_address.address_space, table.base_address.address);
    if space != 0 || base == 0 || base & 0x3ff != 0 {
        log::warn!("ACPI: HPET base {base:#x} (address space {space}) is not a usable memory address; no HPET");
        return None;
    }
    Some(HpetInfo { base, number: table.hpet_number })
}

/// The PM timer and whether the FADT says hardware-reduced ACPI.
fn pm_timer(tables: &tables::Tables) -> (Option<PmTimerInfo>, bool) {
    // 116 bytes: the ACPI 1.0 FADT, which has the PM timer fields.
    let fadt = match tables::find::<Fadt>(tables, 116) {
        Ok(Some(t)) => t,
        Ok(None) => {
            log::warn!("ACPI: no FADT; no PM timer");
            return (None, false);
        }
        Err(why) => {
            log::warn!("ACPI: {why}; no PM timer");
            return (None, false);
        }
    };
    let hardware_reduced = { fadt.flags }.system_is_hw_reduced_acpi();
    (pm_timer_block(&fadt), hardware_reduced)
}

fn pm_timer_block(fadt: &acpi::PhysicalMapping<handler::DirectMap, Fadt>) -> Option<PmTimerInfo> {
    let bits32 = { fadt.flags }.pm_timer_is_32_bit();
    // The 64-bit X_PM_TMR_BLK ends at byte 220; shorter revision-2+ tables
    // (some old firmware) only have the 32-bit field.
    let block = if fadt.header.revision < 2 || fadt.header.length >= 220 {
        fadt.pm_timer_block().ok().flatten().map(|g| (g.address_space, g.address))
    } else {
        (fadt.pm_timer_length == 4 && fadt.pm_timer_block != 0)
            .then(|| (acpi::address::AddressSpace::SystemIo, u64::from(fadt.pm_timer_block)))
    };
    match block {
        Some((acpi::address::AddressSpace::SystemIo, port)) if port != 0 && port <= 0xfffc => {
            Some(PmTimerInfo { port: port as u16, bits32 })
        }
        Some((space, address)) => {
            log::warn!("ACPI: PM timer at {address:#x} in {space:?} space is not supported (I/O ports only)");
            None
        }
        None => {
            log::info!("ACPI: the FADT describes no PM timer");
            None
        }
    }
}

/// Displays the platform on one line (see [`Platform::summary`]).
pub(crate) struct Summary<'a>(&'a Platform);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let ids = |f: &mut fmt::Formatter<'_>, online: bool| -> fmt::Result {
            for (i, c) in p.cpus.iter().filter(|c| c.enabled != online).enumerate() {
                write!(f, "{}{}", if i == 0 { "" } else { "," }, c.apic_id)?;
            }
            Ok(())
        };
        let n = p.enabled_cpus().count();
        write!(f, "{n} CPU{} (apic ids ", if n == 1 { "" } else { "s" })?;
        ids(f, false)?;
        f.write_str(")")?;
        let hotplug = p.cpus.len() - n;
        if hotplug > 0 {
            write!(f, " + {hotplug} online-capable (apic ids ")?;
            ids(f, true)?;
            f.write_str("; not started)")?;
        }
        if p.disabled_cpus > 0 {
            write!(f, " + {} disabled (not started)", p.disabled_cpus)?;
        }
        let n = p.io_apics.len();
        write!(f, ", {n} IOAPIC{}, LAPIC at {:#x}", if n == 1 { "" } else { "s" }, p.local_apic_address)?;
        match p.hpet {
            Some(h) => write!(f, ", HPET at {:#x}", h.base)?,
            None => f.write_str(", no HPET")?,
        }
        match p.pm_timer {
            Some(t) => write!(f, ", PM timer at port {:#x} ({} bits)", t.port, if t.bits32 { 32 } else { 24 })?,
            None => f.write_str(", no PM timer")?,
        }
        match p.reset {
            Ok(r) => write!(f, ", reset {} {:#x} <- {:#x}", if r.io { "port" } else { "at" }, r.address, r.value)?,
            Err(_) if p.has_8042 => f.write_str(", no reset register (reboot by the 8042)")?,
            Err(_) => f.write_str(", no reset register")?,
        }
        if p.hardware_reduced {
            f.write_str(", hardware-reduced ACPI (no PIT, no 8259 PICs: neither touched)")?;
        } else if !p.legacy_pics {
            f.write_str(", no 8259 PICs (MADT without PCAT_COMPAT: not touched)")?;
        }
        if !p.from_madt {
            f.write_str(" [single-CPU fallback]")?;
        }
        Ok(())
    }
}

/// Logs the platform: the summary line, then one line per interrupt-routing item.
pub(crate) fn log_platform(p: &Platform) {
    log::info!("ACPI: {}", p.summary());
    for io in &p.io_apics {
        log::info!("ACPI: IOAPIC id {} at {:#x}, GSI base {}", io.id, io.address, io.gsi_base);
    }
    for o in &p.overrides {
        log::debug!("ACPI: ISA IRQ {} -> GSI {} ({:?}, {:?})", o.isa_irq, o.gsi, o.polarity, o.trigger);
    }
    for n in &p.lapic_nmis {
        log::debug!("ACPI: local APIC NMI on LINT{} for {:?} ({:?}, {:?})", n.lint, n.cpus, n.polarity, n.trigger);
    }
}
