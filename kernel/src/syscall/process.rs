//! Process and thread syscalls: exit, thread_exit, thread_spawn, thread_join,
//! spawn, wait, getpid, gettid, fork.

use super::SysResult;
use crate::arch::idt::TrapFrame;
use crate::mm::layout::USER_MAX;
use crate::mm::uaccess::{self, UserPtr};
use crate::process::{self as proc, current_thread};
use abi::Errno;

/// The longest program name `spawn` accepts.
const MAX_NAME: usize = 64;

fn me() -> Result<alloc::sync::Arc<proc::Thread>, Errno> {
    current_thread().ok_or(Errno::EPERM)
}

/// `exit(status)`: the whole process ends (the status is the low 32 bits).
pub(crate) fn exit(status: u64) -> SysResult {
    me()?.process.request_exit(status as i32);
    Ok(0)
}

/// `thread_exit(status)`.
pub(crate) fn thread_exit(status: u64) -> SysResult {
    me()?.request_exit(status as i32);
    Ok(0)
}

/// `thread_spawn(entry, stack_top, arg, cpu)`: entry and stack must be user
/// addresses (EFAULT), the CPU online (EINVAL).
pub(crate) fn thread_spawn(entry: u64, stack_top: u64, arg: u64, cpu: u64) -> SysResult {
    uaccess::check_range(UserPtr(entry), 1)?;
    if stack_top > USER_MAX || uaccess::check_range(UserPtr(stack_top.wrapping_sub(8)), 8).is_err() {
        return Err(Errno::EFAULT);
    }
    let cpu = usize::try_from(cpu).map_err(|_| Errno::EINVAL)?;
    proc::spawn_thread(entry, stack_top, arg, cpu).map(|t| t as usize)
}

/// `thread_join(tid)`.
pub(crate) fn thread_join(tid: u64) -> SysResult {
    proc::join_thread(tid).map(|s| s as u32 as usize)
}

/// `spawn(name_ptr, name_len, cpu)`.
pub(crate) fn spawn(name_ptr: u64, name_len: u64, cpu: u64) -> SysResult {
    let len = usize::try_from(name_len).map_err(|_| Errno::EINVAL)?;
    if len > MAX_NAME {
        return Err(Errno::EINVAL);
    }
    let mut buf = [0u8; MAX_NAME];
    uaccess::copy_from_user(&mut buf[..len], UserPtr(name_ptr))?;
    let name = core::str::from_utf8(&buf[..len]).map_err(|_| Errno::EINVAL)?;
    let cpu = usize::try_from(cpu).map_err(|_| Errno::EINVAL)?;
    proc::spawn(name, cpu).map(|p| p as usize)
}

/// `wait(pid)`: the status, as an unsigned 32-bit value.
pub(crate) fn wait(pid: u64) -> SysResult {
    proc::wait(pid).map(|s| s as u32 as usize)
}

/// `getpid()`.
pub(crate) fn getpid() -> SysResult {
    Ok(me()?.process.pid as usize)
}

/// `gettid()`.
pub(crate) fn gettid() -> SysResult {
    Ok(me()?.tid as usize)
}

/// `fork()`: the child runs on the caller's CPU.
pub(crate) fn fork(frame: &TrapFrame) -> SysResult {
    let cpu = me()?.cpu;
    proc::fork(frame, cpu).map(|p| p as usize)
}
