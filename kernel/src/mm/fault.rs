//! Page faults on user addresses (Linux handle_mm_fault() and the anonymous
//! paths below it): demand-zero pages at 4 KiB and 2 MiB, copy-on-write,
//! reuse of exclusive pages, and unsharing for read-only pins; in a private
//! file mapping (program text) the page-cache page read-only, or a private
//! copy of it on a write (`file_fault`).
//!
//! Every path allocates first, then takes the page-table lock and re-checks
//! that the entry is still what it saw; a loser of a race frees what it
//! allocated and returns (the access is retried by the hardware or by GUP).
//! A write fault on a shared anonymous page copies it: the old page keeps
//! its mapping's reference until the pte has been cleared and flushed
//! (Linux wp_page_copy(): ptep_clear_flush before the put), so nobody can
//! still write the old page through a stale TLB entry once it is released.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, Ordering};
use x86_64::VirtAddr;

use super::addr_space::AddressSpace;
use crate::tlb::Gather;
use super::frame_io;
use super::page::{self, PageFlags, PageRef};
use super::paging::{PageSize, PteFlags, RawEntry};
use super::pgtable::{self, Pmd, PteTable};
use super::user_addr::UserAddr;
use super::vma::{Prot, VmFlags, Vma, VmaSet};

/// What the faulting access wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// A read.
    Read,
    /// A write.
    Write,
    /// An instruction fetch.
    Exec,
    /// Not an access: make the page exclusive without making it writable
    /// (Linux FAULT_FLAG_UNSHARE, for read-only pins of shared pages).
    Unshare,
}

/// A faulting access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// What it wanted.
    pub kind: AccessKind,
    /// Whether it came from user mode.
    pub user: bool,
}

impl Access {
    /// Decodes a page-fault error code (Intel SDM vol. 3, 4.7: bit 1 write,
    /// bit 2 user mode, bit 4 instruction fetch).
    pub(crate) fn from_error_code(code: u64) -> Access {
        let kind = if code & (1 << 4) != 0 {
            AccessKind::Exec
        } else if code & (1 << 1) != 0 {
            AccessKind::Write
        } else {
            AccessKind::Read
        };
        Access { kind, user: code & (1 << 2) != 0 }
    }
}

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No area covers the address (or no address space).
    NotMapped,
    /// The area does not allow the access.
    Protection,
    /// No memory for a page or a table.
    OutOfMemory,
}

impl FaultError {
    /// A word for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultError::NotMapped => "not mapped",
            FaultError::Protection => "protection",
            FaultError::OutOfMemory => "out of memory",
        }
    }
}

impl From<pgtable::NoMemory> for FaultError {
    fn from(_: pgtable::NoMemory) -> Self {
        FaultError::OutOfMemory
    }
}

/// Transparent huge pages policy (Linux /sys/kernel/mm/transparent_hugepage/enabled).
/// Fixed at `Madvise`: no boot option sets it; the faults and khugepaged read
/// it at their decision points, where Linux reads the sysfs setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThpMode {
    /// Huge pages wherever a 2 MiB block fits (not in NOHUGEPAGE areas).
    Always,
    /// Only in areas marked HUGEPAGE (the default).
    Madvise,
    /// Never.
    Never,
}

static THP: AtomicU8 = AtomicU8::new(1);

/// The THP policy.
pub(crate) fn thp_mode() -> ThpMode {
    match THP.load(Ordering::Relaxed) {
        0 => ThpMode::Always,
        1 => ThpMode::Madvise,
        _ => ThpMode::Never,
    }
}

/// Which rule decides whether a write fault may reuse a read-only anonymous
/// page in place instead of copying it (`cow.reuse=`; Linux's history of
/// do_wp_page(), bug D of linux-protocol.md §3, CVE-2020-29374).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CowReuse {
    /// Today's (v5.19, PageAnonExclusive): an exclusive page is reused;
    /// another only if its only reference is our mapping (the default).
    AnonExclusive,
    /// 2020 (09854ba94c6a "mm: do_wp_page() simplification"): reuse only if
    /// the page's reference count is 1, whatever its flags.
    Refcount,
    /// Before v5.8 (negative control): reuse if the page is mapped once,
    /// ignoring other references: a GUP reference taken by a process that
    /// has since unmapped the page then sees the writer's later writes.
    Mapcount,
}

static COW_REUSE: AtomicU8 = AtomicU8::new(CowReuse::AnonExclusive as u8);

/// Sets the COW reuse rule (boot option `cow.reuse=`, tests).
pub fn set_cow_reuse(r: CowReuse) {
    COW_REUSE.store(r as u8, Ordering::Relaxed);
}

/// The COW reuse rule in force.
pub(crate) fn cow_reuse() -> CowReuse {
    match COW_REUSE.load(Ordering::Relaxed) {
        0 => CowReuse::AnonExclusive,
        1 => CowReuse::Refcount,
        _ => CowReuse::Mapcount,
    }
}

fn thp_allowed(vma: &Vma, addr: UserAddr) -> bool {
    // Huge pages back anonymous memory only (no large page-cache folios).
    if vma.file.is_some() {
        return false;
    }
    let wanted = match thp_mode() {
        ThpMode::Always => !vma.flags.contains(VmFlags::NOHUGEPAGE),
        ThpMode::Madvise => vma.flags.contains(VmFlags::HUGEPAGE) && !vma.flags.contains(VmFlags::NOHUGEPAGE),
        ThpMode::Never => false,
    };
    wanted && vma.huge_fits(addr)
}

/// The current task's address space.
pub(crate) fn current_mm() -> Option<Arc<AddressSpace>> {
    // The only MmContext is AddressSpace; the downcast cannot fail.
    let mm = crate::sched::current_mm()?;
    Some(mm.into_any().downcast::<AddressSpace>().unwrap_or_else(|_| panic!("a task's address space is no AddressSpace")))
}

/// Resolves a fault at `addr` in the current address space, taking the
/// mmap lock for reading. Must run with interrupts enabled (it may sleep on
/// the mmap lock).
pub fn handle(addr: VirtAddr, access: Access) -> Result<(), FaultError> {
    let mm = current_mm().ok_or(FaultError::NotMapped)?;
    let vmas = mm.vmas.read();
    // A kernel-half address is in no area.
    let addr = UserAddr::new(addr.as_u64()).ok_or(FaultError::NotMapped)?;
    handle_locked(&mm, &vmas, addr, access)
}

/// Whether `vma` allows `kind`.
pub(crate) fn vma_allows(vma: &Vma, kind: AccessKind) -> bool {
    match kind {
        AccessKind::Read | AccessKind::Unshare => vma.prot.contains(Prot::READ),
        AccessKind::Write => vma.prot.contains(Prot::WRITE),
        AccessKind::Exec => vma.prot.contains(Prot::EXEC),
    }
}

/// Resolves a fault with the mmap lock held (for GUP's slow path too).
pub(crate) fn handle_locked(mm: &AddressSpace, vmas: &VmaSet, addr: UserAddr, access: Access) -> Result<(), FaultError> {
    let vma = *vmas.find(addr).ok_or(FaultError::NotMapped)?;
    // The kernel's own unshare faults (KSM's break_ksm(), GUP's after its
    // own area checks) are not the area's accesses: Linux's
    // handle_mm_fault() checks no permission, so a PROT_NONE page unshares
    // too (and stays PROT_NONE).
    let kernel_unshare = access.kind == AccessKind::Unshare && !access.user;
    if !kernel_unshare && !vma_allows(&vma, access.kind) {
        return Err(FaultError::Protection);
    }
    let pmd = pgtable::pmd(mm, addr, true)?.ok_or(FaultError::OutOfMemory)?;
    // A handful of rounds covers every race (a concurrent fault installing
    // the same table or leaf, a split); more means something is wrong.
    for _ in 0..8 {
        let v = pmd.get();
        if !v.is_present() && !v.flags().contains(PteFlags::PROTNONE) {
            if thp_allowed(&vma, addr) && huge_anonymous(mm, &vma, pmd)? {
                return Ok(());
            }
        } else if v.is_huge() {
            match huge_fault(mm, &vma, pmd, addr, access)? {
                Huge::Done => return Ok(()),
                Huge::Split => continue,
            }
        }
        let Some(pt) = pgtable::pte_table(pmd, true)? else { continue };
        return pte_fault(mm, &vma, pt, addr, access);
    }
    panic!("fault at {addr:#x}: the pmd kept changing");
}

/// Maps a fresh zeroed 2 MiB folio (Linux do_huge_pmd_anonymous_page()).
/// `false` when no huge folio could be had (fall back to 4 KiB pages).
fn huge_anonymous(mm: &AddressSpace, vma: &Vma, pmd: Pmd) -> Result<bool, FaultError> {
    let Some(folio) = page::alloc_folio(PageSize::Size2M.order(), true) else { return Ok(false) };
    let _ptl = pmd.lock();
    if pmd.get() != RawEntry::EMPTY {
        return Ok(true); // raced: someone mapped it; the access retries
    }
    let head = folio.page();
    head.set(PageFlags::ANON);
    for i in 0..512 {
        page::page(head.pfn() + i).set(PageFlags::ANON_EXCLUSIVE);
    }
    head.map_pmd();
    let e = pgtable::leaf(head.phys(), vma.prot.contains(Prot::WRITE), vma.prot.contains(Prot::EXEC), PageSize::Size2M);
    // Release: the zeroed folio and its metadata before the mapping.
    pmd.entry.store(e, Ordering::Release);
    let _ = folio.into_mapping();
    mm.add_rss(512);
    Ok(true)
}

enum Huge {
    Done,
    Split,
}

/// A fault on a huge pmd: reuse it for a write when exclusive, else split it
/// and let the pte path copy one 4 KiB page (Linux do_huge_pmd_wp_page()).
fn huge_fault(mm: &AddressSpace, vma: &Vma, pmd: Pmd, addr: UserAddr, access: Access) -> Result<Huge, FaultError> {
    let v = pmd.get();
    let needs = match access.kind {
        AccessKind::Write => !v.flags().contains(PteFlags::WRITABLE),
        AccessKind::Unshare => !page::page_of(v.addr()).has(PageFlags::ANON_EXCLUSIVE),
        _ => false,
    };
    if !needs {
        return Ok(Huge::Done); // spurious (a stale TLB entry); the retry succeeds
    }
    if access.kind == AccessKind::Write && vma.prot.contains(Prot::WRITE) {
        let _ptl = pmd.lock();
        let v = pmd.get();
        if !v.is_huge() {
            return Ok(Huge::Split);
        }
        let head = page::page_of(v.addr());
        if head.has(PageFlags::ANON_EXCLUSIVE) {
            let w = v.with_flags(PteFlags::WRITABLE | PteFlags::DIRTY);
            // Raising permissions needs no flush: a stale read-only entry only
            // causes a spurious fault.
            let _ = pmd.entry.compare_exchange(v, w, Ordering::AcqRel);
            return Ok(Huge::Done);
        }
    }
    let mut batch = Gather::new(mm.tlb());
    pgtable::split_huge_pmd(pmd, addr, &mut batch)?;
    batch.finish();
    Ok(Huge::Split)
}

/// A fault at pte level (Linux handle_pte_fault()).
fn pte_fault(mm: &AddressSpace, vma: &Vma, pt: PteTable, addr: UserAddr, access: Access) -> Result<(), FaultError> {
    let pte = pt.entry(addr);
    let v = pte.load(Ordering::Acquire);
    if v == RawEntry::EMPTY {
        return match vma.file_page(addr) {
            Some((id, index)) => file_fault(mm, vma, pt, addr, access, id, index),
            None => anonymous(mm, vma, pt, addr),
        };
    }
    if pgtable::is_marker(v) {
        return wait_for_marker(pt, addr);
    }
    if !v.is_present() {
        // A PROT_NONE entry: only the kernel's unshare gets through (a copy
        // if the page is shared, KSM's or fork's), as Linux's do_wp_page()
        // for FAULT_FLAG_UNSHARE. An area that now allows the access cannot
        // have one (mprotect rewrites the entries): a protection fault.
        if access.kind == AccessKind::Unshare && v.flags().contains(PteFlags::PROTNONE) {
            if page::page_of(v.addr()).has(PageFlags::ANON_EXCLUSIVE) {
                return Ok(());
            }
            return wp_page(mm, vma, pt, addr, true);
        }
        return Err(FaultError::Protection);
    }
    match access.kind {
        AccessKind::Write if !v.flags().contains(PteFlags::WRITABLE) => wp_page(mm, vma, pt, addr, false),
        AccessKind::Unshare if !page::page_of(v.addr()).has(PageFlags::ANON_EXCLUSIVE) => {
            wp_page(mm, vma, pt, addr, true)
        }
        _ => Ok(()), // spurious
    }
}

/// Waits until a writer's marker leaves the pte, then lets the access retry
/// (Linux migration_entry_wait()). The writer holds it for a grace period;
/// far longer means a writer died holding it, which is reported.
fn wait_for_marker(pt: PteTable, addr: UserAddr) -> Result<(), FaultError> {
    let deadline = crate::time::now_ns() + 10_000_000_000;
    while pgtable::is_marker(pt.entry(addr).load(Ordering::Acquire)) {
        if crate::time::now_ns() > deadline {
            panic!("fault at {addr:#x}: a writer's marker pte stayed for 10 s");
        }
        crate::sched::yield_now();
    }
    Ok(())
}

/// Maps a fresh zeroed 4 KiB page (Linux do_anonymous_page()).
fn anonymous(mm: &AddressSpace, vma: &Vma, pt: PteTable, addr: UserAddr) -> Result<(), FaultError> {
    let folio = page::alloc_folio(0, true).ok_or(FaultError::OutOfMemory)?;
    let _ptl = pt.lock();
    let pte = pt.entry(addr);
    if pte.load(Ordering::Acquire) != RawEntry::EMPTY {
        return Ok(()); // raced; `folio` is freed
    }
    let p = folio.page();
    p.set(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE);
    p.map_pte();
    let e = pgtable::leaf(p.phys(), vma.prot.contains(Prot::WRITE), vma.prot.contains(Prot::EXEC), PageSize::Size4K);
    // Release: the zeroed contents and metadata before the mapping.
    pte.store(e, Ordering::Release);
    let _ = folio.into_mapping();
    mm.add_rss(1);
    Ok(())
}

/// A fault on an empty pte of a private file mapping (Linux do_fault()): a
/// read or an instruction fetch maps the page-cache page read-only
/// (do_read_fault()); a write, or an unshare (a forced write, a read-only
/// pin), maps a private anonymous copy of it (do_cow_fault()).
fn file_fault(
    mm: &AddressSpace,
    vma: &Vma,
    pt: PteTable,
    addr: UserAddr,
    access: Access,
    id: super::filemap::FileId,
    index: u64,
) -> Result<(), FaultError> {
    let cached = super::filemap::find_get_page(id, index).ok_or(FaultError::NotMapped)?;
    let exec = vma.prot.contains(Prot::EXEC);
    let cow = matches!(access.kind, AccessKind::Write | AccessKind::Unshare);
    // Allocated (and filled) before the lock, as every path here.
    let copy = if cow {
        let new = page::alloc_folio(0, false).ok_or(FaultError::OutOfMemory)?;
        // The page-cache page never changes (filemap invariants).
        frame_io::copy_page_from(&new, cached);
        Some(new)
    } else {
        None
    };
    let _ptl = pt.lock();
    let pte = pt.entry(addr);
    if pte.load(Ordering::Acquire) != RawEntry::EMPTY {
        return Ok(()); // raced; the copy is freed
    }
    let e = match copy {
        Some(new) => {
            let p = new.page();
            p.set(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE);
            p.map_pte();
            let writable = access.kind == AccessKind::Write && vma.prot.contains(Prot::WRITE);
            let e = pgtable::leaf(p.phys(), writable, exec, PageSize::Size4K);
            let _ = new.into_mapping();
            e
        }
        None => {
            // The mapping's reference on the page-cache page.
            let r = PageRef::new_ref(cached);
            cached.map_pte();
            let e = pgtable::leaf(cached.phys(), false, exec, PageSize::Size4K);
            let _ = r.into_mapping();
            e
        }
    };
    // Release: the copy's contents and the metadata before the mapping.
    pte.store(e, Ordering::Release);
    mm.add_rss(1);
    Ok(())
}

/// A write (or unshare) fault on a read-only present pte (Linux do_wp_page()).
/// Reuses the page when it is exclusive to us, copies it otherwise.
fn wp_page(mm: &AddressSpace, vma: &Vma, pt: PteTable, addr: UserAddr, unshare: bool) -> Result<(), FaultError> {
    let writable = !unshare && vma.prot.contains(Prot::WRITE);
    let ptl = pt.lock();
    let pte = pt.entry(addr);
    let v = pte.load(Ordering::Acquire);
    if !pgtable::maps_page(v) || (!unshare && v.flags().contains(PteFlags::WRITABLE)) {
        return Ok(()); // changed under us; retry
    }
    let old = page::page_of(v.addr());
    if can_reuse(old) {
        if writable {
            let w = v.with_flags(PteFlags::WRITABLE | PteFlags::DIRTY);
            let _ = pte.compare_exchange(v, w, Ordering::AcqRel);
        }
        return Ok(());
    }
    // Copy (Linux wp_page_copy()). Frames come from a spinlock-protected
    // allocator, so allocating under the page-table lock cannot sleep.
    let new = page::alloc_folio(0, false).ok_or(FaultError::OutOfMemory)?;
    // `old` is live (its mapping's reference, whose lock we hold) and
    // read-only in every mapping, so its contents are stable (a DMA pin
    // writing it is the fork-vs-pin case Linux handles at fork); the copy is
    // published by the Release store of the new pte below.
    frame_io::copy_page_from(&new, old);
    let p = new.page();
    p.set(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE);
    p.map_pte();
    let e = pgtable::leaf(p.phys(), writable, vma.prot.contains(Prot::EXEC), PageSize::Size4K);
    // The copy of a PROT_NONE page stays PROT_NONE (Linux: mk_pte() with
    // the area's vm_page_prot).
    let e = if v.is_present() { e } else { pgtable::protnone(e) };
    // Clear, flush, then install and release (ptep_clear_flush + set_pte_at).
    let mut batch = Gather::new(mm.tlb());
    let cleared = pte.swap(RawEntry::EMPTY, Ordering::AcqRel);
    batch.page(addr.into());
    old.unmap_pte();
    // SAFETY: the cleared entry held this reference (it mapped `old`).
    batch.release(unsafe { PageRef::from_mapping(old) });
    debug_assert_eq!(cleared.addr(), v.addr());
    // The new entry is installed before the flush completes on other CPUs:
    // they either still use the old read-only entry (and fault) or see the
    // new one; none can write the old page.
    pte.store(e, Ordering::Release);
    let _ = new.into_mapping();
    drop(ptl);
    batch.finish();
    Ok(())
}

/// Whether a write may reuse `p` in place (Linux wp_can_reuse_anon_folio()):
/// it is exclusive, or a small anonymous non-KSM page whose only reference is
/// our mapping (then it becomes exclusive again). The rule is `cow.reuse=`'s
/// one decision point ([`CowReuse`]).
fn can_reuse(p: &page::Page) -> bool {
    if p.has(PageFlags::KSM) || !p.has(PageFlags::ANON) {
        return false;
    }
    let rule = cow_reuse();
    if rule == CowReuse::AnonExclusive && p.has(PageFlags::ANON_EXCLUSIVE) {
        return true;
    }
    if p.is_large() {
        return false;
    }
    // Under the page-table lock our mapping cannot go away; a concurrent
    // lockless reference only makes the count larger, so a count of 1 with
    // one mapping proves nobody else can see the page.
    let Some(_lock) = p.try_lock() else { return false };
    let reuse = match rule {
        CowReuse::AnonExclusive => p.refcount() == 1 && p.mapcount() == 1,
        CowReuse::Refcount => p.refcount() == 1,
        // Pre-5.8 reuse_swap_page(): one mapping is enough; a reference
        // held by someone who no longer maps the page is not looked at.
        CowReuse::Mapcount => p.mapcount() == 1,
    };
    if reuse {
        p.set(PageFlags::ANON_EXCLUSIVE);
    }
    reuse
}
