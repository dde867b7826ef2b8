//! One collapse (Linux collapse_huge_page(), __collapse_huge_page_isolate(),
//! __collapse_huge_page_copy() in mm/khugepaged.c, anonymous memory).
//!
//! The protocol, with every defence in place:
//! 1. allocate the 2 MiB folio with no lock held (ENOMEM if none);
//! 2. take the mmap lock for writing, revalidate the area (still one
//!    anonymous area covering the 2 MiB, huge pages not refused) and the pmd
//!    (still a pte table: an already huge pmd is done, an empty one refused);
//! 3. under the pmd lock, clear the pmd with an atomic exchange and flush
//!    the 2 MiB on every CPU that may cache it (pmdp_collapse_flush; with
//!    `tlb=ipi` the flush cannot complete while a CPU is inside GUP-fast's
//!    interrupts-off walk, with `tlb=nmi` it can);
//! 4. the table sync of the `ptfree` mode (Linux
//!    tlb_remove_table_sync_one(): an empty waiting IPI to every other CPU;
//!    with `ptfree=rcu` none here, the table is freed after a grace period)
//!    and, with `sync=rcu`, a grace period (claim 2 of the seed);
//! 5. under the detached table's lock, for each of the 512 ptes, the
//!    isolate checks: none ptes up to `max_ptes_none`, pages mapped more
//!    than once up to `max_ptes_shared` (khugepaged only), anonymous pages
//!    only, the page lock, and `refcount == mapcount` (no swap cache here;
//!    a pin or any other reference refuses). A refusal puts the old table
//!    back (pmd_populate) and the pages stay mapped, coherent with any pin;
//! 6. copy the pages (zero for none ptes) into the folio, install the huge
//!    pmd with a Release store (the copy is ordered before it), then drop
//!    the old mappings and references (after the flush of step 3) and free
//!    the old table as step 4 decided.
//!
//! A GUP-fast that read the old pmd either took its reference before step 3
//! became visible (step 5 sees it and refuses), or its re-read of the pmd
//! sees the change and it backs off; without the pmd re-read (bug F) only
//! the IPI of step 3 or 4, or the grace period, orders it. The negative
//! controls change one decision point each: `collapse.check_before_clear`
//! runs step 5 on the live table before step 3; `collapse.no_table_sync`
//! skips the table sync and frees the table at once (bug G).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use super::{Refusal, scan, stats};
use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{ThpMode, thp_mode};
use crate::mm::page::{self, Page, PageFlags, PageLock, PageRef};
use crate::mm::paging::{PteFlags, RawEntry};
use crate::mm::pgtable::{self, DetachedPteTable, PteFree, PteTable};
use crate::mm::vma::{Prot, VmFlags, Vma, VmaSet};
use crate::mm::{PAGE_SIZE, PageSize, frame_io};
use crate::mm::UserAddr;
use crate::race::overlap::WriterWindow;
use crate::race::widen::{self, Point};
use crate::race::{self, SyncMode};
use crate::stamps::{self, Step};
use crate::tlb::{self, PtFree};

/// Who asks for the collapse (Linux struct collapse_control's is_khugepaged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// khugepaged: `max_ptes_none` and `max_ptes_shared` apply, and the
    /// area must want huge pages under the THP policy (`mm::fault::thp_mode`).
    Khugepaged,
    /// MADV_COLLAPSE: the limits do not apply; only `MADV_NOHUGEPAGE`
    /// areas (and a `never` THP policy) refuse.
    Madvise,
}

/// A successful outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collapsed {
    /// The range is now one huge page.
    Collapsed,
    /// The range was already mapped by a huge pmd (nothing changed).
    AlreadyHuge,
}

/// Whether `vma` may hold a huge page at `haddr` for `cc` (Linux
/// hugepage_vma_revalidate() / thp_vma_allowable_order()).
pub(crate) fn vma_suitable(vma: &Vma, haddr: UserAddr, cc: Control) -> bool {
    // Anonymous areas only (file text is page cache: no large folios there).
    if vma.file.is_some() || !vma.huge_fits(haddr) || vma.flags.contains(VmFlags::NOHUGEPAGE) || !vma.prot.contains(Prot::READ) {
        return false;
    }
    match (cc, thp_mode()) {
        (_, ThpMode::Never) => cc == Control::Madvise,
        (Control::Khugepaged, ThpMode::Madvise) => vma.flags.contains(VmFlags::HUGEPAGE),
        _ => true,
    }
}

/// The pages the isolate step locked, in pte order: `(index, page)` for
/// each present pte, and one page lock per folio.
struct Isolated {
    pages: Vec<(usize, &'static Page)>,
    locks: Vec<PageLock>,
}

/// The mappings of `folio` (all subpages' ptes and its pmds; Linux
/// folio_mapcount()).
fn folio_mapcount(folio: &Page) -> i32 {
    if !folio.is_large() {
        return folio.mapcount();
    }
    let n = 1u64 << folio.order();
    (0..n).map(|i| page::page(folio.pfn() + i).mapcount()).sum::<i32>() + folio.entire_mapcount()
}

/// The checks of step 5 over the 512 ptes of `pt` (Linux
/// __collapse_huge_page_isolate()). The caller holds the table's lock.
fn collapse_huge_page_isolate(pt: &PteTable, cc: Control) -> Result<Isolated, Refusal> {
    let t = scan::tunables();
    let (mut none, mut shared, mut writable) = (0u32, 0u32, false);
    let mut out = Isolated { pages: Vec::with_capacity(512), locks: Vec::new() };
    for i in 0..512usize {
        let e = pt.table.entry(i).load(Ordering::Acquire);
        if e == RawEntry::EMPTY {
            none += 1;
            if cc == Control::Khugepaged && none > t.max_ptes_none {
                return Err(Refusal::NonePtes);
            }
            continue;
        }
        if pgtable::is_marker(e) {
            return Err(Refusal::Changed);
        }
        if !e.is_present() {
            return Err(Refusal::NotAnon); // PROT_NONE (Linux SCAN_PTE_NON_PRESENT)
        }
        let p = page::page_of(e.addr());
        // Anon and KSM are folio properties (Linux folio_test_anon()).
        if !p.folio().has(PageFlags::ANON) || p.folio().has(PageFlags::KSM) {
            return Err(Refusal::NotAnon);
        }
        if p.mapcount() > 1 {
            shared += 1;
            if cc == Control::Khugepaged && shared > t.max_ptes_shared {
                return Err(Refusal::Shared);
            }
        }
        writable |= e.flags().contains(PteFlags::WRITABLE);
        let folio = p.folio();
        out.pages.push((i, p));
        // A large folio mapped by several of these ptes is locked and
        // checked once (Linux's compound_pagelist, which only large folios
        // are looked up in: a small folio is mapped by one pte here, and a
        // second one would fail the trylock below). Newest first: a large
        // folio's ptes are mostly adjacent. Looking up every folio was
        // quadratic: 290 of a collapse's 1580 us under TCG.
        if folio.is_large() && out.locks.iter().rev().any(|l| core::ptr::eq(l.folio(), folio)) {
            continue;
        }
        let Some(lock) = folio.try_lock() else { return Err(Refusal::Locked) };
        // The reference check. The table is detached and flushed (or, under
        // `collapse.check_before_clear`, still live: the negative control),
        // so no new GUP-fast reference can come from this address space.
        // Linux: folio_expected_ref_count(folio) != folio_ref_count(folio)
        // (mapcount, no swap cache, no reference of ours).
        if folio.refcount() != folio_mapcount(folio) {
            drop(lock);
            return Err(Refusal::Pinned);
        }
        out.locks.push(lock);
    }
    if out.pages.is_empty() {
        return Err(Refusal::NonePtes);
    }
    if !writable {
        return Err(Refusal::ReadOnly);
    }
    Ok(out)
}

/// Step 6's copy (Linux __collapse_huge_page_copy()): each page into its
/// subpage, zeroes for none ptes.
fn collapse_huge_page_copy(folio: &PageRef, iso: &Isolated) {
    let mut next = iso.pages.iter().peekable();
    for i in 0..512usize {
        match next.peek() {
            Some(&&(j, p)) if j == i => {
                frame_io::copy_page_into(folio, i, p);
                next.next();
            }
            _ => frame_io::zero_page_in(folio, i),
        }
    }
}

/// How the detached table is made safe to free, decided once per collapse
/// from `ptfree=` and the negative control `collapse.no_table_sync` (its one
/// decision point).
fn table_free_plan() -> PteFree {
    if race::collapse_switches().no_table_sync {
        return PteFree::UnsyncedForNegativeControl;
    }
    match tlb::config().ptfree {
        PtFree::Ipi => PteFree::Synced,
        PtFree::Rcu => PteFree::Rcu,
    }
}

/// Step 3 and 4: clear and flush, then the table sync of `plan`.
fn clear_and_flush(mm: &AddressSpace, pmd: pgtable::Pmd, haddr: UserAddr, plan: PteFree, key: u64) -> Result<DetachedPteTable, Refusal> {
    let t = stamps::start();
    let ptl = pmd.lock();
    let (detached, flush) = pgtable::pmdp_collapse_flush(mm, pmd, haddr).ok_or(Refusal::Changed)?;
    drop(ptl);
    widen::at(Point::WriterPostClear, key);
    flush.flush();
    stamps::end(Step::CollapseFlush, t);
    if plan == PteFree::Synced {
        let t = stamps::start();
        // Linux tlb_remove_table_sync_one(): under `tlb=nmi` the flush did
        // not wait for interrupts-off walkers; this IPI does.
        tlb::table_sync_one();
        stamps::end(Step::CollapseSync, t);
    }
    Ok(detached)
}

/// Puts the detached table back after a refusal (Linux's rollback:
/// pmd_populate() under the pmd lock).
fn put_back(pmd: pgtable::Pmd, detached: DetachedPteTable) {
    let _ptl = pmd.lock();
    pgtable::pmd_populate(pmd, detached);
}

/// Collapses the 2 MiB at `haddr` of `mm` (Linux collapse_huge_page()). The
/// caller holds no mmap lock. Refusals are counted in the statistics.
pub fn collapse_huge_page(mm: &Arc<AddressSpace>, haddr: UserAddr, cc: Control) -> Result<Collapsed, Refusal> {
    let t = stamps::start();
    let r = collapse(mm, haddr, cc);
    stamps::end(Step::Collapse, t);
    match r {
        Ok(Collapsed::Collapsed) => stats::note_collapsed(cc == Control::Madvise),
        Ok(Collapsed::AlreadyHuge) => {}
        Err(e) => stats::note_refused(e),
    }
    r
}

fn collapse(mm: &Arc<AddressSpace>, haddr: UserAddr, cc: Control) -> Result<Collapsed, Refusal> {
    assert!(haddr.is_aligned(PageSize::Size2M), "collapse of unaligned {haddr:#x}");
    // Step 1, no lock held (Linux alloc_charge_folio()).
    let t = stamps::start();
    let folio = page::alloc_folio(PageSize::Size2M.order(), false).ok_or(Refusal::NoMemory)?;
    stamps::end(Step::CollapseAlloc, t);
    // Step 2 (Linux mmap_write_lock(), hugepage_vma_revalidate(),
    // check_pmd_still_valid()).
    let t = stamps::start();
    let vmas = mm.vmas.write();
    stamps::end(Step::CollapseLock, t);
    let vma = revalidate(&vmas, haddr, cc)?;
    // No pte table at all: nothing to collapse (Linux SCAN_PMD_NULL).
    let pmd = pgtable::pmd(mm, haddr, false).ok().flatten().ok_or(Refusal::NonePtes)?;
    let v = pmd.get();
    if v.is_huge() {
        return Ok(Collapsed::AlreadyHuge);
    }
    if !v.is_present() {
        return Err(Refusal::NonePtes);
    }
    // Windows and widening points are keyed by the pte table's frame: the
    // collapse's unit, which GUP-fast's walks record too.
    let key = v.addr().as_u64() / PAGE_SIZE;
    let plan = table_free_plan();
    let window = WriterWindow::open(key);
    let (detached, iso) = if race::collapse_switches().check_before_clear {
        // Negative control: isolate on the live table, then clear and
        // flush. A GUP-fast between the check and the clear takes a pin
        // nobody looks at again.
        let pt = pgtable::pte_table(pmd, false).ok().flatten().ok_or(Refusal::Changed)?;
        let checked = {
            let _ptl = pt.lock();
            collapse_huge_page_isolate(&pt, cc)
        };
        widen::at(Point::WriterPostCheck, key);
        let iso = match checked {
            Ok(iso) => iso,
            Err(r) => {
                window.close();
                return Err(r);
            }
        };
        (clear_and_flush(mm, pmd, haddr, plan, key)?, iso)
    } else {
        // Steps 3 and 4.
        let detached = clear_and_flush(mm, pmd, haddr, plan, key)?;
        if race::sync_mode() == SyncMode::Rcu {
            // The seed's "RCU version": interrupts-off walks are read-side
            // sections, so after the grace period none that saw the old pmd
            // is still running. No spinlock is held across it.
            crate::rcu::synchronize_rcu();
        }
        // Full fence: the pmd exchange is ordered before the reference loads
        // of the isolate step (pairs with GUP-fast's SeqCst reference RMW,
        // then SeqCst pmd re-read, no fence between: this fence against
        // those SeqCst accesses, C++20 [atomics.order] p4.2/4.3, see
        // gup/fast.rs grab_then_recheck). Needed: the exchange and the
        // loads here are not SeqCst.
        fence(Ordering::SeqCst);
        widen::at(Point::WriterPreCheck, key);
        // Step 5.
        let pt = detached.table();
        let t = stamps::start();
        let checked = {
            let _ptl = pt.lock();
            collapse_huge_page_isolate(&pt, cc)
        };
        stamps::end(Step::CollapseIsolate, t);
        widen::at(Point::WriterPostCheck, key);
        match checked {
            Ok(iso) => (detached, iso),
            Err(r) => {
                put_back(pmd, detached);
                window.close();
                return Err(r);
            }
        }
    };
    widen::at(Point::CollapsePreCopy, key);
    // Step 6.
    let t = stamps::start();
    collapse_huge_page_copy(&folio, &iso);
    stamps::end(Step::CollapseCopy, t);
    let t = stamps::start();
    let head = folio.page();
    head.set(PageFlags::ANON | PageFlags::DIRTY);
    for i in 0..512 {
        page::page(head.pfn() + i).set(PageFlags::ANON_EXCLUSIVE);
    }
    head.map_pmd();
    let e = pgtable::leaf(head.phys(), vma.prot.contains(Prot::WRITE), vma.prot.contains(Prot::EXEC), PageSize::Size2M);
    {
        let _ptl = pmd.lock();
        assert_eq!(pmd.get(), RawEntry::EMPTY, "the pmd of a collapse at {haddr:#x} changed while it was clear");
        // Release: the copy and the folio's metadata are visible before the
        // huge pmd (Linux __folio_mark_uptodate()'s smp_wmb()).
        pmd.entry.store(e, Ordering::Release);
    }
    let _ = folio.into_mapping();
    window.close();
    // The old mappings: the flush of step 3 is done, so their references
    // may go (Linux __collapse_huge_page_copy_succeeded()).
    let refs = detached.take_mappings();
    let Isolated { pages, locks } = iso;
    // Unlock before the last put (a folio must not be freed locked).
    drop(locks);
    drop(refs);
    mm.add_rss(512 - pages.len() as i64);
    drop(vmas);
    pgtable::pte_free(detached, plan);
    stamps::end(Step::CollapseFinish, t);
    widen::at(Point::CollapsePostFree, key);
    Ok(Collapsed::Collapsed)
}

/// The area of `haddr`, if it still may be collapsed.
fn revalidate(vmas: &VmaSet, haddr: UserAddr, cc: Control) -> Result<Vma, Refusal> {
    let vma = *vmas.find(haddr).ok_or(Refusal::Changed)?;
    if !vma_suitable(&vma, haddr, cc) {
        return Err(Refusal::Changed);
    }
    Ok(vma)
}
