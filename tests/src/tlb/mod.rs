//! The TLB suite: local and remote flushes (`tlb=ipi|nmi`, `tlb.nowait`),
//! the serialisation property of each mode, the ceiling, gathers with their
//! pending count and poisoned page-table freeing (`ptfree=ipi|rcu`).
//!
//! Each test builds a fresh address space with user-half mappings
//! (`paging::map`), runs kernel threads inside it (SMAP is off, so a kernel
//! thread reaches user addresses directly), and tears it down itself: ptes
//! cleared, tables freed through a [`Gather`], every CPU out of it, data
//! frames freed; the frame allocator's free count must be what it was.

pub mod gather;
pub mod local;
pub mod remote;
pub mod user;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::paging::{self, Entry, Level, PageSize, PageTable, PteFlags, RawEntry};
use kernel::mm::pgtable::DetachedTable;
use kernel::mm::{frame, phys_to_virt};
use kernel::sched;
use kernel::smp;
use kernel::time::Deadline;
use kernel::tlb::{self, Gather};
use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

/// Where the tests map user pages (1 GiB, in the user half).
pub const USER_BASE: u64 = 0x4000_0000;

/// The flags of a user data page.
pub fn user_flags() -> PteFlags {
    PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER
}

/// The `i`-th test page.
pub fn page(i: u64) -> VirtAddr {
    VirtAddr::new(USER_BASE + i * 4096)
}

/// A fresh address space, its data frames, and the free-frame count from
/// before it existed (checked by [`TestMm::teardown`]).
pub struct TestMm {
    /// The address space.
    pub mm: Arc<AddressSpace>,
    frames: Vec<(PhysFrame<Size4KiB>, usize)>,
    free_before: usize,
}

impl TestMm {
    /// An empty address space.
    pub fn new() -> TestMm {
        warm_stack_pool();
        let free_before = free_frames();
        TestMm { mm: Arc::new(AddressSpace::new().expect("no frame for a root")), frames: Vec::new(), free_before }
    }

    /// A zeroed data block of `order` whose first word is `marker`, freed at teardown.
    pub fn data(&mut self, order: usize, marker: u64) -> PhysAddr {
        let f = frame::alloc_zeroed(order).expect("out of frames");
        self.frames.push((f, order));
        write_phys(f.start_address(), marker);
        f.start_address()
    }

    /// Maps a page of `size` at `va` to `pa` (user, writable).
    pub fn map(&self, va: VirtAddr, pa: PhysAddr, size: PageSize) {
        // SAFETY: the address space is this test's own and `va` is in its
        // (otherwise empty) user half; `pa` is a frame the test owns.
        unsafe { paging::map(self.mm.root(), va, pa, size, user_flags()) }.expect("map failed");
    }

    /// Takes every CPU out of the address space, clears the user half,
    /// frees its tables through a gather, frees the data frames, and checks
    /// that no frame leaked.
    pub fn teardown(self) {
        let TestMm { mm, frames, free_before } = self;
        leave_everywhere();
        assert!(mm.cpus().is_empty(), "cpus {} still in the address space", mm.cpus());
        let freed_before = tlb::counts().tables_freed;
        let tables = clear_user_half(&mm);
        wait_tables_freed(freed_before + tables);
        let refs = Arc::strong_count(&mm);
        assert_eq!(refs, 1, "the test still holds {} other references to the address space", refs - 1);
        drop(mm);
        for (f, order) in frames {
            // SAFETY: allocated in `data` with this order; no mapping is left.
            unsafe { frame::free(f, order) };
        }
        assert_eq!(free_frames(), free_before, "frames leaked (tables or data)");
    }
}

impl Default for TestMm {
    fn default() -> Self {
        Self::new()
    }
}

/// Free frames plus the frames the heap mapped (the heap grows and never
/// shrinks: its growth is not a leak of this suite).
fn free_frames() -> usize {
    frame::stats().free + (kernel::mm::heap::stats().size / 4096) as usize
}

/// Thread stacks are kept in a pool once allocated, and the heap's own page
/// tables stay when it grows: make the pool big enough for this suite's
/// threads and give the heap slack before the first baseline, so that their
/// growth is not counted as a leak.
fn warm_stack_pool() {
    static WARM: AtomicBool = AtomicBool::new(false);
    if WARM.swap(true, Ordering::Relaxed) {
        return;
    }
    drop(core::hint::black_box(Vec::<u8>::with_capacity(4 << 20)));
    let go = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let g = go.clone();
            let cpus: Vec<usize> = smp::online_cpus().iter().collect();
            sched::spawn_on(cpus[i % cpus.len()], "warm", move || {
                while !g.load(Ordering::Acquire) {
                    sched::yield_now();
                }
            })
            .unwrap()
        })
        .collect();
    go.store(true, Ordering::Release);
    threads.into_iter().for_each(|t| t.join());
}

/// Every CPU drops a lazily kept address space (this one included).
pub fn leave_everywhere() {
    sched::leave_lazy_mm_everywhere().unwrap_or_else(|cpu| panic!("cpu{cpu} did not drop its lazy mm"));
}

/// Waits (bounded) until the tables-freed counter reaches `target` (an
/// RCU-deferred free runs after a grace period).
pub fn wait_tables_freed(target: u64) {
    let d = Deadline::after_ns(5_000_000_000);
    while tlb::counts().tables_freed < target {
        assert!(!d.expired(), "page tables not freed after 5 s ({} of {target})", tlb::counts().tables_freed);
        kernel::rcu::synchronize_rcu();
    }
}

/// Clears every user-half entry and frees every user-half table through one
/// gather; returns the number of tables freed.
fn clear_user_half(mm: &AddressSpace) -> u64 {
    let mut g = Gather::new(mm.tlb());
    let mut n = 0;
    // SAFETY: the root of a live address space.
    let root = unsafe { PageTable::at(mm.root()) };
    for i in 0..256 {
        n += clear_subtree(&mut g, root.entry(i), Level::Pdpt, (i as u64) << 39);
    }
    g.finish();
    n
}

/// Detaches the table `entry` points to (a table of `level`), its subtables
/// first, and queues them all on `g`.
fn clear_subtree(g: &mut Gather<'_>, entry: &Entry, level: Level, va: u64) -> u64 {
    let e = entry.swap(RawEntry::EMPTY, Ordering::SeqCst);
    if !e.is_present() {
        return 0;
    }
    if level != Level::Pt && e.is_huge() {
        panic!("clear_subtree reached a huge leaf at {va:#x}");
    }
    // SAFETY: a present non-leaf entry of this test's tree points to a table.
    let table = unsafe { PageTable::at(e.addr()) };
    let mut n = 1;
    for i in 0..512 {
        let child_va = va + ((i as u64) << level.shift());
        let child = table.entry(i);
        match level.next() {
            Some(next) if !child.load(Ordering::Relaxed).is_huge() => n += clear_subtree(g, child, next, child_va),
            // Leaves (data pages, 4 KiB or 2 MiB): the test frees the frames.
            _ => {
                child.store(RawEntry::EMPTY, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: detached above (its parent entry is empty), order 0, ours.
    g.free_table(unsafe { DetachedTable::new(e.addr()) }, VirtAddr::new(va));
    n
}

/// The pte (4 KiB leaf entry) that maps `va` in `mm`.
pub fn pte(mm: &AddressSpace, va: VirtAddr) -> &'static Entry {
    leaf_entry(mm, va, Level::Pt)
}

/// The entry at `level` on `va`'s path (tables must exist down to it).
pub fn leaf_entry(mm: &AddressSpace, va: VirtAddr, leaf: Level) -> &'static Entry {
    // SAFETY: the test's own address space, alive while the test uses the
    // entry; the test makes and flushes its changes itself.
    match unsafe { paging::entry_at(mm.root(), va, leaf) } {
        Ok(entry) => entry,
        Err((level, e)) => panic!("no table below {level:?} for {va:?} (entry {:#x})", e.bits()),
    }
}

/// Reads the word at `pa` through the direct map (never through a user
/// mapping, so never through a possibly stale translation).
pub fn read_phys(pa: PhysAddr) -> u64 {
    // SAFETY: the direct map covers all RAM; the frames are the test's.
    unsafe { core::ptr::read_volatile(phys_to_virt(pa).as_ptr::<u64>()) }
}

/// Writes the word at `pa` through the direct map.
pub fn write_phys(pa: PhysAddr, v: u64) {
    // SAFETY: as in `read_phys`.
    unsafe { core::ptr::write_volatile(phys_to_virt(pa).as_mut_ptr::<u64>(), v) }
}

/// Reads the user word at `va` (in a thread running in the address space).
pub fn read_user(va: VirtAddr) -> u64 {
    // Through uaccess, as every kernel access to user memory (SMAP).
    kernel::mm::uaccess::read_user::<u64>(kernel::mm::uaccess::UserPtr(va.as_u64()))
        .unwrap_or_else(|_| panic!("read_user at {va:?}: EFAULT"))
}

/// Writes the user word at `va`.
pub fn write_user(va: VirtAddr, v: u64) {
    kernel::mm::uaccess::write_user(kernel::mm::uaccess::UserPtr(va.as_u64()), &v)
        .unwrap_or_else(|_| panic!("write_user at {va:?}: EFAULT"))
}

/// Values [`write_user_run`] stores.
pub const WRITE_RUN: u64 = 32;

/// Writes `v, v+1, ..., v+WRITE_RUN-1` to the user word at `va` with no
/// branch between the stores. An interrupt or NMI is taken only between
/// instructions (under QEMU's TCG only between translation blocks), so a
/// writer made of such runs keeps writing through its TLB entry for the
/// whole time a shootdown takes to arrive: the window `tlb.nowait` must be
/// caught in (as `tlbwriter` does in ring 3). The run is one SMAP window
/// (`with_user_access`), opened and closed outside the stores.
#[inline(always)]
pub fn write_user_run(va: VirtAddr, v: u64) {
    let w = va.as_mut_ptr::<u64>();
    macro_rules! store8 {
        ($b:expr) => {{
            let b = $b;
            // SAFETY: the caller runs in an address space that maps `va`
            // to a frame it owns, inside the user-access window below.
            unsafe {
                core::ptr::write_volatile(w, b);
                core::ptr::write_volatile(w, b + 1);
                core::ptr::write_volatile(w, b + 2);
                core::ptr::write_volatile(w, b + 3);
                core::ptr::write_volatile(w, b + 4);
                core::ptr::write_volatile(w, b + 5);
                core::ptr::write_volatile(w, b + 6);
                core::ptr::write_volatile(w, b + 7);
            }
        }};
    }
    kernel::mm::uaccess::with_user_access(|| {
        store8!(v);
        store8!(v + 8);
        store8!(v + 16);
        store8!(v + 24);
    });
}
