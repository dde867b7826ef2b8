//! The selftest-support syscalls from user space: `gup_test` (long-term
//! pins and FOLL_GET references held across calls, reads and writes
//! through them), `page_info`, `ksm_ctl` and `khugepaged_ctl` (the
//! daemons started, tuned, read and stopped; khugepaged collapses a range
//! on its own), each with its argument checks and Linux's errnos. Exits 0
//! when every check passed, else the number of the first one that failed.
#![no_std]
#![no_main]

use abi::Errno;
use abi::gup_test::{self as g, FLAG_FAST, FLAG_GET, FLAG_WRITE, MAX_HELD, MAX_PAGES};
use abi::khugepaged_ctl as kh;
use abi::ksm_ctl as k;
use abi::mman::*;
use abi::page_info as pi;
use userspace::ksft::{self, HPAGE, PAGE};
use userspace::{println, sys};
use userspace::check::{check, eq};

userspace::entry!(main);

fn word(addr: usize) -> u64 {
    // SAFETY: the caller's mapping, readable.
    unsafe { (addr as *const u64).read_volatile() }
}

fn set_word(addr: usize, v: u64) {
    // SAFETY: the caller's mapping, writable.
    unsafe { (addr as *mut u64).write_volatile(v) }
}

fn gup_test_checks() -> Result<(), i32> {
    let a = ksft::map(4 * PAGE).map_err(|_| 1)?;
    for i in 0..4 {
        set_word(a + i * PAGE, 100 + i as u64);
    }
    let size = 4 * PAGE;
    eq(2, "unknown op", sys::gup_test(99, a, size, 0), Err(Errno::EINVAL))?;
    eq(3, "unknown flag", sys::pin_start(a, size, 16), Err(Errno::EINVAL))?;
    eq(4, "unaligned address", sys::pin_start(a + 8, size, 0), Err(Errno::EINVAL))?;
    eq(5, "unaligned size", sys::pin_start(a, size - 8, 0), Err(Errno::EINVAL))?;
    eq(6, "size 0", sys::pin_start(a, 0, 0), Err(Errno::EINVAL))?;
    eq(7, "GET with WRITE", sys::pin_start(a, size, FLAG_GET | FLAG_WRITE), Err(Errno::EINVAL))?;
    eq(8, "more than MAX_PAGES", sys::pin_start(a, (MAX_PAGES as usize + 1) * PAGE, 0), Err(Errno::ENOMEM))?;
    eq(9, "unmapped tail", sys::pin_start(a, 64 * PAGE, 0), Err(Errno::EFAULT))?;
    eq(10, "kernel address", sys::pin_start(0xffff_8000_0000_0000, PAGE, 0), Err(Errno::EFAULT))?;
    let ro = sys::mmap(0, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS).map_err(|_| 11)?;
    eq(12, "R/W pin of a read-only mapping", sys::pin_start(ro, PAGE, FLAG_WRITE), Err(Errno::EFAULT))?;
    let none = sys::mmap(0, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS).map_err(|_| 13)?;
    eq(14, "R/O pin of PROT_NONE", sys::pin_start(none, PAGE, FLAG_FAST), Err(Errno::EFAULT))?;

    // A writable long-term pin: counted, read and written through.
    let h = sys::pin_start(a, size, FLAG_WRITE | FLAG_FAST).map_err(|_| 15)?;
    let w = sys::page_info(0, a + PAGE).map_err(|_| 16)?;
    eq(17, "pins while pinned", w[pi::W_PINS], 1)?;
    check(18, "maybe pinned", w[pi::W_FLAGS] & pi::F_MAYBE_PINNED != 0)?;
    let buf = ksft::map(size).map_err(|_| 19)?;
    // SAFETY: `buf` is this process's mapping of `size` bytes.
    let b = unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, size) };
    set_word(a + 2 * PAGE, 777);
    eq(20, "read through the pin", sys::pin_read(h, b), Ok(size))?;
    eq(21, "read sees the process's write", word(buf + 2 * PAGE), 777)?;
    eq(22, "read sees page 3", word(buf + 3 * PAGE), 103)?;
    eq(23, "read of 0 bytes", sys::gup_test(g::READ, h, buf, 0), Err(Errno::EINVAL))?;
    eq(24, "read past the set", sys::gup_test(g::READ, h, buf, size + PAGE), Err(Errno::EINVAL))?;
    eq(25, "read of a partial page", sys::gup_test(g::READ, h, buf, 100), Err(Errno::EINVAL))?;
    eq(26, "read into a bad buffer", sys::gup_test(g::READ, h, 0x10, PAGE), Err(Errno::EFAULT))?;
    eq(27, "read of an unknown handle", sys::gup_test(g::READ, h + 1000, buf, PAGE), Err(Errno::EINVAL))?;
    set_word(buf, 4242);
    eq(28, "write through the pin", sys::gup_test(g::WRITE, h, buf, PAGE), Ok(PAGE))?;
    eq(29, "the process sees the device's write", word(a), 4242)?;
    eq(30, "write from a bad buffer", sys::gup_test(g::WRITE, h, 0x10, PAGE), Err(Errno::EFAULT))?;
    eq(31, "stop", sys::pin_stop(h), Ok(0))?;
    eq(32, "stop twice", sys::pin_stop(h), Err(Errno::EINVAL))?;
    eq(33, "pins after stop", sys::page_info(0, a + PAGE).map(|w| w[pi::W_PINS]), Ok(0))?;

    // A read-only pin and a FOLL_GET set: not writable through.
    let r = sys::pin_start(a, size, 0).map_err(|_| 34)?;
    eq(35, "write through a R/O pin", sys::gup_test(g::WRITE, r, buf, PAGE), Err(Errno::EPERM))?;
    let get = sys::pin_start(a, size, FLAG_GET).map_err(|_| 36)?;
    let w = sys::page_info(0, a).map_err(|_| 37)?;
    eq(38, "a FOLL_GET reference is no pin", w[pi::W_PINS], 1)?;
    eq(39, "refcount: mapping + GET + R/O pin bias", w[pi::W_REFCOUNT], 1 + 1 + 1024)?;
    eq(40, "write through FOLL_GET references", sys::gup_test(g::WRITE, get, buf, PAGE), Err(Errno::EPERM))?;
    eq(41, "read through FOLL_GET references", sys::pin_read(get, b), Ok(size))?;
    eq(42, "stop the R/O pin", sys::pin_stop(r), Ok(0))?;
    eq(43, "stop the references", sys::pin_stop(get), Ok(0))?;
    eq(44, "refcount after stop", sys::page_info(0, a).map(|w| w[pi::W_REFCOUNT]), Ok(1))?;

    // At most MAX_HELD sets at once.
    let mut handles = [0usize; MAX_HELD];
    for slot in handles.iter_mut() {
        *slot = sys::pin_start(a, PAGE, FLAG_GET).map_err(|_| 45)?;
    }
    eq(46, "one set too many", sys::pin_start(a, PAGE, FLAG_GET), Err(Errno::EINVAL))?;
    for h in handles {
        eq(47, "stop each set", sys::pin_stop(h), Ok(0))?;
    }
    for m in [(a, size), (buf, size), (ro, PAGE), (none, PAGE)] {
        ksft::unmap(m.0, m.1);
    }
    Ok(())
}

fn page_info_checks() -> Result<(), i32> {
    let a = ksft::map(2 * PAGE).map_err(|_| 50)?;
    let mut w = [0u64; pi::WORDS];
    let wp = w.as_mut_ptr() as usize;
    eq(51, "flags not 0", sys::page_info_raw(0, a, wp, 1), Err(Errno::EINVAL))?;
    eq(52, "kernel address", sys::page_info_raw(0, 0xffff_8000_0000_0000, wp, 0), Err(Errno::EFAULT))?;
    eq(53, "bad buffer", sys::page_info_raw(0, a, 0x10, 0), Err(Errno::EFAULT))?;
    eq(54, "no such process", sys::page_info_raw(1 << 40, a, wp, 0), Err(Errno::ESRCH))?;
    eq(55, "an unpopulated page reads as zeroes", sys::page_info(0, a), Ok([0; pi::WORDS]))?;
    set_word(a, 1);
    let w = sys::page_info(0, a + 123).map_err(|_| 56)?;
    let want = pi::F_PRESENT | pi::F_ANON | pi::F_ANON_EXCLUSIVE | pi::F_WRITABLE | pi::F_DIRTY;
    eq(57, "a written anonymous page", w[pi::W_FLAGS], want)?;
    eq(58, "its counts", (w[pi::W_REFCOUNT], w[pi::W_MAPCOUNT], w[pi::W_PINS], w[pi::W_ORDER]), (1, 1, 0, 0))?;
    check(59, "its pfn", w[pi::W_PFN] != 0)?;
    // Shared with a child that waits: neither exclusive nor writable,
    // mapped twice; the parent reads the child's view by pid. The second
    // page is MADV_DONTFORK: the child has nothing there.
    set_word(a + PAGE, 2);
    eq(73, "MADV_DONTFORK", sys::madvise(a + PAGE, PAGE, MADV_DONTFORK), Ok(0))?;
    let hs = ksft::Handshake::new(1);
    let pid = match sys::fork() {
        Ok(0) => {
            // First, before the handshake maps anything (its buffer could
            // land in the hole): nothing was copied at the DONTFORK page.
            let absent = sys::page_info(0, a + PAGE) == Ok([0; pi::WORDS]);
            let ok = hs.post(0, 1).is_ok() && hs.wait(1, 1).is_ok();
            sys::exit(if !ok { 1 } else if !absent { 74 } else { 0 })
        }
        Ok(pid) => pid,
        Err(_) => return Err(60),
    };
    hs.wait(0, 1).map_err(|_| 61)?;
    let mine = sys::page_info(0, a).map_err(|_| 62)?;
    let childs = sys::page_info(pid, a).map_err(|_| 63)?;
    let _ = hs.post(1, 1);
    eq(64, "the child (74: the MADV_DONTFORK page was copied into it)", sys::wait(pid), Ok(0))?;
    let shared = pi::F_PRESENT | pi::F_ANON | pi::F_ANON_EXCLUSIVE | pi::F_WRITABLE;
    eq(65, "shared after fork: neither exclusive nor writable", mine[pi::W_FLAGS] & shared, pi::F_PRESENT | pi::F_ANON)?;
    eq(66, "mapped twice", mine[pi::W_MAPCOUNT], 2)?;
    eq(67, "the child maps the same frame", childs[pi::W_PFN], w[pi::W_PFN])?;
    eq(75, "the parent keeps it, exclusive", ksft::info(a + PAGE)[pi::W_FLAGS] & pi::F_ANON_EXCLUSIVE, pi::F_ANON_EXCLUSIVE)?;
    eq(76, "MADV_DOFORK", sys::madvise(a + PAGE, PAGE, MADV_DOFORK), Ok(0))?;
    // A THP.
    let (m, t) = ksft::map_thp_area().map_err(|_| 68)?;
    sys::madvise(t, HPAGE, MADV_HUGEPAGE).map_err(|_| 69)?;
    set_word(t, 1);
    let w = sys::page_info(0, t + 5 * PAGE).map_err(|_| 70)?;
    check(71, "a PMD-mapped THP", w[pi::W_FLAGS] & (pi::F_HUGE_PMD | pi::F_THP) == pi::F_HUGE_PMD | pi::F_THP)?;
    eq(72, "its order", w[pi::W_ORDER], 9)?;
    // An area boundary inside the huge pmd (MADV_NOHUGEPAGE on the upper
    // half splits the area, not the pmd), then fork: fork splits that pmd
    // and each area copies its ptes; once the child has exited, the
    // parent's 512 ptes hold the folio's only mappings and references (fork
    // sharing the pmd once per area left a mapping and a reference behind).
    eq(77, "MADV_NOHUGEPAGE on half a THP", sys::madvise(t + HPAGE / 2, HPAGE / 2, MADV_NOHUGEPAGE), Ok(0))?;
    match sys::fork() {
        Ok(0) => sys::exit(0),
        Ok(pid) => eq(78, "the child", sys::wait(pid), Ok(0))?,
        Err(_) => return Err(79),
    }
    for off in [0, HPAGE / 2] {
        let w = sys::page_info(0, t + off).map_err(|_| 80)?;
        eq(81, "mapped once after the child exited", w[pi::W_MAPCOUNT], 1)?;
        eq(82, "PTE-mapped by fork's split", w[pi::W_FLAGS] & (pi::F_HUGE_PMD | pi::F_THP), pi::F_THP)?;
        eq(83, "references: the parent's 512 ptes only", w[pi::W_REFCOUNT], 512)?;
    }
    ksft::unmap(m, 2 * HPAGE);
    ksft::unmap(a, 2 * PAGE);
    Ok(())
}

fn ksm_ctl_checks() -> Result<(), i32> {
    eq(80, "unknown op", sys::ksm_ctl(7, k::RUN, 0), Err(Errno::EINVAL))?;
    eq(81, "unknown key", sys::ksm_ctl(k::GET, 999, 0), Err(Errno::ENOENT))?;
    eq(82, "write a statistic", sys::ksm_ctl(k::SET, k::FULL_SCANS, 0), Err(Errno::EACCES))?;
    eq(83, "run=3", sys::ksm_ctl(k::SET, k::RUN, 3), Err(Errno::EINVAL))?;
    eq(84, "max_page_sharing=1", sys::ksm_ctl(k::SET, k::MAX_PAGE_SHARING, 1), Err(Errno::EINVAL))?;
    eq(85, "pages_to_scan beyond u32", sys::ksm_ctl(k::SET, k::PAGES_TO_SCAN, 1 << 32), Err(Errno::EINVAL))?;
    eq(86, "an offline CPU", sys::ksm_ctl(k::SET, k::CPU, 4096), Err(Errno::EINVAL))?;
    let pages = sys::ksm_ctl(k::GET, k::PAGES_TO_SCAN, 0).map_err(|_| 87)?;
    let sleep = sys::ksm_ctl(k::GET, k::SLEEP_MILLISECS, 0).map_err(|_| 88)?;
    eq(89, "set pages_to_scan", sys::ksm_ctl(k::SET, k::PAGES_TO_SCAN, 321), Ok(0))?;
    eq(90, "read it back", sys::ksm_ctl(k::GET, k::PAGES_TO_SCAN, 0), Ok(321))?;
    eq(91, "set sleep_millisecs", sys::ksm_ctl(k::SET, k::SLEEP_MILLISECS, 7), Ok(0))?;
    eq(92, "read it back", sys::ksm_ctl(k::GET, k::SLEEP_MILLISECS, 0), Ok(7))?;
    eq(93, "run=1", sys::ksm_ctl(k::SET, k::RUN, k::RUN_MERGE), Ok(0))?;
    eq(94, "run reads 1", sys::ksm_ctl(k::GET, k::RUN, 0), Ok(1))?;
    eq(95, "run=1 again", sys::ksm_ctl(k::SET, k::RUN, k::RUN_MERGE), Ok(0))?;
    eq(96, "CPU while running", sys::ksm_ctl(k::SET, k::CPU, 0), Err(Errno::EBUSY))?;
    let scans = sys::ksm_ctl(k::GET, k::FULL_SCANS, 0).map_err(|_| 97)?;
    let t0 = sys::clock_ns();
    while sys::ksm_ctl(k::GET, k::FULL_SCANS, 0).map_err(|_| 98)? <= scans {
        check(99, "ksmd makes a full scan within 10 s", sys::clock_ns() - t0 < 10_000_000_000)?;
        let _ = sys::sleep_ns(1_000_000);
    }
    eq(100, "run=0", sys::ksm_ctl(k::SET, k::RUN, k::RUN_STOP), Ok(0))?;
    eq(101, "run reads 0", sys::ksm_ctl(k::GET, k::RUN, 0), Ok(0))?;
    eq(102, "restore pages_to_scan", sys::ksm_ctl(k::SET, k::PAGES_TO_SCAN, pages as u64), Ok(0))?;
    eq(103, "restore sleep_millisecs", sys::ksm_ctl(k::SET, k::SLEEP_MILLISECS, sleep as u64), Ok(0))?;
    let mps = sys::ksm_ctl(k::GET, k::MAX_PAGE_SHARING, 0).map_err(|_| 104)?;
    eq(105, "max_page_sharing unchanged value", sys::ksm_ctl(k::SET, k::MAX_PAGE_SHARING, mps as u64), Ok(0))?;
    Ok(())
}

fn khugepaged_ctl_checks() -> Result<(), i32> {
    eq(110, "unknown op", sys::khugepaged_ctl(7, kh::RUN, 0), Err(Errno::EINVAL))?;
    eq(111, "unknown key", sys::khugepaged_ctl(kh::GET, 999, 0), Err(Errno::ENOENT))?;
    eq(112, "write a statistic", sys::khugepaged_ctl(kh::SET, kh::PAGES_COLLAPSED, 0), Err(Errno::EACCES))?;
    eq(113, "pages_to_scan=0", sys::khugepaged_ctl(kh::SET, kh::PAGES_TO_SCAN, 0), Err(Errno::EINVAL))?;
    eq(114, "max_ptes_none=512", sys::khugepaged_ctl(kh::SET, kh::MAX_PTES_NONE, 512), Err(Errno::EINVAL))?;
    eq(115, "max_ptes_shared=512", sys::khugepaged_ctl(kh::SET, kh::MAX_PTES_SHARED, 512), Err(Errno::EINVAL))?;
    eq(116, "run=2", sys::khugepaged_ctl(kh::SET, kh::RUN, 2), Err(Errno::EINVAL))?;
    let get = |key| sys::khugepaged_ctl(kh::GET, key, 0).map(|v| v as u64);
    let saved = [get(kh::PAGES_TO_SCAN), get(kh::SCAN_SLEEP_MILLISECS), get(kh::MAX_PTES_NONE), get(kh::MAX_PTES_SHARED)];
    let [Ok(pages), Ok(sleep), Ok(none), Ok(shared)] = saved else { return Err(117) };
    eq(118, "max_ptes_none=0", sys::khugepaged_ctl(kh::SET, kh::MAX_PTES_NONE, 0), Ok(0))?;
    eq(119, "read it back", get(kh::MAX_PTES_NONE), Ok(0))?;
    eq(120, "scan_sleep_millisecs=1", sys::khugepaged_ctl(kh::SET, kh::SCAN_SLEEP_MILLISECS, 1), Ok(0))?;
    eq(121, "pages_to_scan=4096", sys::khugepaged_ctl(kh::SET, kh::PAGES_TO_SCAN, 4096), Ok(0))?;
    // A 2 MiB MADV_HUGEPAGE range of 512 small pages: khugepaged collapses it.
    let (m, t) = ksft::map_thp_area().map_err(|_| 122)?;
    sys::madvise(t, HPAGE, MADV_NOHUGEPAGE).map_err(|_| 123)?;
    for off in (0..HPAGE).step_by(PAGE) {
        set_word(t + off, off as u64 + 1);
    }
    sys::madvise(t, HPAGE, MADV_HUGEPAGE).map_err(|_| 124)?;
    check(125, "small pages before", !ksft::pmd_mapped(t))?;
    let before = get(kh::PAGES_COLLAPSED).map_err(|_| 126)?;
    eq(127, "run=1", sys::khugepaged_ctl(kh::SET, kh::RUN, 1), Ok(0))?;
    eq(128, "run reads 1", get(kh::RUN), Ok(1))?;
    eq(129, "CPU while running", sys::khugepaged_ctl(kh::SET, kh::CPU, 0), Err(Errno::EBUSY))?;
    let t0 = sys::clock_ns();
    while !ksft::pmd_mapped(t) {
        check(130, "khugepaged collapses the range within 20 s", sys::clock_ns() - t0 < 20_000_000_000)?;
        let _ = sys::sleep_ns(2_000_000);
    }
    eq(131, "run=0", sys::khugepaged_ctl(kh::SET, kh::RUN, 0), Ok(0))?;
    eq(132, "run reads 0", get(kh::RUN), Ok(0))?;
    check(133, "pages_collapsed grew", get(kh::PAGES_COLLAPSED).map_err(|_| 134)? > before)?;
    check(135, "contents kept", (0..HPAGE).step_by(PAGE).all(|off| word(t + off) == off as u64 + 1))?;
    ksft::unmap(m, 2 * HPAGE);
    for (i, (key, v)) in
        [(kh::PAGES_TO_SCAN, pages), (kh::SCAN_SLEEP_MILLISECS, sleep), (kh::MAX_PTES_NONE, none), (kh::MAX_PTES_SHARED, shared)]
            .into_iter()
            .enumerate()
    {
        eq(136 + i as i32, "restore a tunable", sys::khugepaged_ctl(kh::SET, key, v), Ok(0))?;
    }
    Ok(())
}

fn main() -> i32 {
    let r = gup_test_checks().and_then(|()| page_info_checks()).and_then(|()| ksm_ctl_checks()).and_then(|()| khugepaged_ctl_checks());
    match r {
        Ok(()) => {
            println!("mmctl: ok");
            0
        }
        Err(case) => case,
    }
}
