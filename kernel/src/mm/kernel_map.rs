//! The kernel's own page tables, built at boot to replace the bootloader's.
//!
//! They hold: the direct map of all physical memory (2 MiB pages, writable,
//! no-execute, global) at the bootloader's offset, so physical-to-virtual
//! conversion is the same before and after the switch; the kernel image with
//! per-segment permissions from its ELF program headers (text read-execute,
//! rodata read-only, data and bss read-write no-execute); and the top-level
//! entries of every kernel region of [`super::layout`], allocated once and never
//! freed. The bootloader's mappings (its stack, the boot info, its framebuffer
//! mapping) are deliberately absent: boot copies what it needs first.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::{PhysAddr, VirtAddr};

use super::layout::{HEAP_START, KERNEL_IMAGE_START, MMIO_START, STACKS_START};
use super::paging::{self, Level, MapError, PageSize, PageTable, PteFlags, RawEntry};
use super::{HUGE_PAGE_SIZE, PAGE_SIZE, frame, phys_offset};
use crate::sync::SpinLock;

/// Physical address of the kernel's top-level table (0 until [`build`]).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// Serialises changes to kernel mappings.
static MAP_LOCK: SpinLock<()> = SpinLock::new("kernel page tables", ());

/// The kernel's top-level table.
pub fn kernel_root() -> PhysAddr {
    PhysAddr::new(KERNEL_ROOT.load(Ordering::Acquire))
}

/// Maps one kernel page of `size` in the
/// kernel tables. Only for the kernel regions of `layout`.
pub(crate) fn map_kernel(va: VirtAddr, pa: PhysAddr, size: PageSize, flags: PteFlags) -> Result<(), MapError> {
    assert!(va.as_u64() >= super::layout::KERNEL_HALF_START, "map_kernel of a user address {va:?}");
    let _guard = MAP_LOCK.lock();
    // SAFETY: kernel tables under MAP_LOCK; callers map fresh frames at
    // addresses of their own regions.
    unsafe { paging::map(kernel_root(), va, pa, size, flags) }
}

/// A LOAD segment of the kernel's ELF program headers.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    memsz: u64,
    writable: bool,
    executable: bool,
}

fn segments(elf: &[u8]) -> impl Iterator<Item = Segment> + '_ {
    let u16_at = |off: usize| elf.get(off..off + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |off: usize| elf.get(off..off + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |off: usize| elf.get(off..off + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    assert!(elf.get(0..4) == Some(b"\x7fELF"), "kernel image is not ELF");
    let phoff = u64_at(0x20).expect("truncated ELF header") as usize;
    let phentsize = u16_at(0x36).expect("truncated ELF header") as usize;
    let phnum = u16_at(0x38).expect("truncated ELF header") as usize;
    (0..phnum).filter_map(move |i| {
        let base = phoff + i * phentsize;
        let kind = u32_at(base)?;
        let flags = u32_at(base + 4)?;
        (kind == 1).then_some(Segment {
            vaddr: u64_at(base + 16)?,
            memsz: u64_at(base + 40)?,
            writable: flags & 2 != 0,
            executable: flags & 1 != 0,
        })
    })
}

/// What the kernel image mapping consisted of, for the boot log.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ImageLayout {
    /// Pages mapped read-execute.
    pub text_pages: u64,
    /// Pages mapped read-only, no-execute.
    pub rodata_pages: u64,
    /// Pages mapped read-write, no-execute.
    pub data_pages: u64,
}

/// Builds the kernel tables (not yet active). `phys_end` bounds the direct map
/// (at least 4 GiB are mapped, for MMIO). `elf` is the kernel's file image; the
/// physical frames of its loaded segments are found through the active
/// (bootloader's) tables.
pub(crate) fn build(phys_end: u64, elf: &[u8]) -> ImageLayout {
    let root = frame::alloc_zeroed(0).expect("no frame for the kernel page-table root").start_address();
    KERNEL_ROOT.store(root.as_u64(), Ordering::Release);
    // SAFETY: `root` was just allocated and zeroed for use as a table.
    let root_table = unsafe { PageTable::at(root) };

    // Top-level entries for every kernel region, shared by all address spaces.
    for region in [STACKS_START, HEAP_START, MMIO_START, KERNEL_IMAGE_START] {
        let index = Level::Pml4.index(region);
        let pdpt = frame::alloc_zeroed(0).expect("no frame for a kernel pdpt").start_address();
        root_table
            .entry(index)
            .store(RawEntry::new(pdpt, PteFlags::PRESENT | PteFlags::WRITABLE), Ordering::Relaxed);
    }

    // The direct map.
    let end = phys_end.max(4 << 30).next_multiple_of(HUGE_PAGE_SIZE).min(super::layout::DIRECT_MAP_MAX);
    let offset = phys_offset();
    let mut pa = 0;
    while pa < end {
        let flags = PteFlags::WRITABLE | PteFlags::NO_EXECUTE | PteFlags::GLOBAL;
        // SAFETY: building unused tables; the direct-map range is ours.
        unsafe { paging::map(root, VirtAddr::new(offset + pa), PhysAddr::new(pa), PageSize::Size2M, flags) }
            .expect("direct map overlaps another mapping");
        pa += HUGE_PAGE_SIZE;
    }

    // The kernel image, page by page, with its segment's permissions.
    let old_root = paging::active_root();
    let mut layout = ImageLayout::default();
    for seg in segments(elf) {
        let mut va = seg.vaddr & !(PAGE_SIZE - 1);
        let mut flags = PteFlags::GLOBAL;
        if seg.writable {
            flags |= PteFlags::WRITABLE;
        }
        if !seg.executable {
            flags |= PteFlags::NO_EXECUTE;
        }
        while va < seg.vaddr + seg.memsz {
            let t = paging::translate(old_root, VirtAddr::new(va)).expect("kernel segment page not mapped by the bootloader");
            let frame_pa = PhysAddr::new(t.phys.as_u64() & !(PAGE_SIZE - 1));
            // SAFETY: building unused tables; image pages map their own frames.
            match unsafe { paging::map(root, VirtAddr::new(va), frame_pa, PageSize::Size4K, flags) } {
                Ok(()) => match (seg.executable, seg.writable) {
                    (true, _) => layout.text_pages += 1,
                    (false, false) => layout.rodata_pages += 1,
                    (false, true) => layout.data_pages += 1,
                },
                // Two segments sharing a page: the linker keeps them apart, and
                // if it ever did not, the first segment's permissions stand.
                Err(MapError::AlreadyMapped) => log::warn!("kernel page {va:#x} is shared by two segments"),
                Err(e) => panic!("cannot map kernel page {va:#x}: {e:?}"),
            }
            va += PAGE_SIZE;
        }
    }
    layout
}

/// Loads the kernel tables into CR3, switches to `stack_top` and calls `next`.
/// The old stack (the bootloader's) is not mapped any more afterwards, so this
/// never returns.
pub(crate) fn activate_and_continue(stack_top: VirtAddr, next: extern "C" fn() -> !) -> ! {
    // SAFETY: the new tables map the kernel image at the same addresses as the
    // old ones (so the next instruction is still there), the direct map at the
    // same offset, and the new stack; GDT and IDT live in the kernel image.
    unsafe { crate::arch::cpu::switch_root_and_stack(kernel_root(), stack_top, next) }
}
