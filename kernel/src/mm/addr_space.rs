//! Address spaces (Linux: struct mm_struct): a top-level page table whose
//! kernel half is shared with every other address space, and the set of CPUs
//! that have it loaded.
//!
//! The kernel half's top-level entries are allocated once at boot and never
//! change (see `layout`), so copying them into a new root shares the whole
//! kernel half for good. The user half starts empty; VMAs, faults and page
//! tables below the root arrive with the memory-management work.
//!
//! `cpus` (kept in the `tlb::MmTlbState`) is Linux's mm_cpumask: every CPU that has this root in CR3, whether
//! a task of this address space runs there or a kernel thread runs there
//! lazily on it (see `sched`). TLB shootdowns target exactly this set; a CPU
//! leaves it only when it loads another root.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::PhysAddr;

use super::kernel_map;
use super::paging::PageTable;
use super::vma::VmaSet;
use crate::smp::CpuSet;
use crate::sync::rwsem::RwSemaphore;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An address space.
pub struct AddressSpace {
    /// Unique id (for reports).
    pub id: u64,
    /// The mmap lock (Linux mmap_lock) and the areas it protects.
    pub vmas: RwSemaphore<VmaSet>,
    /// Odd while fork write-protects this address space's ptes (Linux
    /// mm->write_protect_seq): a lockless pinner that sees it change retries
    /// on the slow path, which waits for fork on the mmap lock.
    write_protect_seq: AtomicU64,
    /// Pages mapped (a 2 MiB pmd counts 512).
    rss: AtomicU64,
    /// What the flush path needs: root, loaded-on CPUs, pending gathers,
    /// flush counters (see `tlb`).
    tlb: crate::tlb::MmTlbState,
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
        let root = super::pgtable::alloc_table().map_err(|_| AddressSpaceError::OutOfMemory)?;
        // SAFETY: both frames are page tables: the kernel root, and a zeroed
        // frame we own that becomes a root.
        let (kernel, new) = unsafe { (PageTable::at(kernel_map::kernel_root()), PageTable::at(root)) };
        for i in 256..512 {
            // Relaxed: the new root is not reachable by any CPU until a CR3
            // write, which serialises.
            new.entry(i).store(kernel.entry(i).load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(AddressSpace {
            id,
            vmas: RwSemaphore::new("mmap lock", VmaSet::new()),
            write_protect_seq: AtomicU64::new(0),
            rss: AtomicU64::new(0),
            tlb: crate::tlb::MmTlbState::new(id, root),
        })
    }

    /// The physical address of the top-level table (what CR3 holds).
    pub fn root(&self) -> PhysAddr {
        self.tlb.root()
    }

    /// The CPUs that have this address space loaded.
    pub fn cpus(&self) -> CpuSet {
        self.tlb.cpus()
    }

    /// The address space as the flush path sees it (what `tlb`'s flush
    /// functions, tokens and gathers take).
    pub fn tlb(&self) -> &crate::tlb::MmTlbState {
        &self.tlb
    }

    /// Pages mapped in the user half.
    pub fn rss(&self) -> u64 {
        self.rss.load(Ordering::Relaxed)
    }

    pub(crate) fn add_rss(&self, pages: i64) {
        // Relaxed: a statistic.
        self.rss.fetch_add(pages as u64, Ordering::Relaxed);
    }

    /// Reads the fork sequence before a lockless pin (Linux
    /// raw_read_seqcount()); `None` while a fork is write-protecting.
    pub(crate) fn write_protect_seq_begin(&self) -> Option<u64> {
        // Acquire: the page-table reads that follow are not hoisted above it.
        let s = self.write_protect_seq.load(Ordering::Acquire);
        (s & 1 == 0).then_some(s)
    }

    /// Whether a fork started since `seq` (Linux read_seqcount_retry()); the
    /// caller took its pins with SeqCst RMWs before (GUP-fast).
    pub(crate) fn write_protect_seq_changed(&self, seq: u64) -> bool {
        // SeqCst: GUP-fast's half of the Dekker pair with fork (its SeqCst
        // pin RMWs, then this load; no fence: gup/fast.rs fast_into).
        self.write_protect_seq.load(Ordering::SeqCst) != seq
    }

    /// Marks the start (odd) or end (even) of fork's write-protection.
    pub(crate) fn write_protect_seq_bump(&self) {
        // SeqCst: the begin must be globally visible before fork reads any
        // pte to decide whether a page is pinned (with fork's fence after
        // it); the pinner's pins and its re-read of the sequence are SeqCst
        // accesses: Dekker, as Linux's raw_write_seqcount_begin + smp_mb
        // pairs with gup_fast.
        self.write_protect_seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Records that `cpu` is loading this root (called by the scheduler just
    /// before the CR3 write, with interrupts off).
    pub(crate) fn note_loaded(&self, cpu: usize) {
        self.tlb.note_loaded(cpu);
    }

    /// Records that `cpu` loaded another root.
    pub(crate) fn note_unloaded(&self, cpu: usize) {
        self.tlb.note_unloaded(cpu);
    }
}

/// The scheduler's view (it loads the root and keeps the CPU set).
impl crate::sched::MmContext for AddressSpace {
    fn root(&self) -> PhysAddr {
        AddressSpace::root(self)
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn note_loaded(&self, cpu: usize) {
        AddressSpace::note_loaded(self, cpu)
    }

    fn note_unloaded(&self, cpu: usize) {
        AddressSpace::note_unloaded(self, cpu)
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn core::any::Any + Send + Sync> {
        self
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // The scheduler keeps a reference while a CPU has the root loaded, so
        // no CPU can be using it now.
        assert!(self.cpus().is_empty(), "address space {} dropped while loaded", self.id);
        // No CPU has the root loaded and no task refers to it: nothing can
        // walk these tables any more, lockless walkers included (they only
        // walk the current task's address space).
        super::pgtable::teardown(self.root());
        // The kernel half is shared: clear it so the poisoning free does not
        // look like it touched the kernel's tables.
        let root = super::pgtable::table(self.root());
        for i in 256..512 {
            root.entry(i).store(super::paging::RawEntry::EMPTY, Ordering::Relaxed);
        }
        super::pgtable::free_table(self.root());
    }
}
