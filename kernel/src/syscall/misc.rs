//! Console, time and scheduling syscalls: write, yield, sleep_ns,
//! bench_result (getcpu and clock_ns are one-liners in the dispatcher).

use super::SysResult;
use crate::mm::uaccess::{self, UserPtr};
use crate::process::{current_thread, wait_interruptible};
use crate::time::Deadline;
use abi::Errno;

/// The most `write` takes in one call.
const MAX_WRITE: usize = 64 * 1024;

/// `write(buf, len)`: to the console as a log line naming the process (so a
/// program cannot forge the host protocol's lines). The whole buffer is
/// copied before anything is printed, so a bad one prints nothing and
/// returns EFAULT.
pub(crate) fn write(ptr: u64, len: u64) -> SysResult {
    let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
    if len > MAX_WRITE {
        return Err(Errno::EINVAL);
    }
    let mut buf = alloc::vec![0u8; len];
    uaccess::copy_from_user(&mut buf, UserPtr(ptr))?;
    let text = alloc::string::String::from_utf8_lossy(&buf);
    let pid = current_thread().map_or(0, |t| t.process.pid);
    log::info!("[pid {pid}] {}", text.strip_suffix('\n').unwrap_or(&text));
    Ok(len)
}

/// `yield()`.
pub(crate) fn yield_now() -> SysResult {
    crate::sched::yield_now();
    Ok(0)
}

/// `sleep_ns(ns)`: EINTR if the process is told to exit meanwhile.
pub(crate) fn sleep_ns(ns: u64) -> SysResult {
    let me = current_thread().ok_or(Errno::EPERM)?;
    let deadline = Deadline::after_ns(ns);
    wait_interruptible(&me.process, || deadline.expired())?;
    Ok(0)
}

/// The longest line `bench_result` takes.
const MAX_RESULT: usize = 512;

/// `bench_result(buf, len)`: a benchmark program's result line, printed as
/// `RESULT <buf>` after `bench::user::report` checked its form (EINVAL for a
/// line that is not `<bench> key=value ...`).
pub(crate) fn bench_result(ptr: u64, len: u64) -> SysResult {
    let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
    if len == 0 || len > MAX_RESULT {
        return Err(Errno::EINVAL);
    }
    let mut buf = [0u8; MAX_RESULT];
    uaccess::copy_from_user(&mut buf[..len], UserPtr(ptr))?;
    let text = core::str::from_utf8(&buf[..len]).map_err(|_| Errno::EINVAL)?;
    crate::bench::user::report(text).map_err(|_| Errno::EINVAL)?;
    Ok(len)
}
