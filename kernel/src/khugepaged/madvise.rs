//! `madvise(MADV_COLLAPSE)` (Linux madvise_collapse()): a synchronous
//! collapse of every 2 MiB-aligned block inside the range, with Linux's
//! errnos (madvise_collapse_errno()): ENOMEM when no huge folio can be had,
//! EAGAIN for transient refusals (a pinned or otherwise referenced page, a
//! busy page lock, a pmd that changed), EINVAL otherwise (a range or area
//! that cannot hold a huge page, nothing to collapse, pages that are not
//! anonymous). A block already mapped huge counts as collapsed and is left
//! as it is. The blocks are tried in order; a refusal does not stop the
//! others (Linux's whitelist), an allocation failure does.

use alloc::sync::Arc;

use super::Refusal;
use super::collapse::{Control, collapse_huge_page, vma_suitable};
use crate::mm::addr_space::AddressSpace;
use crate::mm::mmap::MmError;
use crate::mm::{PageSize, UserAddr, UserRange};

/// The errno MADV_COLLAPSE answers for `r` (Linux madvise_collapse_errno()).
pub(crate) fn errno(r: Refusal) -> MmError {
    match r {
        Refusal::NoMemory => MmError::NoMemory,
        Refusal::Pinned | Refusal::Locked | Refusal::Changed => MmError::Again,
        Refusal::NonePtes | Refusal::Shared | Refusal::NotAnon | Refusal::ReadOnly => MmError::Invalid,
    }
}

/// `madvise(MADV_COLLAPSE)` on `range`, a page-aligned user range the
/// caller validated; the caller holds no mmap lock.
pub(crate) fn madvise_collapse(mm: &Arc<AddressSpace>, range: UserRange) -> Result<(), MmError> {
    // The 2 MiB blocks inside the range (none if it holds no whole block).
    let hstart = range.start().align_up(PageSize::Size2M).unwrap_or(UserAddr::END);
    let hend = range.end().align_down(PageSize::Size2M);
    let blocks = UserRange::new(hstart, hend.max(hstart)).expect("hend.max(hstart) >= hstart");
    {
        let vmas = mm.vmas.read();
        if !vmas.covers(range.start(), range.end()) {
            return Err(MmError::NoMemory);
        }
        // Linux: thp_vma_allowable_order() on the area, EINVAL if not.
        for addr in blocks.pages(PageSize::Size2M) {
            let ok = vmas.find(addr).is_some_and(|v| vma_suitable(v, addr, Control::Madvise));
            if !ok {
                return Err(MmError::Invalid);
            }
        }
    }
    let mut last_fail = None;
    for addr in blocks.pages(PageSize::Size2M) {
        match collapse_huge_page(mm, addr, Control::Madvise) {
            Ok(_) => {}
            Err(Refusal::NoMemory) => return Err(MmError::NoMemory),
            Err(r) => last_fail = Some(r),
        }
        crate::sched::cond_resched();
    }
    match last_fail {
        None => Ok(()),
        Some(r) => Err(errno(r)),
    }
}
