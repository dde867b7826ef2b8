//! Finding and validating ACPI tables: the RSDP, the RSDT/XSDT, and the tables
//! they list.
//!
//! Invariant: nothing is handed to the `acpi` crate (which trusts what it is
//! given) before its bytes were found in the direct map and its signature,
//! length and checksum checked here; every failure is an error string that
//! names the table and what was wrong with it.

use alloc::format;
use alloc::string::String;

use acpi::rsdp::Rsdp;
use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiTable, AcpiTables, Handler, PhysicalMapping};

use super::handler::{DirectMap, readable};

/// Largest table accepted (real ones are a few KiB; DSDTs, not read here, more).
const MAX_TABLE_LEN: u32 = 1 << 20;

/// The validated root table, ready for [`find`].
pub(crate) type Tables = AcpiTables<DirectMap>;

/// Checks the RSDP at `rsdp` and the RSDT or XSDT it points to.
pub(crate) fn open(rsdp: u64) -> Result<Tables, String> {
    if !readable(rsdp, size_of::<Rsdp>() as u64) {
        return Err(format!("RSDP address {rsdp:#x} is outside physical memory"));
    }
    // SAFETY: the bytes are readable (checked); `validate` checks what they hold.
    let mapping = unsafe { DirectMap.map_physical_region::<Rsdp>(rsdp as usize, size_of::<Rsdp>()) };
    mapping.validate().map_err(|e| format!("RSDP at {rsdp:#x} is invalid ({e:?})"))?;
    let revision = mapping.revision();
    let (root, signature, entry_revision) = if revision >= 2 && mapping.xsdt_address() != 0 {
        (mapping.xsdt_address(), Signature::XSDT, revision)
    } else {
        // ACPI 1.0, or an XSDT pointer of 0: the 32-bit RSDT (4-byte entries).
        (u64::from(mapping.rsdt_address()), Signature::RSDT, 0)
    };
    checked_header(root, signature)?;
    // SAFETY: `checked_header` found a whole, valid RSDT/XSDT at `root`, and the
    // revision passed selects the entry size that table kind uses.
    unsafe { AcpiTables::from_rsdt(DirectMap, entry_revision, root as usize) }
        .map_err(|e| format!("{signature} at {root:#x} is unusable ({e:?})"))
}

/// Checks the table at `phys`: readable header, plausible length, all bytes
/// readable, then signature and checksum. Returns its length.
pub(super) fn checked_header(phys: u64, signature: Signature) -> Result<u32, String> {
    if !readable(phys, size_of::<SdtHeader>() as u64) {
        return Err(format!("{signature} address {phys:#x} is outside physical memory"));
    }
    // SAFETY: the header's bytes are readable (checked).
    let header = unsafe { DirectMap.map_physical_region::<SdtHeader>(phys as usize, size_of::<SdtHeader>()) };
    let len = header.length;
    if (len as usize) < size_of::<SdtHeader>() || len > MAX_TABLE_LEN {
        return Err(format!("{signature} at {phys:#x} has an implausible length {len}"));
    }
    if !readable(phys, u64::from(len)) {
        return Err(format!("{signature} at {phys:#x} (+{len:#x}) runs outside physical memory"));
    }
    // SAFETY: all `len` bytes are readable (checked), as `validate` requires.
    unsafe { header.validate(signature) }.map_err(|e| format!("{signature} at {phys:#x} is invalid ({e:?})"))?;
    Ok(len)
}

/// Finds the first table of type `T` that is at least `min_len` bytes long.
/// `Ok(None)` when the firmware has none; `Err` when the one it has is bad
/// (unreadable, too short, bad checksum).
pub(crate) fn find<T: AcpiTable>(tables: &Tables, min_len: u32) -> Result<Option<PhysicalMapping<DirectMap, T>>, String> {
    for phys in tables.table_entries() {
        let phys = phys as u64;
        if !readable(phys, size_of::<SdtHeader>() as u64) {
            log::warn!("ACPI: table pointer {phys:#x} is outside physical memory; skipped");
            continue;
        }
        // SAFETY: the header's bytes are readable (checked).
        let header = unsafe { DirectMap.map_physical_region::<SdtHeader>(phys as usize, size_of::<SdtHeader>()) };
        if header.signature != T::SIGNATURE {
            continue;
        }
        let len = checked_header(phys, T::SIGNATURE)?;
        if len < min_len {
            return Err(format!("{} at {phys:#x} is {len} bytes, shorter than the {min_len} needed", T::SIGNATURE));
        }
        // Fields past `len` (optional in older revisions) must still be mapped
        // for a `&T` to be valid; the crate gates reading them on the revision.
        if !readable(phys, size_of::<T>() as u64) {
            return Err(format!("{} at {phys:#x} ends at the edge of physical memory", T::SIGNATURE));
        }
        // SAFETY: a whole, checksummed table of T's signature lies at `phys`,
        // and `size_of::<T>()` bytes from it are mapped.
        return Ok(Some(unsafe { DirectMap.map_physical_region::<T>(phys as usize, len as usize) }));
    }
    Ok(None)
}
