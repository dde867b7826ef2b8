//! Control registers, interrupt state and CPU feature switches.
//!
//! Thin, safe wrappers over privileged instructions for the rest of the kernel.
//! The interrupt-state helpers are the primitive that later interrupts-off guards
//! (the GUP-fast requirement) are built on.

use core::arch::asm;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

/// Enables no-execute pages (EFER.NXE), write protection in ring 0 (CR0.WP, so the
/// kernel faults on read-only pages too, as Linux) and global pages (CR4.PGE).
pub(crate) fn enable_protection_features() {
    // SAFETY: setting NXE only makes bit 63 of page-table entries meaningful;
    // the bootloader's and our tables never set it on pages we execute.
    unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    // SAFETY: WP makes ring 0 honour read-only mappings; the kernel never writes
    // through a read-only mapping on purpose (a bug would now fault: the point).
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) };
    // SAFETY: PGE lets global entries survive CR3 writes; only kernel-half
    // mappings are marked global, and they are identical in every address space.
    unsafe { Cr4::update(|f| f.insert(Cr4Flags::PAGE_GLOBAL)) };
}

/// The supervisor protections this CPU runs with (see [`enable_smep_smap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SupervisorProtection {
    /// CR4.SMEP: ring 0 never executes a user page.
    pub(crate) smep: bool,
    /// CR4.SMAP: ring 0 touches a user page only inside `arch::uaccess`.
    pub(crate) smap: bool,
}

/// Turns on SMEP and SMAP where the CPU offers them (CPUID leaf 7, EBX bits 7
/// and 20), as Linux does, and returns which are on. Called on every CPU once it
/// runs on the kernel's tables (the bootloader's may mark kernel pages user).
pub(crate) fn enable_smep_smap() -> SupervisorProtection {
    // Leaf 0 gives the highest leaf, so leaf 7 is read only where it exists.
    let ebx =
        if core::arch::x86_64::__cpuid(0).eax >= 7 { core::arch::x86_64::__cpuid_count(7, 0).ebx } else { 0 };
    let offered = SupervisorProtection { smep: ebx & (1 << 7) != 0, smap: ebx & (1 << 20) != 0 };
    let mut flags = Cr4Flags::empty();
    if offered.smep {
        flags |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if offered.smap {
        // Before CR4.SMAP: the copy and the entries must use stac/clac as soon
        // as a user page can be touched (none is loaded before boot ends).
        super::uaccess::set_smap_on();
        flags |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    // SAFETY: the kernel's tables never mark kernel pages user-accessible (only
    // user-half entries carry the user bit), so kernel code stays executable
    // and kernel data reachable; user memory is reached only by the uaccess
    // copy, which opens the window with stac.
    unsafe { Cr4::update(|f| f.insert(flags)) };
    offered
}

/// Current value of CR2 (the address of the last page fault).
pub(crate) fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Current value of CR3 (the page-table root and flags).
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Loads `root` into CR3 (no PCID: the write drops every non-global TLB entry
/// of this CPU).
///
/// # Safety
/// `root` must be a page-table root whose kernel half maps the code, stack and
/// data this CPU uses now (every address space shares the kernel's), and it
/// must stay a page table for as long as it is loaded.
pub(crate) unsafe fn load_page_table_root(root: PhysAddr) {
    // SAFETY: as the caller guarantees.
    unsafe { Cr3::write(PhysFrame::containing_address(root), Cr3Flags::empty()) };
}

/// Loads `root` into CR3, switches to the stack `stack_top` and calls `next`,
/// never to return (the old stack may not be mapped under `root`). rbp is
/// cleared so backtraces end at `next`.
///
/// # Safety
/// `root` must map this code at its current address, `stack_top` (writable,
/// 16-byte aligned, unused) and everything `next` uses.
pub(crate) unsafe fn switch_root_and_stack(root: PhysAddr, stack_top: VirtAddr, next: extern "C" fn() -> !) -> ! {
    // SAFETY: as the caller guarantees.
    unsafe {
        asm!(
            "mov cr3, {root}",
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "call {next}",
            "ud2",
            root = in(reg) root.as_u64(),
            stack = in(reg) stack_top.as_u64(),
            next = in(reg) next,
            options(noreturn)
        )
    }
}

/// Invalidates this CPU's TLB entry for the page containing `va` (`invlpg`;
/// for a huge page, any address inside it drops the whole translation).
#[inline]
pub(crate) fn flush_tlb_page(va: VirtAddr) {
    x86_64::instructions::tlb::flush(va);
}

/// Drops every non-global translation of this CPU (a CR3 reload).
pub(crate) fn flush_tlb_nonglobal() {
    x86_64::instructions::tlb::flush_all();
}

/// Drops every translation of this CPU, global ones included (Linux:
/// native_flush_tlb_global() without INVPCID: toggle CR4.PGE). NMI-safe: an
/// NMI that toggles in between restores the value it read, which keeps PGE as
/// the interrupted toggle will set it.
pub(crate) fn flush_tlb_global() {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let cr4 = Cr4::read();
        if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
            // SAFETY: clearing and restoring PGE only flushes the TLB
            // (SDM 4.10.4.1); paging stays on and nothing else changes.
            unsafe {
                Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
                Cr4::write(cr4);
            }
        } else {
            flush_tlb_nonglobal();
        }
    });
}

/// Current value of CR0.
pub fn cr0() -> u64 {
    Cr0::read_raw()
}

/// Current value of CR4.
pub fn cr4() -> u64 {
    Cr4::read_raw()
}

/// Whether maskable interrupts are enabled (RFLAGS.IF) on this CPU.
pub fn interrupts_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// Disables maskable interrupts on this CPU.
pub(crate) fn disable_interrupts() {
    x86_64::instructions::interrupts::disable();
}

/// Enables maskable interrupts on this CPU.
pub(crate) fn enable_interrupts() {
    x86_64::instructions::interrupts::enable();
}

/// Halts this CPU forever with interrupts disabled (NMIs still wake it, so loop).
pub(crate) fn halt_forever() -> ! {
    disable_interrupts();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Reads the frame pointer of the caller's frame.
#[inline(always)]
pub(crate) fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// Reads the stack pointer.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reading rsp has no side effects.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}
