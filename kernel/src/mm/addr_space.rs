//! Address spaces (Linux: struct mm_struct): a top-level page table whose
//! kernel half is shared with every other address space, and the set of CPUs
//! that have it loaded.
//!
//! The kernel half's top-level entries are allocated once at boot and never
//! change (see `layout`), so copying them into a new root shares the whole
//! kernel half for good. The user half starts empty; VMAs, faults and page
//! tables below the root arrive with the memory-management work.
//!
//! `cpus` is Linux's mm_cpumask: every CPU that has this root in CR3, whether
//! a task of this address space runs there or a kernel thread runs there
//! lazily on it (see `sched`). TLB shootdowns target exactly this set; a CPU
//! leaves it only when it loads another root.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::PhysAddr;
use x86_64::structures::paging::{PhysFrame, Size4KiB};

use super::frame;
use super::kernel_map;
use super::paging::PageTable;
use crate::smp::{AtomicCpuSet, CpuSet};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An address space.
pub struct AddressSpace {
    /// Unique id (for reports).
    pub id: u64,
    root: PhysFrame<Size4KiB>,
    /// CPUs with this root loaded (active or lazy).
    cpus: AtomicCpuSet,
    /// Times a CPU loaded this root (statistics for tests and benchmarks).
    loads: AtomicU64,
    /// TLB flush state: pending gathers, flush counters (see `tlb`).
    pub(crate) tlb: crate::tlb::MmTlbState,
}

/// Why an address space could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpaceError {
    /// No frame for the root table.
    OutOfMemory,
}

impl AddressSpace {
    /// A new address space: empty user half, shared kernel half.
    pub fn new() -> Result<AddressSpace, AddressSpaceError> {
        let root = frame::alloc_zeroed(0).ok_or(AddressSpaceError::OutOfMemory)?;
        // SAFETY: both frames are page tables: the kernel root, and a zeroed
        // frame we own that becomes a root.
        let (kernel, new) = unsafe { (PageTable::at(kernel_map::kernel_root()), PageTable::at(root.start_address())) };
        for i in 256..512 {
            // Relaxed: the new root is not reachable by any CPU until a CR3
            // write, which serialises.
            new.entry(i).store(kernel.entry(i).load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Ok(AddressSpace { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), root, cpus: AtomicCpuSet::new(), loads: AtomicU64::new(0), tlb: crate::tlb::MmTlbState::new() })
    }

    /// The physical address of the top-level table (what CR3 holds).
    pub fn root(&self) -> PhysAddr {
        self.root.start_address()
    }

    /// The CPUs that have this address space loaded.
    pub fn cpus(&self) -> CpuSet {
        // Acquire: pairs with the Release in `note_loaded`, so a CPU seen in
        // the set has finished its CR3 write.
        self.cpus.load(Ordering::Acquire)
    }

    /// How many times a CPU has loaded this root.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Records that `cpu` loaded this root (called by the scheduler after the
    /// CR3 write, with interrupts off).
    pub(crate) fn note_loaded(&self, cpu: usize) {
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.cpus.insert(cpu, Ordering::Release);
    }

    /// Records that `cpu` loaded another root.
    pub(crate) fn note_unloaded(&self, cpu: usize) {
        self.cpus.remove(cpu, Ordering::Release);
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // The scheduler keeps a reference while a CPU has the root loaded, so
        // no CPU can be using it now.
        assert!(self.cpus.load(Ordering::Acquire).is_empty(), "address space {} dropped while loaded", self.id);
        // SAFETY: the root was allocated in `new` with order 0, its user half is
        // empty (no lower tables to free), and no CPU has it loaded.
        unsafe { frame::free(self.root, 0) };
    }
}
