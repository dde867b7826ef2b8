//! Symbol lookup in the kernel's own ELF image.
//!
//! The bootloader loads the kernel file into memory and reports where
//! (`BootInfo::kernel_addr`). The image's `.symtab` maps addresses to mangled
//! names; lookups are linear scans, which is fine for crash reports. All reads
//! are bounds-checked: a truncated or stripped image yields no names, not a
//! fault inside the fault handler.

use core::ffi::CStr;
use core::fmt;

static IMAGE: spin::Once<&'static [u8]> = spin::Once::new();

/// Registers the kernel's ELF file image (mapped read-only for the kernel's life).
pub(crate) fn init(image: &'static [u8]) {
    IMAGE.call_once(|| image);
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// `.symtab` and its string table, as slices of the image.
fn tables(image: &'static [u8]) -> Option<(&'static [u8], &'static [u8])> {
    if image.get(0..4)? != b"\x7fELF" || *image.get(4)? != 2 {
        return None; // not ELF64
    }
    let shoff = u64_at(image, 0x28)? as usize;
    let shentsize = u16_at(image, 0x3a)? as usize;
    let shnum = u16_at(image, 0x3c)? as usize;
    let section = |i: usize| -> Option<(u32, usize, usize, u32)> {
        let base = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(image, base + 4)?,
            u64_at(image, base + 24)? as usize,
            u64_at(image, base + 32)? as usize,
            u32_at(image, base + 40)?,
        ))
    };
    for i in 0..shnum {
        let (kind, offset, size, link) = section(i)?;
        if kind == 2 {
            // SHT_SYMTAB; its sh_link names the string table section.
            let (_, str_off, str_size, _) = section(link as usize)?;
            let symtab = image.get(offset..offset.checked_add(size)?)?;
            let strtab = image.get(str_off..str_off.checked_add(str_size)?)?;
            return Some((symtab, strtab));
        }
    }
    None
}

/// The function symbol containing `addr`: its mangled name and `addr`'s offset.
pub fn lookup(addr: u64) -> Option<(&'static str, u64)> {
    let image = *IMAGE.get()?;
    let (symtab, strtab) = tables(image)?;
    for sym in symtab.as_chunks::<24>().0 {
        let info = sym[4];
        let value = u64_at(sym, 8)?;
        let size = u64_at(sym, 16)?;
        // STT_FUNC = 2; a zero-size function covers only its first byte.
        if info & 0xf == 2 && addr >= value && addr < value + size.max(1) {
            let name_off = u32_at(sym, 0)? as usize;
            let name = CStr::from_bytes_until_nul(strtab.get(name_off..)?).ok()?;
            return Some((name.to_str().ok()?, addr - value));
        }
    }
    None
}

/// Displays `0xADDR name+0xoff` (name demangled, without the hash).
pub struct Symbolized(pub u64);

impl fmt::Display for Symbolized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)?;
        match lookup(self.0) {
            Some((name, off)) => write!(f, " {:#}+{:#x}", rustc_demangle::demangle(name), off),
            None => write!(f, " <unknown>"),
        }
    }
}

/// A mangled symbol name, displayed demangled without its hash.
pub fn demangled(name: &str) -> impl fmt::Display + '_ {
    struct D<'a>(rustc_demangle::Demangle<'a>);
    impl fmt::Display for D<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:#}", self.0)
        }
    }
    D(rustc_demangle::demangle(name))
}
