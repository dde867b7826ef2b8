//! Splitting a transparent huge page into small folios (Linux
//! mm/huge_memory.c: split_huge_page_to_list_to_order(), can_split_folio(),
//! unmap_folio(), __split_huge_page(), remap_page(); and the debugfs
//! `split_huge_pages` file's split_huge_pages_pid(), which tests and
//! scenarios drive it with).
//!
//! Splitting a huge *pmd* ([`super::pgtable::split_huge_pmd`]) only changes
//! how a folio is mapped; splitting the *folio* makes each of its 512 pages
//! a small folio of its own, with its own refcount. The steps, as Linux's:
//! 1. the caller holds the mmap lock, a reference on a page of the folio and
//!    the folio lock is taken (a locked folio is refused: busy);
//! 2. a pmd mapping becomes 512 ptes first (unmap_folio's
//!    TTU_SPLIT_HUGE_PMD);
//! 3. can_split_folio(): the refcount must be the mappings plus the
//!    caller's reference; a pin or any other reference refuses the split
//!    (EAGAIN, as Linux);
//! 4. unmap_folio(): every pte mapping the folio becomes a marker (Linux's
//!    migration entries: a fault on it waits), its mapping's reference goes
//!    to the splitter, and the range is flushed;
//! 5. folio_ref_freeze() at exactly the references the splitter holds: a
//!    GUP-fast that took one in between makes it fail (the split is undone:
//!    EAGAIN), one that comes later finds the count zero and backs off;
//! 6. __split_huge_page(): the metadata becomes 512 small folios, each
//!    unfrozen with one reference of the split, one per pte it will get back
//!    and the caller's on the caller's page; the old head last;
//! 7. remap_page(): the ptes come back (same values: the same frames, now
//!    small folios), then the split's own references go, which frees the
//!    pages nothing maps.
//!
//! What GUP-fast must do about it (bug H): a walker that looked up the
//! folio of its page before step 5 and takes its reference after step 6
//! gets it on the old head, and its pte re-check passes (step 7 put the same
//! pte back); only re-checking that the page is still in that folio
//! (`gup::fast`'s try_get_folio) sees the split.
//!
//! Differences from Linux: no reverse map here, so the folio must be mapped
//! by the caller's address space alone, at its 2 MiB-aligned range (where
//! every anonymous THP of this kernel is mapped); a folio mapped elsewhere
//! too (shared with a fork child) is refused, where Linux unmaps it in every
//! process through the anon_vma. Only anonymous folios, split to order 0.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::addr_space::AddressSpace;
use super::page::{self, Page, PageFlags, PageRef};
use super::paging::RawEntry;
use super::pgtable::{self, NoMemory, PteTable};
use super::user_addr::UserAddr;
use super::{HUGE_PAGE_SIZE, PAGE_SIZE, PageSize};
use crate::tlb::Gather;

/// Why a folio was not split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// Not an anonymous folio (page-cache text is never large here).
    NotAnon,
    /// The folio lock is held by someone else (Linux: the caller locks).
    Busy,
    /// A reference beyond the mappings and the caller's (a pin, a GUP
    /// reference, a concurrent walker): Linux's -EAGAIN.
    Again,
    /// Mapped somewhere else than the caller's range (no reverse map here).
    MappedElsewhere,
    /// The folio is not mapped at the given range.
    NotMapped,
    /// No memory for the pte table a pmd mapping needs.
    NoMemory,
}

impl From<NoMemory> for SplitError {
    fn from(_: NoMemory) -> Self {
        SplitError::NoMemory
    }
}

/// Folios split so far (Linux /proc/vmstat thp_split_page).
static SPLITS: AtomicU64 = AtomicU64::new(0);
/// Splits refused so far (thp_split_page_failed).
static SPLIT_FAILED: AtomicU64 = AtomicU64::new(0);

/// Folios split so far.
pub fn splits() -> u64 {
    SPLITS.load(Ordering::Relaxed)
}

/// Splits refused so far.
pub fn split_failures() -> u64 {
    SPLIT_FAILED.load(Ordering::Relaxed)
}

/// Splits the large anonymous folio of `page` (the caller's reference on a
/// page of it), which `mm` maps at the 2 MiB range `haddr`, into small
/// folios (Linux split_huge_page(): split_huge_page_to_list_to_order() to
/// order 0). The caller holds `mm`'s mmap lock (read or write); its
/// reference ends up on `page`'s own small folio. A small folio is left
/// alone (Ok).
pub fn split_huge_page(mm: &AddressSpace, haddr: UserAddr, page: &PageRef) -> Result<(), SplitError> {
    let r = split_huge_page_to_list(mm, haddr, page);
    match r {
        Ok(true) => {
            SPLITS.fetch_add(1, Ordering::Relaxed);
        }
        Ok(false) => {}
        Err(e) => {
            SPLIT_FAILED.fetch_add(1, Ordering::Relaxed);
            log::debug!("split of the THP at {haddr:#x} refused: {e:?}");
        }
    }
    r.map(|_| ())
}

/// The split; `Ok(true)` if a folio was split.
fn split_huge_page_to_list(mm: &AddressSpace, haddr: UserAddr, page: &PageRef) -> Result<bool, SplitError> {
    assert!(haddr.is_aligned(PageSize::Size2M), "split of a THP at unaligned {haddr:#x}");
    let folio = page.page().folio();
    if !folio.is_large() {
        return Ok(false);
    }
    if !folio.has(PageFlags::ANON) {
        return Err(SplitError::NotAnon);
    }
    let lock = folio.try_lock().ok_or(SplitError::Busy)?;
    let pmd = pgtable::pmd(mm, haddr, false)?.ok_or(SplitError::NotMapped)?;
    let mut batch = Gather::new(mm.tlb());
    // unmap_folio()'s TTU_SPLIT_HUGE_PMD: a pmd mapping becomes ptes first.
    let v = pmd.get();
    if v.is_huge() && pgtable::maps_page(v) && core::ptr::eq(page::page_of(v.addr()), folio) {
        pgtable::split_huge_pmd(pmd, haddr, &mut batch)?;
    }
    let pt = pgtable::pte_table(pmd, false)?.ok_or(SplitError::NotMapped)?;
    // can_split_folio(): every reference is a mapping's or the caller's.
    let mapped = folio_mapcount(folio);
    if folio.refcount() != mapped + 1 {
        return Err(SplitError::Again);
    }
    let saved = unmap_folio(pt, haddr, folio, &mut batch);
    let unmapped = saved.iter().filter(|e| e.is_some()).count() as i32;
    if unmapped != mapped {
        remap_page(pt, haddr, &saved);
        return Err(SplitError::MappedElsewhere);
    }
    // The old translations are gone from every TLB before the freeze (with
    // `tlb=ipi` this waits for any interrupts-off GUP-fast walk).
    batch.finish();
    // folio_ref_freeze(): the references of the mappings just removed and
    // the caller's, exactly; anything more was taken since the check above.
    if !folio.folio_ref_freeze(unmapped + 1) {
        remap_page(pt, haddr, &saved);
        return Err(SplitError::Again);
    }
    // __split_huge_page(): one reference of the split's own per new folio,
    // one per pte that comes back, and the caller's on its page.
    let caller = (page.page().pfn() - folio.pfn()) as usize;
    page::split_frozen_folio(folio, |i| 1 + i32::from(saved[i].is_some()) + i32::from(i == caller));
    remap_page(pt, haddr, &saved);
    drop(lock);
    // The split's references: the pages nothing maps are freed here.
    for i in 0..saved.len() as u64 {
        page::page(folio.pfn() + i).put();
    }
    Ok(true)
}

/// All mappings of a large folio: its pages' ptes plus its pmds (Linux
/// folio_mapcount()).
fn folio_mapcount(folio: &'static Page) -> i32 {
    let n = 1u64 << folio.order();
    (0..n).map(|i| page::page(folio.pfn() + i).mapcount()).sum::<i32>() + folio.entire_mapcount()
}

/// Replaces every pte of `[haddr, haddr + 2 MiB)` that maps its own page of
/// `folio` by a marker (Linux unmap_folio() with migration entries), lowers
/// the page's mapcount and queues the flush; returns the old entries by page
/// index. The mappings' references now belong to the caller.
fn unmap_folio(pt: PteTable, haddr: UserAddr, folio: &'static Page, batch: &mut Gather<'_>) -> Vec<Option<RawEntry>> {
    let n = 1usize << folio.order();
    let mut saved = alloc::vec![None; n];
    let _ptl = pt.lock();
    for (i, slot) in saved.iter_mut().enumerate() {
        let va = haddr + i as u64 * PAGE_SIZE;
        let e = pt.entry(va);
        let v = e.load(Ordering::Acquire);
        if !pgtable::maps_page(v) || page::page_of(v.addr()).pfn() != folio.pfn() + i as u64 {
            continue;
        }
        // An exchange: the hardware may set accessed/dirty meanwhile, and a
        // GUP-fast that read the old pte re-reads it after its reference
        // (the Dekker pair with our freeze below).
        let old = e.swap(pgtable::marker(v.addr()), Ordering::AcqRel);
        page::page_of(old.addr()).unmap_pte();
        batch.page(va.into());
        *slot = Some(old);
    }
    saved
}

/// Puts the entries [`unmap_folio`] took back (Linux remap_page(): remove
/// the migration entries), each page's mapcount raised again. The
/// references come with them (the caller's).
fn remap_page(pt: PteTable, haddr: UserAddr, saved: &[Option<RawEntry>]) {
    let _ptl = pt.lock();
    for (i, old) in saved.iter().enumerate() {
        let Some(old) = *old else { continue };
        let va = haddr + i as u64 * PAGE_SIZE;
        page::page_of(old.addr()).map_pte();
        // Release: the split's metadata before the mapping (a fault waiting
        // on the marker, a walker reading the pte, sees the small folio).
        pt.entry(va).store(old, Ordering::Release);
    }
}

/// What [`split_huge_pages_pid`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitCount {
    /// Large folios split.
    pub split: u64,
    /// Large folios that could not be split.
    pub failed: u64,
}

/// Splits every THP mapped in `[start, end)` of `mm` (Linux's debugfs
/// `split_huge_pages` with "pid,vaddr_start,vaddr_end": split_huge_pages_pid()).
/// Takes the mmap lock for reading. A refusal (pinned, busy, shared with a
/// fork child) is counted, not an error, as Linux's.
pub fn split_huge_pages_pid(mm: &AddressSpace, start: UserAddr, end: UserAddr) -> SplitCount {
    let _vmas = mm.vmas.read();
    let mut count = SplitCount::default();
    let mut addr = start.align_down(PageSize::Size4K);
    while addr < end {
        let haddr = addr.align_down(PageSize::Size2M);
        let next = haddr + HUGE_PAGE_SIZE;
        match large_folio_at(mm, addr) {
            Some(r) => match split_huge_page(mm, haddr, &r) {
                Ok(()) => count.split += 1,
                Err(_) => count.failed += 1,
            },
            None => {
                addr += PAGE_SIZE;
                continue;
            }
        }
        // One folio per 2 MiB range.
        addr = next;
    }
    count
}

/// A reference on the large folio mapped at `addr`, if one is (looked up
/// under the page-table lock, as Linux's folio_walk).
fn large_folio_at(mm: &AddressSpace, addr: UserAddr) -> Option<PageRef> {
    let pmd = pgtable::pmd(mm, addr, false).ok()??;
    let v = pmd.get();
    if v.is_huge() {
        let _ptl = pmd.lock();
        let v = pmd.get();
        return (v.is_huge() && pgtable::maps_page(v)).then(|| PageRef::new_ref(page::page_of(v.addr())));
    }
    let pt = pgtable::pte_table(pmd, false).ok()??;
    let _ptl = pt.lock();
    let e = pt.entry(addr).load(Ordering::Acquire);
    let p = pgtable::maps_page(e).then(|| page::page_of(e.addr()))?;
    p.is_large().then(|| PageRef::new_ref(p))
}
