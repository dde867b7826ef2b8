//! Frame-pointer backtraces.
//!
//! Kernels are built with `-C force-frame-pointers=yes`, so every frame starts
//! with `push rbp; mov rbp, rsp`: `[rbp]` is the caller's rbp and `[rbp+8]` the
//! return address. The walk stops at a zero rbp (the boot code clears it), at a
//! misaligned or unmapped one, or after [`MAX_FRAMES`]; each word is checked to be
//! mapped before it is read, so a corrupt chain ends the backtrace, not the
//! report.

use crate::debug::symbols::Symbolized;
use crate::mm;

/// The deepest backtrace printed.
pub(crate) const MAX_FRAMES: usize = 48;

/// Prints the backtrace of an interrupted context (`rip`, `rbp` from its trap
/// frame), one line per frame, through `out`.
pub(crate) fn print(rip: u64, rbp: u64, out: &mut dyn FnMut(core::fmt::Arguments)) {
    out(format_args!("  backtrace:\n"));
    out(format_args!("    #0  {}\n", Symbolized(rip)));
    walk(1, rbp, out);
}

/// Prints the backtrace of the caller of this function.
#[inline(never)]
pub(crate) fn print_current(out: &mut dyn FnMut(core::fmt::Arguments)) {
    out(format_args!("  backtrace:\n"));
    walk(0, crate::arch::cpu::frame_pointer(), out);
}

fn walk(first: usize, mut rbp: u64, out: &mut dyn FnMut(core::fmt::Arguments)) {
    // Recursion shows as one return address over and over: print it once and
    // count the repeats, so the frames below it still fit in the report.
    let mut last = 0;
    let mut repeats = 0u64;
    let mut depth = first;
    for _ in 0..4096 {
        if depth >= MAX_FRAMES {
            break;
        }
        if rbp == 0 || rbp % 8 != 0 || rbp < mm::layout::KERNEL_HALF_START {
            break;
        }
        if !mm::paging::is_kernel_readable(rbp) || !mm::paging::is_kernel_readable(rbp + 8) {
            out(format_args!("    (frame pointer {rbp:#x} is not mapped: backtrace ends)\n"));
            break;
        }
        // SAFETY: both words were checked to be mapped just above; the kernel
        // never unmaps its own stacks while running on them.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        if ret == last {
            repeats += 1;
        } else {
            if repeats > 0 {
                out(format_args!("        (the frame above repeats {repeats} more times)\n"));
                repeats = 0;
            }
            // The call site (return address - 1), so the symbol is the caller.
            out(format_args!("    #{depth:<2} {}\n", Symbolized(ret - 1)));
            depth += 1;
            last = ret;
        }
        if next <= rbp {
            break; // stacks grow down: a caller's frame is always higher
        }
        rbp = next;
    }
    if repeats > 0 {
        out(format_args!("        (the frame above repeats {repeats} more times)\n"));
    }
    if depth >= MAX_FRAMES {
        out(format_args!("    ... (more frames)\n"));
    }
}
