//! Resetting the machine through the FADT's reset register (ACPI 2.0+:
//! `RESET_REG` and `RESET_VALUE`, offered when the fixed-feature flag
//! RESET_REG_SUP is set). Only static table fields: no AML.
//!
//! Powering off (S5) is in `poweroff`: its sleep types are AML.

use acpi::address::AddressSpace;
use acpi::sdt::fadt::Fadt;
use acpi::Handler;

use super::handler::DirectMap;
use super::tables;

/// The reset register, as the FADT gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResetRegister {
    /// I/O port (`true`) or memory (`false`).
    pub(crate) io: bool,
    /// The port or physical address.
    pub(crate) address: u64,
    /// The byte to write.
    pub(crate) value: u8,
}

/// Reads the reset register from the FADT; `Err` says why there is none.
pub(super) fn find(tables: &tables::Tables) -> Result<ResetRegister, &'static str> {
    // 116 bytes: an ACPI 1.0 FADT; RESET_REG and RESET_VALUE end at 129 (2.0).
    let fadt = match tables::find::<Fadt>(tables, 116) {
        Ok(Some(f)) => f,
        Ok(None) => return Err("no FADT"),
        Err(_) => return Err("the FADT is unusable"),
    };
    if fadt.header.revision < 2 || fadt.header.length < 129 {
        return Err("the FADT predates ACPI 2.0 (no reset register)");
    }
    if !{ fadt.flags }.supports_system_reset_via_fadt() {
        return Err("the FADT does not offer its reset register (RESET_REG_SUP clear)");
    }
    let reg = fadt.reset_register().map_err(|_| "the FADT's reset register is malformed")?;
    let value = fadt.reset_value;
    match reg.address_space {
        AddressSpace::SystemIo if reg.address != 0 && reg.address <= 0xffff => {
            Ok(ResetRegister { io: true, address: reg.address, value })
        }
        AddressSpace::SystemMemory if reg.address != 0 => Ok(ResetRegister { io: false, address: reg.address, value }),
        _ => Err("the FADT's reset register is in an address space this kernel does not write (PCI config or other)"),
    }
}

/// Whether the machine has an 8042 keyboard controller (whose reset line is
/// the fallback when there is no reset register): the FADT's IAPC_BOOT_ARCH
/// 8042 flag (ACPI 2.0+), else yes on a PC with an ACPI 1.0 FADT; never on a
/// hardware-reduced platform.
pub(super) fn has_8042(tables: &tables::Tables) -> bool {
    match tables::find::<Fadt>(tables, 116) {
        Ok(Some(f)) if { f.flags }.system_is_hw_reduced_acpi() => false,
        Ok(Some(f)) if f.header.revision >= 2 && f.header.length >= 111 => {
            { f.iapc_boot_arch }.motherboard_implements_8042()
        }
        _ => true,
    }
}

/// Writes the reset value. Returns if the machine did not reset.
pub(crate) fn reset(reg: ResetRegister) {
    if reg.io {
        DirectMap.write_io_u8(reg.address as u16, reg.value);
    } else {
        DirectMap.write_u8(reg.address as usize, reg.value);
    }
}
