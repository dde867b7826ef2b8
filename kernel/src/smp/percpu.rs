//! Per-CPU data, reached through the GS base.
//!
//! Each CPU's [`PerCpu`] starts with a pointer to itself, and the CPU's
//! `IA32_GS_BASE` points at it, so `current()` is one `mov reg, gs:[0]`. The
//! boot CPU's block is a static set up first thing in boot (before anything
//! logs); each AP's block is allocated by the boot CPU before the AP starts,
//! and installed by the AP as its first act in Rust. Blocks are never freed.
//!
//! Fields written by other CPUs are atomics; the rest is written once, before
//! the block is published.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::cpuset::MAX_CPUS;

/// One CPU's private block.
#[repr(C)]
pub struct PerCpu {
    /// Must stay first: `gs:[0]`.
    self_ptr: *const PerCpu,
    /// Dense CPU number (0 = the boot CPU).
    pub index: u32,
    /// Local APIC id.
    pub apic_id: u32,
    /// Nesting depth of interrupt handlers on this CPU (0 = thread context).
    pub(crate) irq_depth: AtomicU32,
    /// Nesting depth of NMI handlers on this CPU (0 = not in an NMI).
    pub in_nmi: AtomicU32,
    /// Interrupts taken (all vectors >= 32).
    pub(crate) interrupts: AtomicU64,
    /// Cross-CPU calls run on this CPU.
    pub calls_run: AtomicU64,
    /// NMIs taken.
    pub nmis: AtomicU64,
    /// Set once the CPU finished its start-up.
    pub online: AtomicBool,
    /// Ring-3 entry: the kernel stack pointer `syscall` switches to (the
    /// running user task's, see `arch::usermode`; the assembly reads it at
    /// its `offset_of!`).
    pub(crate) user_entry_rsp: AtomicU64,
    /// Ring-3 entry: the user stack pointer, parked by the `syscall` entry
    /// until it is on the kernel stack.
    pub(crate) user_rsp_scratch: AtomicU64,
    /// This CPU's TSS (its `rsp0` follows `user_entry_rsp`); 0 until installed.
    pub(crate) tss: AtomicU64,
}

// SAFETY: `self_ptr` is only ever the block's own address; every field other
// CPUs may touch is atomic.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    /// A block for CPU `index` with APIC id `apic_id` (not yet installed).
    pub(crate) const fn new(index: u32, apic_id: u32) -> Self {
        PerCpu {
            self_ptr: core::ptr::null(),
            index,
            apic_id,
            irq_depth: AtomicU32::new(0),
            in_nmi: AtomicU32::new(0),
            interrupts: AtomicU64::new(0),
            calls_run: AtomicU64::new(0),
            nmis: AtomicU64::new(0),
            online: AtomicBool::new(false),
            user_entry_rsp: AtomicU64::new(0),
            user_rsp_scratch: AtomicU64::new(0),
            tss: AtomicU64::new(0),
        }
    }
}

/// Every CPU's block, by index (null = no such CPU).
static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Whether the boot CPU installed its block (before that, `current()` must
/// not read GS).
static READY: AtomicBool = AtomicBool::new(false);
static mut BSP: PerCpu = PerCpu::new(0, 0);

/// Installs `block` as this CPU's per-CPU data and publishes it.
///
/// # Safety
/// `block` must live forever, be installed on exactly one CPU, and this CPU
/// must not have a block yet.
pub(crate) unsafe fn install(block: &'static mut PerCpu) {
    block.self_ptr = block as *const PerCpu;
    let addr = block as *const PerCpu as u64;
    // SAFETY: the block is immortal (the caller's promise) and starts with its
    // own address (set above); the GS base is the kernel's per-CPU pointer and
    // nothing else uses GS in ring 0.
    unsafe { crate::arch::percpu::set_gs_base(x86_64::VirtAddr::new(addr)) };
    // Release: a CPU that finds the pointer sees the initialised block.
    CPUS[block.index as usize].store(block, Ordering::Release);
}

/// Sets up the boot CPU's block. Called first thing in boot.
pub(crate) fn init_boot_cpu(apic_id: u32) {
    // SAFETY: called once, on the boot CPU, before any other CPU runs; BSP is
    // never referenced mutably again.
    unsafe {
        let bsp = &mut *core::ptr::addr_of_mut!(BSP);
        bsp.apic_id = apic_id;
        install(bsp);
    }
    READY.store(true, Ordering::Release);
}

/// This CPU's block.
pub fn current() -> &'static PerCpu {
    debug_assert!(READY.load(Ordering::Relaxed), "per-CPU data used before init_boot_cpu");
    // SAFETY: GS base points at this CPU's installed block, whose first word is
    // its own address (see `install`).
    let ptr = unsafe { crate::arch::percpu::gs_self_pointer() }.cast::<PerCpu>();
    // SAFETY: installed blocks live forever.
    unsafe { &*ptr }
}

/// This CPU's block, or `None` before the boot CPU installed its block.
pub(crate) fn try_current() -> Option<&'static PerCpu> {
    READY.load(Ordering::Relaxed).then(current)
}

/// This CPU's index, or 0 before per-CPU data exists (early boot runs on the
/// boot CPU only).
pub fn cpu_index() -> usize {
    if READY.load(Ordering::Relaxed) { current().index as usize } else { 0 }
}

/// CPU `index`'s block, if that CPU exists.
pub fn cpu(index: usize) -> Option<&'static PerCpu> {
    let p = CPUS.get(index)?.load(Ordering::Acquire);
    // SAFETY: non-null pointers in CPUS are installed, immortal blocks.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Whether this CPU is running an interrupt handler.
pub fn in_interrupt() -> bool {
    READY.load(Ordering::Relaxed) && current().irq_depth.load(Ordering::Relaxed) > 0
}

/// Whether this CPU is running an NMI handler.
pub fn in_nmi() -> bool {
    READY.load(Ordering::Relaxed) && current().in_nmi.load(Ordering::Relaxed) > 0
}
