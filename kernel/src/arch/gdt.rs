//! Segments: one GDT and TSS per CPU, with the interrupt stack table (IST).
//!
//! Three exceptions run on their own stacks, so that they are reported even when
//! the interrupted stack is unusable: a double fault (typically a kernel stack
//! overflow into a guard page), an NMI (it can arrive at any instruction, even
//! between a `syscall` and the stack switch), and a machine check.
//!
//! The selector layout is fixed by `syscall`/`sysret` (STAR): kernel code, kernel
//! data, then user data and user code in that order, so that `sysret` finds user
//! SS at STAR.base+8 and user CS at STAR.base+16.

use alloc::boxed::Box;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (0-based, as the `x86_64` crate counts) of the double-fault stack.
pub(crate) const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot of the NMI stack.
pub(crate) const IST_NMI: u16 = 1;
/// IST slot of the machine-check stack.
pub(crate) const IST_MACHINE_CHECK: u16 = 2;

/// Selectors every CPU's GDT has at the same positions.
pub(crate) mod selectors {
    use x86_64::PrivilegeLevel::{Ring0, Ring3};
    use x86_64::structures::gdt::SegmentSelector;

    /// Kernel 64-bit code segment.
    pub(crate) const KERNEL_CODE: SegmentSelector = SegmentSelector::new(1, Ring0);
    /// Kernel data segment.
    pub(crate) const KERNEL_DATA: SegmentSelector = SegmentSelector::new(2, Ring0);
    /// User data segment (sysret loads SS from STAR.base + 8).
    pub(crate) const USER_DATA: SegmentSelector = SegmentSelector::new(3, Ring3);
    /// User 64-bit code segment (sysret loads CS from STAR.base + 16).
    pub(crate) const USER_CODE: SegmentSelector = SegmentSelector::new(4, Ring3);
    /// The task state segment (a 16-byte system descriptor).
    pub(crate) const TSS: SegmentSelector = SegmentSelector::new(5, Ring0);
}

/// Size of each IST stack (double fault, NMI, machine check) and of the
/// ring-0 entry stack.
pub(crate) const IST_STACK_SIZE: usize = 32 * 1024;

/// The stacks a CPU's TSS points to (tops, i.e. the highest address + 1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TssStacks {
    /// Stack for double faults.
    pub(crate) double_fault: VirtAddr,
    /// Stack for NMIs.
    pub(crate) nmi: VirtAddr,
    /// Stack for machine checks.
    pub(crate) machine_check: VirtAddr,
    /// Stack loaded on a ring 3 -> ring 0 transition (interrupts from user mode).
    pub(crate) privilege0: VirtAddr,
}

/// Builds a GDT and a TSS with the given stacks, loads them on this CPU and
/// reloads every segment register. The tables are leaked: a CPU's GDT lives as
/// long as the CPU.
pub(crate) fn install(stacks: TssStacks) {
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[IST_DOUBLE_FAULT as usize] = stacks.double_fault;
    tss.interrupt_stack_table[IST_NMI as usize] = stacks.nmi;
    tss.interrupt_stack_table[IST_MACHINE_CHECK as usize] = stacks.machine_check;
    tss.privilege_stack_table[0] = stacks.privilege0;
    // A raw pointer, not a reference: `rsp0` is rewritten at every switch to a
    // user task (`arch::usermode`), through the address kept in per-CPU data.
    let tss: *mut TaskStateSegment = Box::into_raw(Box::new(tss));
    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    install_tables(gdt, tss);
    crate::smp::percpu::current().tss.store(tss as u64, core::sync::atomic::Ordering::Relaxed);
}

/// Loads `gdt` (filled here) with `tss` on this CPU.
fn install_tables(gdt: &'static mut GlobalDescriptorTable, tss: *const TaskStateSegment) {
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    // SAFETY: `tss` is leaked (lives forever) and only ever written through
    // raw pointers by this CPU (its rsp0), never through a reference.
    let tss_sel = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
    debug_assert_eq!(code, selectors::KERNEL_CODE);
    debug_assert_eq!(data, selectors::KERNEL_DATA);
    debug_assert_eq!(user_data.index(), selectors::USER_DATA.index());
    debug_assert_eq!(user_code.index(), selectors::USER_CODE.index());
    debug_assert_eq!(tss_sel, selectors::TSS);
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which is
    // 'static; the code selector is a 64-bit ring-0 code segment and the data
    // selector a writable data segment, so execution continues unchanged.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(SegmentSelector(0));
        ES::set_reg(SegmentSelector(0));
        load_tss(tss_sel);
    }
}

/// Static IST stacks for the boot CPU until the memory manager can hand out
/// stacks with guard pages (see `mm::stack`).
mod early {
    /// Size of each early IST stack.
    pub(crate) const SIZE: usize = 16 * 1024;

    /// A 16-byte aligned stack in .bss.
    #[repr(C, align(16))]
    pub(crate) struct Stack(pub [u8; SIZE]);
}

static mut EARLY_IST: [early::Stack; 3] = [const { early::Stack([0; early::SIZE]) }; 3];
static mut EARLY_GDT: GlobalDescriptorTable = GlobalDescriptorTable::new();
static EARLY_TSS: spin::Once<TaskStateSegment> = spin::Once::new();

/// Installs the boot CPU's first GDT and TSS, with static IST stacks, so that
/// exceptions during early boot are reported. Called once, before the heap.
pub(crate) fn install_early() {
    let tops = core::array::from_fn::<_, 3, _>(|i| {
        // SAFETY: only the address is taken; the stacks are used by the CPU
        // alone, through the TSS, and nothing else references them.
        let base = unsafe { core::ptr::addr_of!(EARLY_IST[i]) } as u64;
        VirtAddr::new(base + early::SIZE as u64)
    });
    let tss = EARLY_TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        tss.interrupt_stack_table[IST_DOUBLE_FAULT as usize] = tops[0];
        tss.interrupt_stack_table[IST_NMI as usize] = tops[1];
        tss.interrupt_stack_table[IST_MACHINE_CHECK as usize] = tops[2];
        tss
    });
    // SAFETY: called once on the boot CPU before any other CPU runs, so this is
    // the only reference to EARLY_GDT ever created.
    let gdt = unsafe { &mut *core::ptr::addr_of_mut!(EARLY_GDT) };
    install_tables(gdt, tss);
}
