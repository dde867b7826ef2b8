//! The software DMA agent: a kernel thread pinned to one CPU (`dma.cpu`,
//! default the last online CPU) that plays the device. It takes requests in
//! submission order, waits until each one's start time (submission plus the
//! configured delay), claims it, moves the data through the direct map with
//! 8-byte volatile accesses (a device writes memory behind the CPU's back:
//! user threads may read or write the same words concurrently), and signals
//! the completion.
//!
//! The thread and the store are created on the first submission (so kernels
//! that never do DMA run no extra thread). While it waits out a delay the
//! agent spins with voluntary preemption points (`cond_resched`), so another
//! task of its CPU still runs, at the scheduler's tick granularity.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use super::completion::{Completion, DmaTicket};
use super::store::Store;
use super::{DelayMode, DeviceSide, Direction, DmaEngine, DmaError, DmaRequest, DmaStats};
use crate::arch::tsc;
use crate::mm::frame_io::DevicePage;
use crate::mm::{PAGE_SIZE, page};
use x86_64::PhysAddr;
use crate::sched::wait::WaitQueue;
use crate::sync::SpinLock;
use abi::dio::{BLOCK, DEVICE_SIZE, pattern_word};

/// One queued request.
struct Queued {
    req: DmaRequest,
    completion: Arc<Completion>,
    /// TSC value before which the transfer must not start.
    not_before: u64,
}

/// The agent (one per kernel).
pub(crate) struct SoftAgent {
    queue: SpinLock<VecDeque<Queued>>,
    waiters: WaitQueue,
    /// The agent's CPU once its thread runs.
    started: spin::Mutex<Option<usize>>,
    store: spin::Once<Store>,
    rng: AtomicU64,
}

static AGENT: SoftAgent = SoftAgent {
    queue: SpinLock::new("dma queue", VecDeque::new()),
    waiters: WaitQueue::new(),
    started: spin::Mutex::new(None),
    store: spin::Once::new(),
    rng: AtomicU64::new(0),
};

static SUBMITTED: AtomicU64 = AtomicU64::new(0);
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static CANCELLED: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The agent.
pub(crate) fn agent() -> &'static SoftAgent {
    &AGENT
}

/// Whether the agent's thread has been started.
pub(crate) fn started() -> bool {
    AGENT.started.lock().is_some()
}

pub(super) fn count_cancel() {
    CANCELLED.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn stats() -> DmaStats {
    DmaStats {
        submitted: SUBMITTED.load(Ordering::Relaxed),
        completed: COMPLETED.load(Ordering::Relaxed),
        cancelled: CANCELLED.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

/// Checks a request's shape (the engine's only defence against a caller's
/// mistake: it writes physical memory).
fn validate(req: &DmaRequest) -> Result<(), DmaError> {
    if req.segments.is_empty() {
        return Err(DmaError::Invalid("no segments"));
    }
    for s in &req.segments {
        if s.len == 0 || !s.len.is_multiple_of(8) || !s.phys.as_u64().is_multiple_of(8) {
            return Err(DmaError::Invalid("segment not 8-byte aligned or empty"));
        }
        let last = s.phys.as_u64().checked_add(s.len - 1).ok_or(DmaError::Invalid("segment wraps"))?;
        if !page::exists(last / PAGE_SIZE) {
            return Err(DmaError::Invalid("segment outside physical memory"));
        }
    }
    let len = req.len();
    match (req.dir, req.device) {
        (_, DeviceSide::Store { offset }) => {
            if !offset.is_multiple_of(BLOCK) || offset.checked_add(len).is_none_or(|end| end > DEVICE_SIZE) {
                return Err(DmaError::Invalid("store range not block-aligned or past the device's end"));
            }
        }
        (Direction::ToMemory, DeviceSide::Pattern { .. }) => {
            if len > 1 << 31 {
                return Err(DmaError::Invalid("pattern transfer longer than 2 GiB"));
            }
        }
        (Direction::FromMemory, DeviceSide::Pattern { .. }) => {
            return Err(DmaError::Invalid("the pattern source cannot be written"));
        }
    }
    Ok(())
}

impl SoftAgent {
    /// Starts the thread and the store once.
    fn ensure_started(&self) -> Result<usize, DmaError> {
        let mut started = self.started.lock();
        if let Some(cpu) = *started {
            return Ok(cpu);
        }
        let cpu = super::config().cpu.ok_or(DmaError::Unavailable("no CPU online"))?;
        if self.store.get().is_none() {
            let store = Store::new().ok_or(DmaError::Unavailable("no memory for the device store"))?;
            self.store.call_once(|| store);
        }
        self.rng.store(tsc::rdtsc() | 1, Ordering::Relaxed);
        crate::sched::spawn_on(cpu, "dma-agent", run).map_err(|_| DmaError::Unavailable("the agent's CPU has no scheduler"))?;
        *started = Some(cpu);
        log::debug!("dma: agent thread started on cpu{cpu}");
        Ok(cpu)
    }

    /// The next pseudo-random number (xorshift64; delays only).
    fn random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            match self.rng.compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return y,
                Err(now) => x = now,
            }
        }
    }
}

impl DmaEngine for SoftAgent {
    fn submit(&self, req: DmaRequest) -> Result<DmaTicket, DmaError> {
        validate(&req)?;
        let cpu = self.ensure_started()?;
        let c = super::config();
        let delay_ns = match c.delay {
            DelayMode::Fixed => c.delay_us * 1000,
            DelayMode::Random => (self.random() % (c.delay_us + 1)) * 1000,
        };
        let completion = Arc::new(Completion::new());
        let not_before = tsc::rdtsc() + tsc::ns_to_ticks(delay_ns);
        SUBMITTED.fetch_add(1, Ordering::Relaxed);
        // The condition (a queued item) changes before the wake-up (wait.rs).
        self.queue.lock().push_back(Queued { req, completion: completion.clone(), not_before });
        self.waiters.wake_all();
        let bound = c.delay_us * 1000 + crate::smp::call::call_timeout_ns();
        Ok(DmaTicket::new(completion, cpu, bound))
    }
}

/// The agent thread: serve requests forever.
fn run() {
    let store = AGENT.store.get().expect("dma store allocated before the agent starts");
    loop {
        let next: Cell<Option<Queued>> = Cell::new(None);
        // `wait_until` stops calling the condition once it returned true, so
        // the popped item is never overwritten.
        AGENT.waiters.wait_until(|| {
            let item = AGENT.queue.lock().pop_front();
            let found = item.is_some();
            next.set(item);
            found
        });
        let Some(q) = next.take() else { continue };
        while tsc::rdtsc() < q.not_before {
            crate::sched::cond_resched();
            core::hint::spin_loop();
        }
        if !q.completion.claim() {
            continue; // cancelled by a waiter that gave up
        }
        transfer(&q.req, store);
        BYTES.fetch_add(q.req.len(), Ordering::Relaxed);
        COMPLETED.fetch_add(1, Ordering::Relaxed);
        q.completion.complete();
    }
}

/// Moves the data of `req` (validated) through the direct map, one atomic
/// word at a time (`mm::frame_io`'s device side: the CPU side may access the
/// same words concurrently). The segments' frames are kept allocated by the
/// submitter's pins until the completion; a word of a frame found unpinned
/// is not touched (frame_io reports it as a use after free).
fn transfer(req: &DmaRequest, store: &Store) {
    let mut pos = 0u64;
    for s in &req.segments {
        let (mut pa, end) = (s.phys.as_u64(), s.phys.as_u64() + s.len);
        while pa < end {
            // One frame at a time: the pin check is per frame.
            let frame_end = end.min((pa & !(PAGE_SIZE - 1)) + PAGE_SIZE);
            let dev = DevicePage::pinned(PhysAddr::new(pa));
            for a in (pa..frame_end).step_by(8) {
                let (off, p) = ((a & (PAGE_SIZE - 1)) as usize, pos + (a - pa));
                // An unpinned frame was reported by DevicePage::pinned; the
                // device skips it.
                let Ok(dev) = &dev else { break };
                match (req.dir, req.device) {
                    (Direction::ToMemory, DeviceSide::Pattern { seq }) => dev.write_word(off, pattern_word(seq, p)),
                    (Direction::ToMemory, DeviceSide::Store { offset }) => dev.write_word(off, store.read(offset + p)),
                    (Direction::FromMemory, DeviceSide::Store { offset }) => store.write(offset + p, dev.read_word(off)),
                    (Direction::FromMemory, DeviceSide::Pattern { .. }) => unreachable!("refused by validate()"),
                }
            }
            pos += frame_end - pa;
            pa = frame_end;
        }
    }
}
