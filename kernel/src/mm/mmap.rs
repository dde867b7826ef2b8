//! The memory system calls' kernel side: mmap, munmap, mprotect and madvise
//! on private anonymous memory (Linux do_mmap(), do_munmap(),
//! do_mprotect_pkey(), do_madvise()), and the ELF loader's private file
//! mapping of program text ([`mmap_file`]). Every argument is validated here and
//! refused with an [`MmError`] the syscall layer turns into an errno.
//!
//! These calls are where a user range comes in: they take the system call's
//! raw numbers (an out-of-range `mmap` hint is ignored, a zero-length
//! `mprotect` succeeds before its address is looked at: the order of Linux's
//! checks decides the errno), check them in Linux's order and make the
//! [`UserRange`] once; everything below them takes the typed range.

use crate::stamps::{self, Step};
use alloc::sync::Arc;

use super::addr_space::AddressSpace;
use crate::tlb::Gather;
use super::range;
use super::user_addr::{UserAddr, UserRange};
use super::vma::{MMAP_MIN, Prot, USER_TOP, VmFlags, Vma};
use super::{HUGE_PAGE_SIZE, PAGE_SIZE, PageSize};

/// Why a memory call was refused (errno names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmError {
    /// Bad argument (EINVAL).
    Invalid,
    /// No memory, or a range not (fully) mapped where it must be (ENOMEM).
    NoMemory,
    /// MAP_FIXED_NOREPLACE over an existing mapping (EEXIST).
    Exists,
    /// A transient refusal: trying again may succeed (EAGAIN; MADV_COLLAPSE
    /// of a range with a pinned or locked page).
    Again,
}

impl From<MmError> for abi::Errno {
    fn from(e: MmError) -> abi::Errno {
        match e {
            MmError::Invalid => abi::Errno::EINVAL,
            MmError::NoMemory => abi::Errno::ENOMEM,
            MmError::Exists => abi::Errno::EEXIST,
            MmError::Again => abi::Errno::EAGAIN,
        }
    }
}

impl From<super::pgtable::NoMemory> for MmError {
    fn from(_: super::pgtable::NoMemory) -> Self {
        MmError::NoMemory
    }
}

/// mmap flags (Linux values).
pub mod map {
    /// Private mapping (required).
    pub const PRIVATE: u32 = 0x02;
    /// Exactly at the address, replacing what is there.
    pub const FIXED: u32 = 0x10;
    /// Anonymous memory (required).
    pub const ANONYMOUS: u32 = 0x20;
    /// Fault every page in now.
    pub const POPULATE: u32 = 0x8000;
    /// Exactly at the address, failing with EEXIST if something is there.
    pub const FIXED_NOREPLACE: u32 = 0x10_0000;
    /// Every flag accepted.
    pub(crate) const ALL: u32 = PRIVATE | FIXED | ANONYMOUS | POPULATE | FIXED_NOREPLACE;
}

/// madvise advice (Linux values).
pub mod advice {
    /// Drop the pages; the next access faults in zeroes.
    pub const DONTNEED: u32 = 4;
    /// Do not copy the area into a fork child.
    pub const DONTFORK: u32 = 10;
    /// Undo DONTFORK.
    pub const DOFORK: u32 = 11;
    /// KSM may merge the pages.
    pub const MERGEABLE: u32 = 12;
    /// Undo MERGEABLE: merged pages get private copies again.
    pub const UNMERGEABLE: u32 = 13;
    /// Use transparent huge pages.
    pub const HUGEPAGE: u32 = 14;
    /// Do not use transparent huge pages.
    pub const NOHUGEPAGE: u32 = 15;
    /// Collapse into huge pages now (refused until khugepaged exists).
    pub const COLLAPSE: u32 = 25;
}

/// Checks a range given as raw `addr` and `len`: page-aligned start,
/// non-zero length rounded up to pages without overflow, at or above
/// `MMAP_MIN` and ending at or below `USER_TOP`. EINVAL otherwise.
fn user_range(addr: u64, len: u64) -> Result<UserRange, MmError> {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(MmError::Invalid);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(MmError::Invalid)?;
    let end = addr.checked_add(len).ok_or(MmError::Invalid)?;
    if addr < MMAP_MIN || end > USER_TOP {
        return Err(MmError::Invalid);
    }
    let start = UserAddr::new(addr).ok_or(MmError::Invalid)?;
    UserRange::from_len(start, len).ok_or(MmError::Invalid)
}

fn prot_from(bits: u32) -> Result<Prot, MmError> {
    Prot::from_bits(bits).ok_or(MmError::Invalid)
}

/// Maps private anonymous memory (Linux do_mmap()). `addr` is a hint unless
/// FIXED or FIXED_NOREPLACE is given. Ranges of 2 MiB or more get a 2 MiB
/// aligned address so that huge pages can back them.
pub fn mmap(mm: &AddressSpace, addr: u64, len: u64, prot: u32, flags: u32) -> Result<UserAddr, MmError> {
    let prot = prot_from(prot)?;
    if flags & !map::ALL != 0 || flags & (map::PRIVATE | map::ANONYMOUS) != map::PRIVATE | map::ANONYMOUS {
        return Err(MmError::Invalid);
    }
    let fixed = flags & (map::FIXED | map::FIXED_NOREPLACE) != 0;
    if len == 0 {
        return Err(MmError::Invalid);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(MmError::NoMemory)?;
    let mut vmas = mm.vmas.write();
    let start = if fixed {
        let r = user_range(addr, len)?;
        if vmas.intersects(r.start(), r.end()) {
            if flags & map::FIXED_NOREPLACE != 0 {
                return Err(MmError::Exists);
            }
            let mut batch = Gather::new(mm.tlb());
            range::zap(mm, r, &mut batch)?;
            batch.finish();
            vmas.remove_range(r.start(), r.end());
        }
        r.start()
    } else {
        let align = if len >= HUGE_PAGE_SIZE { PageSize::Size2M } else { PageSize::Size4K };
        let hint = match user_range(addr, len) {
            Ok(r) if addr != 0 && !vmas.intersects(r.start(), r.end()) => Some(r.start()),
            _ => None,
        };
        match hint {
            Some(start) => start,
            None => vmas.find_free(len, align).ok_or(MmError::NoMemory)?,
        }
    };
    let new = UserRange::from_len(start, len).ok_or(MmError::NoMemory)?;
    vmas.insert(Vma { start, end: new.end(), prot, flags: VmFlags::empty(), file: None });
    if flags & map::POPULATE != 0 && !prot.is_empty() {
        let kind = if prot.contains(Prot::WRITE) {
            super::fault::AccessKind::Write
        } else {
            super::fault::AccessKind::Read
        };
        for va in new.pages(PageSize::Size4K) {
            if super::fault::handle_locked(mm, &vmas, va, super::fault::Access { kind, user: false }).is_err() {
                // Out of memory half way: undo the new area (its pages and
                // the area itself) so that a failed call holds no memory.
                // Linux instead returns the address and ignores the populate
                // failure; we report ENOMEM, which a caller that asked for
                // populated memory can act on, and leave nothing behind (a
                // MAP_FIXED call had already unmapped what was there, as in
                // Linux).
                let mut batch = Gather::new(mm.tlb());
                let r = range::zap(mm, new, &mut batch);
                batch.finish();
                vmas.remove_range(new.start(), new.end());
                r?;
                return Err(MmError::NoMemory);
            }
        }
    }
    Ok(start)
}

/// Maps `len` bytes of page-cache file `file` privately at `addr` exactly
/// (Linux do_mmap() of a file with MAP_PRIVATE | MAP_FIXED_NOREPLACE, as
/// the ELF loader maps text): pages come in on faults, read-only until a
/// write copies them (mm::filemap).
pub fn mmap_file(mm: &AddressSpace, addr: u64, len: u64, prot: u32, file: super::vma::FileMap) -> Result<UserAddr, MmError> {
    let prot = prot_from(prot)?;
    if len == 0 || !addr.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Invalid);
    }
    if file.pgoff + len / PAGE_SIZE > super::filemap::pages(file.id) {
        return Err(MmError::Invalid);
    }
    let r = user_range(addr, len)?;
    let mut vmas = mm.vmas.write();
    if vmas.intersects(r.start(), r.end()) {
        return Err(MmError::Exists);
    }
    vmas.insert(Vma { start: r.start(), end: r.end(), prot, flags: VmFlags::empty(), file: Some(file) });
    Ok(r.start())
}

/// Unmaps `[addr, addr+len)` (Linux do_munmap()). Unmapping a range with no
/// mapping is not an error.
pub fn munmap(mm: &AddressSpace, addr: u64, len: u64) -> Result<(), MmError> {
    let r = user_range(addr, len)?;
    let mut vmas = mm.vmas.write();
    if !vmas.intersects(r.start(), r.end()) {
        return Ok(());
    }
    let mut batch = Gather::new(mm.tlb());
    range::zap(mm, r, &mut batch)?;
    vmas.remove_range(r.start(), r.end());
    // Linux unmap_region(): the tables only this range used go too, through
    // the same gather (freed after its flush and the `ptfree` sync). The gap
    // the range leaves runs from the previous area's end to the next one's
    // start.
    let (floor, ceiling) = vmas.gap_around(r.start(), r.end());
    super::pgtable::free_pgtables(mm, r.start(), r.end(), floor, ceiling, &mut batch);
    batch.finish();
    Ok(())
}

/// Changes the protection of `[addr, addr+len)` (Linux do_mprotect_pkey()):
/// the range must be fully mapped (ENOMEM otherwise, as Linux). A zero
/// length at a page-aligned address succeeds and changes nothing, before
/// the protection is even looked at (Linux's order: alignment, `!len`,
/// then `arch_validate_prot`).
pub fn mprotect(mm: &AddressSpace, addr: u64, len: u64, prot: u32) -> Result<(), MmError> {
    let t = stamps::start();
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Invalid);
    }
    if len == 0 {
        return Ok(());
    }
    let prot = prot_from(prot)?;
    let r = user_range(addr, len)?;
    let t_lock = stamps::start();
    let mut vmas = mm.vmas.write();
    stamps::end(Step::MprotectLock, t_lock);
    if !vmas.modify_covered(r.start(), r.end(), |v| v.prot = prot) {
        return Err(MmError::NoMemory);
    }
    stamps::end(Step::MprotectVma, t);
    let t = stamps::start();
    let mut batch = Gather::new(mm.tlb());
    let r = range::protect(mm, r, prot, &mut batch);
    stamps::end(Step::MprotectWalk, t);
    let t = stamps::start();
    batch.finish();
    stamps::end(Step::MprotectGather, t);
    r.map_err(MmError::from)
}

/// Splits the huge pmd that maps `addr` if `addr` lies inside it (not on
/// its 2 MiB boundary).
fn split_huge_at(mm: &AddressSpace, addr: UserAddr, batch: &mut Gather<'_>) -> Result<(), MmError> {
    if addr.is_aligned(PageSize::Size2M) {
        return Ok(());
    }
    if let Some(pmd) = super::pgtable::pmd(mm, addr, false)?
        && pmd.get().is_huge()
    {
        super::pgtable::split_huge_pmd(pmd, addr, batch)?;
    }
    Ok(())
}

/// Gives advice on `[addr, addr+len)` (Linux do_madvise()). The range must be
/// fully mapped (ENOMEM otherwise). MERGEABLE/UNMERGEABLE go to KSM,
/// COLLAPSE to khugepaged's synchronous collapse (through their hooks,
/// [`super::hooks`]; EINVAL when not registered); unknown advice is EINVAL.
/// A zero length succeeds and does nothing once the advice is known and the
/// address page-aligned (Linux do_madvise()'s order: advice, alignment,
/// then `end == start` returns 0).
pub fn madvise(mm: &Arc<AddressSpace>, addr: u64, len: u64, advice: u32) -> Result<(), MmError> {
    let known = matches!(
        advice,
        advice::DONTNEED
            | advice::DONTFORK
            | advice::DOFORK
            | advice::HUGEPAGE
            | advice::NOHUGEPAGE
            | advice::MERGEABLE
            | advice::UNMERGEABLE
            | advice::COLLAPSE
    );
    let registered = match advice {
        advice::MERGEABLE | advice::UNMERGEABLE => super::hooks::ksm().is_some(),
        advice::COLLAPSE => super::hooks::khugepaged().is_some(),
        _ => true,
    };
    if !known || !registered || !addr.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Invalid);
    }
    if len == 0 {
        return Ok(());
    }
    let r = user_range(addr, len)?;
    let (start, end) = (r.start(), r.end());
    match advice {
        advice::DONTNEED | advice::DONTFORK | advice::DOFORK | advice::HUGEPAGE | advice::NOHUGEPAGE => {}
        advice::MERGEABLE | advice::UNMERGEABLE => {
            let ksm = super::hooks::ksm().ok_or(MmError::Invalid)?;
            return (ksm.madvise)(mm, r, advice == advice::MERGEABLE);
        }
        advice::COLLAPSE => {
            let khugepaged = super::hooks::khugepaged().ok_or(MmError::Invalid)?;
            return (khugepaged.madvise_collapse)(mm, r);
        }
        _ => return Err(MmError::Invalid),
    }
    let mut vmas = mm.vmas.write();
    if !vmas.covers(start, end) {
        return Err(MmError::NoMemory);
    }
    match advice {
        advice::DONTNEED => {
            let mut batch = Gather::new(mm.tlb());
            let r = range::zap(mm, r, &mut batch);
            batch.finish();
            r?;
        }
        advice::DONTFORK | advice::DOFORK => {
            // Linux splits a huge pmd an area boundary falls into
            // (vma_adjust_trans_huge()); fork copies by area, and must not
            // copy a pmd half of which belongs to an area it skips.
            let mut batch = Gather::new(mm.tlb());
            let r = split_huge_at(mm, start, &mut batch).and_then(|()| split_huge_at(mm, end, &mut batch));
            batch.finish();
            r?;
            vmas.modify_range(start, end, |v| v.flags.set(VmFlags::DONTCOPY, advice == advice::DONTFORK));
        }
        advice::HUGEPAGE => {
            vmas.modify_range(start, end, |v| {
                v.flags.insert(VmFlags::HUGEPAGE);
                v.flags.remove(VmFlags::NOHUGEPAGE);
            });
            // Linux khugepaged_enter_vma(): khugepaged scans this mm now.
            if let Some(khugepaged) = super::hooks::khugepaged() {
                (khugepaged.enter)(mm);
            }
        }
        _ => vmas.modify_range(start, end, |v| {
            v.flags.insert(VmFlags::NOHUGEPAGE);
            v.flags.remove(VmFlags::HUGEPAGE);
        }),
    }
    Ok(())
}
