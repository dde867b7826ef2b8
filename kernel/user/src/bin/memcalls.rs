//! The memory syscalls from user space: mmap, mprotect, madvise, munmap work,
//! and bad arguments get their errno. Exits 0 when every check passed, else
//! the number of the first one that failed.
#![no_std]
#![no_main]

use abi::mman::*;
use userspace::{Errno, println, sys};
use userspace::check::check;

userspace::entry!(main);

fn run() -> Result<(), i32> {
    let pa = MAP_PRIVATE | MAP_ANONYMOUS;
    let rw = PROT_READ | PROT_WRITE;
    let a = sys::mmap(0, 8 * 4096, rw, pa).map_err(|_| 1)?;
    let p = a as *mut u64;
    // SAFETY: inside the mapping, which is readable and writable here.
    unsafe { p.write_volatile(7) };
    // The page stays mapped and readable for checks 2-7 (mprotect keeps
    // PROT_READ; DONTNEED only drops its contents).
    let read = || {
        // SAFETY: `p` is in the mapping made above, readable while it is
        // called (checks 2-7, before the munmap of check 19).
        unsafe { p.read_volatile() }
    };
    check(2, "read back", read() == 7)?;
    check(3, "mprotect read-only", sys::mprotect(a, 4096, PROT_READ).is_ok())?;
    check(4, "read after mprotect", read() == 7)?;
    check(5, "mprotect back", sys::mprotect(a, 4096, rw).is_ok())?;
    check(6, "madvise DONTNEED", sys::madvise(a, 4096, MADV_DONTNEED).is_ok())?;
    check(7, "DONTNEED reads zero", read() == 0)?;
    check(8, "madvise HUGEPAGE", sys::madvise(a, 8 * 4096, MADV_HUGEPAGE).is_ok())?;
    check(9, "zero length", sys::mmap(0, 0, rw, pa) == Err(Errno::EINVAL))?;
    check(10, "shared mapping", sys::mmap(0, 4096, rw, MAP_SHARED | MAP_ANONYMOUS) == Err(Errno::EINVAL))?;
    check(11, "bad prot", sys::mmap(0, 4096, 0x80, pa) == Err(Errno::EINVAL))?;
    check(12, "fixed over a mapping, noreplace", sys::mmap(a, 4096, rw, pa | MAP_FIXED_NOREPLACE) == Err(Errno::EEXIST))?;
    check(13, "fixed kernel address", sys::mmap(0xffff_8000_0000_0000, 4096, rw, pa | MAP_FIXED) == Err(Errno::EINVAL))?;
    check(14, "mprotect over a hole", sys::mprotect(a, 64 * 4096, PROT_READ) == Err(Errno::ENOMEM))?;
    check(15, "unaligned munmap", sys::munmap(a + 1, 4096) == Err(Errno::EINVAL))?;
    // MADV_COLLAPSE of a range holding no whole 2 MiB block: nothing to do, 0 as in Linux.
    check(16, "collapse of less than a huge page", sys::madvise(a, 4096, 25).is_ok())?;
    check(17, "unknown advice", sys::madvise(a, 4096, 12345) == Err(Errno::EINVAL))?;
    check(18, "prot wider than 32 bits", sys::mprotect(a, 4096, 1 << 40) == Err(Errno::EINVAL))?;
    // Zero lengths (Linux do_madvise()/do_mprotect_pkey()): nothing to do,
    // 0, once the advice is known and the start page-aligned; mprotect
    // returns before it looks at the protection.
    check(21, "madvise zero length", sys::madvise(a, 0, MADV_DONTNEED).is_ok())?;
    check(22, "madvise zero length, unknown advice", sys::madvise(a, 0, 12345) == Err(Errno::EINVAL))?;
    check(23, "madvise zero length, unaligned", sys::madvise(a + 1, 0, MADV_DONTNEED) == Err(Errno::EINVAL))?;
    check(24, "mprotect zero length", sys::mprotect(a, 0, PROT_READ).is_ok())?;
    check(25, "mprotect zero length, bad prot", sys::mprotect(a, 0, 0x80).is_ok())?;
    check(26, "mprotect zero length, unaligned", sys::mprotect(a + 1, 0, PROT_READ) == Err(Errno::EINVAL))?;
    check(27, "zero-length mprotect left the page writable", {
        // SAFETY: inside the mapping, still read-write (checks 24-25 changed nothing).
        unsafe { p.write_volatile(8) };
        read() == 8
    })?;
    check(19, "munmap", sys::munmap(a, 8 * 4096).is_ok())?;
    check(20, "mprotect after munmap", sys::mprotect(a, 4096, rw) == Err(Errno::ENOMEM))?;
    check(28, "madvise zero length, unmapped", sys::madvise(a, 0, MADV_DONTNEED).is_ok())?;
    check(29, "mprotect zero length, unmapped", sys::mprotect(a, 0, rw).is_ok())?;
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => {
            println!("memcalls: ok");
            0
        }
        Err(case) => case,
    }
}
