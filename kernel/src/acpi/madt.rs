//! The MADT (APIC table): CPUs, IOAPICs, interrupt source overrides, local APIC
//! NMI lines and the local APIC address.
//!
//! Invariant: the entries are walked once by hand (every length non-zero,
//! inside the table, and at least the size of its entry type) before the `acpi`
//! crate's iterator, which trusts the lengths, is used; a table that fails is
//! rejected whole, so the platform is either all MADT or all fallback.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::pin::Pin;

use acpi::PhysicalMapping;
use acpi::sdt::madt::{Madt, MadtEntry};

use super::handler::DirectMap;
use super::{Cpu, InterruptOverride, IoApic, LapicNmi, NmiCpus, Polarity, Trigger};

/// What the MADT says.
pub struct MadtInfo {
    /// Enabled and online-capable CPUs, in table order, without duplicates.
    pub cpus: Vec<Cpu>,
    /// Physical address of the local APIC (the 64-bit override if present).
    pub local_apic_address: u64,
    /// The IOAPICs.
    pub io_apics: Vec<IoApic>,
    /// ISA IRQ to GSI overrides.
    pub(crate) overrides: Vec<InterruptOverride>,
    /// Which LINT pin of which local APICs carries NMI.
    pub lapic_nmis: Vec<LapicNmi>,
    /// Whether the machine also has dual 8259 PICs (PCAT_COMPAT).
    pub legacy_pics: bool,
    /// CPU entries neither enabled nor online-capable (counted, never used).
    pub disabled_cpus: usize,
}

/// The smallest valid length of each entry type read here.
fn min_entry_len(kind: u8) -> u8 {
    match kind {
        0 => 8,    // processor local APIC
        1 => 12,   // IOAPIC
        2 => 10,   // interrupt source override
        4 => 6,    // local APIC NMI
        5 => 12,   // local APIC address override
        9 => 16,   // processor local x2APIC
        0xa => 12, // local x2APIC NMI
        _ => 2,    // not read: only the header must fit
    }
}

/// Checks every entry header of the table (`bytes`: exactly the header's length).
fn check_entries(bytes: &[u8]) -> Result<(), String> {
    let mut offset = size_of::<Madt>();
    while offset < bytes.len() {
        let [kind, entry_len] = match bytes.get(offset..offset + 2) {
            Some(&[k, l]) => [k, l],
            _ => return Err(format!("MADT has a truncated entry at offset {offset:#x}")),
        };
        if entry_len < min_entry_len(kind) || usize::from(entry_len) > bytes.len() - offset {
            return Err(format!("MADT entry of type {kind} at offset {offset:#x} has a bad length {entry_len}"));
        }
        offset += usize::from(entry_len);
    }
    Ok(())
}

/// MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3.
fn inti_flags(flags: u16) -> Option<(Polarity, Trigger)> {
    let polarity = match flags & 3 {
        0 => Polarity::Bus,
        1 => Polarity::High,
        3 => Polarity::Low,
        _ => return None,
    };
    let trigger = match (flags >> 2) & 3 {
        0 => Trigger::Bus,
        1 => Trigger::Edge,
        3 => Trigger::Level,
        _ => return None,
    };
    Some((polarity, trigger))
}

/// Reads the MADT.
pub(crate) fn parse(madt: &PhysicalMapping<DirectMap, Madt>) -> Result<MadtInfo, String> {
    let len = madt.get().header.length as usize;
    if len < size_of::<Madt>() {
        return Err(format!("MADT is {len} bytes, shorter than its header"));
    }
    // SAFETY: tables::find mapped the whole table (its header's length).
    let bytes = unsafe { core::slice::from_raw_parts(madt.virtual_start.as_ptr().cast::<u8>(), len) };
    parse_bytes(bytes)
}

/// Reads a MADT from its bytes (the table as the firmware wrote it: header,
/// then entries up to the header's length, which must fit in `bytes`). The
/// firmware's table goes through [`parse`]; this also takes synthetic tables
/// (the x2APIC entries with ids above 255 that QEMU under TCG cannot make).
pub fn parse_bytes(bytes: &[u8]) -> Result<MadtInfo, String> {
    if bytes.len() < size_of::<Madt>() {
        return Err(format!("MADT is {} bytes, shorter than its header", bytes.len()));
    }
    // SAFETY: `Madt` is a packed (alignment 1) plain-data struct and `bytes`
    // holds at least its size; it is only read, for as long as `bytes` lives.
    let table: Pin<&Madt> = unsafe { Pin::new_unchecked(&*bytes.as_ptr().cast::<Madt>()) };
    let len = table.header.length;
    if (len as usize) < size_of::<Madt>() || len as usize > bytes.len() {
        return Err(format!("MADT length {len} does not fit its {} bytes", bytes.len()));
    }
    check_entries(&bytes[..len as usize])?;
    let mut info = MadtInfo {
        cpus: Vec::new(),
        local_apic_address: u64::from(table.local_apic_address),
        io_apics: Vec::new(),
        overrides: Vec::new(),
        lapic_nmis: Vec::new(),
        legacy_pics: table.supports_8259(),
        disabled_cpus: 0,
    };
    let mut disabled = 0;
    for entry in table.entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                add_cpu(&mut info.cpus, &mut disabled, u32::from(e.apic_id), u32::from(e.processor_id), e.flags)
            }
            MadtEntry::LocalX2Apic(e) => add_cpu(&mut info.cpus, &mut disabled, e.x2apic_id, e.processor_uid, e.flags),
            MadtEntry::IoApic(e) => info.io_apics.push(IoApic {
                id: e.io_apic_id,
                address: u64::from(e.io_apic_address),
                gsi_base: e.global_system_interrupt_base,
            }),
            MadtEntry::InterruptSourceOverride(e) => {
                let (bus, irq, gsi, flags) = (e.bus, e.irq, e.global_system_interrupt, e.flags);
                match inti_flags(flags) {
                    Some((polarity, trigger)) if bus == 0 => {
                        info.overrides.push(InterruptOverride { isa_irq: irq, gsi, polarity, trigger })
                    }
                    _ => log::warn!("ACPI: ignoring interrupt override bus {bus} irq {irq} flags {flags:#x}"),
                }
            }
            MadtEntry::LocalApicNmi(e) => {
                let cpus = if e.processor_id == 0xff { NmiCpus::All } else { NmiCpus::Uid(u32::from(e.processor_id)) };
                push_nmi(&mut info.lapic_nmis, cpus, e.nmi_line, e.flags);
            }
            MadtEntry::X2ApicNmi(e) => {
                let cpus = if e.processor_uid == u32::MAX { NmiCpus::All } else { NmiCpus::Uid(e.processor_uid) };
                push_nmi(&mut info.lapic_nmis, cpus, e.nmi_line, e.flags);
            }
            MadtEntry::LocalApicAddressOverride(e) => info.local_apic_address = e.local_apic_address,
            _ => {}
        }
    }
    info.disabled_cpus = disabled;
    if info.cpus.is_empty() {
        return Err(String::from("MADT lists no usable CPU"));
    }
    Ok(info)
}

fn add_cpu(cpus: &mut Vec<Cpu>, disabled: &mut usize, apic_id: u32, acpi_uid: u32, flags: u32) {
    let enabled = flags & 1 != 0;
    let online_capable = !enabled && flags & 2 != 0;
    if !enabled && !online_capable {
        *disabled += 1;
        return;
    }
    if cpus.iter().any(|c| c.apic_id == apic_id) {
        log::warn!("ACPI: MADT lists APIC id {apic_id} twice (ACPI uid {acpi_uid}); the first entry is kept");
        return;
    }
    cpus.push(Cpu { apic_id, acpi_uid, enabled, online_capable });
}

fn push_nmi(nmis: &mut Vec<LapicNmi>, cpus: NmiCpus, lint: u8, flags: u16) {
    match inti_flags(flags) {
        Some((polarity, trigger)) if lint <= 1 => nmis.push(LapicNmi { cpus, lint, polarity, trigger }),
        _ => log::warn!("ACPI: ignoring local APIC NMI entry {cpus:?} LINT{lint} flags {flags:#x}"),
    }
}
