//! DMA: an engine interface and the software DMA agent that stands in for a
//! device, plus direct I/O on pinned user memory (issue #5).
//!
//! The interface is shaped so that a real device (virtio-blk, NVMe) can stand
//! where the agent stands: a caller pins the user pages (FOLL_PIN, see
//! [`crate::gup`]), hands the engine a [`DmaRequest`] holding only physical
//! segments, waits on the [`DmaTicket`] and unpins. The engine never sees a
//! `Page` or a virtual address: the frames stay alive because the *caller*
//! holds their `PinnedPage`s until the ticket completed (Linux: the bio's
//! pages are pinned by the block layer, the driver sees only a scatterlist
//! of bus addresses).
//!
//! The "device" ([`store`]) is a RAM-backed store of `abi::dio::DEVICE_SIZE`
//! bytes (writes and reads round-trip) plus a pattern source: a pattern read
//! with sequence number `seq` fills the destination with
//! [`abi::dio::pattern_word`]`(seq, offset)`, unique per iteration and
//! offset, which is what the race scenarios count DMA loss with
//! (controls.md "What counts").
//!
//! The software agent ([`agent`]) is one kernel thread pinned to a CPU
//! (`dma.cpu=N`; default: the last online CPU). It performs each transfer
//! through the direct map after a delay (`dma.delay=fixed|random`,
//! `dma.delay_us=N`), counted from submission, as a device would start its
//! DMA some time after the doorbell. The kernel is not preemptible in its
//! own code: on 2 CPUs the agent shares CPU 1 with whatever the scenario
//! puts there (a KSM or khugepaged thread, a user thread), and runs only when
//! that task blocks, yields, calls `cond_resched` or returns to user mode;
//! `dma.cpu=0` puts it on the submitter's CPU instead, where it runs while
//! the submitter polls for completion.
//!
//! Invariants: a transfer touches only the segments of its request; a
//! request's frames must stay allocated until its ticket completed or was
//! cancelled ([`DmaTicket::wait`] guarantees that one of the two happened
//! before it returns, and never returns while the agent may still write);
//! completion is published with Release and observed with Acquire, so the
//! waiter sees every byte the transfer wrote.

#![deny(unsafe_code)]

pub(crate) mod agent;
pub(crate) mod completion;
pub(crate) mod dio;
pub(crate) mod store;

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use x86_64::PhysAddr;

pub(crate) use completion::DmaTicket;
pub use dio::{DioOp, direct_io, direct_io_with, direct_read, direct_write};

/// Which way the data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Device to memory: a read (the pages must be pinned with FOLL_WRITE).
    ToMemory,
    /// Memory to device: a write.
    FromMemory,
}

/// The device side of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSide {
    /// The RAM-backed store at byte `offset` (a multiple of `abi::dio::BLOCK`).
    Store {
        /// Byte offset in the store.
        offset: u64,
    },
    /// The pattern source (reads only): `pattern_word(seq, byte offset in
    /// the transfer)` for every 8 bytes.
    Pattern {
        /// The sequence number encoded in every word.
        seq: u64,
    },
}

/// One physically contiguous piece of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Start (8-byte aligned).
    pub phys: PhysAddr,
    /// Length in bytes (a multiple of 8).
    pub len: u64,
}

/// A transfer: direction, device side, memory segments in transfer order.
#[derive(Clone, Debug)]
pub struct DmaRequest {
    /// Which way.
    pub dir: Direction,
    /// Where on the device.
    pub device: DeviceSide,
    /// Where in memory (the caller keeps these frames alive).
    pub segments: Vec<Segment>,
}

impl DmaRequest {
    /// Total bytes.
    pub(crate) fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

}

/// Why an engine refused or failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A malformed request (the reason).
    Invalid(&'static str),
    /// The engine never started the transfer within the bound; it was
    /// cancelled (nothing was written). `cpu`: the engine's CPU.
    Timeout {
        /// The CPU of the agent that did not answer.
        cpu: usize,
    },
    /// The engine could not start (no CPU for its thread, no memory).
    Unavailable(&'static str),
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::Invalid(why) => write!(f, "invalid DMA request: {why}"),
            DmaError::Timeout { cpu } => write!(f, "DMA agent on cpu{cpu} did not start the transfer in time"),
            DmaError::Unavailable(why) => write!(f, "DMA engine unavailable: {why}"),
        }
    }
}

/// A DMA engine: the software agent today, a device driver later.
pub trait DmaEngine: Sync {
    /// Queues `req`; the caller keeps the segments' frames alive until the
    /// returned ticket's [`DmaTicket::wait`] returned.
    fn submit(&self, req: DmaRequest) -> Result<DmaTicket, DmaError>;
}

/// How the agent delays a transfer (`dma.delay=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayMode {
    /// Exactly `delay_us` after submission.
    Fixed,
    /// Uniform in `0..=delay_us` after submission.
    Random,
}

/// The agent's configuration (boot options `dma.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaConfig {
    /// `dma.delay=`.
    pub delay: DelayMode,
    /// `dma.delay_us=`: the fixed delay, or the random delay's bound.
    pub delay_us: u64,
    /// `dma.cpu=`: the agent's CPU; `None`: the last online CPU.
    pub cpu: Option<usize>,
}

impl DmaConfig {
    /// Fixed 20 us, last CPU.
    pub(crate) const DEFAULT: DmaConfig = DmaConfig { delay: DelayMode::Fixed, delay_us: 20, cpu: None };
}

/// Most microseconds `dma.delay_us` accepts (100 ms; every DMA wait is
/// bounded by the delay plus `smp.call_timeout_ms`).
pub(crate) const MAX_DELAY_US: u64 = 100_000;

static DELAY_MODE: AtomicU8 = AtomicU8::new(0);
static DELAY_US: AtomicU64 = AtomicU64::new(DmaConfig::DEFAULT.delay_us);
/// The agent's CPU (usize::MAX: the last online CPU, decided at init).
static AGENT_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Applies the boot options (stage 2, after every CPU is online). A
/// `dma.cpu` naming a CPU that is not online is a usage error, with a
/// message naming it.
pub(crate) fn init(c: DmaConfig) -> Result<(), alloc::string::String> {
    let online = crate::smp::online_cpus();
    let cpu = match c.cpu {
        Some(cpu) if !online.contains(cpu) => {
            return Err(alloc::format!(
                "dma.cpu={cpu}: no such CPU online ({} online: 0..={})",
                online.len(),
                online.iter().last().unwrap_or(0)
            ));
        }
        Some(cpu) => cpu,
        None => online.iter().last().unwrap_or(0),
    };
    if agent::started() && config().cpu != Some(cpu) {
        return Err(alloc::format!("dma.cpu={cpu}: the agent already runs on another CPU"));
    }
    AGENT_CPU.store(cpu, Ordering::Relaxed);
    set_delay(c.delay, c.delay_us);
    log::info!("dma: software agent on cpu{cpu}, delay {:?} {} us", c.delay, c.delay_us);
    Ok(())
}

/// Changes the delay (tests and scenarios; read at each submission, so it
/// applies to requests submitted afterwards). `us` is capped at
/// [`MAX_DELAY_US`].
pub(crate) fn set_delay(mode: DelayMode, us: u64) {
    DELAY_MODE.store(mode as u8, Ordering::Relaxed);
    DELAY_US.store(us.min(MAX_DELAY_US), Ordering::Relaxed);
}

/// The configuration in force (`cpu`: where the agent runs or will run).
pub(crate) fn config() -> DmaConfig {
    let delay = if DELAY_MODE.load(Ordering::Relaxed) == DelayMode::Random as u8 {
        DelayMode::Random
    } else {
        DelayMode::Fixed
    };
    let cpu = match AGENT_CPU.load(Ordering::Relaxed) {
        usize::MAX => crate::smp::online_cpus().iter().last(),
        c => Some(c),
    };
    DmaConfig { delay, delay_us: DELAY_US.load(Ordering::Relaxed), cpu }
}

/// The engine direct I/O uses: the software agent.
pub fn engine() -> &'static dyn DmaEngine {
    agent::agent()
}

/// Counters of the engine (for scenarios and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaStats {
    /// Requests accepted.
    pub submitted: u64,
    /// Transfers performed.
    pub completed: u64,
    /// Requests cancelled by a timed-out waiter before they started.
    pub cancelled: u64,
    /// Bytes moved.
    pub bytes: u64,
}

/// The counters so far.
pub fn stats() -> DmaStats {
    agent::stats()
}
