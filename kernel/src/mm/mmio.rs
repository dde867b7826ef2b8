//! Mappings of device registers (MMIO) into the kernel's MMIO region.
//!
//! Virtual space in [`layout::MMIO_START`] is handed out by a bump allocator,
//! page by page, and never reused: device mappings live as long as the kernel.
//! Pages are mapped uncached (`NO_CACHE | WRITE_THROUGH`, i.e. UC with the
//! default PAT), writable, no-execute and global.
//!
//! Invariants: every range handed out is recorded in a small table (while it has
//! room), so mapping a physical range that lies inside an earlier mapping returns
//! a view of the existing mapping instead of a second alias: the local APIC, the
//! IOAPICs and the HPET may be mapped by different modules. A [`MmioRegion`]
//! only exists for a mapped range, and its accessors check bounds and alignment
//! so no access leaves the range.

use crate::sync::ThreadLock;
use x86_64::{PhysAddr, VirtAddr};

use super::kernel_map;
use super::layout::MMIO_START;
use super::paging::{MapError, PageSize, PteFlags};
use super::PAGE_SIZE;

/// Virtual space reserved for MMIO (one top-level entry: 512 GiB).
const MMIO_SIZE: u64 = 512 << 30;
/// How many mapped ranges are remembered for reuse.
const MAX_RECORDED: usize = 64;

/// A mapped range of device registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioRegion {
    /// Virtual address of the first byte (same offset in its page as `phys`).
    pub virt: VirtAddr,
    /// Physical address of the first byte.
    pub phys: PhysAddr,
    /// Length in bytes.
    pub len: u64,
}

/// Why a range could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// Zero length, or the range wraps around the physical address space.
    BadRange,
    /// The MMIO region's virtual space is used up.
    OutOfVirtualSpace,
    /// The page tables could not be extended.
    Map(MapError),
}

/// One recorded mapping: `pages` pages from physical page `phys_page` at `virt_page`.
#[derive(Clone, Copy)]
struct Recorded {
    phys_page: u64,
    pages: u64,
    virt_page: u64,
}

struct State {
    next_virt: u64,
    recorded: [Option<Recorded>; MAX_RECORDED],
}

/// Thread context only: devices are mapped by their drivers at set-up.
static STATE: ThreadLock<State> =
    ThreadLock::new("mmio mappings", State { next_virt: MMIO_START, recorded: [None; MAX_RECORDED] });

/// Maps `len` bytes of device memory at `phys` (page-granular underneath) and
/// returns the region. A range inside an earlier mapping reuses it.
///
/// # Safety
/// `phys..phys + len` must be device registers (or other memory the kernel does
/// not use as RAM): an uncached writable alias of RAM in use would break the
/// memory-type and aliasing assumptions of its owner.
pub unsafe fn map(phys: PhysAddr, len: u64) -> Result<MmioRegion, MmioError> {
    let start = phys.as_u64();
    let end = start.checked_add(len).filter(|_| len > 0).ok_or(MmioError::BadRange)?;
    let phys_page = start & !(PAGE_SIZE - 1);
    let pages = (end.next_multiple_of(PAGE_SIZE) - phys_page) / PAGE_SIZE;
    let offset = start - phys_page;

    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut state = STATE.lock();
        let reuse = state.recorded.iter().flatten().find(|r| {
            phys_page >= r.phys_page && phys_page + pages * PAGE_SIZE <= r.phys_page + r.pages * PAGE_SIZE
        });
        if let Some(r) = reuse {
            let virt = r.virt_page + (phys_page - r.phys_page) + offset;
            return Ok(MmioRegion { virt: VirtAddr::new(virt), phys, len });
        }
        let virt_page = state.next_virt;
        if virt_page + pages * PAGE_SIZE > MMIO_START + MMIO_SIZE {
            return Err(MmioError::OutOfVirtualSpace);
        }
        let flags = PteFlags::WRITABLE
            | PteFlags::NO_CACHE
            | PteFlags::WRITE_THROUGH
            | PteFlags::NO_EXECUTE
            | PteFlags::GLOBAL;
        for i in 0..pages {
            let va = VirtAddr::new(virt_page + i * PAGE_SIZE);
            let pa = PhysAddr::new(phys_page + i * PAGE_SIZE);
            // Pages mapped before a failure stay mapped but unused: the bump
            // pointer moves past them below, so nothing else lands there.
            if let Err(e) = kernel_map::map_kernel(va, pa, PageSize::Size4K, flags) {
                state.next_virt = virt_page + (i + 1) * PAGE_SIZE;
                return Err(MmioError::Map(e));
            }
        }
        state.next_virt = virt_page + pages * PAGE_SIZE;
        match state.recorded.iter_mut().find(|r| r.is_none()) {
            Some(slot) => *slot = Some(Recorded { phys_page, pages, virt_page }),
            None => log::warn!(
                "mmio: more than {MAX_RECORDED} mappings; {phys:#x} (+{len:#x}) will not be reused by later requests"
            ),
        }
        Ok(MmioRegion { virt: VirtAddr::new(virt_page + offset), phys, len })
    })
}

impl MmioRegion {
    /// The address of a `size`-byte register at `offset`, checked.
    fn register(&self, offset: u64, size: u64) -> u64 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len),
            "MMIO access at {offset:#x} (+{size}) outside region {:#x} (+{:#x})",
            self.phys,
            self.len
        );
        let addr = self.virt.as_u64() + offset;
        assert!(addr.is_multiple_of(size), "misaligned {size}-byte MMIO access at {:#x}", self.phys + offset);
        addr
    }

    /// Reads the 32-bit register at `offset` (panics if outside or misaligned).
    pub(crate) fn read32(&self, offset: u64) -> u32 {
        let addr = self.register(offset, 4);
        // SAFETY: `register` checked that the aligned 4 bytes lie in the region,
        // which `map` mapped (uncached) for the kernel's lifetime.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    /// Writes the 32-bit register at `offset` (panics if outside or misaligned).
    pub(crate) fn write32(&self, offset: u64, value: u32) {
        let addr = self.register(offset, 4);
        // SAFETY: as in `read32`; the mapping is writable.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
    }

    /// Reads the 64-bit register at `offset` (panics if outside or misaligned).
    pub fn read64(&self, offset: u64) -> u64 {
        let addr = self.register(offset, 8);
        // SAFETY: as in `read32`, for 8 aligned bytes.
        unsafe { core::ptr::read_volatile(addr as *const u64) }
    }

    /// Writes the 64-bit register at `offset` (panics if outside or misaligned).
    pub(crate) fn write64(&self, offset: u64, value: u64) {
        let addr = self.register(offset, 8);
        // SAFETY: as in `read64`; the mapping is writable.
        unsafe { core::ptr::write_volatile(addr as *mut u64, value) }
    }
}
