//! Direct I/O syscalls: `dio_read(buf, len, dev_off_or_seq, flags)` and
//! `dio_write(buf, len, dev_off, flags)` (see `abi::dio` and
//! `crate::dma::dio`). Unknown flags are EINVAL, never ignored.

use super::SysResult;
use crate::dma::{self, DioOp};
use abi::Errno;
use abi::dio::{PATTERN, READ_FLAGS};


/// `dio_read(buf, len, arg, flags)`: `arg` is the device offset, or the
/// sequence number with `PATTERN`. Returns `len`.
pub(crate) fn dio_read(buf: u64, len: u64, arg: u64, flags: u64) -> SysResult {
    if flags & !READ_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let op = if flags & PATTERN != 0 { DioOp::ReadPattern { seq: arg } } else { DioOp::Read { dev_off: arg } };
    dma::direct_io(&*super::current_mm()?, user_buf(buf)?, len, op)
}

/// `dio_write(buf, len, dev_off, flags)`: `flags` must be 0. Returns `len`.
pub(crate) fn dio_write(buf: u64, len: u64, dev_off: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    dma::direct_io(&*super::current_mm()?, user_buf(buf)?, len, DioOp::Write { dev_off })
}

/// The buffer address: beyond the user half is EFAULT (Linux's access_ok()
/// on the I/O vector comes before the direct-I/O alignment checks).
fn user_buf(buf: u64) -> Result<crate::mm::UserAddr, Errno> {
    crate::mm::UserAddr::new(buf).ok_or(Errno::EFAULT)
}
