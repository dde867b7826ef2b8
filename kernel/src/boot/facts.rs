//! What the kernel keeps from the bootloader's `BootInfo`.
//!
//! Copied in stage 1, while the bootloader's mappings still exist: the memory
//! map, the direct-map offset, the ACPI RSDP, the framebuffer (as a physical
//! address), where the kernel's ELF file lies in memory, and the boot-options
//! file (the ramdisk). After [`publish`] the facts are read-only.

use bootloader_api::BootInfo;
use bootloader_api::info::{FrameBufferInfo, MemoryRegionKind};
use x86_64::{PhysAddr, VirtAddr};

use crate::boot_options::BootOptions;
use crate::mm::{self, frame, paging};

/// Most memory-map entries kept (UEFI maps on large machines have hundreds).
pub(crate) const MAX_RANGES: usize = 1024;
/// Largest boot-options file accepted.
const MAX_OPTIONS_BYTES: usize = 16 * 1024;

/// The kind of a memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemoryKind {
    /// Free RAM.
    Usable,
    /// Used by the bootloader (kernel image, page tables, boot info, ramdisk).
    Bootloader,
    /// Reserved by the firmware (with its raw type).
    Firmware(u32),
}

/// One memory-map entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemoryRange {
    /// First byte.
    pub(crate) start: u64,
    /// One past the last byte.
    pub(crate) end: u64,
    /// What it is.
    pub(crate) kind: MemoryKind,
}

/// The boot facts (see the module docs).
pub struct BootFacts {
    ranges: [MemoryRange; MAX_RANGES],
    n_ranges: usize,
    /// Virtual address of physical 0 in the direct map.
    pub(crate) phys_offset: u64,
    /// Physical address of the ACPI RSDP, if the firmware gave one.
    pub(crate) rsdp: Option<u64>,
    /// Whether the firmware was UEFI (the memory map says so).
    pub uefi: bool,
    fb: Option<(PhysAddr, FrameBufferInfo)>,
    kernel_elf_phys: u64,
    kernel_elf_len: u64,
    /// The raw boot-options file.
    pub(crate) boot_options_raw: &'static [u8],
    /// The parsed options (valid after [`publish`]).
    pub options: BootOptions,
}

static mut FACTS: BootFacts = BootFacts {
    ranges: [MemoryRange { start: 0, end: 0, kind: MemoryKind::Usable }; MAX_RANGES],
    n_ranges: 0,
    phys_offset: 0,
    rsdp: None,
    uefi: false,
    fb: None,
    kernel_elf_phys: 0,
    kernel_elf_len: 0,
    boot_options_raw: &[],
    options: BootOptions::DEFAULT,
};
static mut OPTIONS_BUFFER: [u8; MAX_OPTIONS_BYTES] = [0; MAX_OPTIONS_BYTES];
static PUBLISHED: spin::Once<&'static BootFacts> = spin::Once::new();

/// Copies the facts out of `info`. Called once, in stage 1, on the boot CPU.
pub(crate) fn collect(info: &BootInfo) -> &'static mut BootFacts {
    // SAFETY: called once on the boot CPU before anything reads FACTS (readers
    // go through `publish`/`get`), so this is the only reference.
    let facts = unsafe { &mut *core::ptr::addr_of_mut!(FACTS) };
    for region in info.memory_regions.iter() {
        if facts.n_ranges == MAX_RANGES {
            log::warn!("memory map has more than {MAX_RANGES} entries; the rest is ignored");
            break;
        }
        let kind = match region.kind {
            MemoryRegionKind::Usable => MemoryKind::Usable,
            MemoryRegionKind::Bootloader => MemoryKind::Bootloader,
            MemoryRegionKind::UnknownUefi(t) => {
                facts.uefi = true;
                MemoryKind::Firmware(t)
            }
            MemoryRegionKind::UnknownBios(t) => MemoryKind::Firmware(t),
            _ => MemoryKind::Firmware(u32::MAX),
        };
        facts.ranges[facts.n_ranges] = MemoryRange { start: region.start, end: region.end, kind };
        facts.n_ranges += 1;
    }
    facts.phys_offset = info
        .physical_memory_offset
        .into_option()
        .expect("the bootloader did not map physical memory (BOOTLOADER_CONFIG asks it to)");
    facts.rsdp = info.rsdp_addr.into_option();
    facts.kernel_elf_phys = info.kernel_addr;
    facts.kernel_elf_len = info.kernel_len;
    if let Some(fb) = info.framebuffer.as_ref() {
        let virt = VirtAddr::new(fb.buffer().as_ptr() as u64);
        mm::set_phys_offset(facts.phys_offset);
        if let Some(t) = paging::translate(paging::active_root(), virt) {
            facts.fb = Some((t.phys, fb.info()));
        }
    }
    // The ramdisk is the boot-options file; copy it out of the bootloader's
    // mapping. Too large a file is reported as it is, truncated, so the
    // parser names the word where it was cut.
    if let Some(addr) = info.ramdisk_addr.into_option() {
        let len = (info.ramdisk_len as usize).min(MAX_OPTIONS_BYTES);
        if info.ramdisk_len as usize > MAX_OPTIONS_BYTES {
            log::error!("boot-options file is {} bytes; only {MAX_OPTIONS_BYTES} are read", info.ramdisk_len);
        }
        // SAFETY: the bootloader mapped `ramdisk_len` bytes at `addr`; the
        // buffer is written once, here, before anyone reads it.
        unsafe {
            let buffer = &mut *core::ptr::addr_of_mut!(OPTIONS_BUFFER);
            core::ptr::copy_nonoverlapping(addr as *const u8, buffer.as_mut_ptr(), len);
            facts.boot_options_raw = &buffer[..len];
        }
    }
    facts
}

/// The framebuffer through the bootloader's mapping (stage 1 only).
pub(crate) fn early_framebuffer(info: &'static mut BootInfo) -> Option<(&'static mut [u8], FrameBufferInfo)> {
    let fb = info.framebuffer.as_mut()?;
    let fb_info = fb.info();
    // SAFETY: the bootloader's mapping of the framebuffer, used only until the
    // kernel tables replace it (stage 2 attaches the direct-map view instead).
    let buffer = unsafe { core::slice::from_raw_parts_mut(fb.buffer_mut().as_mut_ptr(), fb_info.byte_len) };
    Some((buffer, fb_info))
}

/// Freezes the facts with the parsed options; from now on they are shared.
pub(crate) fn publish(facts: &'static mut BootFacts, options: BootOptions) -> &'static BootFacts {
    facts.options = options;
    let facts: &'static BootFacts = facts;
    PUBLISHED.call_once(|| facts)
}

/// The published facts.
pub(crate) fn get() -> &'static BootFacts {
    try_get().expect("boot facts read before they were published")
}

/// The published facts, if published.
pub(crate) fn try_get() -> Option<&'static BootFacts> {
    PUBLISHED.get().copied()
}

impl BootFacts {
    /// The memory map.
    pub(crate) fn ranges(&self) -> &[MemoryRange] {
        &self.ranges[..self.n_ranges]
    }

    /// Whether every page of `[start, end)` (page-aligned) lies in one
    /// usable range of the memory map.
    pub(crate) fn is_usable(&self, start: u64, end: u64) -> bool {
        (start..end).step_by(0x1000).all(|page| {
            self.ranges().iter().any(|r| r.kind == MemoryKind::Usable && r.start <= page && page + 0x1000 <= r.end)
        })
    }

    /// Writes the usable ranges into `out`; returns how many.
    pub(crate) fn usable_ranges(&self, out: &mut [frame::UsableRange]) -> usize {
        let mut n = 0;
        for r in self.ranges().iter().filter(|r| r.kind == MemoryKind::Usable) {
            if n < out.len() {
                out[n] = frame::UsableRange { start: r.start, end: r.end };
                n += 1;
            }
        }
        n
    }

    /// One past the highest physical address the direct map must cover.
    pub(crate) fn phys_end(&self) -> u64 {
        let mem = self.ranges().iter().map(|r| r.end).max().unwrap_or(0);
        let fb = self.fb.map_or(0, |(pa, info)| pa.as_u64() + info.byte_len as u64);
        mem.max(fb)
    }

    /// The kernel's ELF file, through the direct map.
    pub(crate) fn kernel_elf(&self) -> &'static [u8] {
        // SAFETY: the bootloader keeps the kernel file in memory it marks as its
        // own (never given to the frame allocator); the direct map covers it.
        unsafe {
            core::slice::from_raw_parts(
                mm::phys_to_virt(PhysAddr::new(self.kernel_elf_phys)).as_ptr::<u8>(),
                self.kernel_elf_len as usize,
            )
        }
    }

    /// The framebuffer through the direct map (valid on the kernel's tables).
    pub(crate) fn framebuffer(&self) -> Option<(&'static mut [u8], FrameBufferInfo)> {
        let (pa, info) = self.fb?;
        // SAFETY: the framebuffer is device memory handed to the kernel by the
        // firmware; only the console draws to it, and it is attached once.
        let buffer =
            unsafe { core::slice::from_raw_parts_mut(mm::phys_to_virt(pa).as_mut_ptr::<u8>(), info.byte_len) };
        Some((buffer, info))
    }

    /// The boot options as one line, for the log.
    pub(crate) fn boot_options_summary(&self) -> BootOptionsSummary {
        BootOptionsSummary(self.boot_options_raw)
    }
}

/// Displays the boot-options words on one line ("(none)" when empty).
pub(crate) struct BootOptionsSummary(&'static [u8]);

impl core::fmt::Display for BootOptionsSummary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = core::str::from_utf8(self.0).unwrap_or("<not UTF-8>");
        let mut any = false;
        for line in text.lines() {
            for word in line.split('#').next().unwrap_or("").split_whitespace() {
                if any {
                    f.write_str(" ")?;
                }
                f.write_str(word.trim_start_matches('\u{feff}'))?;
                any = true;
            }
        }
        if !any {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}
