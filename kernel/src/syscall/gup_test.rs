//! `gup_test(op, a, b, c)`: pins and GUP references a process holds across
//! calls (Linux mm/gup_test.c's `PIN_LONGTERM_TEST_START/READ/STOP`, which
//! cow.c and gup_longterm.c use; vmsplice's FOLL_GET references; a device
//! write through a writable pin). See `abi::gup_test` for the ops and
//! errors; the sets live in the process (`gup::held`) and go with it.

use alloc::sync::Arc;
use alloc::vec;

use super::SysResult;
use crate::gup::held::{Hold, HeldSet};
use crate::mm::PAGE_SIZE;
use crate::mm::uaccess::{self, UserPtr};
use crate::process::{Process, current_thread};
use abi::Errno;
use abi::gup_test as g;

fn me() -> Result<Arc<Process>, Errno> {
    current_thread().map(|t| t.process.clone()).ok_or(Errno::EPERM)
}

/// `gup_test(op, a, b, c)`.
pub(crate) fn gup_test(op: u64, a: u64, b: u64, c: u64) -> SysResult {
    match usize::try_from(op).unwrap_or(usize::MAX) {
        g::START => start(a, b, c),
        g::READ => read(a, b, c),
        g::WRITE => write(a, b, c),
        g::STOP => stop(a),
        _ => Err(Errno::EINVAL),
    }
}

/// `START(addr, size, flags) -> handle` (Linux pin_longterm_test_start():
/// flags, alignment and a non-zero size checked first, EINVAL).
fn start(addr: u64, size: u64, flags: u64) -> SysResult {
    if flags & !g::FLAGS != 0 || !addr.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) || size == 0 {
        return Err(Errno::EINVAL);
    }
    // FLAG_GET takes read references: FOLL_WRITE with them is a pin's
    // business (vmsplice never writes), so the combination is refused.
    if flags & g::FLAG_GET != 0 && flags & (g::FLAG_WRITE | g::FLAG_FORCE) != 0 {
        return Err(Errno::EINVAL);
    }
    let nr = size / PAGE_SIZE;
    if nr > g::MAX_PAGES {
        return Err(Errno::ENOMEM);
    }
    let process = me()?;
    if process.held.count() >= g::MAX_HELD {
        return Err(Errno::EINVAL);
    }
    let fast = flags & g::FLAG_FAST != 0;
    let hold = if flags & g::FLAG_GET != 0 {
        Hold::ReadRef { fast }
    } else {
        Hold::LongtermPin { write: flags & g::FLAG_WRITE != 0, fast, force: flags & g::FLAG_FORCE != 0 }
    };
    // Beyond the user half: EFAULT, as the range check below it answers.
    let addr = crate::mm::UserAddr::new(addr).ok_or(Errno::EFAULT)?;
    let set = HeldSet::take(&process.mm, addr, nr as usize, hold).map_err(Errno::from)?;
    process.held.insert(set).map(|h| h as usize).map_err(|_| Errno::EINVAL)
}

/// The set `handle` and the number of whole pages `len` covers (a
/// multiple of the page size, 1..=the set's size; EINVAL otherwise).
fn set_and_pages(handle: u64, len: u64) -> Result<(Arc<HeldSet>, usize), Errno> {
    let set = me()?.held.get(handle).ok_or(Errno::EINVAL)?;
    if len == 0 || !len.is_multiple_of(PAGE_SIZE) || len / PAGE_SIZE > set.len() as u64 {
        return Err(Errno::EINVAL);
    }
    Ok((set, (len / PAGE_SIZE) as usize))
}

/// `READ(handle, buf, len) -> len` (Linux pin_longterm_test_read(): each
/// held page's frame copied to the user buffer; EFAULT for a bad one).
fn read(handle: u64, buf: u64, len: u64) -> SysResult {
    let (set, pages) = set_and_pages(handle, len)?;
    uaccess::check_range(UserPtr(buf), len as usize)?;
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let page: &mut [u8; PAGE_SIZE as usize] = page.as_mut_slice().try_into().map_err(|_| Errno::ENOMEM)?;
    for i in 0..pages {
        set.read_page(i, page);
        uaccess::copy_to_user(UserPtr(buf).offset(i as u64 * PAGE_SIZE), page)?;
    }
    Ok(len as usize)
}

/// `WRITE(handle, buf, len) -> len`: the user buffer into the held frames
/// (EPERM unless the set is a FOLL_WRITE pin).
fn write(handle: u64, buf: u64, len: u64) -> SysResult {
    let (set, pages) = set_and_pages(handle, len)?;
    if !set.writable() {
        return Err(Errno::EPERM);
    }
    uaccess::check_range(UserPtr(buf), len as usize)?;
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let page: &mut [u8; PAGE_SIZE as usize] = page.as_mut_slice().try_into().map_err(|_| Errno::ENOMEM)?;
    for i in 0..pages {
        uaccess::copy_from_user(page, UserPtr(buf).offset(i as u64 * PAGE_SIZE))?;
        if !set.write_page(i, page) {
            return Err(Errno::EPERM);
        }
    }
    Ok(len as usize)
}

/// `STOP(handle) -> 0` (Linux pin_longterm_test_stop(): unpin all).
fn stop(handle: u64) -> SysResult {
    if me()?.held.remove(handle) { Ok(0) } else { Err(Errno::EINVAL) }
}
