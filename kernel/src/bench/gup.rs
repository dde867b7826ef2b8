//! `bench=gup`: per-page cost of get_user_pages_fast / pin_user_pages_fast
//! and of the slow path, on 4 KiB pages and on THP-backed memory, measured
//! the way the Linux peer's `gup_fast.c` measures Linux (its vmsplice and
//! rds_info methods; here the kernel calls GUP directly, no syscall).
//!
//! A fresh address space with a 64 MiB private anonymous buffer (2 MiB
//! aligned), `MADV_NOHUGEPAGE` (`backing=4k`) or `MADV_HUGEPAGE`
//! (`backing=thp`), every page written first. A kernel thread on the boot
//! CPU runs in it and makes, for every 512-page run of the buffer, over one
//! warm-up pass and [`REPS`] timed passes (TSC clock):
//! * `op=get_user_pages_fast` (FOLL_GET): one call of 512 pages (timed:
//!   `get`), dropping the references (timed: `put`), then one call of 32
//!   pages and one of 1 page. `get_ns_per_page` = median(get of 512) / 512,
//!   `put_ns_per_page` likewise, `get_slope_ns_per_page` =
//!   (median T512 - median T32) / 480 (the per-call costs cancel), as the
//!   peer. A second line with `pages_per_call=1` gives the single-page cost.
//! * `op=pin_user_pages_fast+unpin` (FOLL_PIN | FOLL_WRITE): pin 512 pages,
//!   mark them dirty and unpin, as one sample (the peer's rds_info does
//!   pin and unpin in one syscall); the same with 1 page.
//!   `pin_unpin_slope_ns_per_page` = (median T512 - median T1) / 511.
//!
//! Every timed GUP call includes the range check, reading the current
//! address space, allocating the result vector (the peer's kmalloc of the
//! page array), the interrupts-off walk with add-unless-zero and the
//! re-read of pmd and pte per page (per 2 MiB run on a huge pmd: one atomic
//! for all its pages), and for pins fork's sequence check; a put is one
//! atomic per page plus freeing the vector. No syscall entry and no
//! pipe_buffer work, which the peer's figures include (the peer's README).
//! `method=slow` lines (`op=get_user_pages`, `op=pin_user_pages+unpin`) do
//! the same through the slow path (mmap lock, page-table lock per page).
//! `slow_falls` is how many pages GUP-fast left to the slow path during the
//! fast measurements (0 expected: the buffer is mapped and writable).
//!
//! Keys follow the peer's schema so `compare.sh` lines the rows up; the CPU
//! count is `ncpus` (a `cpus=` key would be an identifying key for
//! compare.sh, and the peer's lines have none).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use x86_64::VirtAddr;

use super::{Bench, BenchError, Stats};
use crate::gup::{self, Foll, Grabbed};
use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind};
use crate::mm::mmap::{self as m, advice, map};
use crate::mm::paging::{self, PageSize};
use crate::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use crate::time::now_ns;
use crate::{sched, smp};
use crate::mm::{UserAddr, UserRange};

/// Buffer size (the peer's default `mib=64`).
const MIB: u64 = 64;
/// Timed passes (the peer's `reps=5`), after one warm-up pass.
const REPS: usize = 5;
/// Pages per call of the main measurement.
const BIG: usize = 512;
/// Pages per call of the slope's short call (the peer's vmsplice method).
const SMALL: usize = 32;

fn err(message: String) -> BenchError {
    BenchError { bench: Bench::Gup, message }
}

/// Runs both backings and prints their RESULT lines.
pub(crate) fn run() -> Result<(), BenchError> {
    let me = smp::cpu_index();
    for thp in [false, true] {
        let mm = Arc::new(AddressSpace::new().map_err(|e| err(format!("no address space: {e:?}")))?);
        let m2 = mm.clone();
        let lines = sched::spawn_in(me, "gup-bench", Some(mm.clone()), move || measure(&m2, thp))
            .map_err(|e| err(format!("spawn: {e:?}")))?
            .join()?;
        for l in lines {
            crate::println!("{l}");
        }
        drop(mm);
        sched::leave_lazy_mm();
    }
    Ok(())
}

/// A value in ns with two decimals, as the peer prints them.
struct Ns2(i64);

impl fmt::Display for Ns2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", a / 100, a % 100)
    }
}

/// `total` ns over `pages` pages, in hundredths of a ns.
fn per_page(total: i64, pages: usize) -> Ns2 {
    Ns2(total * 100 / pages as i64)
}

fn median(v: Vec<u64>) -> i64 {
    Stats::from_samples(v).median as i64
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Fast,
    Slow,
}

fn grab(mm: &AddressSpace, method: Method, start: UserAddr, nr: usize, flags: Foll) -> Result<Vec<Grabbed>, BenchError> {
    match method {
        Method::Fast => gup::get_user_pages_fast(start, nr, flags),
        Method::Slow => gup::get_user_pages(mm, start, nr, flags),
    }
    .map_err(|e| err(format!("GUP of {nr} pages at {start:#x} failed: {e:?}")))
}

/// Maps and fills the buffer, measures, unmaps. Runs in `mm`.
fn measure(mm: &alloc::sync::Arc<AddressSpace>, thp: bool) -> Result<Vec<String>, BenchError> {
    let len = MIB << 20;
    let buf = m::mmap(mm, 0, len, 3, map::PRIVATE | map::ANONYMOUS).map_err(|e| err(format!("mmap: {e:?}")))?;
    if !buf.is_aligned(PageSize::Size2M) {
        return Err(err(format!("buffer at {buf:#x} is not 2 MiB aligned")));
    }
    let adv = if thp { advice::HUGEPAGE } else { advice::NOHUGEPAGE };
    m::madvise(mm, buf.as_u64(), len, adv).map_err(|e| err(format!("madvise: {e:?}")))?;
    for va in UserRange::from_len(buf, len).expect("mmap returned a user range").step(PAGE_SIZE) {
        fault::handle(VirtAddr::new(va.as_u64()), Access { kind: AccessKind::Write, user: false })
            .map_err(|e| err(format!("fault at {va:#x}: {}", e.as_str())))?;
        // Just mapped writable in the loaded address space; through uaccess (SMAP).
        crate::mm::uaccess::write_user(crate::mm::uaccess::UserPtr(va.as_u64()), &((va.as_u64() >> 12) | 1))
            .map_err(|_| err(format!("write_user at {va:#x}: EFAULT")))?;
    }
    let chunks = len / HUGE_PAGE_SIZE;
    let huge = (0..chunks)
        .filter(|i| paging::translate(mm.root(), VirtAddr::new(buf.as_u64() + i * HUGE_PAGE_SIZE)).is_some_and(|t| t.size == PageSize::Size2M))
        .count() as u64;
    let frac = huge * 100 / chunks;
    let backing = if thp { "thp" } else { "4k" };
    let pages = (len / PAGE_SIZE) as usize;
    let common = format!("backing={backing} thp_frac={}.{:02} pages={pages} reps={REPS}", frac / 100, frac % 100);
    let ncpus = smp::online_count();
    let mut lines = Vec::new();
    for method in [Method::Fast, Method::Slow] {
        let (mname, get_op, pin_op) = match method {
            Method::Fast => ("gup_fast", "get_user_pages_fast", "pin_user_pages_fast+unpin"),
            Method::Slow => ("slow", "get_user_pages", "pin_user_pages+unpin"),
        };
        let falls = gup::fast::slow_falls();
        let (mut gb, mut pb, mut gs, mut g1, mut p1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut ub, mut u1) = (Vec::new(), Vec::new());
        for rep in 0..=REPS {
            for start in UserRange::from_len(buf, len).expect("mmap returned a user range").step(BIG as u64 * PAGE_SIZE) {
                let timed = rep > 0;
                let get_put = |nr: usize, g: &mut Vec<u64>, p: Option<&mut Vec<u64>>| -> Result<(), BenchError> {
                    let t0 = now_ns();
                    let v = grab(mm, method, start, nr, Foll::GET)?;
                    let t1 = now_ns();
                    drop(v);
                    let t2 = now_ns();
                    if timed {
                        g.push(t1 - t0);
                        if let Some(p) = p {
                            p.push(t2 - t1);
                        }
                    }
                    Ok(())
                };
                get_put(BIG, &mut gb, Some(&mut pb))?;
                get_put(SMALL, &mut gs, None)?;
                get_put(1, &mut g1, Some(&mut p1))?;
                for (nr, out) in [(BIG, &mut ub), (1, &mut u1)] {
                    let t0 = now_ns();
                    let v = grab(mm, method, start, nr, Foll::PIN | Foll::WRITE)?;
                    gup::unpin_user_pages_dirty_lock(v, true);
                    if timed {
                        out.push(now_ns() - t0);
                    }
                }
            }
            crate::sched::cond_resched();
        }
        let falls = gup::fast::slow_falls() - falls;
        let calls = gb.len();
        let falls = if method == Method::Fast { format!(" slow_falls={falls}") } else { String::new() };
        let (mb, mp, ms, m1, mp1) = (median(gb), median(pb), median(gs), median(g1), median(p1));
        let (mub, mu1) = (median(ub), median(u1));
        lines.push(format!(
            "RESULT gup_fast method={mname} op={get_op} {common} pages_per_call={BIG} calls={calls} get_ns_per_page={} put_ns_per_page={} get_slope_ns_per_page={} call32_ns={ms} ncpus={ncpus}{falls}",
            per_page(mb, BIG),
            per_page(mp, BIG),
            per_page(mb - ms, BIG - SMALL),
        ));
        lines.push(format!(
            "RESULT gup_fast method={mname} op={get_op} {common} pages_per_call=1 calls={calls} get_ns_per_page={} put_ns_per_page={} ncpus={ncpus}{falls}",
            per_page(m1, 1),
            per_page(mp1, 1),
        ));
        lines.push(format!(
            "RESULT gup_fast method={mname} op={pin_op} {common} pages_per_call={BIG} calls={calls} pin_unpin_ns_per_page={} pin_unpin_slope_ns_per_page={} call1_ns={mu1} ncpus={ncpus}{falls}",
            per_page(mub, BIG),
            per_page(mub - mu1, BIG - 1),
        ));
    }
    if crate::stamps::enabled() {
        lines.extend(breakdown(mm, buf, len, backing)?);
    }
    m::munmap(mm, buf.as_u64(), len).map_err(|e| err(format!("munmap: {e:?}")))?;
    Ok(lines)
}

/// `bench.breakdown=on`: one more pass of GUP-fast's 512-page calls, get
/// then pin+unpin, each followed by a `gup_fast_steps` line with the steps'
/// medians per pte (per huge pmd's run on THP; per folio for the unpin) and
/// `stamp_pair_ns`, what two stamps back to back cost (each step's median
/// includes one pair).
fn breakdown(mm: &AddressSpace, buf: UserAddr, len: u64, backing: &str) -> Result<Vec<String>, BenchError> {
    use crate::stamps::{self, Step};
    let mut lines = Vec::new();
    for pin in [false, true] {
        stamps::reset();
        for start in UserRange::from_len(buf, len).expect("mmap returned a user range").step(BIG as u64 * PAGE_SIZE) {
            if pin {
                let v = grab(mm, Method::Fast, start, BIG, Foll::PIN | Foll::WRITE)?;
                gup::unpin_user_pages_dirty_lock(v, true);
            } else {
                drop(grab(mm, Method::Fast, start, BIG, Foll::GET)?);
            }
        }
        for _ in 0..stamps::SLOTS {
            let t = stamps::start();
            stamps::end(Step::StampPair, t);
        }
        let op = if pin { "pin_user_pages_fast+unpin" } else { "get_user_pages_fast" };
        lines.push(format!("RESULT gup_fast_steps op={op} backing={backing} pages_per_call={BIG}{}", stamps::summary()));
    }
    Ok(lines)
}
