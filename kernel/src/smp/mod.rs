//! Symmetric multiprocessing: bringing up every CPU, per-CPU data, IPIs and
//! cross-CPU calls.
//!
//! Boot order: the boot CPU installs its per-CPU block first thing
//! ([`percpu::init_boot_cpu`]); after ACPI is parsed, [`init`] sets up the
//! local APIC, registers the IPI handlers and starts the APs ([`startup`]).
//! Each AP ends in [`ap_online`]: it marks itself online and idles with
//! interrupts enabled, answering IPIs.
//!
//! The kernel is not preemptible in its own code: a CPU leaves kernel code
//! only at an interrupt (and returns to the same code) or when it blocks or
//! yields explicitly. So an interrupts-off section is exactly a section no IPI
//! can enter, which is what the race protocol relies on.

pub mod call;
pub mod cpuset;
pub mod ipi;
pub mod nmi;
pub mod percpu;
pub mod startup;
pub mod work;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::arch::idt::{self, TrapFrame};
use crate::arch::{apic, vectors};
pub(crate) use cpuset::AtomicCpuSet;
pub use cpuset::{CpuSet, MAX_CPUS};
pub use percpu::{cpu_index, current};

/// CPUs that finished start-up.
static ONLINE: AtomicCpuSet = AtomicCpuSet::new();

/// The CPUs that are online.
pub fn online_cpus() -> CpuSet {
    ONLINE.load(Ordering::Acquire)
}

/// Number of online CPUs.
pub fn online_count() -> usize {
    online_cpus().len()
}

/// Sets up the local APIC on the boot CPU and registers the IPI handlers.
/// `legacy_pics`: whether the machine has 8259 PICs to mask. Returns the APIC mode.
pub(crate) fn init_boot_cpu(lapic_phys: u64, force_xapic: bool, legacy_pics: bool) -> apic::Mode {
    let mode = apic::init_global(lapic_phys, force_xapic, legacy_pics);
    apic::init_this_cpu();
    let me = percpu::current();
    let bsp_apic = apic::id();
    if bsp_apic != me.apic_id {
        log::warn!("SMP: boot CPU APIC id {bsp_apic} differs from CPUID's {}", me.apic_id);
    }
    idt::register_handler(vectors::SPURIOUS, |_| {});
    idt::register_handler(vectors::APIC_ERROR, apic_error);
    for v in vectors::LEGACY_PIC_BASE..vectors::LEGACY_PIC_BASE + 16 {
        // Masked PICs still deliver spurious IRQ 7/15; they need no EOI.
        idt::register_handler(v, |f| log::debug!("spurious legacy PIC interrupt at vector {:#x}", f.vector));
    }
    idt::register_handler(vectors::CALL_FUNCTION, call::handle_ipi);
    me.online.store(true, Ordering::Release);
    ONLINE.insert(0, Ordering::Release);
    mode
}

/// Starts the APs (see [`startup`]). `apic_ids` are the enabled CPUs the
/// firmware lists (the boot CPU among them). Call after [`init_boot_cpu`] and
/// after the scheduler's global set-up: an AP enters the scheduler as soon as
/// it is online: each AP, once online, calls `ap_main` (the scheduler's
/// `start_ap`, passed in because `sched` sits above `smp`).
/// `low_pages_usable`: whether the boot's memory map has
/// [`startup::LOW_PAGES`] as usable RAM (else only the boot CPU runs).
pub(crate) fn start_aps(low_pages_usable: bool, apic_ids: &[u32], ap_timeout_ms: u64, ap_main: fn() -> !) {
    AP_MAIN.call_once(|| ap_main);
    let mode = apic::mode().expect("start_aps before init_boot_cpu");
    // Before any AP starts: each takes its logical id in this model.
    ipi::init_logical(apic_ids.len().max(1));
    let bsp_apic = apic::id();
    // APIC ids above 255 exist only in x2APIC mode: the xAPIC's destination
    // field has 8 bits, so such a CPU cannot even be sent INIT.
    let (others, unaddressable): (Vec<u32>, Vec<u32>) =
        apic_ids.iter().copied().filter(|&id| id != bsp_apic).partition(|&id| apic::can_address(id));
    if !unaddressable.is_empty() {
        log::warn!(
            "SMP: APIC ids {unaddressable:?} are above 255, which the local APIC cannot address in {mode:?} mode \
             (no x2APIC on this CPU, or apic=xapic); those CPUs are not started"
        );
    }
    let outcomes = startup::start_aps(low_pages_usable, &others, ap_timeout_ms);
    let silent: Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            startup::ApOutcome::Silent { apic_id } => Some(*apic_id),
            startup::ApOutcome::Online { .. } => None,
        })
        .collect();
    let slowest = outcomes
        .iter()
        .filter_map(|o| match o {
            startup::ApOutcome::Online { micros } => Some(*micros),
            startup::ApOutcome::Silent { .. } => None,
        })
        .max()
        .unwrap_or(0);
    log::info!(
        "SMP: {} of {} CPUs online ({:?} mode; slowest AP start {} us){}{}",
        online_count(),
        apic_ids.len().max(1),
        mode,
        slowest,
        if silent.is_empty() { alloc::string::String::new() } else { alloc::format!("; silent APIC ids {silent:?}") },
        if unaddressable.is_empty() {
            alloc::string::String::new()
        } else {
            alloc::format!("; APIC ids {unaddressable:?} not addressable in {mode:?} mode")
        }
    );
}

/// What an AP runs once online (set by [`start_aps`]).
static AP_MAIN: spin::Once<fn() -> !> = spin::Once::new();

/// The end of an AP's start-up: online, then its boot context becomes its
/// idle task (through the `ap_main` given to [`start_aps`]).
pub(crate) fn ap_online() -> ! {
    let me = percpu::current();
    ONLINE.insert(me.index as usize, Ordering::Release);
    // Release: the boot CPU, seeing `online`, sees this CPU fully set up.
    me.online.store(true, Ordering::Release);
    log::debug!("cpu{} (APIC id {}) online", me.index, me.apic_id);
    let ap_main = AP_MAIN.get().expect("an AP came online without start_aps");
    ap_main()
}

fn apic_error(_: &mut TrapFrame) {
    let esr = apic::read_error_status();
    log::error!("local APIC error on cpu{}: ESR {esr:#x}", cpu_index());
    apic::eoi();
}
