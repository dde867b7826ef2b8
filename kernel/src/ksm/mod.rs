//! KSM: merging anonymous pages of equal content into one write-protected
//! page (Linux mm/ksm.c).
//!
//! * [`madvise`]: `MADV_MERGEABLE` marks areas and registers the address
//!   space with KSM; `MADV_UNMERGEABLE` gives every merged page of the range a
//!   private copy again (Linux break_ksm(), an unshare fault) and clears the
//!   mark.
//! * [`scan`]: the ksmd thread and its indexes. A *stable* index of KSM pages
//!   and an *unstable* index of candidate pages, both keyed by a 64-bit hash
//!   of the contents and confirmed by a full comparison. Linux keeps two
//!   red-black trees ordered by contents (memcmp); a hash-keyed map finds the
//!   same pages with less code, and the merge decisions are Linux's: a page
//!   equal to a KSM page merges into it at once; otherwise it must have kept
//!   its checksum since the previous scan before it enters the unstable index,
//!   and two equal unstable pages become a new KSM page. The unstable index is
//!   emptied after every full scan.
//! * [`rmap_list`]: the checksum ksmd saw at each page on its last visit,
//!   walked in step with the scan as Linux's rmap_list.
//! * [`merge`]: try_to_merge_one_page, write_protect_page and replace_page:
//!   the writer side of the race, with the switches of controls.md.
//!
//! Invariants: a KSM page is mapped read-only everywhere and never reused in
//! place by a write fault (it is copied); the stable index holds one
//! reference on each KSM page (Linux's stable node holds none and detects
//! stale nodes instead), dropped when the page has no mapping left
//! ([`prune`]). Every page is examined with the mmap lock of its address
//! space held for reading.
//!
//! Statistics use Linux's names (`pages_shared`, `pages_sharing`,
//! `full_scans`, `pages_scanned`) plus the merge attempts refused, by reason.

#![deny(unsafe_code)]

mod keys;
pub mod merge;
pub mod rmap_list;
pub mod scan;
pub(crate) mod stats;

use alloc::sync::Arc;

use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind};
use crate::mm::mmap::MmError;
use crate::mm::page::PageFlags;
use crate::mm::vma::{VmFlags, VmaSet};
use crate::mm::{PageSize, UserAddr, UserRange};

pub(crate) use keys::{KEYS, apply_key};
pub use scan::{
    MAX_PAGE_SHARING_DEFAULT, Tunables, ksmd_running, max_page_sharing, prune, set_max_page_sharing, set_tunables, start_ksmd,
    stop_ksmd, tunables,
};
pub use stats::{Stats, stats};

/// Why a merge attempt did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// References beyond the mappings and KSM's own (a pin, a GUP reference)
    /// or a DMA pin (controls.md `refused_pinned`).
    Pinned,
    /// The pte changed or vanished under the merge.
    Changed,
    /// The page lock was taken by someone else.
    Busy,
    /// A large folio (not split by this KSM).
    Large,
    /// Not an anonymous page.
    NotAnon,
    /// The contents differ from the KSM page's at the final comparison.
    Content,
}

/// `madvise(MADV_MERGEABLE)` / `madvise(MADV_UNMERGEABLE)` on `range`, a
/// checked user range; the caller holds no mmap lock.
pub(crate) fn madvise(mm: &Arc<AddressSpace>, range: UserRange, mergeable: bool) -> Result<(), MmError> {
    let (start, end) = (range.start(), range.end());
    let mut vmas = mm.vmas.write();
    if !vmas.covers(start, end) {
        return Err(MmError::NoMemory);
    }
    if mergeable {
        vmas.modify_range(start, end, |v| v.flags.insert(VmFlags::MERGEABLE));
        drop(vmas);
        scan::register(mm);
        return Ok(());
    }
    // Unmerge first (Linux unmerge_ksm_pages()), then clear the mark.
    unmerge_range(mm, &vmas, range)?;
    vmas.modify_range(start, end, |v| v.flags.remove(VmFlags::MERGEABLE));
    Ok(())
}

/// Gives every KSM page mapped in `range` of `mm` a private copy (Linux
/// unmerge_ksm_pages() / break_ksm(): an unshare fault each); the caller
/// holds the mmap lock (`vmas`).
fn unmerge_range(mm: &AddressSpace, vmas: &VmaSet, range: UserRange) -> Result<(), MmError> {
    for addr in range.pages(PageSize::Size4K) {
        if maps_ksm_page(mm, addr) {
            fault::handle_locked(mm, vmas, addr, Access { kind: AccessKind::Unshare, user: false }).map_err(|e| match e {
                fault::FaultError::OutOfMemory => MmError::NoMemory,
                _ => MmError::Invalid,
            })?;
        }
    }
    Ok(())
}

/// Linux's `run=2` (KSM_RUN_UNMERGE, unmerge_and_remove_all_rmap_items()):
/// stops ksmd, then gives every merged page of every registered address
/// space's mergeable areas a private copy (the areas stay
/// `MADV_MERGEABLE`, as in Linux) and drops the stable index's unmapped
/// KSM pages. An error if ksmd does not stop or memory runs out.
pub fn unmerge_all() -> Result<(), alloc::string::String> {
    stop_ksmd()?;
    for mm in scan::registered() {
        let vmas = mm.vmas.write();
        let areas: alloc::vec::Vec<UserRange> =
            vmas.iter().filter(|v| v.flags.contains(VmFlags::MERGEABLE)).map(|v| v.range()).collect();
        for r in areas {
            unmerge_range(&mm, &vmas, r).map_err(|e| alloc::format!("unmerge of {r}: {e:?}"))?;
        }
    }
    scan::reset_scan();
    prune();
    Ok(())
}

/// fork's hook (Linux ksm_fork()): a child that inherited mergeable areas
/// is scanned too. Called by fork_mm once the child's areas are in place.
pub(crate) fn fork(child: &Arc<AddressSpace>) {
    if child.vmas.read().iter().any(|v| v.flags.contains(VmFlags::MERGEABLE)) {
        scan::register(child);
    }
}

/// Whether `addr` in `mm` is mapped by a pte to a KSM page.
fn maps_ksm_page(mm: &AddressSpace, addr: UserAddr) -> bool {
    matches!(scan::follow_pte(mm, addr), scan::Followed::Page(p) if p.page().has(PageFlags::KSM))
}
