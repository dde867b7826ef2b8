//! The user/kernel ABI, shared by the kernel and the user programs.
//!
//! Calling convention (Linux's x86_64 one): the syscall number in `rax`,
//! arguments in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`, the `syscall`
//! instruction, the result in `rax`. `rcx` and `r11` are clobbered (the CPU
//! keeps the return address and the flags there). A result in
//! `-4095..=-1` is a negated [`Errno`]; anything else is a success value.
//!
//! Errno values and the mmap/madvise constants have Linux's numbers, so a
//! program's view of the interface matches what the same test does on Linux.
//! Syscall numbers are the testbed's own (the set is much smaller).

#![no_std]

/// Syscall numbers. The values are part of the ABI: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Sys {
    /// `exit(status) -> !`: ends the whole process (every thread).
    Exit = 0,
    /// `thread_exit(status) -> !`: ends the calling thread; the last thread's
    /// exit ends the process with that status.
    ThreadExit = 1,
    /// `write(buf, len) -> len`: writes bytes to the console.
    Write = 2,
    /// `getcpu() -> cpu`: the CPU the caller runs on.
    GetCpu = 3,
    /// `clock_ns() -> ns`: monotonic nanoseconds since boot.
    ClockNs = 4,
    /// `yield() -> 0`: gives the CPU to another runnable task of this CPU.
    Yield = 5,
    /// `sleep_ns(ns) -> 0`: sleeps at least `ns` nanoseconds.
    SleepNs = 6,
    /// `thread_spawn(entry, stack_top, arg, cpu) -> tid`: a new thread of this
    /// process on `cpu`, starting at `entry` with `rsp = stack_top` and
    /// `rdi = arg`.
    ThreadSpawn = 7,
    /// `thread_join(tid) -> status`: waits for a thread of this process.
    ThreadJoin = 8,
    /// `spawn(name_ptr, name_len, cpu) -> pid`: starts a built-in program as a
    /// child process whose first thread runs on `cpu`.
    Spawn = 9,
    /// `wait(pid) -> status`: waits for a child process to end and reaps it.
    Wait = 10,
    /// `getpid() -> pid`.
    GetPid = 11,
    /// `fork() -> pid in the parent, 0 in the child`.
    Fork = 12,
    /// `mmap(addr, len, prot, flags, fd, offset) -> addr`.
    Mmap = 13,
    /// `munmap(addr, len) -> 0`.
    Munmap = 14,
    /// `mprotect(addr, len, prot) -> 0`.
    Mprotect = 15,
    /// `madvise(addr, len, advice) -> 0`.
    Madvise = 16,
    /// `gettid() -> tid`.
    GetTid = 17,
    /// `dio_read(buf, len, dev_off_or_seq, flags) -> len`: direct I/O from
    /// the DMA device into pinned user memory (see [`dio`]).
    DioRead = 18,
    /// `dio_write(buf, len, dev_off, flags) -> len`: direct I/O from pinned
    /// user memory to the DMA device (see [`dio`]).
    DioWrite = 19,
    /// `bench_result(buf, len) -> len`: prints `RESULT <buf>` as a benchmark
    /// result line (`<bench> key=value ...`, checked; the kernel appends the
    /// configuration keys it knows, e.g. ` flush=nmi`). Numbers 18 and 19 are
    /// the direct-I/O syscalls.
    BenchResult = 20,
    /// `race(op, a, b) -> value`: the race-scenario syscall (see [`race`]).
    Race = 21,
    /// `uprobe(op, pid, addr) -> value`: install or remove a breakpoint
    /// (`int3`) at `addr` of process `pid`'s executable private mapping, or
    /// count its hits (see [`uprobe`]).
    Uprobe = 22,
    /// `gup_test(op, a, b, c) -> value`: long-term pins and read-only GUP
    /// references a process holds across calls, and reads and writes
    /// through them (Linux GUP_TEST's `PIN_LONGTERM_TEST_*`, and what
    /// vmsplice gives cow.c; see [`gup_test`]).
    GupTest = 23,
    /// `page_info(pid, addr, buf) -> 0`: what maps `addr` in process `pid`
    /// (0: the caller) and that page's state, `/proc/PID/pagemap` and
    /// `/proc/kpageflags`-like (see [`page_info`]).
    PageInfo = 24,
    /// `ksm_ctl(op, key, value) -> value`: ksmd's switch, tunables and
    /// statistics (`/sys/kernel/mm/ksm/`; see [`ksm_ctl`]).
    KsmCtl = 25,
    /// `khugepaged_ctl(op, key, value) -> value`: khugepaged's switch,
    /// tunables and statistics
    /// (`/sys/kernel/mm/transparent_hugepage/khugepaged/`; see
    /// [`khugepaged_ctl`]).
    KhugepagedCtl = 26,
}

impl Sys {
    /// Every syscall, in number order.
    pub const ALL: [Sys; 27] = [
        Sys::Exit,
        Sys::ThreadExit,
        Sys::Write,
        Sys::GetCpu,
        Sys::ClockNs,
        Sys::Yield,
        Sys::SleepNs,
        Sys::ThreadSpawn,
        Sys::ThreadJoin,
        Sys::Spawn,
        Sys::Wait,
        Sys::GetPid,
        Sys::Fork,
        Sys::Mmap,
        Sys::Munmap,
        Sys::Mprotect,
        Sys::Madvise,
        Sys::GetTid,
        Sys::DioRead,
        Sys::DioWrite,
        Sys::BenchResult,
        Sys::Race,
        Sys::Uprobe,
        Sys::GupTest,
        Sys::PageInfo,
        Sys::KsmCtl,
        Sys::KhugepagedCtl,
    ];

    /// The syscall with number `n`, if any (numbers may have gaps).
    pub fn from_number(n: usize) -> Option<Sys> {
        Self::ALL.iter().copied().find(|s| *s as usize == n)
    }
}

/// An error number (Linux's values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such entry (no breakpoint registered there).
    pub const ENOENT: Errno = Errno(2);
    /// No such process (or thread).
    pub const ESRCH: Errno = Errno(3);
    /// Interrupted (the process is exiting).
    pub const EINTR: Errno = Errno(4);
    /// Not a child of the caller.
    pub const ECHILD: Errno = Errno(10);
    /// Try again.
    pub const EAGAIN: Errno = Errno(11);
    /// Out of memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Permission denied (a read-only `ksm_ctl`/`khugepaged_ctl` key
    /// written, as opening a 0444 sysfs file for writing).
    pub const EACCES: Errno = Errno(13);
    /// Bad address.
    pub const EFAULT: Errno = Errno(14);
    /// Busy.
    pub const EBUSY: Errno = Errno(16);
    /// Exists (MAP_FIXED_NOREPLACE over a mapping).
    pub const EEXIST: Errno = Errno(17);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// No such syscall (or not implemented).
    pub const ENOSYS: Errno = Errno(38);
    /// Timed out (a DMA transfer the device never started).
    pub const ETIMEDOUT: Errno = Errno(110);

    /// The symbolic name, for reports.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            4 => "EINTR",
            10 => "ECHILD",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            17 => "EEXIST",
            16 => "EBUSY",
            22 => "EINVAL",
            38 => "ENOSYS",
            110 => "ETIMEDOUT",
            _ => "E?",
        }
    }

    /// The error a raw syscall return value carries, if any (as [`decode_ret`]).
    pub fn from_raw(raw: usize) -> Result<usize, Errno> {
        decode_ret(raw)
    }

    /// The raw syscall return value for this error (`-errno`).
    pub fn to_ret(self) -> usize {
        (-(self.0 as isize)) as usize
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Decodes a raw syscall return value: `-4095..=-1` is an error.
pub fn decode_ret(raw: usize) -> Result<usize, Errno> {
    let signed = raw as isize;
    if (-4095..0).contains(&signed) { Err(Errno(-signed as i32)) } else { Ok(raw) }
}

/// Exit statuses the kernel gives a process it ends.
pub mod status {
    /// Killed by a fault it could not survive (page fault, #GP, #UD, ...):
    /// 128 + SIGSEGV, as a shell reports it on Linux.
    pub const KILLED_BY_FAULT: i32 = 139;
    /// The user runtime's panic handler exits with this (as Rust's test
    /// harness does for a panicking process).
    pub const PANIC: i32 = 101;
}

/// mmap protections and flags, madvise advice (Linux's values).
pub mod mman {
    /// No access.
    pub const PROT_NONE: usize = 0;
    /// Readable.
    pub const PROT_READ: usize = 1;
    /// Writable.
    pub const PROT_WRITE: usize = 2;
    /// Executable.
    pub const PROT_EXEC: usize = 4;
    /// Every valid protection bit.
    pub const PROT_MASK: usize = PROT_READ | PROT_WRITE | PROT_EXEC;

    /// Shared mapping.
    pub const MAP_SHARED: usize = 0x01;
    /// Private (copy-on-write) mapping.
    pub const MAP_PRIVATE: usize = 0x02;
    /// Place exactly at `addr`, replacing what is there.
    pub const MAP_FIXED: usize = 0x10;
    /// Not backed by a file.
    pub const MAP_ANONYMOUS: usize = 0x20;
    /// Fault every page in now.
    pub const MAP_POPULATE: usize = 0x8000;
    /// Like MAP_FIXED, but fail rather than replace.
    pub const MAP_FIXED_NOREPLACE: usize = 0x10_0000;

    /// No special treatment.
    pub const MADV_NORMAL: usize = 0;
    /// Expect random access.
    pub const MADV_RANDOM: usize = 1;
    /// Expect sequential access.
    pub const MADV_SEQUENTIAL: usize = 2;
    /// Will need these pages.
    pub const MADV_WILLNEED: usize = 3;
    /// Drop these pages (anonymous memory reads back as zeroes).
    pub const MADV_DONTNEED: usize = 4;
    /// Do not copy these pages into a fork child.
    pub const MADV_DONTFORK: usize = 10;
    /// Undo MADV_DONTFORK.
    pub const MADV_DOFORK: usize = 11;
    /// KSM may merge these pages.
    pub const MADV_MERGEABLE: usize = 12;
    /// Undo MADV_MERGEABLE.
    pub const MADV_UNMERGEABLE: usize = 13;
    /// Back with huge pages where possible (khugepaged may collapse).
    pub const MADV_HUGEPAGE: usize = 14;
    /// Never back with huge pages.
    pub const MADV_NOHUGEPAGE: usize = 15;
    /// Collapse into huge pages now.
    pub const MADV_COLLAPSE: usize = 25;
}

/// The race-scenario syscall (`race(op, a, b) -> value`): how a scenario's
/// worker processes get their parameters, ask whether to stop, check a user
/// write through the page table, and report what their oracles saw. Outside
/// a running scenario every op fails with EINVAL.
pub mod race {
    /// `race(PARAMS, buf)`: writes `[u64; PARAM_WORDS]` to `buf`, indexed by
    /// the `P_*` constants.
    pub const PARAMS: usize = 0;
    /// `race(SHOULD_STOP) -> 0|1`.
    pub const SHOULD_STOP: usize = 1;
    /// `race(PROBE, addr) -> u64`: the 8-byte word at `addr` (8-aligned) in
    /// the frame the caller's page table maps there now, read through the
    /// kernel's direct map (not through the caller's TLB). Afterwards the
    /// caller's CPU drops its translation of `addr`, so that a stale entry
    /// left by a broken writer is used for one write at most.
    pub const PROBE: usize = 2;
    /// `race(REPORT, what, n)`: adds `n` to counter `what` (`R_*`).
    pub const REPORT: usize = 3;
    /// `race(TARGET, addr, pages)`: offers the caller's pages `[addr, addr +
    /// pages * 4096)` to the scenario's writer (uprobe-vs-pin's tracer
    /// probes byte 0 of each).
    pub const TARGET: usize = 4;
    /// `race(HUGE, addr) -> 0|1`: whether a huge pmd maps `addr` now
    /// (collapse-vs-gupfast workers rebuild a collapsed range).
    pub const HUGE: usize = 5;

    /// Number of parameter words.
    pub const PARAM_WORDS: usize = 8;
    /// This worker's index (0-based).
    pub const P_WORKER: usize = 0;
    /// Number of workers.
    pub const P_WORKERS: usize = 1;
    /// Seed.
    pub const P_SEED: usize = 2;
    /// Iterations to run (`u64::MAX`: until told to stop).
    pub const P_ITERATIONS: usize = 3;
    /// Pages of the buffer a worker pins by direct read per iteration.
    pub const P_DIO_PAGES: usize = 4;
    /// Pages a worker writes and checks per iteration.
    pub const P_WRITE_PAGES: usize = 5;
    /// Bound of the random pause (microseconds) between refilling a page
    /// and pinning it (`scenario.prep_us`).
    pub const P_PREP_US: usize = 6;
    /// collapse-vs-gupfast: who collapses ([`COLLAPSER_MADVISE`] or
    /// [`COLLAPSER_KHUGEPAGED`]).
    pub const P_COLLAPSER: usize = 7;
    /// The workers' own `MADV_COLLAPSE` thread collapses.
    pub const COLLAPSER_MADVISE: u64 = 0;
    /// khugepaged collapses.
    pub const COLLAPSER_KHUGEPAGED: u64 = 1;

    /// Counter: iterations done.
    pub const R_ITERATIONS: usize = 0;
    /// Counter: direct-read buffers checked.
    pub const R_DMA_CHECKS: usize = 1;
    /// Counter: DMA losses seen (buffer differs from the DMA pattern).
    pub const R_DMA_LOST: usize = 2;
    /// Counter: user writes checked.
    pub const R_WRITE_CHECKS: usize = 3;
    /// Counter: user writes lost (the mapped frame lacks the value written).
    pub const R_WRITE_LOST: usize = 4;
}

/// The uprobe syscall (`uprobe(op, pid, addr) -> value`): a tool process
/// installs and removes breakpoints in another process (or itself), as Linux's
/// uprobe_register()/uprobe_unregister() do for a perf or bpftrace probe.
///
/// `addr` must lie in a private mapping of `pid` that allows execution
/// (Linux's valid_vma(): VM_MAYEXEC, not shared). Errors: `ESRCH` no such
/// live process; `EFAULT` `addr` not mapped (or not a user address);
/// `EINVAL` a mapping that is not executable, or an unknown op; `EEXIST`
/// `REGISTER` where a breakpoint is registered already; `ENOENT`
/// `UNREGISTER`/`HITS` where none is; `ENOMEM`; `EAGAIN` the page kept
/// changing under the writer for a second.
pub mod uprobe {
    /// `uprobe(REGISTER, pid, addr) -> 0`: writes `int3` at `addr` (the byte
    /// there is kept to be restored, and emulated on a hit if it is a `nop`).
    pub const REGISTER: usize = 0;
    /// `uprobe(UNREGISTER, pid, addr) -> 0`: restores the original byte.
    pub const UNREGISTER: usize = 1;
    /// `uprobe(HITS, pid, addr) -> n`: times a thread of `pid` hit it.
    pub const HITS: usize = 2;
    /// The breakpoint instruction (x86 `int3`, Linux UPROBE_SWBP_INSN).
    pub const SWBP_INSN: u8 = 0xcc;
}

/// Direct I/O (`dio_read`, `dio_write`) against the testbed's DMA device: a
/// RAM-backed store of [`dio::DEVICE_SIZE`] bytes, plus a pattern source.
pub mod dio {
    /// Bytes of the device's store.
    pub const DEVICE_SIZE: u64 = 4 << 20;
    /// The unit of buffers, lengths and device offsets.
    pub const BLOCK: u64 = 4096;
    /// The longest transfer (one 2 MiB huge page, 512 pages).
    pub const MAX_LEN: u64 = 2 << 20;
    /// `dio_read` flag: fill the buffer with [`pattern_word`]`(seq, offset)`
    /// instead of reading the store; the third argument is `seq`.
    pub const PATTERN: u64 = 1;
    /// Every flag `dio_read` knows (`dio_write` takes none).
    pub const READ_FLAGS: u64 = PATTERN;

    /// Tag in the top nibble of every pattern word: never 0, never the
    /// free-poison nibble 6 (0x6b6b...), so neither a zero page nor a freed
    /// frame can pass for a pattern.
    const TAG: u64 = 0xd << 60;

    /// The word a pattern read of sequence number `seq` puts at byte offset
    /// `byte_offset` (a multiple of 8) of the buffer. Bits 59..28 hold the low
    /// 32 bits of `seq`, bits 27..0 `byte_offset / 8`: words are unique per
    /// (seq mod 2^32, offset below 2 GiB), so a word left over from another
    /// iteration or written at another offset never matches.
    pub const fn pattern_word(seq: u64, byte_offset: u64) -> u64 {
        TAG | ((seq & 0xffff_ffff) << 28) | ((byte_offset >> 3) & 0x0fff_ffff)
    }
}

/// Long-term pins and GUP references held across calls (`gup_test(op, a, b,
/// c) -> value`), as Linux's debugfs `gup_test` file offers them to
/// cow.c and gup_longterm.c (`PIN_LONGTERM_TEST_START`/`_READ`/`_STOP`),
/// plus the read-only FOLL_GET reference a pipe holds after vmsplice and a
/// device-side write through a writable pin.
///
/// A process may hold [`gup_test::MAX_HELD`] sets at once, each named by
/// the handle `START` returns (Linux's file holds one set: a second START
/// is EINVAL there, and here past the limit). Every set a process still
/// holds is released when it ends, whichever way it ends; a fork child
/// inherits none.
///
/// Errors, as Linux's: `EINVAL` unknown op or flag, `addr`/`size` not
/// page-aligned, size 0, too many sets, an unknown handle, a `len` of 0 or
/// beyond the set; `ENOMEM` more than [`gup_test::MAX_PAGES`] pages (Linux:
/// the page array cannot be allocated) or no memory to fault a page in;
/// `EFAULT` a page not mapped for the access (GUP's answer) or a bad
/// buffer; `EAGAIN` a page whose entry kept changing for a second; `EPERM`
/// `WRITE` through a set taken without [`gup_test::FLAG_WRITE`].
pub mod gup_test {
    /// `gup_test(START, addr, size, flags) -> handle`: pins the pages of
    /// `[addr, addr+size)` with FOLL_PIN | FOLL_LONGTERM (plus FOLL_WRITE
    /// with [`FLAG_WRITE`]), through GUP-fast with [`FLAG_FAST`] (Linux
    /// pin_user_pages_fast()) or the slow path (pin_user_pages()); with
    /// [`FLAG_GET`] takes plain FOLL_GET references instead (get_user_pages,
    /// as vmsplice: no unshare of COW-shared pages). All or nothing.
    pub const START: usize = 0;
    /// `gup_test(READ, handle, buf, len) -> len`: copies the first `len`
    /// bytes of the held pages, as their frames hold them now (what a
    /// device or a pipe reads), to `buf` (Linux PIN_LONGTERM_TEST_READ).
    pub const READ: usize = 1;
    /// `gup_test(WRITE, handle, buf, len) -> len`: copies `len` bytes from
    /// `buf` into the held frames, as a device's DMA write through the pins
    /// would (the pages are marked dirty when unpinned).
    pub const WRITE: usize = 2;
    /// `gup_test(STOP, handle) -> 0`: releases the set (Linux
    /// PIN_LONGTERM_TEST_STOP: unpin_user_pages()).
    pub const STOP: usize = 3;

    /// START flag: FOLL_WRITE (Linux PIN_LONGTERM_TEST_FLAG_USE_WRITE).
    pub const FLAG_WRITE: u64 = 1;
    /// START flag: GUP-fast first (Linux PIN_LONGTERM_TEST_FLAG_USE_FAST).
    pub const FLAG_FAST: u64 = 2;
    /// START flag: FOLL_GET references, not long-term pins (vmsplice).
    pub const FLAG_GET: u64 = 4;
    /// START flag: FOLL_FORCE with [`FLAG_WRITE`] (what a write to
    /// /proc/PID/mem or ptrace's POKE uses): a private area without write
    /// (or any) permission is written through a COW copy, as Linux's
    /// check_vma_flags() allows for a COW mapping.
    pub const FLAG_FORCE: u64 = 8;
    /// Every START flag.
    pub const FLAGS: u64 = FLAG_WRITE | FLAG_FAST | FLAG_GET | FLAG_FORCE;

    /// Most pages one set holds (64 MiB).
    pub const MAX_PAGES: u64 = 16384;
    /// Most sets one process holds at once.
    pub const MAX_HELD: usize = 16;
}

/// `page_info(pid, addr, buf) -> 0`: writes `[u64; WORDS]` to `buf`
/// describing what maps `addr` (any address in the page) in process `pid`
/// (0: the caller), read under the page-table lock: Linux's
/// `/proc/PID/pagemap` entry (present, pfn) and `/proc/kpageflags` /
/// `kpagecount` for that pfn (anon, KSM, THP, mapcount), plus what Linux
/// shows only to the kernel (anon-exclusive, reference count, pins). An
/// address nothing maps reads as all zeroes, as a pagemap hole.
///
/// Errors: `EINVAL` `flags` not 0; `EFAULT` `addr` outside the user half,
/// or a bad `buf`; `ESRCH` no such live process.
pub mod page_info {
    /// Words written.
    pub const WORDS: usize = 8;
    /// Word: the `F_*` flags.
    pub const W_FLAGS: usize = 0;
    /// Word: the frame number (0 when not present).
    pub const W_PFN: usize = 1;
    /// Word: the folio's reference count (page_count()).
    pub const W_REFCOUNT: usize = 2;
    /// Word: this page's mappings, ptes plus pmds of its folio
    /// (page_mapcount(), Linux's kpagecount).
    pub const W_MAPCOUNT: usize = 3;
    /// Word: FOLL_PIN pins on the whole folio, exactly (one per page
    /// pinned: a THP pinned whole shows 512 on each page; Linux only offers
    /// folio_maybe_dma_pinned(): see [`F_MAYBE_PINNED`]).
    pub const W_PINS: usize = 4;
    /// Word: the folio's order (0 small, 9 for a 2 MiB THP).
    pub const W_ORDER: usize = 5;

    /// A page is mapped there (a PROT_NONE entry counts, as pte_present()).
    pub const F_PRESENT: u64 = 1 << 0;
    /// Mapped by a huge pmd (a PMD-mapped THP).
    pub const F_HUGE_PMD: u64 = 1 << 1;
    /// Part of a large folio, whichever way it is mapped (KPF_THP).
    pub const F_THP: u64 = 1 << 2;
    /// Anonymous (KPF_ANON).
    pub const F_ANON: u64 = 1 << 3;
    /// Anon-exclusive (PageAnonExclusive).
    pub const F_ANON_EXCLUSIVE: u64 = 1 << 4;
    /// A KSM page (KPF_KSM).
    pub const F_KSM: u64 = 1 << 5;
    /// The entry is writable now.
    pub const F_WRITABLE: u64 = 1 << 6;
    /// folio_maybe_dma_pinned().
    pub const F_MAYBE_PINNED: u64 = 1 << 7;
    /// The entry is dirty.
    pub const F_DIRTY: u64 = 1 << 8;
}

/// ksmd's control (`ksm_ctl(op, key, value) -> value`), the files of
/// Linux's `/sys/kernel/mm/ksm/`: `GET` reads a key, `SET` writes one and
/// returns 0. Values are checked as Linux's store functions check them.
///
/// Errors: `EINVAL` unknown op, a value out of range; `ENOENT` unknown key
/// (no such file); `EACCES` `SET` of a statistic (a 0444 file); `EBUSY`
/// `MAX_PAGE_SHARING` changed while KSM pages exist (Linux's rule), `CPU`
/// changed while ksmd runs, or ksmd did not stop within 10 s.
pub mod ksm_ctl {
    /// Read a key.
    pub const GET: usize = 0;
    /// Write a key.
    pub const SET: usize = 1;

    /// `run`: [`RUN_STOP`], [`RUN_MERGE`] or [`RUN_UNMERGE`] (like Linux's
    /// default, 0 at boot unless a scenario or benchmark started ksmd).
    pub const RUN: usize = 0;
    /// `pages_to_scan` (0..=u32::MAX; Linux's default 100).
    pub const PAGES_TO_SCAN: usize = 1;
    /// `sleep_millisecs` (0..=u32::MAX; 0 only yields; default 20). Kept in
    /// microseconds inside: reads round down.
    pub const SLEEP_MILLISECS: usize = 2;
    /// `max_page_sharing` (2..=i32::MAX; default 256).
    pub const MAX_PAGE_SHARING: usize = 3;
    /// `pages_shared` (read-only).
    pub const PAGES_SHARED: usize = 4;
    /// `pages_sharing` (read-only).
    pub const PAGES_SHARING: usize = 5;
    /// `full_scans` (read-only).
    pub const FULL_SCANS: usize = 6;
    /// `pages_scanned` (read-only).
    pub const PAGES_SCANNED: usize = 7;
    /// The testbed's: pages merged into a KSM page since boot (read-only).
    pub const MERGES: usize = 8;
    /// The testbed's: the CPU ksmd runs on when started (an online CPU;
    /// default the last one).
    pub const CPU: usize = 9;

    /// `run` value: stop ksmd; merged pages stay merged.
    pub const RUN_STOP: u64 = 0;
    /// `run` value: ksmd scans and merges.
    pub const RUN_MERGE: u64 = 1;
    /// `run` value: stop ksmd and unmerge every KSM page of every
    /// registered address space (Linux KSM_RUN_UNMERGE).
    pub const RUN_UNMERGE: u64 = 2;
}

/// khugepaged's control (`khugepaged_ctl(op, key, value) -> value`), the
/// files of Linux's `/sys/kernel/mm/transparent_hugepage/khugepaged/`, with
/// the same ops and errors as [`ksm_ctl`] (`EBUSY`: `CPU` changed while
/// khugepaged runs, or it did not stop within 10 s).
pub mod khugepaged_ctl {
    /// Read a key.
    pub const GET: usize = 0;
    /// Write a key.
    pub const SET: usize = 1;

    /// The testbed's: 1 khugepaged runs, 0 it does not (Linux runs it
    /// whenever THP is enabled; here, like ksmd, it runs when started).
    pub const RUN: usize = 0;
    /// `pages_to_scan` (1..=u32::MAX; default 4096).
    pub const PAGES_TO_SCAN: usize = 1;
    /// `scan_sleep_millisecs` (0..=u32::MAX; default 10000). Kept in
    /// microseconds inside: reads round down.
    pub const SCAN_SLEEP_MILLISECS: usize = 2;
    /// `max_ptes_none` (0..=511; default 511).
    pub const MAX_PTES_NONE: usize = 3;
    /// `max_ptes_shared` (0..=511; default 256).
    pub const MAX_PTES_SHARED: usize = 4;
    /// `pages_collapsed` (read-only; khugepaged's and MADV_COLLAPSE's).
    pub const PAGES_COLLAPSED: usize = 5;
    /// `full_scans` (read-only).
    pub const FULL_SCANS: usize = 6;
    /// The testbed's: ptes khugepaged examined (read-only).
    pub const PAGES_SCANNED: usize = 7;
    /// The testbed's: the CPU khugepaged runs on when started (an online
    /// CPU; default the last one).
    pub const CPU: usize = 8;
}
