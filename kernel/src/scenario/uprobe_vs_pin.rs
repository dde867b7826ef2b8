//! The uprobe-vs-pin scenario (controls.md, bug C of linux-protocol.md §3):
//! on every CPU a user process (`uprobepin`) keeps a private RWX buffer whose
//! pages it has written (anonymous and exclusive, as a text page is once
//! COWed), pins some of them by direct read (GUP-fast, then the slow path)
//! and checks the DMA pattern through its mapping when the read completes,
//! and writes and probes others; a tracer thread installs and removes a
//! breakpoint at byte 0 of every page the workers offered (their direct-read
//! pages, `race(TARGET)`) at full speed (no sleep; it yields between pages).
//! The workers skip word 0 in their checks: it holds the breakpoint.
//!
//! With `uprobes=fixed` the breakpoint is written in place into the page the
//! pin holds, so the DMA stays visible: safe (overlaps > 0: GUP-fast walks
//! meet the tracer's windows on the same page). With `uprobes=legacy` the
//! tracer maps a copy and drops the pinned page: the DMA lands in a frame
//! the process no longer maps (a DMA loss), and a user write between the copy
//! and the pte switch is lost too: caught.
//!
//! Placement: worker `i` on CPU `i`; the tracer on the last CPU, with that
//! CPU's worker and the DMA agent (`dma.cpu`).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::ScenarioError;
use super::expected::{Row, UPROBE};
use super::harness::{Tally, Writer};
use crate::race::RaceConfig;
use crate::sched::{self, JoinHandle};
use crate::sync::SpinLock;
use crate::uprobes::{self, UprobeError};
use crate::mm::{UserAddr, UserRange};
use abi::Errno;

/// Pages a worker may offer (its direct-read and write pages).
const MAX_TARGET_PAGES: u64 = 64;

/// The workers' offered buffers: (pid, first address, pages).
static TARGETS: SpinLock<Vec<(u64, UserRange)>> = SpinLock::new("uprobe-vs-pin targets", Vec::new());
static STOP: AtomicBool = AtomicBool::new(false);
/// Register/unregister pairs that failed (EAGAIN after a second of changes).
static BUSY: AtomicU64 = AtomicU64::new(0);
static TRACER: SpinLock<Option<JoinHandle<()>>> = SpinLock::new("uprobe tracer", None);

/// `race(TARGET, addr, pages)`: the calling worker offers its buffer.
pub(crate) fn target(addr: u64, pages: u64) -> Result<(), Errno> {
    if pages == 0 || pages > MAX_TARGET_PAGES || !addr.is_multiple_of(crate::mm::PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let range = UserAddr::new(addr).and_then(|a| UserRange::from_len(a, pages * crate::mm::PAGE_SIZE)).ok_or(Errno::EINVAL)?;
    let pid = crate::process::current_thread().ok_or(Errno::EINVAL)?.process.pid;
    TARGETS.lock().push((pid, range));
    Ok(())
}

/// One round of the tracer: a breakpoint in and out of byte 0 of every
/// offered page (Linux uprobe_register() then uprobe_unregister()).
fn trace_round() {
    let targets: Vec<(u64, UserRange)> = TARGETS.lock().clone();
    for (pid, range) in targets {
        for vaddr in range.pages(crate::mm::PageSize::Size4K) {
            if STOP.load(Ordering::Relaxed) {
                return;
            }
            // Resolved each time: a worker that ended has no memory to probe.
            let Some(p) = crate::process::get(pid).filter(|p| !p.is_exiting()) else { break };
            match uprobes::uprobe_register(&p.mm, vaddr) {
                Ok(()) => {
                    if let Err(e) = uprobes::uprobe_unregister(&p.mm, vaddr) {
                        note_failure(pid, vaddr, e);
                    }
                }
                Err(e) => note_failure(pid, vaddr, e),
            }
            // The worker and the DMA agent of this CPU get to run between
            // two pages (each write holds the page-table lock across a
            // shootdown; back to back they would starve the worker's faults
            // on the same table).
            sched::yield_now();
        }
    }
}

fn note_failure(pid: u64, vaddr: UserAddr, e: UprobeError) {
    match e {
        // The worker is exiting under the tracer: its areas are gone.
        UprobeError::NotMapped | UprobeError::NoProbe => {}
        UprobeError::Busy => {
            BUSY.fetch_add(1, Ordering::Relaxed);
        }
        _ => log::error!("uprobe tracer: pid {pid} address {vaddr:#x}: {e:?}"),
    }
}

/// The tracer as the scenario's writer.
pub(crate) struct Tracer;

impl Writer for Tracer {
    fn name(&self) -> &'static str {
        "uprobe-vs-pin"
    }

    fn table(&self) -> &'static [Row] {
        UPROBE
    }

    fn done_label(&self) -> (&'static str, &'static str) {
        ("breakpoint_writes", "breakpoint writes")
    }

    fn workers(&self, cpus: usize) -> Vec<(&'static str, usize)> {
        (0..cpus).map(|cpu| ("uprobepin", cpu)).collect()
    }

    fn start(&mut self, _cfg: &RaceConfig, cpus: usize) -> Result<(), ScenarioError> {
        TARGETS.lock().clear();
        STOP.store(false, Ordering::Relaxed);
        let h = sched::spawn_on(cpus - 1, "uprobe tracer", || {
            // Relaxed: a stop request needs no ordering with the probes.
            while !STOP.load(Ordering::Relaxed) {
                trace_round();
            }
        })
        .map_err(|_| ScenarioError::Setup("uprobe tracer: no such CPU".into()))?;
        *TRACER.lock() = Some(h);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), ScenarioError> {
        STOP.store(true, Ordering::Relaxed);
        let Some(h) = TRACER.lock().take() else { return Ok(()) };
        let cpu = h.task().cpu;
        h.join_timeout(10_000_000_000)
            .map(|_| ())
            .map_err(|_| ScenarioError::Setup(alloc::format!("the uprobe tracer on cpu{cpu} did not stop within 10 s")))
    }

    fn settle(&mut self) {
        TARGETS.lock().clear();
    }

    fn done_counter(&self) -> fn() -> u64 {
        || {
            let s = uprobes::stats();
            s.installed + s.removed
        }
    }

    fn tally(&self) -> Tally {
        Tally {
            refused_pinned: 0,
            refused: alloc::vec![("busy", BUSY.load(Ordering::Relaxed))],
        }
    }

    fn extra(&self) -> alloc::string::String {
        let s = uprobes::stats();
        alloc::format!(" replaced={} in_place={} probes_left={}", s.replaced, s.in_place, uprobes::registered())
    }
}

/// Runs the scenario; `Ok(true)` when the verdict is ok.
pub(crate) fn run(cfg: &RaceConfig) -> Result<bool, ScenarioError> {
    super::harness::run(cfg, &mut Tracer)
}
