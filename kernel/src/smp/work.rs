//! Work for idle CPUs: run a closure on a chosen CPU in thread context (with
//! interrupts enabled), outside any interrupt handler.
//!
//! Until the scheduler exists, each AP's idle loop is its only thread; this is
//! how code is placed on another CPU, for example a section that disables
//! interrupts for a while (the situation the race protocol is about). The
//! closure runs to completion; an IPI wakes the idle CPU.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use super::cpuset::MAX_CPUS;
use super::percpu;
use crate::arch::{apic, vectors};
use crate::time::Deadline;

type Work = Box<dyn FnOnce() + Send>;

static QUEUES: [spin::Mutex<VecDeque<Work>>; MAX_CPUS] = [const { spin::Mutex::new(VecDeque::new()) }; MAX_CPUS];

/// A handle on work placed on another CPU.
pub struct WorkHandle {
    done: Arc<AtomicBool>,
    cpu: usize,
}

/// Why work could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkError {
    /// The CPU is not online (or is the boot CPU, which has no idle loop).
    NotAnIdleCpu(usize),
}

/// Queues `f` on idle CPU `cpu` and wakes it.
pub fn run_on(cpu: usize, f: impl FnOnce() + Send + 'static) -> Result<WorkHandle, WorkError> {
    if cpu == 0 || !super::online_cpus().contains(cpu) {
        return Err(WorkError::NotAnIdleCpu(cpu));
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let work: Work = Box::new(move || {
        f();
        // Release: the work's effects are visible to whoever sees `done`.
        flag.store(true, Ordering::Release);
    });
    x86_64::instructions::interrupts::without_interrupts(|| QUEUES[cpu].lock().push_back(work));
    let apic_id = percpu::cpu(cpu).ok_or(WorkError::NotAnIdleCpu(cpu))?.apic_id;
    if let Err(e) = apic::send_ipi(apic::Destination::Apic(apic_id), apic::Delivery::Fixed(vectors::RESCHEDULE)) {
        log::error!("wake-up IPI to cpu{cpu} failed: {e:?}");
    }
    Ok(WorkHandle { done, cpu })
}

impl WorkHandle {
    /// Whether the work has finished.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Waits (bounded) for the work to finish; `Err` names the CPU on timeout.
    pub fn join(&self, timeout_ns: u64) -> Result<(), usize> {
        let deadline = Deadline::after_ns(timeout_ns);
        while !self.is_done() {
            if deadline.expired() {
                return Err(self.cpu);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }
}

/// The wake-up IPI handler: the work itself runs in the idle loop, not here.
pub fn handle_wakeup(_: &mut crate::arch::idt::TrapFrame) {
    apic::eoi();
}

/// Runs queued work for this CPU; returns whether there was any.
pub fn run_pending() -> bool {
    let me = percpu::cpu_index();
    let mut ran = false;
    loop {
        let next = x86_64::instructions::interrupts::without_interrupts(|| QUEUES[me].lock().pop_front());
        let Some(work) = next else { return ran };
        x86_64::instructions::interrupts::enable();
        work();
        ran = true;
    }
}
