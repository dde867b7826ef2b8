//! `ksm_ctl(op, key, value)` and `khugepaged_ctl(op, key, value)`: the
//! daemons' switches, tunables and statistics, as Linux's sysfs files
//! (`/sys/kernel/mm/ksm/`, `/sys/kernel/mm/transparent_hugepage/khugepaged/`)
//! offer them; each value is checked as the matching Linux store function
//! checks it (see `abi::ksm_ctl`, `abi::khugepaged_ctl`).

use core::sync::atomic::{AtomicUsize, Ordering};

use super::SysResult;
use abi::Errno;
use abi::khugepaged_ctl as kh;
use abi::ksm_ctl as k;

/// The CPU each daemon starts on (`usize::MAX`: the last online CPU).
static KSMD_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
static KHUGEPAGED_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The CPU a daemon starts on: the one set, or the last online CPU.
fn daemon_cpu(set: &AtomicUsize) -> usize {
    // Relaxed: a plain setting, read when the daemon starts.
    match set.load(Ordering::Relaxed) {
        usize::MAX => crate::smp::online_cpus().iter().last().unwrap_or(0),
        cpu => cpu,
    }
}

/// Sets a daemon's CPU: an online CPU, and not while it runs (EBUSY).
fn set_daemon_cpu(set: &AtomicUsize, value: u64, running: bool) -> SysResult {
    let cpu = usize::try_from(value).map_err(|_| Errno::EINVAL)?;
    if !crate::smp::online_cpus().contains(cpu) {
        return Err(Errno::EINVAL);
    }
    if running {
        return Err(Errno::EBUSY);
    }
    set.store(cpu, Ordering::Relaxed);
    Ok(0)
}

/// A value that must fit Linux's `unsigned int` (kstrtouint): EINVAL otherwise.
fn uint(value: u64) -> Result<u64, Errno> {
    u32::try_from(value).map(u64::from).map_err(|_| Errno::EINVAL)
}

/// What `op` asks: `Some(value)` for SET, `None` for GET; EINVAL otherwise.
fn op_of(op: u64, value: u64, get: usize, set: usize) -> Result<Option<u64>, Errno> {
    match usize::try_from(op).unwrap_or(usize::MAX) {
        o if o == get => Ok(None),
        o if o == set => Ok(Some(value)),
        _ => Err(Errno::EINVAL),
    }
}

/// A read-only key: its value for GET, EACCES for SET.
fn read_only(set: Option<u64>, value: u64) -> SysResult {
    match set {
        None => Ok(value as usize),
        Some(_) => Err(Errno::EACCES),
    }
}

/// `ksm_ctl(op, key, value)`.
pub(crate) fn ksm_ctl(op: u64, key: u64, value: u64) -> SysResult {
    let set = op_of(op, value, k::GET, k::SET)?;
    let key = usize::try_from(key).map_err(|_| Errno::ENOENT)?;
    let stats = crate::ksm::stats();
    let t = crate::ksm::tunables();
    match key {
        k::RUN => match set {
            None => Ok(usize::from(crate::ksm::ksmd_running())),
            Some(k::RUN_STOP) => crate::ksm::stop_ksmd().map(|()| 0).map_err(|e| busy("ksm run=0", &e)),
            Some(k::RUN_MERGE) => {
                if crate::ksm::ksmd_running() {
                    return Ok(0);
                }
                match crate::ksm::start_ksmd(daemon_cpu(&KSMD_CPU), t) {
                    Ok(()) => Ok(0),
                    // Started meanwhile by someone else: running, as asked.
                    Err(_) if crate::ksm::ksmd_running() => Ok(0),
                    Err(e) => Err(busy("ksm run=1", e)),
                }
            }
            Some(k::RUN_UNMERGE) => crate::ksm::unmerge_all().map(|()| 0).map_err(|e| busy("ksm run=2", &e)),
            Some(_) => Err(Errno::EINVAL),
        },
        k::PAGES_TO_SCAN => match set {
            None => Ok(t.pages_to_scan as usize),
            Some(v) => {
                crate::ksm::set_tunables(crate::ksm::Tunables { pages_to_scan: uint(v)?, ..t });
                Ok(0)
            }
        },
        k::SLEEP_MILLISECS => match set {
            None => Ok((t.sleep_us / 1000) as usize),
            Some(v) => {
                crate::ksm::set_tunables(crate::ksm::Tunables { sleep_us: uint(v)? * 1000, ..t });
                Ok(0)
            }
        },
        k::MAX_PAGE_SHARING => match set {
            None => Ok(crate::ksm::max_page_sharing() as usize),
            Some(v) => {
                // Linux max_page_sharing_store(): kstrtoint, at least 2;
                // the same value is a no-op; another one only while no KSM
                // page exists (EBUSY).
                if v < 2 || v > i32::MAX as u64 {
                    return Err(Errno::EINVAL);
                }
                if v == crate::ksm::max_page_sharing() {
                    return Ok(0);
                }
                crate::ksm::prune();
                if crate::ksm::stats().pages_shared != 0 {
                    return Err(Errno::EBUSY);
                }
                crate::ksm::set_max_page_sharing(v);
                Ok(0)
            }
        },
        k::PAGES_SHARED => read_only(set, stats.pages_shared),
        k::PAGES_SHARING => read_only(set, stats.pages_sharing),
        k::FULL_SCANS => read_only(set, stats.full_scans),
        k::PAGES_SCANNED => read_only(set, stats.pages_scanned),
        k::MERGES => read_only(set, stats.merges),
        k::CPU => match set {
            None => Ok(daemon_cpu(&KSMD_CPU)),
            Some(v) => set_daemon_cpu(&KSMD_CPU, v, crate::ksm::ksmd_running()),
        },
        _ => Err(Errno::ENOENT),
    }
}

/// `khugepaged_ctl(op, key, value)`.
pub(crate) fn khugepaged_ctl(op: u64, key: u64, value: u64) -> SysResult {
    use crate::khugepaged as khp;
    let set = op_of(op, value, kh::GET, kh::SET)?;
    let key = usize::try_from(key).map_err(|_| Errno::ENOENT)?;
    let stats = khp::stats();
    let t = khp::tunables();
    // Linux's max_ptes_* stores: kstrtoul, at most HPAGE_PMD_NR - 1.
    let ptes = |v: u64| if v <= 511 { Ok(v as u32) } else { Err(Errno::EINVAL) };
    match key {
        kh::RUN => match set {
            None => Ok(usize::from(khp::khugepaged_running())),
            Some(0) => khp::stop_khugepaged().map(|()| 0).map_err(|e| busy("khugepaged run=0", &e)),
            Some(1) => {
                if khp::khugepaged_running() {
                    return Ok(0);
                }
                match khp::start_khugepaged(daemon_cpu(&KHUGEPAGED_CPU), t) {
                    Ok(()) => Ok(0),
                    Err(_) if khp::khugepaged_running() => Ok(0),
                    Err(e) => Err(busy("khugepaged run=1", e)),
                }
            }
            Some(_) => Err(Errno::EINVAL),
        },
        kh::PAGES_TO_SCAN => match set {
            None => Ok(t.pages_to_scan as usize),
            Some(v) => {
                // Linux pages_to_scan_store(): kstrtouint, not 0.
                let v = uint(v)?;
                if v == 0 {
                    return Err(Errno::EINVAL);
                }
                khp::set_tunables(khp::Tunables { pages_to_scan: v, ..t });
                Ok(0)
            }
        },
        kh::SCAN_SLEEP_MILLISECS => match set {
            None => Ok((t.scan_sleep_us / 1000) as usize),
            Some(v) => {
                khp::set_tunables(khp::Tunables { scan_sleep_us: uint(v)? * 1000, ..t });
                Ok(0)
            }
        },
        kh::MAX_PTES_NONE => match set {
            None => Ok(t.max_ptes_none as usize),
            Some(v) => {
                khp::set_tunables(khp::Tunables { max_ptes_none: ptes(v)?, ..t });
                Ok(0)
            }
        },
        kh::MAX_PTES_SHARED => match set {
            None => Ok(t.max_ptes_shared as usize),
            Some(v) => {
                khp::set_tunables(khp::Tunables { max_ptes_shared: ptes(v)?, ..t });
                Ok(0)
            }
        },
        kh::PAGES_COLLAPSED => read_only(set, stats.pages_collapsed),
        kh::FULL_SCANS => read_only(set, stats.full_scans),
        kh::PAGES_SCANNED => read_only(set, stats.pages_scanned),
        kh::CPU => match set {
            None => Ok(daemon_cpu(&KHUGEPAGED_CPU)),
            Some(v) => set_daemon_cpu(&KHUGEPAGED_CPU, v, khp::khugepaged_running()),
        },
        _ => Err(Errno::ENOENT),
    }
}

/// A daemon that would not start or stop: logged with why, EBUSY.
fn busy(what: &str, why: &str) -> Errno {
    log::warn!("{what}: {why}");
    Errno::EBUSY
}
