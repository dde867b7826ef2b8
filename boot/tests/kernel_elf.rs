//! The kernel ELFs (the main kernel and every test suite) keep each loadable
//! segment on file pages of its own. The bootloader maps a segment straight
//! from the frames the file was loaded into, so two segments sharing a file
//! page share a physical frame: the end of `.text` was also mapped writable
//! as the start of `.data` (a W^X breach), and under TCG every store to the
//! data on that page took QEMU's self-modifying-code path (a cross-CPU call
//! request took 1.3-2.4 us to build instead of 0.2). `kernel/build.rs` and
//! `tests/build.rs` link with `-z separate-loadable-segments`; this checks
//! the result, reading the program headers by hand (ELF64, little endian).

use testbed::suites::{MAIN_KERNEL, SUITES};

const PAGE: u64 = 4096;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// A loadable segment: its flags and the file pages it covers.
#[derive(Debug)]
struct Load {
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

impl Load {
    /// First and last file page (None for a segment with no file bytes).
    fn pages(&self) -> Option<(u64, u64)> {
        (self.filesz > 0).then(|| (self.offset / PAGE, (self.offset + self.filesz - 1) / PAGE))
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The PT_LOAD headers of the ELF at `path`.
fn loads(path: &str) -> Vec<Load> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&b[..4], b"\x7fELF", "{path}: not an ELF");
    assert_eq!((b[4], b[5]), (2, 1), "{path}: not ELF64 little endian");
    let (phoff, phentsize, phnum) = (u64_at(&b, 0x20) as usize, u16_at(&b, 0x36) as usize, u16_at(&b, 0x38) as usize);
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&h| u32_at(&b, h) == PT_LOAD)
        .map(|h| Load {
            flags: u32_at(&b, h + 4),
            offset: u64_at(&b, h + 8),
            vaddr: u64_at(&b, h + 0x10),
            filesz: u64_at(&b, h + 0x20),
        })
        .collect()
}

/// Pairs of segments that share a file page, described.
fn shared_pages(loads: &[Load]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in loads.iter().enumerate() {
        for b in &loads[i + 1..] {
            let (Some((a0, a1)), Some((b0, b1))) = (a.pages(), b.pages()) else {
                continue;
            };
            if a0 <= b1 && b0 <= a1 {
                out.push(format!("{a:x?} and {b:x?} share file page(s) {:#x}..={:#x}", a0.max(b0), a1.min(b1)));
            }
        }
    }
    out
}

#[test]
fn no_two_loadable_segments_share_a_file_page_in_any_kernel() {
    let mut kernels = vec![("kernel", MAIN_KERNEL)];
    kernels.extend(SUITES.iter().copied());
    for (name, path) in kernels {
        let loads = loads(path);
        assert!(loads.iter().any(|l| l.flags & PF_X != 0), "{name}: no executable segment");
        assert!(loads.iter().any(|l| l.flags & PF_W != 0), "{name}: no writable segment");
        let shared = shared_pages(&loads);
        assert!(shared.is_empty(), "{name} ({path}):\n{}", shared.join("\n"));
        for l in &loads {
            assert_eq!(l.offset % PAGE, l.vaddr % PAGE, "{name}: segment {l:x?} is not loadable by pages");
        }
    }
}

#[test]
fn the_check_finds_segments_that_share_a_page() {
    let load = |flags, offset, vaddr, filesz| Load { flags: flags | 4, offset, vaddr, filesz };
    // The main kernel's layout before the link flag: .text ending on the
    // file page where .data.rel.ro and .data begin.
    let text = load(PF_X, 0x1efd10, 0xffff_ffff_801f_0d10, 0xce527);
    let relro = load(PF_W, 0x2be238, 0xffff_ffff_802c_0238, 0x590);
    let data = load(PF_W, 0x2be7d0, 0xffff_ffff_802c_17d0, 0x12a9f8);
    assert_eq!(shared_pages(&[text, relro, data]).len(), 3);
    // After it: each segment from a page boundary of its own.
    let text = load(PF_X, 0x1f0000, 0xffff_ffff_801f_0000, 0xce527);
    let data = load(PF_W, 0x2bf000, 0xffff_ffff_802b_f000, 0x590);
    assert!(shared_pages(&[text, data]).is_empty());
}
