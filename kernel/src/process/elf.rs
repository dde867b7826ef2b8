//! ELF parsing for user programs: a static x86_64 executable becomes a list of
//! segments (address range, protection, initial bytes) and an entry point.
//!
//! Everything is validated before anything is mapped (Linux: load_elf_binary's
//! checks, stricter): magic, 64-bit little-endian, version, `ET_EXEC`, x86_64,
//! header sizes, every table inside the file, every `PT_LOAD` inside the user
//! image range with its file bytes inside the file and `filesz <= memsz`,
//! page-congruent offsets, no two segments sharing a page, and the entry
//! point inside an executable segment. Other program header types are
//! ignored except `PT_INTERP` and `PT_DYNAMIC` (dynamic programs are refused).

use alloc::vec::Vec;
use core::fmt;

use crate::mm::PAGE_SIZE;
use crate::mm::layout::{USER_MAX, USER_MIN};

/// A loadable segment, borrowed from the ELF bytes.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// First byte (not necessarily page-aligned).
    pub vaddr: u64,
    /// Bytes in memory (the tail past `data` is zero: bss).
    pub mem_size: u64,
    /// The bytes the segment starts with.
    pub data: &'a [u8],
    /// Readable (every mapped page is, on x86).
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Segment<'_> {
    /// The page-aligned range the segment covers: `[start, end)`.
    pub(crate) fn page_range(&self) -> (u64, u64) {
        let start = self.vaddr & !(PAGE_SIZE - 1);
        let end = (self.vaddr + self.mem_size).next_multiple_of(PAGE_SIZE);
        (start, end)
    }
}

/// A parsed program.
#[derive(Debug)]
pub struct Program<'a> {
    /// The entry point.
    pub entry: u64,
    /// The loadable segments, sorted by address, not sharing pages.
    pub segments: Vec<Segment<'a>>,
}

/// Why an ELF was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than its headers say.
    Truncated,
    /// Not `\x7fELF`.
    BadMagic,
    /// Not ELF64 little-endian version 1.
    BadClass,
    /// Not an `ET_EXEC` x86_64 executable.
    NotX86_64Executable,
    /// A header size field is not the ELF64 one.
    BadHeaderSize,
    /// A dynamically linked program (PT_INTERP / PT_DYNAMIC).
    Dynamic,
    /// A segment outside the user image range, or with a wrapping range.
    SegmentOutOfRange(u64),
    /// A segment's file bytes exceed its memory size or the file.
    BadFileSize(u64),
    /// A segment's address and file offset are not congruent modulo a page.
    Misaligned(u64),
    /// Two segments share a page.
    Overlap(u64),
    /// No loadable segment.
    NoSegments,
    /// The entry point is not in an executable segment.
    BadEntry(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Truncated => write!(f, "file shorter than its headers"),
            ElfError::BadMagic => write!(f, "not an ELF file"),
            ElfError::BadClass => write!(f, "not ELF64 little-endian version 1"),
            ElfError::NotX86_64Executable => write!(f, "not an x86_64 ET_EXEC executable"),
            ElfError::BadHeaderSize => write!(f, "unexpected header entry size"),
            ElfError::Dynamic => write!(f, "dynamically linked (not supported)"),
            ElfError::SegmentOutOfRange(v) => write!(f, "segment at {v:#x} outside user space"),
            ElfError::BadFileSize(v) => write!(f, "segment at {v:#x}: bad file size or offset"),
            ElfError::Misaligned(v) => write!(f, "segment at {v:#x}: address and offset not congruent"),
            ElfError::Overlap(v) => write!(f, "segment at {v:#x} shares a page with another"),
            ElfError::NoSegments => write!(f, "no loadable segments"),
            ElfError::BadEntry(v) => write!(f, "entry point {v:#x} not in an executable segment"),
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

fn u16_at(b: &[u8], off: usize) -> Result<u16, ElfError> {
    let s = b.get(off..off + 2).ok_or(ElfError::Truncated)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, ElfError> {
    let s = b.get(off..off + 4).ok_or(ElfError::Truncated)?;
    Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], off: usize) -> Result<u64, ElfError> {
    let s = b.get(off..off + 8).ok_or(ElfError::Truncated)?;
    Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
}

/// Parses and validates `bytes` (see the module docs).
pub fn parse(bytes: &[u8]) -> Result<Program<'_>, ElfError> {
    if bytes.len() < EHDR_SIZE {
        return Err(ElfError::Truncated);
    }
    if bytes[..4] != *b"\x7fELF" {
        return Err(ElfError::BadMagic);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian, EI_VERSION 1.
    if bytes[4] != 2 || bytes[5] != 1 || bytes[6] != 1 {
        return Err(ElfError::BadClass);
    }
    // e_type 2 = ET_EXEC, e_machine 62 = EM_X86_64, e_version 1.
    if u16_at(bytes, 16)? != 2 || u16_at(bytes, 18)? != 62 || u32_at(bytes, 20)? != 1 {
        return Err(ElfError::NotX86_64Executable);
    }
    let entry = u64_at(bytes, 24)?;
    let phoff = u64_at(bytes, 32)?;
    if usize::from(u16_at(bytes, 52)?) != EHDR_SIZE || usize::from(u16_at(bytes, 54)?) != PHDR_SIZE {
        return Err(ElfError::BadHeaderSize);
    }
    let phnum = usize::from(u16_at(bytes, 56)?);
    let table_end = (phnum * PHDR_SIZE).checked_add(usize::try_from(phoff).map_err(|_| ElfError::Truncated)?);
    if table_end.is_none_or(|end| end > bytes.len()) {
        return Err(ElfError::Truncated);
    }
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff as usize + i * PHDR_SIZE;
        let kind = u32_at(bytes, ph)?;
        if kind == PT_INTERP || kind == PT_DYNAMIC {
            return Err(ElfError::Dynamic);
        }
        if kind != PT_LOAD {
            continue;
        }
        let flags = u32_at(bytes, ph + 4)?;
        let offset = u64_at(bytes, ph + 8)?;
        let vaddr = u64_at(bytes, ph + 16)?;
        let file_size = u64_at(bytes, ph + 32)?;
        let mem_size = u64_at(bytes, ph + 40)?;
        if mem_size == 0 {
            continue;
        }
        let end = vaddr.checked_add(mem_size).ok_or(ElfError::SegmentOutOfRange(vaddr))?;
        if vaddr < USER_MIN || end > USER_MAX {
            return Err(ElfError::SegmentOutOfRange(vaddr));
        }
        let file_end = offset.checked_add(file_size).ok_or(ElfError::BadFileSize(vaddr))?;
        if file_size > mem_size || file_end > bytes.len() as u64 {
            return Err(ElfError::BadFileSize(vaddr));
        }
        if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
            return Err(ElfError::Misaligned(vaddr));
        }
        segments.push(Segment {
            vaddr,
            mem_size,
            data: &bytes[offset as usize..file_end as usize],
            read: flags & PF_R != 0,
            write: flags & PF_W != 0,
            exec: flags & PF_X != 0,
        });
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    segments.sort_by_key(|s| s.vaddr);
    for pair in segments.windows(2) {
        if pair[0].page_range().1 > pair[1].page_range().0 {
            return Err(ElfError::Overlap(pair[1].vaddr));
        }
    }
    if !segments.iter().any(|s| s.exec && s.vaddr <= entry && entry < s.vaddr + s.mem_size) {
        return Err(ElfError::BadEntry(entry));
    }
    Ok(Program { entry, segments })
}
