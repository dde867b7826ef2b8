//! Starting the application processors (APs): INIT-SIPI-SIPI, one at a time.
//!
//! For each CPU the ACPI MADT lists (enabled, not the boot CPU), the boot CPU
//! allocates its per-CPU block and stacks (each with a guard page), fills the
//! trampoline's parameters, sends INIT, waits 10 ms, sends a start-up IPI,
//! waits 200 us and sends a second one if the AP has not started (the
//! architectural sequence, SDM vol. 3, 9.4.4.1, on the TSC clock), then waits
//! for the AP to report itself online. An AP that does not answer within the
//! timeout (`smp.ap_timeout_ms`) is reported and skipped; the boot goes on with
//! the CPUs that came up.
//!
//! The trampoline needs four low pages: 0x8000 (code), 0x9000 (a page-table
//! root below 4 GiB), 0xa000 and 0xb000 (a pdpt and a pd identity-mapping the
//! first 2 MiB, where the trampoline runs when paging comes on).

use alloc::boxed::Box;
use alloc::format;
use core::sync::atomic::{AtomicU32, Ordering};
use x86_64::PhysAddr;

use super::percpu::{self, PerCpu};
use crate::arch::trampoline::{self, Params, STARTUP_VECTOR, TRAMPOLINE_PHYS};
use crate::arch::gdt::IST_STACK_SIZE;
use crate::arch::{apic, cpu, gdt, idt};
use crate::mm::paging::{PageTable, PteFlags, RawEntry};
use crate::mm::{kernel_map, phys_to_virt, stack};
use crate::time::Deadline;

const LOW_ROOT: u64 = 0x9000;
const LOW_PDPT: u64 = 0xa000;
const LOW_PD: u64 = 0xb000;
/// Kernel stack of each AP's first thread of execution.
const AP_STACK_SIZE: usize = 128 * 1024;

/// Set by an AP as its first act in Rust (its APIC id + 1).
static STARTED: AtomicU32 = AtomicU32::new(0);

/// One AP that was expected and what became of it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ApOutcome {
    /// Online.
    Online {
        /// Microseconds from INIT to online.
        micros: u64,
    },
    /// Did not come up in time (whether it reached the trampoline's Rust
    /// entry is logged).
    Silent {
        /// Its APIC id.
        apic_id: u32,
    },
}

/// The low pages AP start-up takes (the trampoline and its page tables):
/// the boot checks the memory map has them as usable RAM.
pub(crate) const LOW_PAGES: core::ops::Range<u64> = TRAMPOLINE_PHYS..LOW_PD + 0x1000;

/// Copies the trampoline and builds the low page tables.
fn prepare_low_memory() {
    let (code, _) = trampoline::image();
    // SAFETY: the four low pages are usable RAM reserved from the frame
    // allocator (everything below 1 MiB is), and nothing else uses them.
    unsafe {
        let dst = phys_to_virt(PhysAddr::new(TRAMPOLINE_PHYS)).as_mut_ptr::<u8>();
        core::ptr::copy_nonoverlapping(code.as_ptr(), dst, code.len());
        for page in [LOW_ROOT, LOW_PDPT, LOW_PD] {
            core::ptr::write_bytes(phys_to_virt(PhysAddr::new(page)).as_mut_ptr::<u8>(), 0, 4096);
        }
    }
    let table = |p: u64| {
        // SAFETY: the pages were zeroed above for use as page tables.
        unsafe { PageTable::at(PhysAddr::new(p)) }
    };
    let rw = PteFlags::PRESENT | PteFlags::WRITABLE;
    table(LOW_ROOT).entry(0).store(RawEntry::new(PhysAddr::new(LOW_PDPT), rw), Ordering::Relaxed);
    table(LOW_PDPT).entry(0).store(RawEntry::new(PhysAddr::new(LOW_PD), rw), Ordering::Relaxed);
    table(LOW_PD).entry(0).store(RawEntry::new(PhysAddr::new(0), rw | PteFlags::HUGE), Ordering::Relaxed);
    // SAFETY: the kernel root is a live page table.
    let kernel = unsafe { PageTable::at(kernel_map::kernel_root()) };
    for i in 256..512 {
        table(LOW_ROOT).entry(i).store(kernel.entry(i).load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

fn write_params(p: Params) {
    let (_, offset) = trampoline::image();
    // SAFETY: the parameter block lies inside the copied trampoline page; no AP
    // is running the trampoline while the boot CPU writes it (one at a time).
    unsafe {
        let dst = phys_to_virt(PhysAddr::new(TRAMPOLINE_PHYS + offset as u64)).as_mut_ptr::<Params>();
        dst.write_volatile(p);
    }
}

fn spin_for(ns: u64) {
    let d = Deadline::after_ns(ns);
    while !d.expired() {
        core::hint::spin_loop();
    }
}

/// Starts every AP in `apic_ids` (the boot CPU excluded by the caller);
/// `low_pages_usable`: whether the memory map has [`LOW_PAGES`] as usable
/// RAM. Returns one outcome per AP.
pub(crate) fn start_aps(low_pages_usable: bool, apic_ids: &[u32], timeout_ms: u64) -> alloc::vec::Vec<ApOutcome> {
    let mut outcomes = alloc::vec::Vec::new();
    if apic_ids.is_empty() {
        return outcomes;
    }
    if !low_pages_usable {
        log::warn!(
            "SMP: low pages {TRAMPOLINE_PHYS:#x}-{:#x} are not usable RAM; running on the boot CPU only",
            LOW_PD + 0xfff
        );
        return outcomes;
    }
    prepare_low_memory();
    let mut next_index = 1u32;
    for &apic_id in apic_ids {
        let index = next_index;
        let block: &'static mut PerCpu = Box::leak(Box::new(PerCpu::new(index, apic_id)));
        let name: &'static str = Box::leak(format!("cpu{index} idle").into_boxed_str());
        let stack = stack::alloc(name, AP_STACK_SIZE);
        let ap = Box::leak(Box::new(ApStart {
            block: block as *mut PerCpu,
            stacks: gdt::TssStacks {
                double_fault: stack::alloc(leak(format!("cpu{index} double-fault IST")), IST_STACK_SIZE).top(),
                nmi: stack::alloc(leak(format!("cpu{index} NMI IST")), IST_STACK_SIZE).top(),
                machine_check: stack::alloc(leak(format!("cpu{index} machine-check IST")), IST_STACK_SIZE).top(),
                privilege0: stack::alloc(leak(format!("cpu{index} ring-0 entry")), IST_STACK_SIZE).top(),
            },
        }));
        write_params(Params {
            cr3: LOW_ROOT,
            stack: stack.top().as_u64(),
            entry: ap_entry as *const () as u64,
            arg: ap as *const ApStart as u64,
        });
        STARTED.store(0, Ordering::SeqCst);
        let t0 = crate::time::now_ns();
        let sent = apic::send_ipi(apic::Destination::Apic(apic_id), apic::Delivery::Init)
            .and_then(|()| {
                spin_for(10_000_000);
                apic::send_ipi(apic::Destination::Apic(apic_id), apic::Delivery::Startup(STARTUP_VECTOR))
            })
            .and_then(|()| {
                spin_for(200_000);
                if STARTED.load(Ordering::Acquire) == 0 {
                    apic::send_ipi(apic::Destination::Apic(apic_id), apic::Delivery::Startup(STARTUP_VECTOR))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = sent {
            log::error!("SMP: cannot send start-up IPIs to APIC id {apic_id}: {e:?}");
        }
        let deadline = Deadline::after_ns(timeout_ms * 1_000_000);
        while !block.online.load(Ordering::Acquire) && !deadline.expired() {
            core::hint::spin_loop();
        }
        if block.online.load(Ordering::Acquire) {
            let micros = (crate::time::now_ns() - t0) / 1000;
            outcomes.push(ApOutcome::Online { micros });
            next_index += 1;
        } else {
            let started = STARTED.load(Ordering::Acquire) == apic_id + 1;
            log::error!(
                "SMP: APIC id {apic_id} did not come online within {timeout_ms} ms ({}); skipping it",
                if started { "it reached its Rust entry" } else { "it never reached the kernel" }
            );
            outcomes.push(ApOutcome::Silent { apic_id });
            // Its stacks and block stay allocated: the AP might still wake up
            // and use them, so freeing them would be unsafe.
        }
    }
    outcomes
}

fn leak(s: alloc::string::String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// What an AP needs from the boot CPU.
struct ApStart {
    block: *mut PerCpu,
    stacks: gdt::TssStacks,
}

/// The AP's first Rust code, on its own stack, on the low page-table root.
extern "C" fn ap_entry(start: &'static ApStart) -> ! {
    // SAFETY: the block was allocated for this AP alone and is immortal.
    let block = unsafe { &mut *start.block };
    STARTED.store(block.apic_id + 1, Ordering::Release);
    // SAFETY: the kernel root maps everything the low root maps in the kernel
    // half (it was copied from it), including this stack and code.
    unsafe { cpu::load_page_table_root(kernel_map::kernel_root()) };
    // Per-CPU data first: logging and every lock below read it.
    // SAFETY: this AP's block, installed once, on this CPU.
    unsafe { percpu::install(block) };
    gdt::install(start.stacks);
    idt::install();
    crate::arch::usermode::init_this_cpu();
    cpu::enable_protection_features();
    let protection = cpu::enable_smep_smap();
    if protection.smap != crate::arch::uaccess::smap_on() {
        log::warn!("cpu{}: SMAP {:?} differs from the boot CPU's", crate::smp::cpu_index(), protection.smap);
    }
    apic::init_this_cpu();
    super::ipi::init_this_cpu();
    super::ap_online()
}
