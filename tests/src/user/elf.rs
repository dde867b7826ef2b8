//! The ELF parser refuses what it must: each case patches one field of a real
//! program.

use alloc::vec::Vec;
use kernel::process::elf::{self, ElfError};
use kernel::process::programs;

fn hello() -> Vec<u8> {
    programs::lookup("hello").unwrap().to_vec()
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Offset of the first PT_LOAD program header.
fn first_load(b: &[u8]) -> usize {
    let phoff = get_u64(b, 32) as usize;
    (0..u16::from_le_bytes([b[56], b[57]]) as usize)
        .map(|i| phoff + i * 56)
        .find(|&ph| u32::from_le_bytes(b[ph..ph + 4].try_into().unwrap()) == 1)
        .unwrap()
}

kernel::ktests! {
    fn every_built_in_program_parses() {
        for name in programs::names() {
            let p = elf::parse(programs::lookup(name).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(p.entry >= 0x40_0000 && !p.segments.is_empty(), "{name}");
        }
    }

    fn malformed_elfs_are_refused() {
        let good = hello();
        let check = |what: &str, patch: &dyn Fn(&mut Vec<u8>), want: ElfError| {
            let mut b = good.clone();
            patch(&mut b);
            assert_eq!(elf::parse(&b).err(), Some(want), "{what}");
        };
        check("truncated", &|b| b.truncate(40), ElfError::Truncated);
        check("magic", &|b| b[0] = 0, ElfError::BadMagic);
        check("32-bit", &|b| b[4] = 1, ElfError::BadClass);
        check("machine", &|b| b[18] = 3, ElfError::NotX86_64Executable);
        check("phentsize", &|b| b[54] = 32, ElfError::BadHeaderSize);
        check("phoff past the end", &|b| { let n = b.len() as u64; put_u64(b, 32, n) }, ElfError::Truncated);
        let ph = first_load(&good);
        let vaddr = get_u64(&good, ph + 16);
        check("segment in the kernel half", &|b| { put_u64(b, ph + 16, 0xffff_8000_0000_0000); put_u64(b, ph + 8, 0) }, ElfError::SegmentOutOfRange(0xffff_8000_0000_0000));
        check("segment at null", &|b| { put_u64(b, ph + 16, 0); put_u64(b, ph + 8, 0) }, ElfError::SegmentOutOfRange(0));
        check("wrapping segment", &|b| put_u64(b, ph + 40, u64::MAX - 0x1000), ElfError::SegmentOutOfRange(vaddr));
        check("filesz > memsz", &|b| { let m = get_u64(b, ph + 40); put_u64(b, ph + 32, m + 1) }, ElfError::BadFileSize(vaddr));
        check("file bytes past the end", &|b| { let n = b.len() as u64; put_u64(b, ph + 8, n); put_u64(b, ph + 16, vaddr - vaddr % 4096 + n % 4096) }, ElfError::BadFileSize(vaddr - vaddr % 4096 + good.len() as u64 % 4096));
        check("misaligned", &|b| put_u64(b, ph + 16, vaddr + 1), ElfError::Misaligned(vaddr + 1));
        check("entry outside", &|b| put_u64(b, 24, 0x7000_0000), ElfError::BadEntry(0x7000_0000));
        let mut b = good.clone();
        let m = get_u64(&b, ph + 40);
        put_u64(&mut b, ph + 40, m + 0x10_0000);
        assert!(matches!(elf::parse(&b), Err(ElfError::Overlap(_))), "overlap: {:?}", elf::parse(&b).err());
    }
}
