//! NMIs: taken even with interrupts disabled, so they can reach a CPU that is
//! stuck (or deliberately sitting) in an interrupts-off section.
//!
//! One NMI serves two kinds of work (Linux: nmi_handle() walking its handler
//! list; the dump is nmi_cpu_backtrace()):
//! * cross-CPU calls delivered by NMI ([`call::Delivery::Nmi`](super::call::Delivery)):
//!   the handler runs this CPU's NMI call list;
//! * dump requests ([`dump_cpus`]): the target formats its RIP and backtrace
//!   into its own buffer and raises a flag; the requesting CPU, in normal
//!   context, prints the buffers.
//!
//! The CPU merges NMIs that arrive while one is being handled (one stays
//! latched), so every handler checks for both kinds. An NMI is *expected* if
//! it found a dump request, found call work, or accounts for an outstanding
//! call kick (its work was taken by an earlier handler); otherwise it is
//! reported as unexpected by the exception code.
//!
//! Invariant: the handler is NMI-safe end to end. It takes no lock, does not
//! print, allocates and frees nothing (requests are freed by their senders,
//! see [`call`](super::call)). So an NMI that lands while its CPU holds the
//! console or heap lock cannot deadlock.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::cpuset::{AtomicCpuSet, CpuSet, MAX_CPUS};
use super::percpu;
use crate::arch::apic;
use crate::arch::idt::TrapFrame;
use crate::debug::{backtrace, symbols::Symbolized};
use crate::time::Deadline;

const DUMP_BYTES: usize = 2048;

/// CPUs asked to dump themselves.
static DUMP_REQUESTED: AtomicCpuSet = AtomicCpuSet::new();
/// Per CPU: dump written and not yet printed.
static DUMP_READY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static DUMP_LEN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static mut DUMP_TEXT: [[u8; DUMP_BYTES]; MAX_CPUS] = [[0; DUMP_BYTES]; MAX_CPUS];

/// A fixed buffer that drops what does not fit.
struct Buffer<'a> {
    bytes: &'a mut [u8; DUMP_BYTES],
    len: usize,
}

impl Write for Buffer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(DUMP_BYTES - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The NMI handler. Returns whether the NMI was expected (see the module docs).
pub(crate) fn handle(frame: &TrapFrame) -> bool {
    let me = percpu::cpu_index();
    percpu::current().nmis.fetch_add(1, Ordering::Relaxed);
    // Calls first: they are what a waiting CPU spins on (a TLB flush).
    let ran_calls = super::call::run_nmi_queue(me);
    let dumped = dump(me, frame);
    // An NMI that brought a dump request is accounted to it; otherwise to an
    // outstanding call kick, if any.
    let kicked = !dumped && super::call::take_nmi_kick(me);
    ran_calls || dumped || kicked
}

/// Serves a dump request for this CPU, if there is one.
fn dump(me: usize, frame: &TrapFrame) -> bool {
    if !DUMP_REQUESTED.contains(me, Ordering::Acquire) {
        return false;
    }
    DUMP_REQUESTED.remove(me, Ordering::Relaxed);
    // SAFETY: only this CPU writes its slot, and only while DUMP_READY is false
    // (the reader reads it after seeing the flag, and clears the flag after).
    let bytes = unsafe { &mut (*core::ptr::addr_of_mut!(DUMP_TEXT))[me] };
    let mut buf = Buffer { bytes, len: 0 };
    let _ = writeln!(
        buf,
        "cpu{me} (APIC id {}) at {}, interrupts {}, irq depth {}",
        percpu::current().apic_id,
        Symbolized(frame.rip),
        if frame.rflags & (1 << 9) != 0 { "on" } else { "OFF" },
        percpu::current().irq_depth.load(Ordering::Relaxed)
    );
    if !frame.from_user() {
        backtrace::print(frame.rip, frame.rbp, &mut |a| {
            let _ = buf.write_fmt(a);
        });
    }
    DUMP_LEN[me].store(buf.len, Ordering::Relaxed);
    // Release: the text is complete before the flag.
    DUMP_READY[me].store(true, Ordering::Release);
    true
}

/// Asks `cpus` by NMI where they are and prints their answers (waiting up to
/// the cross-CPU call bound, `smp.call_timeout_ms`, per CPU: a slow emulator
/// takes far longer than hardware's microseconds). Returns the CPUs that
/// answered. Call from normal context.
pub fn dump_cpus(cpus: CpuSet) -> CpuSet {
    let me = percpu::cpu_index();
    let mut answered = CpuSet::EMPTY;
    for cpu in cpus.iter().filter(|&c| c != me) {
        let Some(block) = percpu::cpu(cpu) else { continue };
        DUMP_READY[cpu].store(false, Ordering::Relaxed);
        DUMP_REQUESTED.insert(cpu, Ordering::Release);
        if let Err(e) = apic::send_ipi(apic::Destination::Apic(block.apic_id), apic::Delivery::Nmi) {
            log::error!("NMI to cpu{cpu} failed: {e:?}");
            continue;
        }
        let deadline = Deadline::after_ns(super::call::call_timeout_ns());
        while !DUMP_READY[cpu].load(Ordering::Acquire) && !deadline.expired() {
            core::hint::spin_loop();
        }
        if DUMP_READY[cpu].load(Ordering::Acquire) {
            let len = DUMP_LEN[cpu].load(Ordering::Relaxed);
            // SAFETY: the target finished writing (READY observed with Acquire)
            // and writes again only after a new request.
            let text = unsafe { &(&(*core::ptr::addr_of!(DUMP_TEXT))[cpu])[..len] };
            crate::print!("{}", core::str::from_utf8(text).unwrap_or("<dump not UTF-8>\n"));
            DUMP_READY[cpu].store(false, Ordering::Relaxed);
            answered.insert(cpu);
        } else {
            DUMP_REQUESTED.remove(cpu, Ordering::Relaxed);
            log::error!(
                "cpu{cpu} did not answer an NMI within {} ms either (hung with NMIs blocked, or off)",
                super::call::call_timeout_ns() / 1_000_000
            );
        }
    }
    answered
}
