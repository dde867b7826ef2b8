//! GUP's slow path (Linux __get_user_pages() / follow_page_mask()): under
//! the mmap lock for reading, each page is looked up with its page-table
//! lock held and grabbed there; a missing or insufficient mapping is faulted
//! in (a write fault breaks COW, an unshare fault gives a read-only pin an
//! exclusive page) and the lookup retried.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{Foll, GupError, Grabbed, check_range};
use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind, FaultError};
use crate::mm::page::{self, PageFlags, PageRef, PinnedPage};
use crate::mm::paging::{Level, PteFlags, RawEntry};
use crate::mm::pgtable;
use crate::mm::vma::{Vma, VmaSet};
use crate::mm::{PAGE_SIZE, UserAddr};
use crate::time::Deadline;

/// Grabs `nr` pages from `start` in `mm` on the slow path only (Linux
/// get_user_pages()/pin_user_pages() with the mmap lock taken inside).
pub fn get_user_pages(mm: &AddressSpace, start: UserAddr, nr: usize, flags: Foll) -> Result<Vec<Grabbed>, GupError> {
    check_range(start, nr, flags)?;
    let mut out = Vec::with_capacity(nr);
    slow_into(mm, start, nr, flags, &mut out)?;
    Ok(out)
}

/// One page at `addr` of `mm`, whose mmap lock the caller holds (`vmas`),
/// on the slow path (Linux get_user_pages_remote() for one page: another
/// process's memory, as uprobes and ptrace reach it).
pub(crate) fn get_user_pages_remote(mm: &AddressSpace, vmas: &VmaSet, addr: UserAddr, flags: Foll) -> Result<Grabbed, GupError> {
    check_range(addr, 1, flags)?;
    let mut out = Vec::with_capacity(1);
    one(mm, vmas, addr, flags, &mut out)?;
    out.pop().ok_or(GupError::Fault)
}

/// The slow path for `nr` pages from `start`, appending to `out`. On an
/// error `out` is released entirely (all or nothing).
pub(super) fn slow_into(
    mm: &AddressSpace,
    start: UserAddr,
    nr: usize,
    flags: Foll,
    out: &mut Vec<Grabbed>,
) -> Result<(), GupError> {
    let vmas = mm.vmas.read();
    // The area of the previous page serves the next one while it covers it
    // (Linux __get_user_pages() looks the VMA up only when `start` leaves
    // the one it has): the set cannot change under the mmap read lock, and
    // a fault in between does not change areas either.
    let mut vma: Option<&Vma> = None;
    for i in 0..nr as u64 {
        let addr = start + i * PAGE_SIZE;
        if !vma.is_some_and(|v| v.contains(addr)) {
            vma = vmas.find(addr);
        }
        let res = match vma {
            Some(v) => one_in(mm, &vmas, v, addr, flags, out),
            None => Err(GupError::Fault),
        };
        if let Err(e) = res {
            out.clear();
            return Err(e);
        }
    }
    Ok(())
}

/// One page: look up, fault in if needed, grab.
fn one(mm: &AddressSpace, vmas: &VmaSet, addr: UserAddr, flags: Foll, out: &mut Vec<Grabbed>) -> Result<(), GupError> {
    let vma = vmas.find(addr).ok_or(GupError::Fault)?;
    one_in(mm, vmas, vma, addr, flags, out)
}

/// One page of `vma` (the area holding `addr`): check the access, look up,
/// fault in if needed, grab.
fn one_in(mm: &AddressSpace, vmas: &VmaSet, vma: &Vma, addr: UserAddr, flags: Foll, out: &mut Vec<Grabbed>) -> Result<(), GupError> {
    // Linux check_vma_flags(): an access the area does not allow is EFAULT,
    // except a forced write to a private area (every area is private here:
    // Linux's is_cow_mapping()), which breaks COW without making the pte
    // writable: an unshare fault gives the exclusive anonymous page. That
    // holds for a PROT_NONE area too (Linux asks no VM_READ of a write): its
    // ptes are followed (gup_can_follow_protnone() for an inaccessible
    // area) and the copy stays PROT_NONE.
    let kind = if flags.contains(Foll::WRITE) { AccessKind::Write } else { AccessKind::Read };
    let forced_write = flags.contains(Foll::WRITE | Foll::FORCE) && !fault::vma_allows(vma, AccessKind::Write);
    if !forced_write && !fault::vma_allows(vma, kind) {
        return Err(GupError::Fault);
    }
    // A fault resolves the entry; a concurrent change under the mmap read
    // lock (another fault, a KSM merge) can undo it before we look again.
    // Linux's __get_user_pages() retries until the lookup succeeds
    // (cond_resched() between rounds, a fatal signal ends it); so do we,
    // yielding after the first rounds so the other CPU's change completes,
    // and give up with a clear error (EAGAIN) only after RETRY_NS of
    // uninterrupted changes: a livelock, never a panic.
    let deadline = Deadline::after_ns(RETRY_NS);
    let mut rounds = 0u64;
    loop {
        match follow(mm, addr, flags, forced_write) {
            Ok(g) => {
                out.push(g);
                return Ok(());
            }
            Err(need) => fault::handle_locked(mm, vmas, addr, Access { kind: need, user: false }).map_err(|e| match e {
                FaultError::OutOfMemory => GupError::NoMemory,
                FaultError::NotMapped | FaultError::Protection => GupError::Fault,
            })?,
        }
        rounds += 1;
        if rounds >= EAGER_ROUNDS {
            if deadline.expired() {
                log::warn!("GUP slow path: the entry of {addr:#x} kept changing under {rounds} faults; giving up (EAGAIN)");
                return Err(GupError::Busy);
            }
            crate::sched::yield_now();
        }
    }
}

/// Rounds of fault-and-look-again before the slow path yields between rounds.
const EAGER_ROUNDS: u64 = 16;
/// How long the entry of one page may keep changing under the slow path
/// before it gives up with [`GupError::Busy`].
const RETRY_NS: u64 = 1_000_000_000;

/// Looks `addr` up under its page-table lock and grabs the page (Linux
/// follow_page_pte() / follow_huge_pmd()). `Err(kind)`: the fault to take
/// first. `forced_write`: FOLL_FORCE|FOLL_WRITE on an area without write
/// permission (the fault to take is an unshare).
fn follow(mm: &AddressSpace, addr: UserAddr, flags: Foll, forced_write: bool) -> Result<Grabbed, AccessKind> {
    let want = if forced_write {
        AccessKind::Unshare
    } else if flags.contains(Foll::WRITE) {
        AccessKind::Write
    } else {
        AccessKind::Read
    };
    let pmd = pgtable::pmd(mm, addr, false).ok().flatten().ok_or(want)?;
    let v = pmd.get();
    if v.is_huge() && v.is_present() {
        let _ptl = pmd.lock();
        let v = pmd.get();
        if !(v.is_huge() && v.is_present()) {
            return Err(want);
        }
        let sub = page::page(v.addr().as_u64() / PAGE_SIZE + Level::Pt.index(addr.as_u64()) as u64);
        return grab_checked(v, sub, flags, forced_write);
    }
    let pt = pgtable::pte_table(pmd, false).ok().flatten().ok_or(want)?;
    let _ptl = pt.lock();
    let e = pt.entry(addr).load(Ordering::Acquire);
    let forced_protnone = forced_write && e.flags().contains(PteFlags::PROTNONE) && pgtable::maps_page(e);
    if !e.is_present() && !forced_protnone {
        return Err(want);
    }
    grab_checked(e, page::page_of(e.addr()), flags, forced_write)
}

/// Grabs `p` mapped by `e` (page-table lock held) if the entry allows it.
fn grab_checked(e: RawEntry, p: &'static page::Page, flags: Foll, forced_write: bool) -> Result<Grabbed, AccessKind> {
    let writable = e.flags().contains(PteFlags::WRITABLE);
    // Linux can_follow_write_pte(): a read-only pte may be written through
    // with FOLL_FORCE when the area has no write permission and the page is
    // an exclusive anonymous page (COW already broken).
    let forced_ok = forced_write && p.has(PageFlags::ANON) && p.has(PageFlags::ANON_EXCLUSIVE);
    if flags.contains(Foll::WRITE) && !writable && !forced_ok {
        return Err(if forced_write { AccessKind::Unshare } else { AccessKind::Write }); // break COW (or reuse) first
    }
    if super::gup_must_unshare(flags, writable, p) {
        return Err(AccessKind::Unshare);
    }
    // The page-table lock keeps the mapping, and so a reference, in place.
    Ok(if flags.contains(Foll::PIN) { Grabbed::Pin(PinnedPage::pin(p)) } else { Grabbed::Ref(PageRef::new_ref(p)) })
}
