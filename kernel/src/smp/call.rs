//! Cross-CPU function calls: run a closure on a set of CPUs and, optionally,
//! wait until every target has run it (Linux: smp_call_function_many() with
//! wait=1: a target acknowledges *after* the function returned).
//!
//! A request is queued in each target's inbox and the target is sent a
//! [`vectors::CALL_FUNCTION`] IPI (only when its inbox was empty: a non-empty
//! inbox already has an IPI on the way). The handler acknowledges the APIC
//! first, so a request queued while it runs gets a fresh IPI, then drains the
//! inbox. Because the IPI is a maskable interrupt, a target with interrupts
//! disabled runs nothing, and a waiting caller waits, until it enables them
//! again: the serialisation GUP-fast relies on.
//!
//! Every wait is bounded ([`call_timeout_ns`]); on a timeout the caller learns
//! which CPUs did not answer and those CPUs are asked, by NMI, to print where
//! they are. Requests are reference-counted, so a target that answers after
//! the caller gave up runs a valid request.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::cpuset::{AtomicCpuSet, CpuSet, MAX_CPUS};
use super::{nmi, percpu};
use crate::arch::idt::TrapFrame;
use crate::arch::{apic, vectors};
use crate::time::Deadline;

struct Request {
    func: Box<dyn Fn() + Send + Sync>,
    /// Targets that have not yet run `func`.
    pending: AtomicCpuSet,
}

struct Inbox(spin::Mutex<VecDeque<Arc<Request>>>);

static INBOXES: [Inbox; MAX_CPUS] = [const { Inbox(spin::Mutex::new(VecDeque::new())) }; MAX_CPUS];

/// Default bound on a wait, in nanoseconds (boot option `smp.call_timeout_ms`).
static TIMEOUT_NS: AtomicU64 = AtomicU64::new(2_000_000_000);

/// Sets the default wait bound.
pub fn set_call_timeout_ms(ms: u64) {
    TIMEOUT_NS.store(ms * 1_000_000, Ordering::Relaxed);
}

/// The default wait bound in nanoseconds.
pub fn call_timeout_ns() -> u64 {
    TIMEOUT_NS.load(Ordering::Relaxed)
}

/// A call that some targets may still be running.
#[must_use = "a call must be waited for (or its completion checked)"]
pub struct PendingCall {
    request: Arc<Request>,
    targets: CpuSet,
}

/// Some targets did not run the function within the bound.
#[derive(Clone, Copy, Debug)]
pub struct CallTimeout {
    /// The targets that had not answered.
    pub missing: CpuSet,
    /// How long the caller waited, in ms.
    pub waited_ms: u64,
}

impl fmt::Display for CallTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cross-CPU call timed out after {} ms; no answer from {}", self.waited_ms, self.missing)
    }
}

/// Queues `func` on every CPU of `targets` (the caller's own CPU included, if
/// it is in the set: it runs `func` at once, with interrupts disabled like the
/// others) and sends the IPIs. Offline CPUs are ignored.
pub fn call(targets: CpuSet, func: impl Fn() + Send + Sync + 'static) -> PendingCall {
    let targets = targets.and(&super::online_cpus());
    let request = Arc::new(Request { func: Box::new(func), pending: AtomicCpuSet::new() });
    // Release: a target that sees itself pending also sees `func`.
    request.pending.store(targets, Ordering::Release);
    let me = percpu::cpu_index();
    for cpu in targets.iter().filter(|&c| c != me) {
        let was_empty = x86_64::instructions::interrupts::without_interrupts(|| {
            let mut inbox = INBOXES[cpu].0.lock();
            let was_empty = inbox.is_empty();
            inbox.push_back(request.clone());
            was_empty
        });
        if was_empty {
            let apic_id = percpu::cpu(cpu).expect("online CPU without per-CPU data").apic_id;
            if let Err(e) = apic::send_ipi(apic::Destination::Apic(apic_id), apic::Delivery::Fixed(vectors::CALL_FUNCTION)) {
                log::error!("call IPI to cpu{cpu} failed: {e:?}");
            }
        }
    }
    if targets.contains(me) {
        x86_64::instructions::interrupts::without_interrupts(|| run(&request, me));
    }
    PendingCall { request, targets }
}

/// Runs `func` on `targets` and waits for all of them (default bound).
pub fn call_and_wait(targets: CpuSet, func: impl Fn() + Send + Sync + 'static) -> Result<(), CallTimeout> {
    call(targets, func).wait(call_timeout_ns())
}

impl PendingCall {
    /// The CPUs the call was sent to.
    pub fn targets(&self) -> CpuSet {
        self.targets
    }

    /// The targets that have not run the function yet.
    pub fn pending(&self) -> CpuSet {
        // Acquire: once a target is seen done, its function's effects are too.
        self.request.pending.load(Ordering::Acquire)
    }

    /// Waits until every target ran the function, at most `timeout_ns`. On
    /// a timeout the silent CPUs are dumped by NMI and named in the error.
    pub fn wait(self, timeout_ns: u64) -> Result<(), CallTimeout> {
        if !crate::arch::cpu::interrupts_enabled() && !self.pending().is_empty() {
            // Two CPUs waiting on each other with interrupts off would
            // deadlock; say so (the bounded wait still ends it).
            log::warn!("cpu{} waits for a cross-CPU call with interrupts disabled", percpu::cpu_index());
        }
        let start = crate::time::now_ns();
        let deadline = Deadline::after_ns(timeout_ns);
        loop {
            let missing = self.pending();
            if missing.is_empty() {
                return Ok(());
            }
            if deadline.expired() {
                let waited_ms = (crate::time::now_ns() - start) / 1_000_000;
                let e = CallTimeout { missing, waited_ms };
                log::error!("{e}; asking them by NMI where they are");
                let _ = nmi::dump_cpus(missing);
                return Err(e);
            }
            core::hint::spin_loop();
        }
    }
}

fn run(request: &Request, me: usize) {
    (request.func)();
    // Release: the function's effects are visible before the acknowledgement.
    request.pending.remove(me, Ordering::Release);
    percpu::current().calls_run.fetch_add(1, Ordering::Relaxed);
}

/// The CALL_FUNCTION IPI handler (interrupts are off: interrupt gate).
pub fn handle_ipi(_: &mut TrapFrame) {
    apic::eoi();
    let me = percpu::cpu_index();
    loop {
        let next = INBOXES[me].0.lock().pop_front();
        let Some(request) = next else { break };
        run(&request, me);
    }
}
