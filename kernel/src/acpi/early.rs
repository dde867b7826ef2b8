//! A look at the FADT before the heap and the `acpi` crate exist: whether the
//! firmware describes a hardware-reduced ACPI platform, which has no legacy
//! PIT or 8259 PICs (ACPI 6.5, 4.1; Linux's `acpi_reduced_hw_init` then
//! installs no PIT and a null legacy PIC). The early clock needs the answer
//! before it may touch the PIT (`time::init`).
//!
//! Invariant: only memory below the end of the boot memory map is read (the
//! bootloader maps all of it at the direct-map offset), every table's
//! signature, length and checksum are checked before a field is used, and any
//! doubt gives `Err`, which callers treat as "a PC with the legacy devices" (as
//! the single-CPU fallback does).

use crate::mm;

/// The FADT's hardware-reduced flag (FADT flags bit 20).
const HW_REDUCED_ACPI: u32 = 1 << 20;
/// Longest table read here.
const MAX_TABLE_LEN: u32 = 1 << 20;

/// Whether the FADT behind the RSDP at `rsdp` sets HW_REDUCED_ACPI. `mem_end`:
/// one past the highest address of the boot memory map (all of it mapped at
/// the direct-map offset, which must be set).
pub fn hardware_reduced(rsdp: Option<u64>, mem_end: u64) -> Result<bool, &'static str> {
    let rsdp = rsdp.ok_or("no RSDP")?;
    let reader = Reader { mem_end };
    let head: [u8; 20] = reader.bytes(rsdp)?;
    if &head[..8] != b"RSD PTR " || sum(&head) != 0 {
        return Err("bad RSDP");
    }
    let (root, entry_len) = if head[15] >= 2 {
        let ext: [u8; 36] = reader.bytes(rsdp)?;
        if sum(&ext) != 0 {
            return Err("bad RSDP extended checksum");
        }
        match u64::from_le_bytes(ext[24..32].try_into().unwrap_or_default()) {
            0 => (u64::from(le32(&head[16..20])), 4),
            xsdt => (xsdt, 8),
        }
    } else {
        (u64::from(le32(&head[16..20])), 4)
    };
    let root_len = reader.checked_table(root, if entry_len == 8 { b"XSDT" } else { b"RSDT" })?;
    for i in 0..(root_len - 36) / entry_len {
        let at = root + 36 + u64::from(i * entry_len);
        let entry = if entry_len == 8 {
            u64::from_le_bytes(reader.bytes::<8>(at)?)
        } else {
            u64::from(u32::from_le_bytes(reader.bytes::<4>(at)?))
        };
        let signature: [u8; 4] = reader.bytes(entry)?;
        if &signature != b"FACP" {
            continue;
        }
        let len = reader.checked_table(entry, b"FACP")?;
        if len < 116 {
            // An ACPI 1.0 FADT has no flags field: a PC.
            return Ok(false);
        }
        let flags: [u8; 4] = reader.bytes(entry + 112)?;
        return Ok(u32::from_le_bytes(flags) & HW_REDUCED_ACPI != 0);
    }
    Err("no FADT")
}

/// Reads physical memory through the direct map, below `mem_end` only.
struct Reader {
    mem_end: u64,
}

impl Reader {
    fn bytes<const N: usize>(&self, phys: u64) -> Result<[u8; N], &'static str> {
        if phys.checked_add(N as u64).is_none_or(|end| end > self.mem_end) {
            return Err("an ACPI pointer outside physical memory");
        }
        let virt = mm::phys_to_virt(x86_64::PhysAddr::new(phys));
        // SAFETY: `phys..phys + N` lies below the end of the boot memory map,
        // all of which the bootloader maps at the direct-map offset; the read
        // is unaligned-safe and only copies bytes.
        Ok(unsafe { core::ptr::read_unaligned(virt.as_ptr::<[u8; N]>()) })
    }

    /// Checks the table at `phys` (signature, length, checksum); its length.
    fn checked_table(&self, phys: u64, signature: &[u8; 4]) -> Result<u32, &'static str> {
        let head: [u8; 8] = self.bytes(phys)?;
        let len = le32(&head[4..8]);
        if &head[..4] != signature || !(36..=MAX_TABLE_LEN).contains(&len) {
            return Err("a bad ACPI table header");
        }
        let mut total = 0u8;
        for at in (phys..phys + u64::from(len)).step_by(64) {
            let chunk: [u8; 64] = self.bytes(at).or_else(|_| {
                // The last chunk of a table that ends near the memory map's end.
                let mut c = [0u8; 64];
                for (i, b) in c.iter_mut().enumerate().take((phys + u64::from(len) - at) as usize) {
                    *b = self.bytes::<1>(at + i as u64)?[0];
                }
                Ok::<_, &'static str>(c)
            })?;
            let n = (phys + u64::from(len) - at).min(64) as usize;
            total = total.wrapping_add(sum(&chunk[..n]));
        }
        if total != 0 {
            return Err("an ACPI table with a bad checksum");
        }
        Ok(len)
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
