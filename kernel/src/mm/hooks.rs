//! The calls mm makes into the page-table writers above it (KSM and
//! khugepaged), as hooks those writers' owner registers at boot, so mm calls
//! nothing above its layer. Linux calls them directly: ksm_fork() and
//! khugepaged_fork() from dup_mmap(), ksm_madvise() and madvise_collapse()
//! from madvise_vma_behavior(), khugepaged_enter_vma() on MADV_HUGEPAGE.
//!
//! Each writer registers its hooks once (`boot` does it before any address
//! space exists). A writer that is not registered is not built in, as in a
//! Linux kernel without CONFIG_KSM / CONFIG_TRANSPARENT_HUGEPAGE: its advice
//! is EINVAL and fork and MADV_HUGEPAGE have nothing to tell it.

use alloc::sync::Arc;

use super::addr_space::AddressSpace;
use super::mmap::MmError;
use super::user_addr::UserRange;

/// KSM's hooks (Linux ksm_madvise() and ksm_fork()).
#[derive(Clone, Copy)]
pub(crate) struct KsmHooks {
    /// `MADV_MERGEABLE` (`true`) / `MADV_UNMERGEABLE` (`false`) on a checked
    /// user range; called with no mmap lock held.
    pub madvise: fn(mm: &Arc<AddressSpace>, range: UserRange, mergeable: bool) -> Result<(), MmError>,
    /// A fork's child, once its areas are in place.
    pub fork: fn(child: &Arc<AddressSpace>),
}

/// khugepaged's hooks (Linux madvise_collapse(), khugepaged_enter_vma() and
/// khugepaged_fork()).
#[derive(Clone, Copy)]
pub(crate) struct KhugepagedHooks {
    /// `MADV_COLLAPSE` on a checked user range; called with no mmap lock
    /// held.
    pub madvise_collapse: fn(mm: &Arc<AddressSpace>, range: UserRange) -> Result<(), MmError>,
    /// `mm` got a `MADV_HUGEPAGE` area (called under its mmap write lock).
    pub enter: fn(mm: &Arc<AddressSpace>),
    /// A fork's child, once its areas are in place.
    pub fork: fn(child: &Arc<AddressSpace>),
}

static KSM: spin::Once<KsmHooks> = spin::Once::new();
static KHUGEPAGED: spin::Once<KhugepagedHooks> = spin::Once::new();

/// Registers KSM's hooks; the first registration wins (once, at boot).
pub(crate) fn register_ksm(hooks: KsmHooks) {
    KSM.call_once(|| hooks);
}

/// Registers khugepaged's hooks; the first registration wins (once, at boot).
pub(crate) fn register_khugepaged(hooks: KhugepagedHooks) {
    KHUGEPAGED.call_once(|| hooks);
}

/// KSM's hooks, if KSM is registered.
pub(super) fn ksm() -> Option<&'static KsmHooks> {
    KSM.get()
}

/// khugepaged's hooks, if khugepaged is registered.
pub(super) fn khugepaged() -> Option<&'static KhugepagedHooks> {
    KHUGEPAGED.get()
}
