//! The memory syscalls: mmap, munmap, mprotect, madvise (private anonymous
//! memory; `mm::mmap` validates and does the work). Arguments are taken as
//! the raw 64-bit registers: a value that does not fit the field (prot,
//! flags, advice are 32-bit in Linux's ABI) is EINVAL, never truncated.

use super::SysResult;
use crate::mm::mmap;
use crate::stamps::{self, Step};
use abi::Errno;


fn u32_arg(v: u64) -> Result<u32, Errno> {
    u32::try_from(v).map_err(|_| Errno::EINVAL)
}


/// `mmap(addr, len, prot, flags)`: returns the address.
pub(crate) fn mmap(addr: u64, len: u64, prot: u64, flags: u64) -> SysResult {
    let mm = super::current_mm()?;
    mmap::mmap(&mm, addr, len, u32_arg(prot)?, u32_arg(flags)?).map(|a| a.as_u64() as usize).map_err(Errno::from)
}

/// `munmap(addr, len)`.
pub(crate) fn munmap(addr: u64, len: u64) -> SysResult {
    mmap::munmap(&*super::current_mm()?, addr, len).map(|_| 0).map_err(Errno::from)
}

/// `mprotect(addr, len, prot)`.
pub(crate) fn mprotect(addr: u64, len: u64, prot: u64) -> SysResult {
    let t = stamps::start();
    let r = mmap::mprotect(&*super::current_mm()?, addr, len, u32_arg(prot)?).map(|_| 0).map_err(Errno::from);
    stamps::end(Step::SysMprotect, t);
    r
}

/// `madvise(addr, len, advice)`.
pub(crate) fn madvise(addr: u64, len: u64, advice: u64) -> SysResult {
    let t = stamps::start();
    let r = mmap::madvise(&super::current_mm()?, addr, len, u32_arg(advice)?).map(|_| 0).map_err(Errno::from);
    stamps::end(Step::SysMadvise, t);
    r
}
