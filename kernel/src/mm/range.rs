//! Operations over a range of mapped user pages, with the mmap lock held for
//! writing: zapping (munmap, MADV_DONTNEED; Linux zap_page_range /
//! unmap_page_range) and changing protection (mprotect; Linux
//! change_protection()).
//!
//! A huge pmd the range covers entirely is handled as one 2 MiB leaf; one it
//! covers partly is split into 512 ptes first. Every changed entry goes into
//! the caller's [`Gather`], whose `finish` flushes the TLBs and only then
//! drops the references of the zapped pages.

use core::sync::atomic::Ordering;

use super::addr_space::AddressSpace;
use crate::tlb::Gather;
use super::page::{self, PageFlags, PageRef};
use super::paging::{PteFlags, RawEntry};
use super::pgtable::{self, NoMemory, Pmd, PteTable};
use super::user_addr::{UserAddr, UserRange};
use super::vma::Prot;
use super::{HUGE_PAGE_SIZE, PAGE_SIZE, PageSize};

/// Visits `range` (page-aligned) by pmd: `huge(pmd, base)` for a huge
/// pmd the range covers entirely (partial ones are split first), `ptes(table,
/// from, to)` for a pte table's part of the range.
fn walk(
    mm: &AddressSpace,
    range: UserRange,
    batch: &mut Gather<'_>,
    mut huge: impl FnMut(Pmd, UserAddr, &mut Gather<'_>),
    mut ptes: impl FnMut(PteTable, UserAddr, UserAddr, &mut Gather<'_>),
) -> Result<(), NoMemory> {
    let end = range.end();
    let mut addr = range.start();
    while addr < end {
        let block = addr.align_down(PageSize::Size2M);
        let next = (block + HUGE_PAGE_SIZE).min(end);
        if let Some(pmd) = pgtable::pmd(mm, addr, false)? {
            let v = pmd.get();
            if v.is_huge() && pgtable::maps_page(v) {
                if addr == block && next == block + HUGE_PAGE_SIZE {
                    huge(pmd, block, batch);
                    addr = next;
                    continue;
                }
                pgtable::split_huge_pmd(pmd, addr, batch)?;
            }
            if let Some(pt) = pgtable::pte_table(pmd, false)? {
                ptes(pt, addr, next, batch);
            }
        }
        addr = next;
    }
    Ok(())
}

/// Unmaps every page in `range`: entries cleared now, references put
/// after the batch's flush (Linux zap_pte_range + tlb_remove_page).
pub(crate) fn zap(mm: &AddressSpace, range: UserRange, batch: &mut Gather<'_>) -> Result<(), NoMemory> {
    walk(
        mm,
        range,
        batch,
        |pmd, base, batch| {
            let _ptl = pmd.lock();
            let old = pmd.entry.swap(RawEntry::EMPTY, Ordering::AcqRel);
            if pgtable::maps_page(old) && old.is_huge() {
                let head = page::page_of(old.addr());
                head.unmap_pmd();
                // SAFETY: the cleared entry held this reference.
                batch.release(unsafe { PageRef::from_mapping(head) });
                batch.huge(base.into());
                mm.add_rss(-512);
            }
        },
        |pt, from, to, batch| {
            let _ptl = pt.lock();
            let mut va = from;
            while va < to {
                let old = pt.entry(va).swap(RawEntry::EMPTY, Ordering::AcqRel);
                if pgtable::maps_page(old) {
                    let p = page::page_of(old.addr());
                    p.unmap_pte();
                    // SAFETY: the cleared entry held this reference.
                    batch.release(unsafe { PageRef::from_mapping(p) });
                    batch.page(va.into());
                    mm.add_rss(-1);
                }
                va += PAGE_SIZE;
            }
        },
    )
}

/// The entry `old` becomes under protection `prot`, or `None` if unchanged.
/// Write permission is only granted to exclusive anonymous pages (Linux
/// can_change_pte_writable()): a shared page stays read-only and the first
/// write copies it.
fn reprotect(old: RawEntry, prot: Prot) -> Option<RawEntry> {
    if !pgtable::maps_page(old) {
        return None;
    }
    let mut f = old.flags();
    if prot.is_empty() {
        f.remove(PteFlags::PRESENT | PteFlags::WRITABLE);
        f.insert(PteFlags::PROTNONE);
    } else {
        f.remove(PteFlags::PROTNONE);
        f.insert(PteFlags::PRESENT);
        let exclusive = page::page_of(old.addr()).has(PageFlags::ANON_EXCLUSIVE);
        f.set(PteFlags::WRITABLE, prot.contains(Prot::WRITE) && exclusive);
        f.set(PteFlags::NO_EXECUTE, !prot.contains(Prot::EXEC));
    }
    let new = RawEntry::new(old.addr(), f);
    (new != old).then_some(new)
}

/// Applies `prot` to every mapped page of `range` (Linux
/// change_protection()). A PROT_NONE change splits huge pmds (kept simple:
/// a PROT_NONE pmd is never built).
pub(crate) fn protect(mm: &AddressSpace, range: UserRange, prot: Prot, batch: &mut Gather<'_>) -> Result<(), NoMemory> {
    // PROT_NONE on a huge pmd: split first, so that only ptes carry PROTNONE.
    if prot.is_empty() {
        for addr in range.pages(PageSize::Size2M) {
            if let Some(pmd) = pgtable::pmd(mm, addr, false)?
                && pmd.get().is_huge()
            {
                pgtable::split_huge_pmd(pmd, addr.max(range.start()), batch)?;
            }
        }
    }
    walk(
        mm,
        range,
        batch,
        |pmd, base, batch| {
            let _ptl = pmd.lock();
            let old = pmd.get();
            if let Some(new) = reprotect(old, prot)
                && pmd.entry.compare_exchange(old, new.with_flags(PteFlags::HUGE), Ordering::AcqRel).is_ok()
            {
                batch.huge(base.into());
            }
        },
        |pt, from, to, batch| {
            let _ptl = pt.lock();
            let mut va = from;
            while va < to {
                let e = pt.entry(va);
                // Compare-exchange: the hardware may set the accessed or dirty
                // bit concurrently; retry with the new value rather than lose it.
                loop {
                    let old = e.load(Ordering::Acquire);
                    let Some(new) = reprotect(old, prot) else { break };
                    if e.compare_exchange(old, new, Ordering::AcqRel).is_ok() {
                        batch.page(va.into());
                        break;
                    }
                }
                va += PAGE_SIZE;
            }
        },
    )
}
