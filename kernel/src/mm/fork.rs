//! fork's copy of an address space (Linux dup_mmap() / copy_page_range()):
//! the child gets the same areas and shares every anonymous page
//! copy-on-write.
//!
//! The protocol against pins (Linux since 5.x, "fork vs. GUP"): while the
//! parent's ptes are write-protected, `write_protect_seq` is odd, so a
//! lockless pinner that overlaps retries on the slow path (which waits for
//! fork on the mmap lock). A page that may be pinned and is exclusive to the
//! parent is not shared: the child gets a copy at once (Linux
//! copy_present_page()), so the pin keeps seeing the parent's writes and the
//! child's data is its own. Shared pages lose ANON_EXCLUSIVE: the next write
//! on either side copies (or reuses when it is the last mapping).

use alloc::sync::Arc;
use core::sync::atomic::{Ordering, fence};

use super::addr_space::{AddressSpace, AddressSpaceError};
use crate::tlb::Gather;
use super::frame_io;
use super::page::{self, PageFlags, PageRef};
use super::paging::{PteFlags, RawEntry};
use super::pgtable::{self, NoMemory};
use super::user_addr::UserAddr;
use super::vma::Vma;
use super::{HUGE_PAGE_SIZE, PAGE_SIZE, PageSize};

static EARLY_COW: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

/// Sets `fork.early_cow=` (boot option, tests): off is bug E's second half,
/// a possibly pinned exclusive page shared with the child like any other.
pub fn set_early_cow(on: bool) {
    EARLY_COW.store(on, Ordering::Relaxed);
}

/// Whether fork must give the child a copy of `p` now instead of sharing it
/// (Linux folio_needs_cow_for_dma(), which makes folio_try_dup_anon_rmap_*()
/// fail): an exclusive page that may be pinned. Sharing it would
/// write-protect the parent's mapping, and the parent's next write would
/// copy it away from the pin. **The one decision point of
/// `fork.early_cow=off`** (Linux before 70e806e4e645, v5.9).
fn needs_cow_for_dma(p: &page::Page) -> bool {
    // Relaxed: a switch set at boot (or by a test between forks).
    EARLY_COW.load(Ordering::Relaxed) && p.has(PageFlags::ANON_EXCLUSIVE) && p.maybe_dma_pinned()
}

/// Called with the page's frame number right after fork decided to share a
/// page (its pin check done, the parent's pte not yet write-protected): the
/// race instrumentation registers its `writer.post_check` point here at
/// boot (`race` sits above `mm`), so a test can hold a GUP-fast pin until
/// fork has looked at the page.
static SHARE_HOOK: spin::Once<fn(u64)> = spin::Once::new();

/// Registers [`SHARE_HOOK`] (once, at boot).
pub(crate) fn set_share_hook(f: fn(u64)) {
    SHARE_HOOK.call_once(|| f);
}

impl From<AddressSpaceError> for NoMemory {
    fn from(_: AddressSpaceError) -> Self {
        NoMemory
    }
}

/// Copies `parent` for a child process. Takes the parent's mmap lock for
/// writing.
pub fn fork_mm(parent: &AddressSpace) -> Result<Arc<AddressSpace>, NoMemory> {
    let child = Arc::new(AddressSpace::new()?);
    let pv = parent.vmas.write();
    let mut cv = child.vmas.write();
    let mut batch = Gather::new(parent.tlb());
    parent.write_protect_seq_bump();
    // Full fence: a Dekker pair with GUP-fast's pin. Fork stores the odd
    // sequence, then loads each page's pin count (`maybe_dma_pinned` in
    // copy_pte/copy_huge); a pinner adds its pin with SeqCst RMWs, then
    // loads the sequence with a SeqCst load, no fence between (`fast_into`
    // in gup/fast.rs, which spells out the C++20 rules: this fence against
    // SeqCst accesses on the other side). At least one side sees the
    // other's store: fork sees the pin (and copies the page for the
    // child), or the pinner sees the sequence change (and drops its pin for
    // the slow path, which waits for fork on the mmap lock). This fence is
    // needed: the SeqCst RMW alone does not order the later Acquire loads
    // of the pin counts under the Rust memory model; on x86 the locked add
    // is a full barrier anyway, which is why no test can tell the
    // difference. KSM's pin check has the same fence (ksm/merge.rs).
    fence(Ordering::SeqCst);
    let mut result = Ok(());
    // Linux dup_mmap(): an area marked MADV_DONTFORK is not copied (its
    // huge pmds were split at its ends when it was marked, so no pmd is
    // shared with a copied area).
    for vma in pv.iter().filter(|v| !v.flags.contains(super::vma::VmFlags::DONTCOPY)) {
        cv.insert(*vma);
        result = copy_vma(parent, &child, vma, &mut batch);
        if result.is_err() {
            break;
        }
    }
    parent.write_protect_seq_bump();
    // The parent's write-protected entries are flushed before its mmap lock
    // is released (Linux flushes the parent's TLB at the end of dup_mmap()).
    batch.finish();
    drop(cv);
    drop(pv);
    result?;
    // Linux dup_mmap(): ksm_fork(), khugepaged_fork() (hooks registered at boot).
    if let Some(ksm) = super::hooks::ksm() {
        (ksm.fork)(&child);
    }
    if let Some(khugepaged) = super::hooks::khugepaged() {
        (khugepaged.fork)(&child);
    }
    Ok(child)
}

fn copy_vma(parent: &AddressSpace, child: &AddressSpace, vma: &Vma, batch: &mut Gather<'_>) -> Result<(), NoMemory> {
    let mut addr = vma.start;
    while addr < vma.end {
        let block = addr.align_down(PageSize::Size2M);
        let next = (block + HUGE_PAGE_SIZE).min(vma.end);
        if let Some(pmd) = pgtable::pmd(parent, addr, false)? {
            // A huge pmd is shared whole only with an area that covers all
            // of it. One an area boundary falls into (a partial madvise
            // splits the area, not the pmd) is split first, so that each
            // area copies its own ptes: sharing the pmd once per area mapped
            // the folio twice into the child's one pmd (a reference and a
            // pmd mapcount leaked). Linux never meets it: splitting an area
            // splits such a pmd (vma_adjust_trans_huge()).
            if pmd.get().is_huge() && (!vma.huge_fits(addr) || !copy_huge(parent, child, pmd, block, batch)?) {
                pgtable::split_huge_pmd(pmd, addr, batch)?;
            }
            if let Some(src) = pgtable::pte_table(pmd, false)? {
                let cpmd = pgtable::pmd(child, addr, true)?.ok_or(NoMemory)?;
                let dst = pgtable::pte_table(cpmd, true)?.ok_or(NoMemory)?;
                let _ptl = src.lock();
                let mut va = addr;
                while va < next {
                    copy_pte(src.entry(va), dst.entry(va), va, child, batch)?;
                    va += PAGE_SIZE;
                }
            }
        }
        addr = next;
    }
    Ok(())
}

/// Shares a huge pmd with the child. `false` if it must be split instead (a
/// possibly pinned exclusive folio: its pages are copied one by one).
fn copy_huge(
    parent: &AddressSpace,
    child: &AddressSpace,
    pmd: pgtable::Pmd,
    base: UserAddr,
    batch: &mut Gather<'_>,
) -> Result<bool, NoMemory> {
    let cpmd = pgtable::pmd(child, base, true)?.ok_or(NoMemory)?;
    let _ptl = pmd.lock();
    let v = pmd.get();
    if !v.is_huge() || !v.is_present() {
        return Ok(false);
    }
    let head = page::page_of(v.addr());
    if needs_cow_for_dma(head) {
        return Ok(false);
    }
    for i in 0..512 {
        page::page(head.pfn() + i).clear(PageFlags::ANON_EXCLUSIVE);
    }
    head.get();
    head.map_pmd();
    if v.flags().contains(PteFlags::WRITABLE) {
        pmd.entry.fetch_clear(PteFlags::WRITABLE, Ordering::AcqRel);
        batch.huge(base.into());
    }
    let ro = v.without_flags(PteFlags::WRITABLE);
    // Release: the child's table is not loaded anywhere yet; ordering only
    // matters against the CR3 write that will load it.
    cpmd.entry.store(ro, Ordering::Release);
    child.add_rss(512);
    let _ = parent;
    Ok(true)
}

/// Copies one pte (the parent's table lock held).
fn copy_pte(
    src: &super::paging::Entry,
    dst: &super::paging::Entry,
    va: UserAddr,
    child: &AddressSpace,
    batch: &mut Gather<'_>,
) -> Result<(), NoMemory> {
    let v = src.load(Ordering::Acquire);
    if !pgtable::maps_page(v) {
        return Ok(());
    }
    let p = page::page_of(v.addr());
    if v.is_present() && needs_cow_for_dma(p) {
        // Linux copy_present_page(): the child gets its own copy now.
        let new = page::alloc_folio(0, false).ok_or(NoMemory)?;
        // `p` is live (the parent's mapping, whose table lock we hold); a
        // DMA into it may race with the copy (word-atomic, see frame_io), as
        // in Linux. The child's Release pte store publishes the copy.
        frame_io::copy_page_from(&new, p);
        let np = new.page();
        np.set(PageFlags::ANON | PageFlags::ANON_EXCLUSIVE);
        np.map_pte();
        dst.store(RawEntry::new(np.phys(), v.flags()), Ordering::Release);
        let _ = new.into_mapping();
        child.add_rss(1);
        return Ok(());
    }
    if let Some(hook) = SHARE_HOOK.get() {
        hook(p.pfn());
    }
    p.clear(PageFlags::ANON_EXCLUSIVE);
    let r = PageRef::new_ref(p);
    p.map_pte();
    if v.flags().contains(PteFlags::WRITABLE) {
        // Linux ptep_set_wrprotect(): an atomic clear, so a concurrent
        // hardware dirty-bit update is not lost.
        src.fetch_clear(PteFlags::WRITABLE, Ordering::AcqRel);
        batch.page(va.into());
    }
    dst.store(v.without_flags(PteFlags::WRITABLE), Ordering::Release);
    let _ = r.into_mapping();
    child.add_rss(1);
    Ok(())
}
