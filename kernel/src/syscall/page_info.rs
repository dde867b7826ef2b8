//! `page_info(pid, addr, buf)`: what maps a user address and that page's
//! state (Linux fs/proc/task_mmu.c pagemap_read() for the entry, and
//! fs/proc/page.c kpageflags/kpagecount for the frame; see
//! `abi::page_info`). The entry is read under the mmap read lock (no
//! collapse can detach the pte table meanwhile) and its table's lock, and
//! the page's counts while that lock keeps the mapping, so the answer is
//! one consistent snapshot of that moment.

use core::sync::atomic::Ordering;

use super::SysResult;
use crate::mm::addr_space::AddressSpace;
use crate::mm::UserAddr;
use crate::mm::page::{self, Page, PageFlags};
use crate::mm::paging::{Level, PteFlags, RawEntry};
use crate::mm::uaccess::{self, UserPtr};
use crate::mm::{PAGE_SIZE, pgtable};
use abi::Errno;
use abi::page_info as pi;

/// `page_info(pid, addr, buf)`: `flags` (the fourth argument) must be 0.
pub(crate) fn page_info(pid: u64, addr: u64, buf: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    // The user half only (its end is the kernel half's start).
    let addr = UserAddr::new(addr).filter(|a| *a < UserAddr::END).ok_or(Errno::EFAULT)?;
    let words = if pid == 0 {
        info(&*super::current_mm()?, addr)
    } else {
        let process = crate::process::get(pid).filter(|p| !p.is_exiting()).ok_or(Errno::ESRCH)?;
        info(&process.mm, addr)
    };
    uaccess::write_user(UserPtr(buf), &words)?;
    Ok(0)
}

/// The words for `addr` in `mm`.
fn info(mm: &AddressSpace, addr: UserAddr) -> [u64; pi::WORDS] {
    let _vmas = mm.vmas.read();
    let mut w = [0u64; pi::WORDS];
    let Some(pmd) = pgtable::pmd(mm, addr, false).ok().flatten() else { return w };
    let v = pmd.get();
    if v.is_huge() && v.is_present() {
        let _ptl = pmd.lock();
        let v = pmd.get();
        if v.is_huge() && v.is_present() {
            let sub = page::page(v.addr().as_u64() / PAGE_SIZE + Level::Pt.index(addr.as_u64()) as u64);
            describe(&mut w, v, sub);
            w[pi::W_FLAGS] |= pi::F_HUGE_PMD;
        }
        return w;
    }
    let Some(pt) = pgtable::pte_table(pmd, false).ok().flatten() else { return w };
    let _ptl = pt.lock();
    let e = pt.entry(addr).load(Ordering::Acquire);
    if pgtable::maps_page(e) {
        describe(&mut w, e, page::page_of(e.addr()));
    }
    w
}

/// Fills `w` for entry `e` mapping `p` (its table's lock held).
fn describe(w: &mut [u64; pi::WORDS], e: RawEntry, p: &Page) {
    let mut f = pi::F_PRESENT;
    let flag = |on: bool, bit: u64| if on { bit } else { 0 };
    f |= flag(p.is_large(), pi::F_THP);
    f |= flag(p.has(PageFlags::ANON), pi::F_ANON);
    f |= flag(p.has(PageFlags::ANON_EXCLUSIVE), pi::F_ANON_EXCLUSIVE);
    f |= flag(p.has(PageFlags::KSM), pi::F_KSM);
    f |= flag(e.flags().contains(PteFlags::WRITABLE), pi::F_WRITABLE);
    f |= flag(e.flags().contains(PteFlags::DIRTY), pi::F_DIRTY);
    f |= flag(p.maybe_dma_pinned(), pi::F_MAYBE_PINNED);
    w[pi::W_FLAGS] = f;
    w[pi::W_PFN] = p.pfn();
    w[pi::W_REFCOUNT] = p.refcount().max(0) as u64;
    w[pi::W_MAPCOUNT] = p.total_mapcount().max(0) as u64;
    w[pi::W_PINS] = p.dma_pins().max(0) as u64;
    w[pi::W_ORDER] = u64::from(p.order());
}
