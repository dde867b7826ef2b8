//! Which ICR writes reach a set of CPUs: the sending policy of cross-CPU
//! calls (Linux: native_send_call_func_ipi() and the APIC drivers'
//! send_IPI_mask: apic_flat_64.c's flat mode, x2apic_cluster.c).
//!
//! For a set of targets, in order of preference:
//! * every other online CPU (two or more, fixed vector): one all-but-self
//!   write (`smp.ipi_shorthand`). Never for NMIs: the shorthand also reaches
//!   CPUs that are not online, and one still starting must not take an NMI
//!   before its IDT;
//! * two or more CPUs: one *logical-destination* write per APIC cluster
//!   among the targets (`smp.ipi_logical`): one write for up to 8 CPUs in
//!   xAPIC flat mode, one per 4 in xAPIC cluster mode (9-60 CPUs), one per 16
//!   in x2APIC cluster mode. Only online CPUs are targets and each sets its
//!   logical id before it goes online, so a logical destination reaches
//!   exactly the CPUs named (a CPU without an id, LDR 0, matches none), and
//!   NMIs may use it too;
//! * otherwise (one CPU, a CPU beyond the model's reach, the option off):
//!   one physical write per CPU.
//!
//! Logical ids: the model is chosen once for the machine from the number of
//! CPUs the firmware lists ([`apic::LogicalModel::for_cpus`]); xAPIC CPU `i`
//! gets bit `i` (flat) or cluster `i / 4`, bit `i % 4` (cluster); an x2APIC
//! CPU's id is its hardware's. Each CPU records the id it answers to (read
//! back from its LDR) in [`LOGICAL`] before it goes online; a sender reads
//! it only for online CPUs (the online set's Release/Acquire orders it).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use super::cpuset::{CpuSet, MAX_CPUS};
use super::percpu;
use crate::arch::apic::{self, LogicalId, LogicalModel};
use crate::stamps;

/// Per CPU: its logical id, `cluster << 32 | mask`, 0 when it has none.
static LOGICAL: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The machine's logical model (`MODEL_*`), chosen by [`init_logical`].
static MODEL: AtomicU8 = AtomicU8::new(MODEL_NONE);
const MODEL_NONE: u8 = 0;
const MODEL_XAPIC_FLAT: u8 = 1;
const MODEL_XAPIC_CLUSTER: u8 = 2;
const MODEL_X2APIC_CLUSTER: u8 = 3;

/// Whether several targets go by logical destination (`smp.ipi_logical`).
static LOGICAL_ON: AtomicBool = AtomicBool::new(true);

/// Whether calls to several CPUs use logical destinations (`smp.ipi_logical`).
pub fn logical_on() -> bool {
    LOGICAL_ON.load(Ordering::Relaxed)
}

/// Per CPU: the ICR writes [`send_many`] made on it (a test counts them).
static WRITES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The ICR writes calls made from `cpu` so far.
pub fn icr_writes(cpu: usize) -> u64 {
    WRITES.get(cpu).map_or(0, |w| w.load(Ordering::Relaxed))
}

/// Counts one ICR write from `me`.
fn count_write(me: usize) {
    // Relaxed: a statistic; only this CPU adds to its entry, atomically
    // because an interrupt handler's call may nest in ours.
    WRITES[me].fetch_add(1, Ordering::Relaxed);
}
/// Whether every other CPU goes by the all-but-self shorthand (`smp.ipi_shorthand`).
static SHORTHAND: AtomicBool = AtomicBool::new(true);

/// Sets whether calls may use the all-but-self shorthand.
pub(crate) fn set_shorthand(on: bool) {
    SHORTHAND.store(on, Ordering::Relaxed);
}

/// Sets whether calls to several CPUs may use logical destinations.
pub(crate) fn set_logical(on: bool) {
    LOGICAL_ON.store(on, Ordering::Relaxed);
}

/// The machine's logical model, once chosen at boot.
pub fn model() -> Option<LogicalModel> {
    match MODEL.load(Ordering::Relaxed) {
        MODEL_XAPIC_FLAT => Some(LogicalModel::XApicFlat),
        MODEL_XAPIC_CLUSTER => Some(LogicalModel::XApicCluster),
        MODEL_X2APIC_CLUSTER => Some(LogicalModel::X2ApicCluster),
        _ => None,
    }
}

/// Chooses the logical model for `cpus` CPUs (the firmware's list, this one
/// among them) and gives this (the boot) CPU its id. Before the APs start.
pub(crate) fn init_logical(cpus: usize) {
    let Some(mode) = apic::mode() else { return };
    let model = LogicalModel::for_cpus(mode, cpus);
    MODEL.store(
        match model {
            LogicalModel::XApicFlat => MODEL_XAPIC_FLAT,
            LogicalModel::XApicCluster => MODEL_XAPIC_CLUSTER,
            LogicalModel::X2ApicCluster => MODEL_X2APIC_CLUSTER,
        },
        Ordering::Relaxed,
    );
    init_this_cpu();
    log::info!(
        "SMP: logical IPI destinations: {model:?}, {} CPUs per ICR write (smp.ipi_logical={})",
        model.cluster_width(),
        if LOGICAL_ON.load(Ordering::Relaxed) { "on" } else { "off" }
    );
}

/// Gives this CPU its logical id in the machine's model and records it.
/// Every CPU, before it goes online (the boot CPU through [`init_logical`]).
pub(crate) fn init_this_cpu() {
    let Some(model) = model() else { return };
    let me = percpu::cpu_index();
    let width = model.cluster_width() as usize;
    let wanted = match model {
        // The hardware's id: nothing to choose.
        LogicalModel::X2ApicCluster => LogicalId { cluster: 0, mask: 0 },
        _ if me / width >= model.clusters() as usize => return,
        _ => LogicalId { cluster: (me / width) as u32, mask: 1 << (me % width) },
    };
    let Some(id) = apic::set_logical_id(model, wanted) else {
        log::warn!("cpu{me}: no logical APIC id in {model:?} mode; IPIs to it go one by one");
        return;
    };
    if model != LogicalModel::X2ApicCluster && id != wanted {
        log::warn!("cpu{me}: the LDR reads back {id:?}, not {wanted:?}; IPIs to it go one by one");
        return;
    }
    // Relaxed: published by the Release that puts this CPU online.
    LOGICAL[me].store(u64::from(id.cluster) << 32 | u64::from(id.mask), Ordering::Relaxed);
}

/// CPU `cpu`'s logical id as recorded when it came up, if it has one.
pub fn logical_of(cpu: usize) -> Option<LogicalId> {
    let v = LOGICAL[cpu].load(Ordering::Relaxed);
    (v != 0).then(|| LogicalId { cluster: (v >> 32) as u32, mask: v as u32 })
}

/// Sends `how` to every CPU of `cpus` (online, not this one) with as few ICR
/// writes as the APIC allows (module docs). A failed write is logged with the
/// CPUs it was for; their requests stay queued, so the caller's bounded wait
/// times out naming them. Stamps each target's kick (`bench.breakdown`).
pub(crate) fn send_many(cpus: CpuSet, how: apic::Delivery) {
    let me = percpu::cpu_index();
    for cpu in cpus.iter() {
        stamps::kick_stamp(cpu);
    }
    let n = cpus.len();
    if n >= 2 && matches!(how, apic::Delivery::Fixed(_)) && SHORTHAND.load(Ordering::Relaxed) {
        let mut others = super::online_cpus();
        others.remove(me);
        if cpus == others {
            count_write(me);
            if let Err(e) = apic::send_ipi(apic::Destination::AllButSelf, how) {
                log::error!("{how:?} to all but cpu{me} ({cpus}) failed: {e:?}");
            }
            return;
        }
    }
    let mut rest = cpus;
    if n >= 2 && LOGICAL_ON.load(Ordering::Relaxed) {
        // One write per cluster: take the first CPU left with an id, gather
        // every other one of its cluster, send, repeat.
        let mut no_id = CpuSet::EMPTY;
        loop {
            let Some(first) = rest.first() else { break };
            let Some(id) = logical_of(first) else {
                no_id.insert(first);
                rest.remove(first);
                continue;
            };
            let mut group = CpuSet::EMPTY;
            let mut mask = 0;
            for cpu in rest.iter() {
                if let Some(other) = logical_of(cpu).filter(|o| o.cluster == id.cluster) {
                    mask |= other.mask;
                    group.insert(cpu);
                }
            }
            rest = rest.minus(&group);
            count_write(me);
            if let Err(e) = apic::send_ipi(apic::Destination::Logical(LogicalId { cluster: id.cluster, mask }), how) {
                log::error!("{how:?} to {group} (logical cluster {} mask {mask:#x}) failed: {e:?}", id.cluster);
            }
        }
        rest = no_id;
    }
    for cpu in rest.iter() {
        let Some(block) = percpu::cpu(cpu) else { continue };
        count_write(me);
        if let Err(e) = apic::send_ipi(apic::Destination::Apic(block.apic_id), how) {
            log::error!("{how:?} to cpu{cpu} failed: {e:?}");
        }
    }
}
