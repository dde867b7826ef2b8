//! Cross-CPU function calls: run a closure on a set of CPUs and, optionally,
//! wait until every target has run it (Linux: smp_call_function_many_cond()
//! with wait=1 and its per-CPU `call_single_queue` llist; a target
//! acknowledges *after* the function returned).
//!
//! Two deliveries ([`Delivery`]):
//! * **IPI** (the default, [`call`], [`call_and_wait`]): a fixed-vector
//!   [`vectors::CALL_FUNCTION`] interrupt. It is maskable, so a target with
//!   interrupts disabled runs nothing, and a waiting caller waits, until it
//!   enables them again: the serialisation GUP-fast relies on under `tlb=ipi`.
//! * **NMI** ([`call_with`] with [`Delivery::Nmi`]): the target runs the
//!   function from its NMI handler, *even inside an interrupts-off section*.
//!   This models broadcast invalidation (`tlb=nmi`): coherence without
//!   excluding interrupts-off sections. A function delivered by NMI must be
//!   **NMI-safe**: no locks (not even the console's: no `log!`/`print!`), no
//!   allocation or freeing, no faults, nothing that can block. The handler
//!   interrupts arbitrary code on its CPU, including code holding any lock.
//!
//! Queues. Each CPU has two lock-free lists (one per delivery; an IPI-delivered
//! function must never run in NMI context or inside an interrupts-off
//! section). A request carries one list node per remote target. A sender
//! pushes a node with a CAS loop (Linux: llist_add()) and kicks the target only
//! when the list was empty: a non-empty list already has a kick on the way
//! whose handler has not yet taken the list. The handler takes the whole list
//! with one atomic swap (llist_del_all()) and reverses it, so requests run in
//! the order they were queued. Nodes are only ever pushed once and taken by a
//! swap, so the list has no ABA problem. Neither handler takes a lock.
//!
//! Request storage (Linux: the per-CPU call_function_data of
//! smp_call_function_many_cond(), no allocation per call). Each CPU has one
//! static request slot; a call whose closure needs no drop and fits
//! [`INLINE_BYTES`] (a TLB flush's range, an empty function) takes it when it
//! is free and stores the closure inline, with one list node per possible
//! target. The slot is free again when the call's [`PendingCall`] is dropped
//! with every target answered; dropped earlier (a timeout, `tlb.nowait`) it
//! is *abandoned* and reused only once its pending set is empty. Any other
//! call (the slot in use, e.g. by an interrupted call on the same CPU; a
//! larger closure) allocates its request as before.
//!
//! Lifetime. A target holds no reference to a request: it may touch the
//! request (and its node) only while its bit in `pending` is set, and its last
//! access is the atomic that clears the bit. The sender's `Arc` keeps the
//! request alive until `pending` is empty, so a request is always freed by the
//! sender, in normal context, never inside an interrupt or NMI handler. If the
//! sender stops waiting first (a timeout, or a [`PendingCall`] dropped early),
//! it *parks* its reference in a fixed table ([`PARK_SLOTS`] slots); parked
//! requests are freed by a later [`call_with`] once their stragglers answered.
//! When the table is full the reference is leaked on purpose (each one logged
//! with the count so far): a late runner must never find freed
//! memory, and only a run that already reported more than [`PARK_SLOTS`]
//! unanswered calls can leak.
//!
//! Every wait is bounded ([`call_timeout_ns`]); on a timeout the caller learns
//! which CPUs did not answer and those CPUs are asked, by NMI, to print where
//! they are. Calls must not be made from NMI context (they allocate).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use super::cpuset::{AtomicCpuSet, CpuSet, MAX_CPUS};
use super::{ipi, nmi, percpu};
use crate::arch::idt::TrapFrame;
use crate::arch::{apic, vectors};
use crate::stamps::{self, Step};
use crate::time::Deadline;

/// How a call reaches its targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A fixed-vector IPI: held back while a target has interrupts disabled.
    Ipi,
    /// An NMI: runs even inside an interrupts-off section; the function must be
    /// NMI-safe (see the module docs).
    Nmi,
}

impl Delivery {
    fn queue(self) -> usize {
        match self {
            Delivery::Ipi => 0,
            Delivery::Nmi => 1,
        }
    }
}

/// One entry of a target's list; owned by the request it belongs to.
struct Node {
    next: AtomicPtr<Node>,
    /// The request (set once for an allocated one; by each call for a
    /// per-CPU slot's, before the push).
    request: AtomicPtr<Request>,
}

fn node_set_request(node: &Node, request: &Request) {
    // Relaxed: published by the Release push that follows.
    node.request.store(request as *const Request as *mut Request, Ordering::Relaxed);
}


struct Request {
    func: Func,
    /// Targets that have not yet run `func`.
    pending: AtomicCpuSet,
    /// One node per remote target, in increasing CPU order (an allocated
    /// request), or one per CPU, indexed by CPU (a per-CPU slot).
    nodes: Nodes,
}

/// What a request runs.
enum Func {
    /// A boxed closure (an allocated request).
    Boxed(Box<dyn Fn() + Send + Sync>),
    /// A closure stored in a per-CPU slot (see [`Slot`]); `call` runs it.
    Inline { call: AtomicPtr<()>, data: InlineData },
}

enum Nodes {
    Boxed(Box<[Node]>),
    PerCpu([Node; MAX_CPUS]),
}

impl Request {
    fn node(&self, index: usize, cpu: usize) -> &Node {
        match &self.nodes {
            Nodes::Boxed(n) => &n[index],
            Nodes::PerCpu(n) => &n[cpu],
        }
    }

    fn run_func(&self) {
        match &self.func {
            Func::Boxed(f) => f(),
            Func::Inline { call, data } => {
                // Relaxed: written before the Release push that published
                // this request to us (the Acquire swap of take_all).
                let f = call.load(Ordering::Relaxed);
                // SAFETY: `f` is `call_inline::<F>` for the F whose value the
                // sender wrote into `data` before publishing (see Slot::fill),
                // and the slot is not refilled while our bit is pending.
                let f: fn(&InlineData) = unsafe { core::mem::transmute::<*mut (), fn(&InlineData)>(f) };
                f(data);
            }
        }
    }
}

/// Room for a closure in a per-CPU slot (Linux's per-CPU call_function_data:
/// no allocation per call). A closure that needs no drop and fits here is
/// stored inline; any other goes into an allocated request.
#[repr(C, align(8))]
struct InlineData(core::cell::UnsafeCell<[core::mem::MaybeUninit<u8>; INLINE_BYTES]>);
const INLINE_BYTES: usize = 48;

// SAFETY: the bytes are written only by the slot's owner while no target can
// read them (the slot is free: its pending set is empty and it is owned),
// and read by targets only while their bit is pending (no writer then).
unsafe impl Sync for InlineData {}

fn call_inline<F: Fn()>(data: &InlineData) {
    // SAFETY: the slot's owner wrote an F here (fits, align <= 8, checked in
    // Slot::fill) and keeps it until every target has acknowledged.
    let f = unsafe { &*(data.0.get() as *const F) };
    f();
}

/// A CPU's own request slot: free, owned by a call in progress, or left by
/// a call whose waiter gave up (reusable once its targets answered).
struct Slot {
    state: AtomicU8,
    request: Request,
}

const SLOT_FREE: u8 = 0;
const SLOT_OWNED: u8 = 1;
const SLOT_ABANDONED: u8 = 2;

static SLOTS: [Slot; MAX_CPUS] = [const {
    Slot {
        state: AtomicU8::new(SLOT_FREE),
        request: Request {
            func: Func::Inline {
                call: AtomicPtr::new(ptr::null_mut()),
                data: InlineData(core::cell::UnsafeCell::new([core::mem::MaybeUninit::uninit(); INLINE_BYTES])),
            },
            pending: AtomicCpuSet::new(),
            nodes: Nodes::PerCpu([const { Node { next: AtomicPtr::new(ptr::null_mut()), request: AtomicPtr::new(ptr::null_mut()) } }; MAX_CPUS]),
        },
    }
}; MAX_CPUS];

impl Slot {
    /// Takes this CPU's slot for `func` if it is free (or abandoned and
    /// answered), `func` fits inline and needs no drop.
    fn take<F: Fn() + Send + Sync + 'static>(&'static self, _func: &F) -> bool {
        if core::mem::size_of::<F>() > INLINE_BYTES || core::mem::align_of::<F>() > 8 || core::mem::needs_drop::<F>() {
            return false;
        }
        // Acquire (both): the targets' last accesses (their Release
        // acknowledgements, seen empty below) come before our refill.
        if self.state.compare_exchange(SLOT_FREE, SLOT_OWNED, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return true;
        }
        self.request.pending.load(Ordering::Acquire).is_empty()
            && self.state.compare_exchange(SLOT_ABANDONED, SLOT_OWNED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Writes `func` into the owned slot (no target reads it now).
    fn fill<F: Fn() + Send + Sync + 'static>(&'static self, func: F) {
        let Func::Inline { call, data } = &self.request.func else { unreachable!("slots are inline") };
        // SAFETY: the slot is owned and no target is pending on it, so nothing
        // reads the bytes; F fits and its alignment is at most 8 (Slot::take);
        // F needs no drop, so overwriting an earlier F leaks nothing.
        unsafe { (data.0.get() as *mut F).write(func) };
        call.store(call_inline::<F> as fn(&InlineData) as *mut (), Ordering::Relaxed);
    }
}

/// How a [`PendingCall`] holds its request.
enum Held {
    Arc(Arc<Request>),
    Slot(&'static Slot),
}

impl Held {
    fn request(&self) -> &Request {
        match self {
            Held::Arc(r) => r,
            Held::Slot(s) => &s.request,
        }
    }
}

/// A lock-free LIFO list of nodes (Linux: struct llist_head).
struct Queue {
    head: AtomicPtr<Node>,
}

impl Queue {
    const fn new() -> Self {
        Queue { head: AtomicPtr::new(ptr::null_mut()) }
    }

    /// Pushes `node`; returns whether the list was empty (the caller must kick).
    /// Lock-free: a retry means another CPU's push or swap succeeded.
    fn push(&self, node: &Node) -> bool {
        let new = node as *const Node as *mut Node;
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            node.next.store(head, Ordering::Relaxed);
            // Release: the node, its request and the function are visible to
            // the target whose swap (Acquire) takes this node.
            match self.head.compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return head.is_null(),
                Err(now) => head = now,
            }
        }
    }

    /// Takes every node, oldest first (one swap, then an in-place reversal).
    fn take_all(&self) -> *mut Node {
        // Acquire: pairs with the Release of every push taken here.
        let mut rest = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        let mut reversed = ptr::null_mut();
        while !rest.is_null() {
            // SAFETY: a taken node belongs to a request that still has this CPU
            // pending, which its sender keeps alive (module docs); after the
            // swap only this CPU touches the node's `next`.
            let next = unsafe { (*rest).next.load(Ordering::Relaxed) };
            // SAFETY: as above.
            unsafe { (*rest).next.store(reversed, Ordering::Relaxed) };
            reversed = rest;
            rest = next;
        }
        reversed
    }
}

/// Per CPU: the IPI list and the NMI list (indexed by [`Delivery::queue`]).
static QUEUES: [[Queue; 2]; MAX_CPUS] = [const { [const { Queue::new() }; 2] }; MAX_CPUS];

/// Per CPU: NMIs sent to kick its NMI list, and kicks its NMI handler
/// accounted for. The handler uses them to tell an NMI whose work an earlier
/// handler already ran (a kick in flight when that handler swapped the list)
/// from an unexpected one.
struct NmiKicks {
    sent: AtomicU64,
    /// Written only by the CPU's own NMI handler (NMIs do not nest).
    seen: AtomicU64,
}

static NMI_KICKS: [NmiKicks; MAX_CPUS] =
    [const { NmiKicks { sent: AtomicU64::new(0), seen: AtomicU64::new(0) } }; MAX_CPUS];

/// How many abandoned requests can wait to be freed.
pub(crate) const PARK_SLOTS: usize = 64;
static PARKED: [AtomicPtr<Request>; PARK_SLOTS] = [const { AtomicPtr::new(ptr::null_mut()) }; PARK_SLOTS];
/// One CPU at a time frees parked requests (others skip, never wait).
static RECLAIMING: AtomicBool = AtomicBool::new(false);
/// Requests in PARKED (so that a call skips the scan when there are none).
static PARKED_COUNT: AtomicUsize = AtomicUsize::new(0);
static LEAKED: AtomicU64 = AtomicU64::new(0);

/// Default bound on a wait, in nanoseconds (boot option `smp.call_timeout_ms`).
static TIMEOUT_NS: AtomicU64 = AtomicU64::new(2_000_000_000);

/// Sets the default wait bound.
pub(crate) fn set_call_timeout_ms(ms: u64) {
    TIMEOUT_NS.store(ms * 1_000_000, Ordering::Relaxed);
}

/// The default wait bound in nanoseconds.
pub fn call_timeout_ns() -> u64 {
    TIMEOUT_NS.load(Ordering::Relaxed)
}

/// Whether an IPI-delivered call waits in `cpu`'s queue (queued, not yet
/// taken by its handler): that CPU holds a caller back, for instance by
/// running with interrupts disabled. A hint (Relaxed): the race module's
/// forced waits end when they hold a flush back.
pub(crate) fn ipi_queued_for(cpu: usize) -> bool {
    QUEUES.get(cpu).is_some_and(|q| !q[Delivery::Ipi.queue()].head.load(Ordering::Relaxed).is_null())
}

/// A call that some targets may still be running. Dropping it before every
/// target answered parks the request (it is never freed under a late runner).
#[must_use = "a call must be waited for (or its completion checked)"]
pub struct PendingCall {
    request: Held,
    delivery: Delivery,
}

/// Some targets did not run the function within the bound.
#[derive(Clone, Copy, Debug)]
pub struct CallTimeout {
    /// The targets that had not answered.
    pub missing: CpuSet,
    /// How long the caller waited, in ms.
    pub(crate) waited_ms: u64,
}

impl fmt::Display for CallTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cross-CPU call timed out after {} ms; no answer from {}", self.waited_ms, self.missing)
    }
}

/// [`call_with`] by IPI.
pub fn call(targets: CpuSet, func: impl Fn() + Send + Sync + 'static) -> PendingCall {
    call_with(targets, Delivery::Ipi, func)
}

/// Runs `func` on `targets` by IPI and waits for all of them (default bound).
pub fn call_and_wait(targets: CpuSet, func: impl Fn() + Send + Sync + 'static) -> Result<(), CallTimeout> {
    call(targets, func).wait(call_timeout_ns())
}

/// Queues `func` on every CPU of `targets` and kicks them by `delivery`. The
/// caller's own CPU, if it is in the set, runs `func` at once with interrupts
/// disabled (in normal context, for either delivery). Offline CPUs are
/// ignored. Call from normal or interrupt context, never from an NMI handler.
pub fn call_with(targets: CpuSet, delivery: Delivery, func: impl Fn() + Send + Sync + 'static) -> PendingCall {
    reclaim_parked();
    let targets = targets.and(&super::online_cpus());
    let me = percpu::cpu_index();
    let remote = targets.len() - usize::from(targets.contains(me));
    let t_alloc = stamps::start();
    let slot = &SLOTS[me];
    let held = if slot.take(&func) {
        slot.fill(func);
        Held::Slot(slot)
    } else {
        Held::Arc(Arc::new_cyclic(|this| Request {
            func: Func::Boxed(Box::new(func)),
            pending: AtomicCpuSet::new(),
            // The address the request will have: nodes point back at it.
            nodes: Nodes::Boxed(
                (0..remote)
                    .map(|_| Node { next: AtomicPtr::new(ptr::null_mut()), request: AtomicPtr::new(this.as_ptr() as *mut Request) })
                    .collect(),
            ),
        }))
    };
    let request = held.request();
    // Relaxed: targets learn of the request through the push (Release).
    request.pending.store(targets, Ordering::Relaxed);
    stamps::end(Step::CallAlloc, t_alloc);
    let (mut queue_ticks, mut icr_ticks) = (0, 0);
    let mut to_kick = CpuSet::default();
    for (i, cpu) in targets.iter().filter(|&c| c != me).enumerate() {
        let node = request.node(i, cpu);
        if let Nodes::PerCpu(_) = request.nodes {
            // A per-CPU slot's nodes are static: point this one at the slot
            // (before the Release push publishes it).
            node_set_request(node, request);
        }
        let t = stamps::start();
        let empty = QUEUES[cpu][delivery.queue()].push(node);
        let t2 = stamps::start();
        queue_ticks += t2 - t;
        if empty {
            to_kick.insert(cpu);
        }
    }
    if !to_kick.is_empty() {
        let t = stamps::start();
        kick_all(to_kick, delivery);
        icr_ticks += stamps::start() - t;
    }
    if stamps::enabled() && remote > 0 {
        stamps::record(Step::CallQueue, queue_ticks);
        stamps::record(Step::CallIcr, icr_ticks);
    }
    if targets.contains(me) {
        x86_64::instructions::interrupts::without_interrupts(|| run(request, me));
    }
    PendingCall { request: held, delivery }
}

/// Kicks every CPU of `cpus` (not `me`) by `delivery`, with as few ICR
/// writes as the APIC allows ([`ipi::send_many`]: the all-but-self shorthand,
/// one logical write per APIC cluster, or one write per CPU). A CPU that is
/// not online (never started, or in wait-for-SIPI) ignores a fixed IPI, and
/// an online one with an empty list runs nothing.
fn kick_all(cpus: CpuSet, delivery: Delivery) {
    let how = match delivery {
        Delivery::Ipi => apic::Delivery::Fixed(vectors::CALL_FUNCTION),
        Delivery::Nmi => {
            for cpu in cpus.iter() {
                // Release, before the ICR write (which apic::send_ipi orders
                // after earlier stores): the handler's Acquire sees the count.
                NMI_KICKS[cpu].sent.fetch_add(1, Ordering::Release);
            }
            apic::Delivery::Nmi
        }
    };
    ipi::send_many(cpus, how);
}

impl PendingCall {
    /// The targets that have not run the function yet.
    pub fn pending(&self) -> CpuSet {
        // Acquire: once a target is seen done, its function's effects are too,
        // and so is its last access to the request.
        self.request.request().pending.load(Ordering::Acquire)
    }

    /// Waits until every target ran the function, at most `timeout_ns`. On
    /// a timeout the silent CPUs are dumped by NMI and named in the error.
    pub fn wait(self, timeout_ns: u64) -> Result<(), CallTimeout> {
        if self.delivery == Delivery::Ipi && !crate::arch::cpu::interrupts_enabled() && !self.pending().is_empty() {
            // Two CPUs waiting on each other with interrupts off would
            // deadlock; say so (the bounded wait still ends it).
            log::warn!("cpu{} waits for a cross-CPU call with interrupts disabled", percpu::cpu_index());
        }
        let start = crate::time::now_ns();
        let t_wait = stamps::start();
        let deadline = Deadline::after_ns(timeout_ns);
        loop {
            let missing = self.pending();
            if missing.is_empty() {
                stamps::end(Step::CallWait, t_wait);
                return Ok(());
            }
            if deadline.expired() {
                let waited_ms = (crate::time::now_ns() - start) / 1_000_000;
                let e = CallTimeout { missing, waited_ms };
                log::error!("{e} ({:?} delivery); asking them by NMI where they are", self.delivery);
                let _ = nmi::dump_cpus(missing);
                // Dropping `self` parks the request for the late runners.
                return Err(e);
            }
            core::hint::spin_loop();
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        let done = self.pending().is_empty();
        match &self.request {
            Held::Arc(r) if !done => park(r.clone()),
            Held::Arc(_) => {}
            // Release: our use of the slot before its next owner's (Acquire).
            Held::Slot(s) => s.state.store(if done { SLOT_FREE } else { SLOT_ABANDONED }, Ordering::Release),
        }
    }
}

/// Keeps a reference to a request some targets still owe (module docs).
fn park(request: Arc<Request>) {
    let raw = Arc::into_raw(request) as *mut Request;
    for slot in &PARKED {
        // Release: the reclaimer's Acquire load sees the request.
        if slot.compare_exchange(ptr::null_mut(), raw, Ordering::Release, Ordering::Relaxed).is_ok() {
            // Release: after the slot's store; a reclaimer that sees the
            // count (Acquire) sees the slot.
            PARKED_COUNT.fetch_add(1, Ordering::Release);
            return;
        }
    }
    let n = LEAKED.fetch_add(1, Ordering::Relaxed) + 1;
    log::error!("cross-CPU call: park table full; request leaked on purpose ({n} so far) so late runners stay safe");
}

/// Frees parked requests whose targets have all answered. Normal context.
fn reclaim_parked() {
    // Acquire: pairs with park's increment (a slot filled before it is seen).
    if PARKED_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    // Acquire/Release: one reclaimer at a time, each seeing the last one's
    // slot updates. A CPU that finds another reclaiming skips (no waiting).
    if RECLAIMING.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return;
    }
    for slot in &PARKED {
        let raw = slot.load(Ordering::Acquire);
        if raw.is_null() {
            continue;
        }
        // SAFETY: a parked pointer owns one strong reference, which only the
        // reclaimer releases (and RECLAIMING makes this CPU the only one).
        let done = unsafe { (*raw).pending.load(Ordering::Acquire) }.is_empty();
        if done {
            slot.store(ptr::null_mut(), Ordering::Relaxed);
            PARKED_COUNT.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: as above; every target's last access to the request
            // happened before its cleared bit, seen with Acquire.
            drop(unsafe { Arc::from_raw(raw) });
        }
    }
    RECLAIMING.store(false, Ordering::Release);
}

fn run(request: &Request, me: usize) {
    let t = stamps::start();
    request.run_func();
    let t_ack = stamps::start();
    // Release: the function's effects are visible before the acknowledgement.
    // This is the target's last access to the request.
    request.pending.remove(me, Ordering::Release);
    if t != 0 {
        stamps::record(Step::CallHandler, t_ack - t);
        stamps::end(Step::CallAck, t_ack);
    }
    percpu::current().calls_run.fetch_add(1, Ordering::Relaxed);
}

/// Runs every request on `queue`, oldest first; returns whether there was one.
fn run_queue(queue: &Queue, me: usize) -> bool {
    stamps::take_kick(me);
    let mut node = queue.take_all();
    let any = !node.is_null();
    while !node.is_null() {
        // SAFETY: the node is alive until `run` acknowledges its request (see
        // take_all); both fields are read before that, and the next node
        // belongs to a request this CPU has not acknowledged yet.
        // Relaxed: the push (Release) / take_all (Acquire) pair ordered it.
        let (next, request) = unsafe { ((*node).next.load(Ordering::Relaxed), (*node).request.load(Ordering::Relaxed)) };
        // SAFETY: as above: the request is alive while this CPU is pending.
        run(unsafe { &*request }, me);
        node = next;
    }
    any
}

/// The CALL_FUNCTION IPI handler (interrupts are off: interrupt gate). The
/// EOI comes first, so a request pushed onto an empty list after the swap
/// gets a fresh IPI, delivered after this handler returns.
pub(crate) fn handle_ipi(_: &mut TrapFrame) {
    apic::eoi();
    let me = percpu::cpu_index();
    run_queue(&QUEUES[me][Delivery::Ipi.queue()], me);
}

/// From the NMI handler: runs this CPU's NMI-delivered requests; returns
/// whether there were any. NMI-safe: one swap, no lock, no allocation, no free.
/// A kick that arrives while this runs is latched by the CPU and delivered
/// after the handler's IRET, so a push that found the list empty after the
/// swap is taken by the next handler.
pub(super) fn run_nmi_queue(me: usize) -> bool {
    run_queue(&QUEUES[me][Delivery::Nmi.queue()], me)
}

/// From the NMI handler: accounts this NMI to an outstanding kick, if any.
/// Returns whether one was outstanding (a kick whose requests an earlier
/// handler already ran is still an expected NMI). Kicks that the CPU merged
/// with another pending NMI leave a credit behind, so a later foreign NMI may
/// be taken for one: the check errs towards silence, never towards a false
/// "unexpected NMI".
pub(super) fn take_nmi_kick(me: usize) -> bool {
    let k = &NMI_KICKS[me];
    // Acquire: pairs with the sender's Release increment.
    let sent = k.sent.load(Ordering::Acquire);
    let seen = k.seen.load(Ordering::Relaxed);
    if seen < sent {
        k.seen.store(seen + 1, Ordering::Relaxed);
        true
    } else {
        false
    }
}
