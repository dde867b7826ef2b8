//! The instructions of kernel access to user memory: one `rep movsb` copy
//! inside a SMAP window, and the exception table that turns an unresolvable
//! fault on it into a short copy. The policy (range checks, demand paging on a
//! fault, EFAULT) is `mm::uaccess`'s.
//!
//! **SMAP.** With CR4.SMAP on ([`super::cpu::enable_protection_features`]), a
//! ring-0 access to a user page faults unless RFLAGS.AC is set. The copy sets
//! it with `stac` right before the `rep movsb` and clears it with `clac` right
//! after (also on the fixup path), so user memory is reachable only there
//! (Linux: __uaccess_begin/__uaccess_end). The CPU does not clear AC on an
//! exception or interrupt, so every entry in `idt` runs `clac` first and the
//! `iretq` restores the interrupted AC: a fault on the copy is handled (and may
//! sleep) with the window closed. `syscall` clears AC through IA32_FMASK.
//! `stac`/`clac` are #UD without SMAP, so each is skipped when [`smap_on`] is
//! false.

use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Whether CR4.SMAP is on (the same on every CPU; read by the assembly too).
pub(super) static UACCESS_SMAP_ON: AtomicBool = AtomicBool::new(false);

/// Records that SMAP is on, so the copy and the entries use `stac`/`clac`.
/// Called by `cpu::enable_protection_features` on the boot CPU, before any
/// other CPU runs.
pub(super) fn set_smap_on() {
    // Relaxed: set before the APs start (their start-up orders it).
    UACCESS_SMAP_ON.store(true, Ordering::Relaxed);
}

/// Whether the kernel runs with SMAP on.
pub(crate) fn smap_on() -> bool {
    UACCESS_SMAP_ON.load(Ordering::Relaxed)
}

global_asm!(
    r#"
    .section .text.uaccess, "ax"
    // rdi = dst, rsi = src, rdx = len; returns the bytes not copied.
    .global uaccess_copy
uaccess_copy:
    mov rcx, rdx
    cmp byte ptr [rip + {smap}], 0
    je uaccess_copy_insn
    stac
uaccess_copy_insn:
    rep movsb
uaccess_copy_fixup:
    // On a fault that cannot be resolved the handler resumes here: rep movsb
    // left rcx at the bytes it did not copy.
    cmp byte ptr [rip + {smap}], 0
    je 1f
    clac
1:
    mov rax, rcx
    ret

    .section .rodata.uaccess_extable, "a"
    .balign 8
    .global uaccess_extable
uaccess_extable:
    .quad uaccess_copy_insn, uaccess_copy_fixup
    .global uaccess_extable_end
uaccess_extable_end:
    .text
    "#,
    smap = sym UACCESS_SMAP_ON,
);

/// One exception-table entry: a faulting instruction and where to resume.
#[repr(C)]
struct ExEntry {
    insn: u64,
    fixup: u64,
}

unsafe extern "C" {
    fn uaccess_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static uaccess_extable: ExEntry;
    static uaccess_extable_end: ExEntry;
}

fn extable() -> &'static [ExEntry] {
    let start = core::ptr::addr_of!(uaccess_extable);
    let end = core::ptr::addr_of!(uaccess_extable_end);
    // SAFETY: the assembly above lays out the entries contiguously between the
    // two symbols, in read-only data that lives forever.
    unsafe { core::slice::from_raw_parts(start, end.offset_from(start) as usize) }
}

/// Where to resume after an unresolvable fault at `rip`, if `rip` is a
/// uaccess instruction.
pub(crate) fn fixup_for(rip: u64) -> Option<u64> {
    extable().iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Copies `len` bytes from `src` to `dst` with user access allowed; returns
/// the bytes not copied (0 on success). A fault on the copy goes to the page
/// fault handler, which resolves it or resumes at the fixup ([`fixup_for`]).
///
/// # Safety
/// One side must be a checked user range (below the kernel half), the other a
/// live kernel buffer of `len` bytes that nothing else accesses meanwhile.
pub(crate) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> usize {
    // SAFETY: as the caller guarantees; faults on the user side are fixed up.
    unsafe { uaccess_copy(dst, src, len) }
}

/// Runs `f` with ring-0 access to user pages allowed: RFLAGS.AC set (`stac`)
/// before, cleared (`clac`) after, when SMAP is on (Linux:
/// user_access_begin()/user_access_end() around unsafe_put_user()). For a
/// run of plain accesses that must not be one call each (a test writer that
/// keeps storing through one TLB entry while a shootdown is on its way).
/// The `stac`/`clac` are compiler barriers: `f`'s accesses stay between them.
///
/// `f` must not sleep or switch tasks (the context switch does not save
/// RFLAGS, so AC would stay set in the next task), and a fault in it is not
/// fixed up: only what is mapped may be touched.
#[inline(always)]
pub(crate) fn with_user_access<R>(f: impl FnOnce() -> R) -> R {
    let smap = smap_on();
    if smap {
        // SAFETY: stac only sets RFLAGS.AC (SMAP is on, so it is no #UD).
        // No `nomem`: a compiler barrier, so f's accesses are not hoisted.
        unsafe { core::arch::asm!("stac", options(nostack)) };
    }
    let r = f();
    if smap {
        // SAFETY: clac only clears RFLAGS.AC; no `nomem`, as above.
        unsafe { core::arch::asm!("clac", options(nostack)) };
    }
    r
}
