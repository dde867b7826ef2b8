//! Kernel access to user memory (Linux: copy_from_user / copy_to_user /
//! get_user / put_user).
//!
//! Every access checks its range up front (Linux: access_ok): not below
//! `USER_MIN` (null pointers and small offsets from them), no wrap-around, and
//! ending at or below `USER_MAX`, which also keeps it canonical and out of the
//! kernel half. The copy itself is one `rep movsb` in `arch::uaccess`, the only
//! place the kernel opens the SMAP window (`stac`/`clac`); a page fault on it
//! first goes to `mm::fault::handle` (demand paging), and if that fails, the
//! exception table maps the faulting instruction to a fixup that makes the copy
//! return the bytes left, so the caller gets EFAULT instead of a crash. Kernel
//! accesses to user addresses anywhere else are crash reports (with SMAP, even
//! when the page is mapped).
//!
//! The copies run with interrupts enabled (a fault may sleep) and must not be
//! called with a spinlock held.

use crate::arch::idt::TrapFrame;
use crate::arch::{cpu, uaccess};
use crate::mm::layout::{USER_MAX, USER_MIN};
use abi::Errno;

/// A user-space address, as a syscall argument gives it (not yet checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserPtr(pub u64);

impl UserPtr {
    /// The address `bytes` further on (wrapping: the range check catches it).
    pub(crate) fn offset(self, bytes: u64) -> UserPtr {
        UserPtr(self.0.wrapping_add(bytes))
    }
}

/// A bad user address (the caller answers EFAULT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Efault;

impl From<Efault> for Errno {
    fn from(_: Efault) -> Errno {
        Errno::EFAULT
    }
}

/// Plain data that any byte pattern is a valid value of.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self`, and
/// `Self` must have no padding (its bytes are copied to user space).
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: integers: every bit pattern valid, no padding.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
// SAFETY: arrays of Pod are Pod (no padding between elements of these types).
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Checks that `[addr, addr + len)` is a user range (see the module docs).
pub fn check_range(addr: UserPtr, len: usize) -> Result<(), Efault> {
    let end = addr.0.checked_add(len as u64).ok_or(Efault)?;
    if addr.0 < USER_MIN || end > USER_MAX { Err(Efault) } else { Ok(()) }
}

/// The page-fault path for a kernel-mode fault: if it hit a uaccess
/// instruction at a user address, resolve it (demand paging) or redirect the
/// copy to its fixup, and return true. Anything else returns false (a crash).
pub(crate) fn handle_kernel_fault(frame: &mut TrapFrame, addr: u64) -> bool {
    let Some(fixup) = uaccess::fixup_for(frame.rip) else { return false };
    if addr >= USER_MAX {
        return false;
    }
    let access = super::fault::Access::from_error_code(frame.error_code);
    let interrupts_were_on = frame.rflags & 0x200 != 0;
    if interrupts_were_on {
        cpu::enable_interrupts();
    }
    let resolved = super::fault::handle(x86_64::VirtAddr::new(addr), access);
    cpu::disable_interrupts();
    if resolved.is_err() {
        frame.rip = fixup;
    }
    true
}

fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), Efault> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: the caller checked the user side; the kernel side is a live
    // buffer of `len` bytes; faults on the user side are fixed up.
    let left = unsafe { uaccess::copy(dst, src, len) };
    if left == 0 { Ok(()) } else { Err(Efault) }
}

/// Copies `dst.len()` bytes from user address `src`.
pub fn copy_from_user(dst: &mut [u8], src: UserPtr) -> Result<(), Efault> {
    check_range(src, dst.len())?;
    copy(dst.as_mut_ptr(), src.0 as *const u8, dst.len())
}

/// Copies `src` to user address `dst`.
pub fn copy_to_user(dst: UserPtr, src: &[u8]) -> Result<(), Efault> {
    check_range(dst, src.len())?;
    copy(dst.0 as *mut u8, src.as_ptr(), src.len())
}

/// Reads a `T` from user address `src`.
pub fn read_user<T: Pod>(src: UserPtr) -> Result<T, Efault> {
    let mut value = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the slice covers exactly the (uninitialised) value's bytes; a
    // u8 slice over them is only written.
    let bytes = unsafe { core::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
    copy_from_user(bytes, src)?;
    // SAFETY: fully written by the copy, and every bit pattern is a valid T (Pod).
    Ok(unsafe { value.assume_init() })
}

/// Writes `value` to user address `dst`.
pub fn write_user<T: Pod>(dst: UserPtr, value: &T) -> Result<(), Efault> {
    // SAFETY: T is Pod: no padding, so all its bytes are initialised.
    let bytes = unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
    copy_to_user(dst, bytes)
}

/// Runs `f` inside a user-access window (see `arch::uaccess::with_user_access`):
/// for a run of raw accesses to mapped user memory that must not be a call
/// each. No range check and no fixup: `f` touches only what the caller
/// knows is mapped, and must not sleep.
#[inline(always)]
pub fn with_user_access<R>(f: impl FnOnce() -> R) -> R {
    uaccess::with_user_access(f)
}
