//! Typed syscall wrappers (see `abi` for the calling convention).

use abi::{Errno, Sys, decode_ret};
use core::arch::asm;

/// Raw syscall with up to six arguments; returns `rax` as is.
///
/// # Safety
/// The arguments must be what syscall `n` expects (pointers valid for the
/// access the kernel makes); the kernel checks them, but a wrong pointer
/// passed on purpose still writes where it points.
#[inline(always)]
pub unsafe fn syscall6(n: Sys, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> usize {
    let ret: usize;
    // SAFETY: the caller guarantees the arguments; the kernel preserves every
    // register except rax (result), rcx and r11 (clobbered by syscall/sysret).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as usize => ret,
            in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3, in("r8") a4, in("r9") a5,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A syscall by raw number (for tests of unknown numbers).
pub fn raw_syscall(n: usize, a0: usize, a1: usize, a2: usize) -> usize {
    let ret: usize;
    // SAFETY: an unknown or argument-checked syscall; no memory is handed over.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n => ret,
            in("rdi") a0, in("rsi") a1, in("rdx") a2,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn call(n: Sys, a0: usize, a1: usize, a2: usize, a3: usize) -> Result<usize, Errno> {
    // SAFETY: the wrappers below pass only valid pointers (or, for `write_raw`,
    // pointers the kernel only reads).
    decode_ret(unsafe { syscall6(n, a0, a1, a2, a3, 0, 0) })
}

/// Ends the process (every thread) with `status`.
pub fn exit(status: i32) -> ! {
    let _ = call(Sys::Exit, status as usize, 0, 0, 0);
    unreachable_exit()
}

/// Ends the calling thread.
pub fn thread_exit(status: i32) -> ! {
    let _ = call(Sys::ThreadExit, status as usize, 0, 0, 0);
    unreachable_exit()
}

fn unreachable_exit() -> ! {
    // The kernel never returns from exit; if it did, fault loudly.
    loop {
        // SAFETY: ud2 only raises #UD, which ends the process.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }
}

/// Writes `buf` to the console.
pub fn write(buf: &[u8]) -> Result<usize, Errno> {
    call(Sys::Write, buf.as_ptr() as usize, buf.len(), 0, 0)
}

/// `write` with an arbitrary pointer (the kernel must answer EFAULT for bad ones).
pub fn write_raw(ptr: usize, len: usize) -> Result<usize, Errno> {
    call(Sys::Write, ptr, len, 0, 0)
}

/// The CPU the caller runs on.
pub fn getcpu() -> usize {
    call(Sys::GetCpu, 0, 0, 0, 0).unwrap_or(usize::MAX)
}

/// Monotonic nanoseconds since boot.
pub fn clock_ns() -> u64 {
    call(Sys::ClockNs, 0, 0, 0, 0).unwrap_or(0) as u64
}

/// Gives the CPU to another task of this CPU.
pub fn yield_now() {
    let _ = call(Sys::Yield, 0, 0, 0, 0);
}

/// Sleeps at least `ns`.
pub fn sleep_ns(ns: u64) -> Result<usize, Errno> {
    call(Sys::SleepNs, ns as usize, 0, 0, 0)
}

/// Starts a thread at `entry` with `rsp = stack_top`, `rdi = arg` on `cpu`.
///
/// # Safety
/// `entry` must be code that never returns (it must end with `thread_exit`)
/// and `stack_top` the top of memory no one else uses.
pub unsafe fn thread_spawn(entry: usize, stack_top: usize, arg: usize, cpu: usize) -> Result<usize, Errno> {
    call(Sys::ThreadSpawn, entry, stack_top, arg, cpu)
}

/// Waits for thread `tid` of this process and returns its exit status.
pub fn thread_join(tid: usize) -> Result<i32, Errno> {
    call(Sys::ThreadJoin, tid, 0, 0, 0).map(|s| s as i32)
}

/// Starts the built-in program `name` as a child on `cpu`.
pub fn spawn(name: &str, cpu: usize) -> Result<usize, Errno> {
    call(Sys::Spawn, name.as_ptr() as usize, name.len(), cpu, 0)
}

/// Waits for child `pid` and returns its exit status.
pub fn wait(pid: usize) -> Result<i32, Errno> {
    call(Sys::Wait, pid, 0, 0, 0).map(|s| s as i32)
}

/// This process's id.
pub fn getpid() -> usize {
    call(Sys::GetPid, 0, 0, 0, 0).unwrap_or(0)
}

/// This thread's id.
pub fn gettid() -> usize {
    call(Sys::GetTid, 0, 0, 0, 0).unwrap_or(0)
}

/// Forks the process: the child's pid in the parent, 0 in the child.
pub fn fork() -> Result<usize, Errno> {
    call(Sys::Fork, 0, 0, 0, 0)
}

/// Maps memory (Linux's mmap; no files: `fd` must be -1).
pub fn mmap(addr: usize, len: usize, prot: usize, flags: usize) -> Result<usize, Errno> {
    // SAFETY: no memory is handed to the kernel.
    decode_ret(unsafe { syscall6(Sys::Mmap, addr, len, prot, flags, usize::MAX, 0) })
}

/// Unmaps memory.
pub fn munmap(addr: usize, len: usize) -> Result<usize, Errno> {
    call(Sys::Munmap, addr, len, 0, 0)
}

/// Changes protections.
pub fn mprotect(addr: usize, len: usize, prot: usize) -> Result<usize, Errno> {
    call(Sys::Mprotect, addr, len, prot, 0)
}

/// Gives advice about a range.
pub fn madvise(addr: usize, len: usize, advice: usize) -> Result<usize, Errno> {
    call(Sys::Madvise, addr, len, advice, 0)
}

/// `spawn` with a raw name pointer (the kernel must answer EFAULT for a bad one).
pub fn spawn_raw(name_ptr: usize, name_len: usize, cpu: usize) -> Result<usize, Errno> {
    call(Sys::Spawn, name_ptr, name_len, cpu, 0)
}

/// `thread_spawn` that the kernel must refuse before starting anything (the
/// entry would fault): for checking its argument validation of `cpu`.
pub fn thread_spawn_checked(cpu: usize) -> Result<usize, Errno> {
    call(Sys::ThreadSpawn, 0x40_0000, 0x7fff_0000_0000, 0, cpu)
}

/// Prints `RESULT <line>` as a benchmark result (the kernel checks the form
/// `<bench> key=value ...` and answers EINVAL otherwise).
pub fn bench_result(line: &str) -> Result<usize, Errno> {
    call(Sys::BenchResult, line.as_ptr() as usize, line.len(), 0, 0)
}

/// The time-stamp counter, ordered against the code around it (`lfence;
/// rdtsc; lfence`, as the Linux peer's rdtsc_ordered()).
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc is allowed in ring 3 (CR4.TSD is clear); lfence only
    // orders. No `nomem`: the asm is also a compiler barrier, as the peer's
    // "memory" clobber.
    unsafe { asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `race(op, a, b)`: the race-scenario syscall (see `abi::race`).
pub fn race(op: u64, a: u64, b: u64) -> Result<usize, Errno> {
    call(Sys::Race, op as usize, a as usize, b as usize, 0)
}

/// `uprobe(op, pid, addr)` (see `abi::uprobe`).
pub fn uprobe(op: usize, pid: usize, addr: usize) -> Result<usize, Errno> {
    call(Sys::Uprobe, op, pid, addr, 0)
}

/// Direct I/O from the DMA device into `[buf, buf+len)`: the store at
/// `arg`, or with `abi::dio::PATTERN` in `flags` the pattern of sequence
/// number `arg`. The buffer need not be a Rust object (the kernel pins it
/// and the device writes it), so it is an address.
pub fn dio_read(buf: usize, len: usize, arg: u64, flags: u64) -> Result<usize, Errno> {
    call(Sys::DioRead, buf, len, arg as usize, flags as usize)
}

/// Direct I/O of `[buf, buf+len)` to the device store at `dev_off`.
pub fn dio_write(buf: usize, len: usize, dev_off: u64, flags: u64) -> Result<usize, Errno> {
    call(Sys::DioWrite, buf, len, dev_off as usize, flags as usize)
}

/// `gup_test(op, a, b, c)` (see `abi::gup_test`): `START(addr, size,
/// flags) -> handle`, `READ`/`WRITE(handle, buf, len) -> len`,
/// `STOP(handle) -> 0`. The buffers are addresses: the kernel copies
/// to/from them (EFAULT for bad ones).
pub fn gup_test(op: usize, a: usize, b: usize, c: usize) -> Result<usize, Errno> {
    call(Sys::GupTest, op, a, b, c)
}

/// Pins `[addr, addr+size)` long-term (or takes FOLL_GET references with
/// `abi::gup_test::FLAG_GET`); the handle.
pub fn pin_start(addr: usize, size: usize, flags: u64) -> Result<usize, Errno> {
    gup_test(abi::gup_test::START, addr, size, flags as usize)
}

/// Copies the first `buf.len()` bytes of held set `handle`'s frames into `buf`.
pub fn pin_read(handle: usize, buf: &mut [u8]) -> Result<usize, Errno> {
    gup_test(abi::gup_test::READ, handle, buf.as_mut_ptr() as usize, buf.len())
}

/// Writes `buf` into held set `handle`'s frames (a writable pin).
pub fn pin_write(handle: usize, buf: &[u8]) -> Result<usize, Errno> {
    gup_test(abi::gup_test::WRITE, handle, buf.as_ptr() as usize, buf.len())
}

/// Releases held set `handle`.
pub fn pin_stop(handle: usize) -> Result<usize, Errno> {
    gup_test(abi::gup_test::STOP, handle, 0, 0)
}

/// `page_info(pid, addr, buf, flags)` (see `abi::page_info`; pid 0: this
/// process).
pub fn page_info_raw(pid: usize, addr: usize, buf: usize, flags: usize) -> Result<usize, Errno> {
    call(Sys::PageInfo, pid, addr, buf, flags)
}

/// What maps `addr` in process `pid` (0: this one): the `abi::page_info` words.
pub fn page_info(pid: usize, addr: usize) -> Result<[u64; abi::page_info::WORDS], Errno> {
    let mut w = [0u64; abi::page_info::WORDS];
    page_info_raw(pid, addr, w.as_mut_ptr() as usize, 0)?;
    Ok(w)
}

/// `ksm_ctl(op, key, value)` (see `abi::ksm_ctl`).
pub fn ksm_ctl(op: usize, key: usize, value: u64) -> Result<usize, Errno> {
    call(Sys::KsmCtl, op, key, value as usize, 0)
}

/// `khugepaged_ctl(op, key, value)` (see `abi::khugepaged_ctl`).
pub fn khugepaged_ctl(op: usize, key: usize, value: u64) -> Result<usize, Errno> {
    call(Sys::KhugepagedCtl, op, key, value as usize, 0)
}
