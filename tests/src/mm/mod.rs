//! Memory-management tests: page metadata, user page tables, faults (4 KiB,
//! THP, copy-on-write, unshare), fork, and the memory calls' validation.
//!
//! Tests run their user-memory part in a kernel thread that has the test's
//! address space loaded ([`in_mm`]), so it can touch user addresses directly
//! (SMAP is off). Faults are resolved by calling the fault handler the way
//! the page-fault exception does, then the memory is accessed. Every test
//! ends with [`assert_no_leaks`]: folios, page tables and the oracles'
//! counters are back where they were.

pub mod areas;
pub mod calls;
pub mod cow;
pub mod faults;
pub mod frame_io;
pub mod pages;
pub mod user_addr;

use alloc::sync::Arc;
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::fault::{self, Access, AccessKind};
use kernel::mm::paging::{self, Translation};
use kernel::mm::{UserAddr, page, pgtable};

/// What must come back to its value when a test's memory is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accounts {
    /// Folios allocated.
    pub folios: usize,
    /// User page-table frames allocated.
    pub tables: usize,
    /// Use-after-free events.
    pub uaf: u64,
    /// Invariant errors.
    pub invariant_errors: u64,
}

/// The current accounts.
pub fn accounts() -> Accounts {
    Accounts {
        folios: page::live_folios(),
        tables: pgtable::live_tables(),
        uaf: page::uaf_events(),
        invariant_errors: page::invariant_errors(),
    }
}

/// Runs `f` with a fresh accounting baseline and checks nothing leaked and
/// no oracle fired.
pub fn assert_no_leaks<R>(f: impl FnOnce() -> R) -> R {
    let before = accounts();
    let r = f();
    release_lazy_mms();
    assert_eq!(accounts(), before, "leak or oracle event (before/after)");
    r
}

/// Makes every CPU drop an address space it keeps lazily, so that address
/// spaces the test dropped are really freed.
pub fn release_lazy_mms() {
    kernel::sched::leave_lazy_mm_everywhere().unwrap_or_else(|cpu| panic!("cpu{cpu} did not drop its lazy mm"));
}

/// A fresh address space.
pub fn new_mm() -> Arc<AddressSpace> {
    Arc::new(AddressSpace::new().expect("address space"))
}

/// Runs `f` in a kernel thread on this CPU with `mm` loaded, and returns its result.
pub fn in_mm<R: Send + 'static>(mm: &Arc<AddressSpace>, f: impl FnOnce() -> R + Send + 'static) -> R {
    in_mm_on(kernel::smp::cpu_index(), mm, f)
}

/// Runs `f` in a kernel thread on `cpu` with `mm` loaded.
pub fn in_mm_on<R: Send + 'static>(cpu: usize, mm: &Arc<AddressSpace>, f: impl FnOnce() -> R + Send + 'static) -> R {
    kernel::sched::spawn_in(cpu, "mm test", Some(mm.clone()), f).expect("spawn").join()
}

/// Faults `addr` in for `kind` as the page-fault handler would.
pub fn touch(addr: UserAddr, kind: AccessKind) {
    fault::handle(addr.into(), Access { kind, user: false })
        .unwrap_or_else(|e| panic!("fault at {addr:#x} ({kind:?}): {}", e.as_str()));
}

/// Writes `v` at `addr` (faulting it in for writing first).
pub fn write(addr: UserAddr, v: u64) {
    touch(addr, AccessKind::Write);
    // Through uaccess, as every kernel access to user memory (SMAP).
    kernel::mm::uaccess::write_user(kernel::mm::uaccess::UserPtr(addr.as_u64()), &v)
        .unwrap_or_else(|_| panic!("write_user at {addr:#x}: EFAULT"));
}

/// Reads the u64 at `addr` (faulting it in for reading first).
pub fn read(addr: UserAddr) -> u64 {
    touch(addr, AccessKind::Read);
    kernel::mm::uaccess::read_user::<u64>(kernel::mm::uaccess::UserPtr(addr.as_u64()))
        .unwrap_or_else(|_| panic!("read_user at {addr:#x}: EFAULT"))
}

/// Where `addr` leads in `mm`'s tables.
pub fn translate(mm: &AddressSpace, addr: UserAddr) -> Option<Translation> {
    paging::translate(mm.root(), addr.into())
}

/// The u64 at physical address `pa`, read through the direct map.
pub fn read_phys(pa: x86_64::PhysAddr) -> u64 {
    // SAFETY: callers pass frames they hold a reference on (mapped pages).
    unsafe { (kernel::mm::phys_to_virt(pa).as_ptr::<u64>()).read_volatile() }
}

/// Writes `v` at physical address `pa` through the direct map (a device's
/// write into a pinned frame).
pub fn write_phys(pa: x86_64::PhysAddr, v: u64) {
    // SAFETY: callers pass frames they hold a pin on.
    unsafe { (kernel::mm::phys_to_virt(pa).as_mut_ptr::<u64>()).write_volatile(v) }
}

/// mmap of private anonymous memory, panicking on error.
pub fn mmap(mm: &AddressSpace, len: u64, prot: u32) -> UserAddr {
    use kernel::mm::mmap::{self as m, map};
    m::mmap(mm, 0, len, prot, map::PRIVATE | map::ANONYMOUS).expect("mmap")
}

/// PROT_READ | PROT_WRITE.
pub const RW: u32 = 3;
