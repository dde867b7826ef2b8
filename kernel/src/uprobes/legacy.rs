//! `uprobes=legacy` (negative control, bug C): Linux's uprobe_write_opcode()
//! and __replace_page() as they were from 2012 until the 2025 rewrite.
//!
//! 1. get_user_pages_remote() with FOLL_FORCE only (and FOLL_SPLIT): the
//!    page mapped now, whatever it is, looked up read-only;
//! 2. verify_opcode();
//! 3. a new anonymous page: copy_highpage(new, old), then the opcode written
//!    into the copy (copy_to_page);
//! 4. __replace_page(): lock the old page, check under the page-table lock
//!    that the pte still maps it, add the new page's mapping, clear and
//!    flush the pte (ptep_clear_flush_notify), map the new page
//!    (set_pte_at_notify, with the area's default protection: read-only, as
//!    a private area's vm_page_prot is), remove the old page's mapping and
//!    put it.
//!
//! **No reference or pin check anywhere.** If the old page is pinned for
//! DMA (a direct read in flight), the device keeps writing the old frame
//! while the process now maps the copy: the data never reaches the process
//! (controls.md's DMA-loss oracle). A user write to the old page between
//! the copy and the clear is lost the same way. Unregistering writes the
//! original byte back by the same copy-and-replace, except in a file
//! mapping when the copy equals the page-cache original: then (Linux since
//! 2019) `__replace_page(vma, addr, old_page, NULL)` only **zaps** the old
//! page, pinned or not, and the next fault maps the page-cache page: a DMA
//! into the pinned page is lost the same way.

use core::sync::atomic::Ordering;

use super::{UprobeError, byte_at, split_pmd, verify_opcode};
use crate::gup::{self, Foll, Grabbed};
use crate::mm::addr_space::AddressSpace;
use crate::mm::page::{self, Page, PageFlags, PageRef};
use crate::mm::paging::PteFlags;
use crate::mm::vma::VmaSet;
use crate::mm::{PageSize, frame_io, pgtable};
use crate::mm::UserAddr;
use crate::race::overlap::WriterWindow;
use crate::race::widen::{self, Point};
use crate::time::Deadline;
use crate::tlb::TlbFlush;

/// As in the fixed writer: give up with EAGAIN after a second of changes.
const RETRY_NS: u64 = 1_000_000_000;

/// Writes `opcode` at `vaddr` of `mm` by replacing the page (Linux
/// uprobe_write_opcode(), 2012-2025). The caller holds the mmap lock for
/// reading (`vmas`) and the registration lock. `Some(previous byte)` when
/// written, `None` when verify_opcode() found nothing to do.
pub(crate) fn uprobe_write_opcode(mm: &AddressSpace, vmas: &VmaSet, vaddr: UserAddr, opcode: u8, is_register: bool) -> Result<Option<u8>, UprobeError> {
    let base = vaddr.align_down(PageSize::Size4K);
    let deadline = Deadline::after_ns(RETRY_NS);
    loop {
        split_pmd(mm, vaddr)?;
        // Read the page with vaddr into memory (FOLL_FORCE, no FOLL_WRITE).
        let Grabbed::Ref(old_page) = gup::slow::get_user_pages_remote(mm, vmas, base, Foll::GET | Foll::FORCE)? else {
            unreachable!("FOLL_GET returns references")
        };
        let old = old_page.page();
        // From here on a pin on `old` is lost to the process if the
        // replacement goes through: the window of bug C.
        let window = WriterWindow::open(old.pfn());
        let cur = byte_at(old, vaddr);
        if !verify_opcode(cur, opcode) {
            window.close();
            return Ok(None);
        }
        let Some(new_page) = page::alloc_folio(0, false) else {
            window.close();
            return Err(UprobeError::NoMemory);
        };
        // copy_highpage(new_page, old_page); copy_to_page(new_page, vaddr, opcode).
        frame_io::copy_page_from(&new_page, old);
        frame_io::write_bytes(&new_page, vaddr.page_offset(PageSize::Size4K) as usize, &[opcode]);
        // Unregistering in a file mapping: if the copy is the page-cache
        // page again, let go of it and only zap (no reference check).
        let orig = if is_register {
            None
        } else {
            vmas.find(vaddr).and_then(|v| v.file_page(vaddr)).and_then(|(id, i)| crate::mm::filemap::find_get_page(id, i))
        };
        let new_page = match orig {
            Some(o) if frame_io::same_contents(new_page.page(), o) => None,
            _ => Some(new_page),
        };
        let replaced = __replace_page(mm, vaddr, old, new_page);
        window.close();
        if replaced {
            super::REPLACED.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(cur));
        }
        drop(old_page);
        if deadline.expired() {
            log::warn!("uprobes: the page of {vaddr:#x} in address space {} kept changing for 1 s (EAGAIN)", mm.id);
            return Err(UprobeError::Busy);
        }
        crate::sched::yield_now();
    }
}

/// Replaces `old_page`'s mapping at `addr` of `mm` by `new_page`, or only
/// unmaps it when `new_page` is `None` (Linux __replace_page()); `false`
/// (Linux -EAGAIN) when the pte no longer maps `old_page`, with `new_page`
/// freed. The caller holds a reference on `old_page`.
fn __replace_page(mm: &AddressSpace, addr: UserAddr, old_page: &'static Page, new_page: Option<PageRef>) -> bool {
    let _lock = old_page.lock();
    let Some(pmd) = pgtable::pmd(mm, addr, false).ok().flatten() else { return false };
    if pmd.get().is_huge() {
        return false;
    }
    let Some(pt) = pgtable::pte_table(pmd, false).ok().flatten() else { return false };
    let ptep = pt.entry(addr);
    let ptl = pt.lock();
    // page_check_address(): the pte must still map the old page.
    let v = ptep.load(Ordering::Acquire);
    if !v.is_present() || v.addr() != old_page.phys() {
        return false;
    }
    // page_add_new_anon_rmap(new_page): a fresh exclusive anonymous page.
    // mk_pte(new_page, vma->vm_page_prot): a private area's default
    // protection is read-only (the next write fault reuses the exclusive
    // page); executable as before.
    let e = new_page.as_ref().map(|n| {
        let new = n.page();
        new.set(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE);
        new.map_pte();
        pgtable::leaf(new.phys(), false, !v.flags().contains(PteFlags::NO_EXECUTE), PageSize::Size4K)
    });
    // ptep_clear_flush_notify(): the swap gives us the old mapping's
    // reference; the flush makes every CPU drop the old translation.
    let (old, old_ref) = pgtable::ptep_get_and_clear(ptep);
    debug_assert_eq!(old.addr(), old_page.phys());
    widen::at(Point::WriterPostClear, old_page.pfn());
    TlbFlush::page(mm.tlb(), addr.into()).flush();
    // set_pte_at_notify(). Release: the copied contents and the new page's
    // metadata before the entry. Without a new page the pte stays clear.
    match (e, new_page) {
        (Some(e), Some(n)) => {
            ptep.store(e, Ordering::Release);
            let _ = n.into_mapping();
        }
        _ => {
            mm.add_rss(-1);
            super::ZAPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    // page_remove_rmap(old_page); put_page(old_page) after the flush. No
    // check of old_page's references or pins: a DMA target is dropped here
    // while the device still writes it.
    old_page.unmap_pte();
    drop(ptl);
    drop(old_ref);
    true
}
