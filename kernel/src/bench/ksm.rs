//! `bench=ksm`: how fast ksmd merges 64 MiB of identical anonymous pages,
//! measured as the Linux peer's `ksm_merge.c` measures Linux:
//! `RESULT ksm_merge mib=64 pages=16384 status=ok pages_shared=N
//! pages_sharing=N t_first_merge_ms=N t_all_merged_ms=N
//! merge_rate_pages_per_s=N overall_pages_per_s=N full_scans=N`.
//!
//! Setup as the peer's: ksmd stopped, `pages_to_scan` 100000 and no sleep;
//! the buffer `MADV_NOHUGEPAGE`, every word set to the same per-offset
//! pattern (so every page is equal, non-zero), then `MADV_MERGEABLE` and
//! ksmd started on another CPU; `pages_shared`/`pages_sharing` polled every
//! 1 ms from the benchmark's CPU, by a kernel thread outside the address
//! space (the peer's process sleeps between polls, so its CPU is lazy in the
//! mm and Linux's flushes skip it; so do ours), until their sum covers the buffer (at most
//! 120 s). `t_first_merge_ms`: MADV_MERGEABLE to the first `pages_sharing >
//! 0` (ksmd merges a page only once its checksum held across two visits, so
//! about one full scan); `merge_rate_pages_per_s`: pages / (t_all -
//! t_first). `max_page_sharing` is the boot's (`ksm.max_page_sharing=`,
//! default 256 as Linux), so `pages_shared` ends at pages / 256 = 64, as
//! Linux's. Difference from Linux: the indexes are hash maps, not rb-trees
//! ordered by memcmp. The contents are checked after merging.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use x86_64::VirtAddr;

use super::{Bench, BenchError};
use crate::ksm::{self, Tunables};
use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind};
use crate::mm::mmap::{self as m, advice, map};
use crate::mm::PAGE_SIZE;
use crate::time::now_ns;
use crate::{sched, smp};
use crate::mm::{UserAddr, UserRange};

const MIB: u64 = 64;
const TIMEOUT_NS: u64 = 120_000_000_000;

fn err(message: String) -> BenchError {
    BenchError { bench: Bench::Ksm, message }
}

fn word(offset: u64) -> u64 {
    0x5a5a_5a5a_0000_0000 | (offset & (PAGE_SIZE - 1))
}

/// Runs the benchmark (2 CPUs at least: ksmd runs on another CPU).
pub(crate) fn run() -> Result<(), BenchError> {
    let me = smp::cpu_index();
    let Some(other) = smp::online_cpus().iter().find(|&c| c != me) else {
        return Err(err("needs a second CPU for ksmd".into()));
    };
    let mm = Arc::new(AddressSpace::new().map_err(|e| err(format!("no address space: {e:?}")))?);
    let m2 = mm.clone();
    let buf = sched::spawn_in(me, "ksm-bench", Some(mm.clone()), move || fill(&m2))
        .map_err(|e| err(format!("spawn: {e:?}")))?
        .join()?;
    // Polled from this kernel thread, outside the address space (as the
    // peer's process sleeps between polls: its CPU is idle, lazy in the mm).
    let measured = measure(&mm, buf, other);
    ksm::stop_ksmd().map_err(err)?;
    let m2 = mm.clone();
    let checked = sched::spawn_in(me, "ksm-check", Some(mm.clone()), move || check(&m2, buf))
        .map_err(|e| err(format!("spawn: {e:?}")))?
        .join();
    drop(mm);
    sched::leave_lazy_mm();
    ksm::prune();
    let line = measured?;
    checked?;
    crate::println!("{line}");
    Ok(())
}

/// Maps the buffer and fills every page with the same pattern (in the
/// address space); returns its address.
fn fill(mm: &Arc<AddressSpace>) -> Result<UserAddr, BenchError> {
    let len = MIB << 20;
    let buf = m::mmap(mm, 0, len, 3, map::PRIVATE | map::ANONYMOUS).map_err(|e| err(format!("mmap: {e:?}")))?;
    m::madvise(mm, buf.as_u64(), len, advice::NOHUGEPAGE).map_err(|e| err(format!("madvise: {e:?}")))?;
    for va in UserRange::from_len(buf, len).expect("mmap returned a user range").step(PAGE_SIZE) {
        fault::handle(VirtAddr::new(va.as_u64()), Access { kind: AccessKind::Write, user: false })
            .map_err(|e| err(format!("fault at {va:#x}: {}", e.as_str())))?;
        for off in (0..PAGE_SIZE).step_by(8) {
            // Just mapped writable in the loaded address space; through uaccess (SMAP).
            crate::mm::uaccess::write_user(crate::mm::uaccess::UserPtr(va.as_u64() + off), &word(off))
                .map_err(|_| err(format!("write_user at {:#x}: EFAULT", va + off)))?;
        }
    }
    Ok(buf)
}

/// MADV_MERGEABLE, ksmd started, the counters polled every 1 ms; the line.
fn measure(mm: &Arc<AddressSpace>, buf: UserAddr, ksmd_cpu: usize) -> Result<String, BenchError> {
    let len = MIB << 20;
    let pages = len / PAGE_SIZE;
    let s0 = ksm::stats();
    m::madvise(mm, buf.as_u64(), len, advice::MERGEABLE).map_err(|e| err(format!("MADV_MERGEABLE: {e:?}")))?;
    crate::stamps::reset();
    let t0 = now_ns();
    ksm::start_ksmd(ksmd_cpu, Tunables { pages_to_scan: 100_000, sleep_us: 0 }).map_err(|e| err(e.into()))?;
    let (mut t_first, mut t_all) = (0, 0);
    let mut s;
    loop {
        s = ksm::stats();
        let t = now_ns();
        if t_first == 0 && s.pages_sharing > 0 {
            t_first = t;
        }
        if s.pages_shared + s.pages_sharing >= pages {
            t_all = t;
            break;
        }
        if t - t0 > TIMEOUT_NS {
            break;
        }
        sched::sleep_ns(1_000_000);
    }
    ksm::stop_ksmd().map_err(err)?;
    // `bench.breakdown=on`: the steps of this merge run, before the checks below.
    let steps = crate::stamps::summary();
    let scans = s.full_scans - s0.full_scans;
    let ms = |t: u64| format!("{}.{}", (t - t0) / 1_000_000, (t - t0) / 100_000 % 10);
    let line = if t_all == 0 {
        format!(
            "RESULT ksm_merge mib={MIB} pages={pages} status=timeout merged={} t_first_merge_ms={} full_scans={scans}",
            s.pages_shared + s.pages_sharing,
            if t_first == 0 { String::from("-1.0") } else { ms(t_first) }
        )
    } else {
        let rate = if t_all > t_first { pages * 1_000_000_000 / (t_all - t_first) } else { 0 };
        format!(
            "RESULT ksm_merge mib={MIB} pages={pages} status=ok pages_shared={} pages_sharing={} t_first_merge_ms={} t_all_merged_ms={} merge_rate_pages_per_s={rate} overall_pages_per_s={} full_scans={scans}",
            s.pages_shared,
            s.pages_sharing,
            ms(t_first),
            ms(t_all),
            pages * 1_000_000_000 / (t_all - t0),
        )
    };
    if crate::stamps::enabled() {
        return Ok(format!("{line}\nRESULT ksm_steps mib={MIB}{steps}"));
    }
    Ok(line)
}

/// The contents must survive merging (in the address space); unmaps.
fn check(mm: &Arc<AddressSpace>, buf: UserAddr) -> Result<(), BenchError> {
    let len = MIB << 20;
    let mut bad = 0u64;
    for va in UserRange::from_len(buf, len).expect("mmap returned a user range").step(8) {
        // Mapped (read-only now) in the loaded address space; through uaccess.
        let v = crate::mm::uaccess::read_user::<u64>(crate::mm::uaccess::UserPtr(va.as_u64()))
            .map_err(|_| err(format!("read_user at {va:#x}: EFAULT")))?;
        if v != word(va - buf) {
            bad += 1;
        }
    }
    m::munmap(mm, buf.as_u64(), len).map_err(|e| err(format!("munmap: {e:?}")))?;
    if bad > 0 {
        return Err(err(format!("{bad} words differ after merging")));
    }
    Ok(())
}
