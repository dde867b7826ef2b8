//! Merging one page (Linux try_to_merge_one_page(), write_protect_page(),
//! replace_page() in mm/ksm.c). This is the writer side of the seed's race.
//!
//! The protocol (write_protect_page), with every defence in place:
//! 1. under the page-table lock, clear the pte (an atomic exchange);
//! 2. flush the TLB on every CPU that may cache it (`tlb=ipi`: this cannot
//!    complete while a CPU is inside GUP-fast's interrupts-off walk);
//! 3. with `sync=rcu`, wait for a grace period (interrupts-off walks are
//!    read-side critical sections). The lock cannot be held across a sleep, so
//!    the pte holds a marker meanwhile that makes faults wait;
//! 4. only then compare the page's references with its mappings + 1 (ours)
//!    and, for an anon-exclusive page, check for pins before clearing
//!    anon-exclusive (Linux folio_try_share_anon_rmap_pte());
//! 5. reinstall the pte write-protected and clean, or restore it on refusal.
//!
//! A GUP-fast that read the old pte either took its reference before step 1
//! became visible (the check sees it and refuses) or its re-read sees the
//! cleared pte and it backs off; without the re-read, only step 2 (IPI) or 3
//! (grace period) orders it. The negative controls change exactly one step:
//! `ksm.check_before_clear` moves 4 before 1, `ksm.no_flush` skips 2.
//!
//! replace_page then swaps the write-protected pte for the KSM page's, only if
//! the pte is still the one write_protect_page installed; there is no second
//! reference check (a pin would have changed the pte: a write pin breaks COW,
//! a read pin unshares).

use crate::stamps::{self, Step};
use core::sync::atomic::{Ordering, fence};

use super::{Refusal, stats};
use crate::mm::addr_space::AddressSpace;
use crate::mm::page::{Page, PageFlags, PageRef};
use crate::mm::paging::{Entry, PageSize, PteFlags, RawEntry};
use crate::mm::pgtable::{self, PteTable};
use crate::mm::frame_io;
use crate::mm::UserAddr;
use crate::race::overlap::WriterWindow;
use crate::race::widen::{self, Point};
use crate::race::{self, SyncMode};
use crate::tlb::TlbFlush;

/// The pte table of `addr` in `mm`, if `addr` is mapped by 4 KiB ptes.
fn pte_table(mm: &AddressSpace, addr: UserAddr) -> Result<PteTable, Refusal> {
    let pmd = pgtable::pmd(mm, addr, false).ok().flatten().ok_or(Refusal::Changed)?;
    let v = pmd.get();
    if v.is_huge() {
        return Err(Refusal::Large);
    }
    pgtable::pte_table(pmd, false).ok().flatten().ok_or(Refusal::Changed)
}

/// Whether two 4 KiB pages have the same contents (Linux pages_identical()).
/// Both are live (the caller holds references). Racing writers can only make
/// the comparison fail, which the merge then refuses: the merge compares
/// after write_protect_page() flushed every writable translation.
pub(crate) fn identical(a: &Page, b: &Page) -> bool {
    let t = stamps::start();
    let same = frame_io::same_contents(a, b);
    stamps::end(Step::KsmCompare, t);
    same
}

/// The reference and pin checks of step 4. `page` is held by one reference of
/// ours besides its mappings.
fn check(page: &Page, anon_exclusive: bool) -> Result<(), Refusal> {
    // Linux: folio_mapcount(folio) + 1 + swapped != folio_ref_count(folio)
    // (no swap here). Any other reference — a pin, a GUP reference, a
    // concurrent lookup — refuses.
    if page.total_mapcount() + 1 != page.refcount() {
        return Err(Refusal::Pinned);
    }
    if anon_exclusive {
        // Linux __folio_try_share_anon_rmap(): a full barrier paired with
        // GUP-fast's after taking its pin, then the pin check, then clear
        // anon-exclusive, then another barrier (paired with the read of the
        // flag in gup_must_unshare()).
        fence(Ordering::SeqCst);
        if page.maybe_dma_pinned() {
            return Err(Refusal::Pinned);
        }
        page.clear(PageFlags::ANON_EXCLUSIVE);
        fence(Ordering::SeqCst);
    }
    Ok(())
}

fn flush(mm: &AddressSpace, addr: UserAddr, no_flush: bool) {
    let f = TlbFlush::page(mm.tlb(), addr.into());
    if no_flush {
        f.skip_for_negative_control();
    } else {
        f.flush();
    }
}

/// Step 1 of write_protect_page(): clears the pte (Linux ptep_clear_flush()'s
/// ptep_get_and_clear()), leaving a writer's marker instead of an empty entry
/// if the writer will sleep (`sleeps`). Returns the entry to restore or
/// write-protect (`v` with the dirty bit the hardware may have set since)
/// and the value left in the pte.
fn clear_pte(ptep: &Entry, v: RawEntry, page: &Page, sleeps: bool) -> (RawEntry, RawEntry) {
    widen::at(Point::WriterPreClear, page.pfn());
    let cleared = if sleeps { pgtable::marker(page.phys()) } else { RawEntry::EMPTY };
    // AcqRel exchange: the clear is ordered before the reference loads of
    // step 4 by the fence there (x86: the locked exchange is a full barrier);
    // pairs with GUP-fast's SeqCst reference RMW then SeqCst re-read, which
    // have no fence between: this side's fence(SeqCst) is what the C++20
    // fence-to-SeqCst-access rules need (gup/fast.rs grab_then_recheck).
    let old = ptep.swap(cleared, Ordering::AcqRel);
    debug_assert_eq!(old.addr(), v.addr());
    widen::at(Point::WriterPostClear, page.pfn());
    (v.with_flags(old.flags() & PteFlags::DIRTY), cleared)
}

/// Step 3 of write_protect_page() under `sync=rcu`: waits for a grace period
/// with the pte lock dropped and the marker in place (faults wait on it;
/// nobody else changes the pte: every other writer of this mm's ptes holds
/// the mmap lock for writing), then retakes the lock.
fn wait_grace_period(
    pt: &pgtable::PteTable,
    ptl: &mut Option<crate::sync::ThreadLockGuard<'static, ()>>,
    ptep: &Entry,
    marker: RawEntry,
    addr: UserAddr,
) {
    drop(ptl.take());
    crate::rcu::synchronize_rcu();
    *ptl = Some(pt.lock());
    let still = ptep.load(Ordering::Acquire);
    assert_eq!(still, marker, "KSM's marker pte at {addr:#x} changed during the grace period");
}

/// Step 4 of write_protect_page(): the reference and pin checks ([`check`]),
/// then the window-widening point after them.
fn check_refs(page: &Page, anon_exclusive: bool) -> Result<(), Refusal> {
    let checked = check(page, anon_exclusive);
    widen::at(Point::WriterPostCheck, page.pfn());
    checked
}

/// Makes `page`, mapped at `addr` in `mm`, read-only (Linux
/// write_protect_page()). Returns the read-only pte now installed. The
/// caller holds the mmap lock for reading, the page lock, and one reference.
pub(crate) fn write_protect_page(mm: &AddressSpace, addr: UserAddr, page: &'static Page) -> Result<RawEntry, Refusal> {
    let pt = pte_table(mm, addr)?;
    let ptep = pt.entry(addr);
    let t = stamps::start();
    let mut ptl = Some(pt.lock());
    stamps::end(Step::KsmPtl, t);
    let v = ptep.load(Ordering::Acquire);
    // A PROT_NONE pte too (write-protecting it keeps it PROT_NONE).
    if !pgtable::maps_page(v) || v.addr() != page.phys() {
        return Err(Refusal::Changed);
    }
    let anon_exclusive = page.has(PageFlags::ANON_EXCLUSIVE);
    let writable = v.flags().contains(PteFlags::WRITABLE);
    let dirty = v.flags().contains(PteFlags::DIRTY);
    // The gate: a read-only, clean, shared pte needs nothing, unless a
    // deferred flush may still leave a writable entry in some TLB (Linux
    // mm_tlb_flush_pending(), the 2017 fix of bug K). **The one decision
    // point of `ksm.gate=`**: which of Linux's gates (race::KsmGate).
    let must_clear = match race::ksm_gate() {
        race::KsmGate::AnonExclusive => writable || dirty || anon_exclusive || crate::tlb::flush_pending(mm.tlb()),
        race::KsmGate::FlushPending => writable || dirty || crate::tlb::flush_pending(mm.tlb()),
        race::KsmGate::WriteDirty => writable || dirty,
    };
    if !must_clear {
        return Ok(v);
    }
    let switches = race::ksm_switches();
    let window = WriterWindow::open(page.pfn());
    // The one decision point of `ksm.check_before_clear`: the order of the
    // steps below.
    let entry = if switches.check_before_clear {
        // Negative control: check, then clear and flush. A GUP-fast between
        // the check and the clear takes a pin nobody looks at again.
        if let Err(r) = check_refs(page, anon_exclusive) {
            window.close();
            return Err(r);
        }
        let (entry, _) = clear_pte(ptep, v, page, false);
        flush(mm, addr, switches.no_flush);
        entry
    } else {
        let sleeps = race::sync_mode() == SyncMode::Rcu;
        // Step 1.
        let (entry, cleared) = clear_pte(ptep, v, page, sleeps);
        // Step 2.
        let t = stamps::start();
        flush(mm, addr, switches.no_flush);
        stamps::end(Step::KsmFlushWp, t);
        // Step 3 (`sync=rcu`).
        if sleeps {
            wait_grace_period(&pt, &mut ptl, ptep, cleared, addr);
        }
        // Full fence: the clear (step 1) before the reference loads of step
        // 4, the writer's half of the Dekker pair with GUP-fast's SeqCst
        // reference RMW then SeqCst re-read (no fence on GUP-fast's side:
        // this fence against those SeqCst accesses, C++20 [atomics.order]
        // p4.2/4.3, see gup/fast.rs grab_then_recheck). Needed: the
        // exchange and the loads here are not SeqCst.
        fence(Ordering::SeqCst);
        widen::at(Point::WriterPreCheck, page.pfn());
        // Step 4.
        if let Err(r) = check_refs(page, anon_exclusive) {
            // Restore the pte as it was (Linux set_pte_at(..., entry)).
            ptep.store(entry, Ordering::Release);
            window.close();
            return Err(r);
        }
        entry
    };
    window.close();
    // Step 5: transfer the dirty bit to the page, install read-only + clean.
    if entry.flags().contains(PteFlags::DIRTY) {
        page.set(PageFlags::DIRTY);
    }
    let ro = entry.without_flags(PteFlags::WRITABLE | PteFlags::DIRTY);
    ptep.store(ro, Ordering::Release);
    drop(ptl);
    stats::note_write_protected();
    Ok(ro)
}

/// Replaces `page`'s read-only mapping at `addr` by one of `kpage` (Linux
/// replace_page()), if the pte is still `orig`. Puts the mapping's
/// reference on `page` after the flush.
pub(crate) fn replace_page(mm: &AddressSpace, addr: UserAddr, page: &'static Page, kpage: &'static Page, orig: RawEntry) -> Result<(), Refusal> {
    let pt = pte_table(mm, addr)?;
    let ptep = pt.entry(addr);
    let t = stamps::start();
    let ptl = pt.lock();
    stamps::end(Step::KsmPtl, t);
    if ptep.load(Ordering::Acquire) != orig {
        return Err(Refusal::Changed);
    }
    // The KSM page gains a mapping (and the reference it holds).
    let new = PageRef::new_ref(kpage);
    kpage.map_pte();
    let e = pgtable::leaf(kpage.phys(), false, !orig.flags().contains(PteFlags::NO_EXECUTE), PageSize::Size4K);
    // A PROT_NONE page's KSM mapping is PROT_NONE too (Linux: mk_pte()
    // with the area's vm_page_prot).
    let e = if orig.is_present() { e } else { pgtable::protnone(e) };
    // ptep_clear_flush(), then set_pte_at(): no CPU may keep using the old
    // page's translation once its reference is gone.
    let (old, old_ref) = pgtable::ptep_get_and_clear(ptep);
    debug_assert_eq!(old.addr(), page.phys());
    let t = stamps::start();
    flush(mm, addr, race::ksm_switches().no_flush);
    stamps::end(Step::KsmFlushReplace, t);
    ptep.store(e, Ordering::Release);
    let _ = new.into_mapping();
    page.unmap_pte();
    drop(ptl);
    // The reference the cleared entry held (it mapped `page`), dropped
    // after the flush.
    drop(old_ref);
    Ok(())
}

/// Merges `page` (mapped at `addr` in `mm`, held by the caller's reference)
/// into `kpage`, or, with `kpage` `None`, makes it a KSM page itself (Linux
/// try_to_merge_one_page()). The caller holds the mmap lock for reading.
pub fn try_to_merge_one_page(mm: &AddressSpace, addr: UserAddr, page: &PageRef, kpage: Option<&'static Page>) -> Result<(), Refusal> {
    let t = stamps::start();
    let r = merge_one(mm, addr, page, kpage);
    stamps::end(Step::KsmMergeOne, t);
    r
}

fn merge_one(mm: &AddressSpace, addr: UserAddr, page: &PageRef, kpage: Option<&'static Page>) -> Result<(), Refusal> {
    let p = page.page();
    if kpage.is_some_and(|k| core::ptr::eq(k, p)) {
        return Ok(());
    }
    if !p.has(PageFlags::ANON) {
        return Err(Refusal::NotAnon);
    }
    if p.is_large() {
        // Linux splits large folios first; this KSM leaves them alone.
        return Err(Refusal::Large);
    }
    // "We need the folio lock to read a stable swapcache flag" (and to keep
    // other lock holders, e.g. a concurrent merge, out).
    let Some(_lock) = p.try_lock() else { return Err(Refusal::Busy) };
    let orig = write_protect_page(mm, addr, p)?;
    match kpage {
        None => {
            p.set(PageFlags::KSM);
            Ok(())
        }
        Some(k) => {
            if !identical(p, k) {
                return Err(Refusal::Content);
            }
            replace_page(mm, addr, p, k, orig)
        }
    }
}
