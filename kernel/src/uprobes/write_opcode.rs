//! `uprobes=fixed` (the default): Linux's uprobe_write_opcode() and
//! __uprobe_write_opcode() after David Hildenbrand's 2025 rewrite
//! ("kernel/events/uprobes: uprobe_write_opcode() rewrite").
//!
//! 1. get_user_pages_remote() with FOLL_FORCE, plus FOLL_WRITE when
//!    registering: core MM breaks COW, so the page returned is an exclusive
//!    anonymous page (its pte stays read-only in a read-only area);
//! 2. verify_opcode(): nothing to do if the byte already is what we want;
//! 3. under the page-table lock, require that the pte still maps that page
//!    and that it is writable or anon-exclusive (else look it up again);
//! 4. ptep_clear_flush(), write the byte **in place**, then set the pte back
//!    (dirty). The page never changes: a pin on it (a DMA target) stays the
//!    page the process maps, so the device's writes stay visible;
//! 5. on unregister in a file mapping, instead of setting the pte back, zap
//!    the anonymous page (the next fault maps the page-cache original) —
//!    but only if its reference count is the expected one (its mappings and
//!    our GUP reference: no pin, no other reference) and its contents now
//!    equal the page cache's.
//!
//! While the pte is clear, a fault on it waits for the page-table lock and
//! then finds the entry back; GUP-fast sees the empty entry and takes the
//! slow path, which waits the same way.

use core::sync::atomic::Ordering;

use super::{UprobeError, byte_at, split_pmd, verify_opcode};
use crate::gup::{self, Foll, Grabbed};
use crate::mm::addr_space::AddressSpace;
use crate::mm::page::{Page, PageFlags, PageRef};
use crate::mm::paging::PteFlags;
use crate::mm::vma::VmaSet;
use crate::mm::{frame_io, pgtable};
use crate::mm::{PageSize, UserAddr};
use crate::race::overlap::WriterWindow;
use crate::race::widen::{self, Point};
use crate::time::Deadline;
use crate::tlb::TlbFlush;

/// How long the page may keep changing under the writer before it gives up
/// with EAGAIN (Linux retries until a fatal signal).
const RETRY_NS: u64 = 1_000_000_000;

/// Why one attempt did not write.
enum Again {
    /// The pte changed since the lookup: look the page up again.
    Changed,
    /// The page is not exclusive (unregister looked it up without
    /// FOLL_WRITE, and it is COW-shared): break COW first.
    NotExclusive,
}

/// Writes `opcode` at `vaddr` of `mm` in place (Linux uprobe_write_opcode()).
/// The caller holds the mmap lock for reading (`vmas`) and the registration
/// lock. `Some(previous byte)` when written, `None` when verify_opcode()
/// found nothing to do.
pub(crate) fn uprobe_write_opcode(mm: &AddressSpace, vmas: &VmaSet, vaddr: UserAddr, opcode: u8, is_register: bool) -> Result<Option<u8>, UprobeError> {
    let base = vaddr.align_down(PageSize::Size4K);
    let deadline = Deadline::after_ns(RETRY_NS);
    let mut break_cow = is_register;
    loop {
        split_pmd(mm, vaddr)?;
        let mut flags = Foll::GET | Foll::FORCE;
        if break_cow {
            flags |= Foll::WRITE;
        }
        let Grabbed::Ref(page) = gup::slow::get_user_pages_remote(mm, vmas, base, flags)? else {
            unreachable!("FOLL_GET returns references")
        };
        let cur = byte_at(page.page(), vaddr);
        if !verify_opcode(cur, opcode) {
            return Ok(None);
        }
        // The page-cache original, for unregister's zap (Linux
        // find_get_page() on the vma's file).
        let orig = if is_register {
            None
        } else {
            vmas.find(vaddr).and_then(|v| v.file_page(vaddr)).and_then(|(id, i)| crate::mm::filemap::find_get_page(id, i))
        };
        match __uprobe_write_opcode(mm, vaddr, &page, opcode, orig) {
            Ok(()) => return Ok(Some(cur)),
            Err(Again::NotExclusive) => break_cow = true,
            Err(Again::Changed) => {}
        }
        drop(page);
        if deadline.expired() {
            log::warn!("uprobes: the page of {vaddr:#x} in address space {} kept changing for 1 s (EAGAIN)", mm.id);
            return Err(UprobeError::Busy);
        }
        crate::sched::yield_now();
    }
}

/// One attempt: under the page-table lock, clear and flush the pte that
/// maps `page`, write `opcode` at `vaddr` in the page, set the pte back or,
/// unregistering (`orig`: the page-cache original), zap the page when that
/// is safe (Linux __uprobe_write_opcode()). `page` is held by the caller's
/// reference.
fn __uprobe_write_opcode(mm: &AddressSpace, vaddr: UserAddr, page: &PageRef, opcode: u8, orig: Option<&'static Page>) -> Result<(), Again> {
    let p = page.page();
    let pmd = pgtable::pmd(mm, vaddr, false).ok().flatten().ok_or(Again::Changed)?;
    if pmd.get().is_huge() {
        return Err(Again::Changed); // split again on the next round
    }
    let pt = pgtable::pte_table(pmd, false).ok().flatten().ok_or(Again::Changed)?;
    let ptep = pt.entry(vaddr);
    let ptl = pt.lock();
    // Linux folio_walk_start() + `fw.page == page`.
    let v = ptep.load(Ordering::Acquire);
    if !v.is_present() || v.addr() != p.phys() {
        return Err(Again::Changed);
    }
    // "We're about to write in place": only into a page nobody else maps.
    if !v.flags().contains(PteFlags::WRITABLE) && !(p.has(PageFlags::ANON) && p.has(PageFlags::ANON_EXCLUSIVE)) {
        return Err(Again::NotExclusive);
    }
    let window = WriterWindow::open(p.pfn());
    // ptep_clear_flush(): the swap (AcqRel) hands the mapping's reference to
    // us; no CPU may write the page through an old translation while the
    // byte changes (a concurrent user write of the same word would be
    // undone by the read-merge-write of copy_to_page below).
    let (old, mapping) = pgtable::ptep_get_and_clear(ptep);
    let mapping = mapping.expect("a present pte maps a page");
    widen::at(Point::WriterPostClear, p.pfn());
    TlbFlush::page(mm.tlb(), vaddr.into()).flush();
    // copy_to_page(): in place.
    frame_io::write_bytes(page, vaddr.page_offset(PageSize::Size4K) as usize, &[opcode]);
    super::IN_PLACE.fetch_add(1, Ordering::Relaxed);
    if let Some(orig) = orig
        && p.has(PageFlags::ANON)
        && !p.is_large()
        // Linux: folio_ref_count(folio) == folio_expected_ref_count(folio) + 1
        // (its mappings, and our GUP reference): a pin or any other
        // reference keeps the page mapped.
        && p.refcount() == p.total_mapcount() + 1
        && frame_io::same_contents(p, orig)
    {
        // Zap: the pte stays clear (flushed above); the mapping's reference
        // goes now. The next fault maps the page-cache original.
        p.unmap_pte();
        drop(mapping);
        mm.add_rss(-1);
        drop(ptl);
        window.close();
        super::ZAPPED.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    // remap: smp_wmb(); set_pte_at(pte_mkdirty(pte)). Release: the byte is
    // visible before the entry that lets the process see the page again.
    let e = old.with_flags(PteFlags::DIRTY);
    ptep.store(e, Ordering::Release);
    // The entry holds the mapping's reference again (same page, same
    // mapcount).
    let _ = mapping.into_mapping();
    drop(ptl);
    window.close();
    Ok(())
}
