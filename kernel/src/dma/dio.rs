//! Direct I/O on user memory (Linux: iomap/blockdev direct I/O,
//! `__blkdev_direct_IO_simple()` -> `bio_iov_iter_get_pages()` ->
//! pin_user_pages_fast()): validate, pin the user pages (FOLL_PIN, plus
//! FOLL_WRITE when the device writes memory) with GUP-fast, which falls to
//! the slow path for what it cannot take, submit the physical segments to
//! the engine, wait for the completion, mark the pages dirty after a read
//! (unpin_user_pages_dirty_lock()), unpin.
//!
//! The pins are what keeps the frames alive while the device writes them,
//! even if the process unmaps the buffer or KSM/khugepaged try to replace
//! the pages meanwhile: that is the property the race scenarios test.

use alloc::vec::Vec;

use super::{DeviceSide, Direction, DmaError, DmaRequest, Segment};
use crate::gup::{self, Foll, Grabbed};
use crate::mm::PAGE_SIZE;
use crate::mm::addr_space::AddressSpace;
use crate::mm::page::PinnedPage;
use crate::mm::UserAddr;
use abi::Errno;
use abi::dio::{BLOCK, DEVICE_SIZE, MAX_LEN};

/// What a direct I/O does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DioOp {
    /// Device store at `dev_off` into the buffer.
    Read {
        /// Byte offset on the device (block-aligned).
        dev_off: u64,
    },
    /// The pattern of sequence number `seq` into the buffer.
    ReadPattern {
        /// The sequence number (see `abi::dio::pattern_word`).
        seq: u64,
    },
    /// The buffer to the device store at `dev_off`.
    Write {
        /// Byte offset on the device (block-aligned).
        dev_off: u64,
    },
}

fn dma_errno(e: DmaError) -> Errno {
    match e {
        DmaError::Invalid(why) => {
            log::warn!("dio: engine refused a request: {why}");
            Errno::EINVAL
        }
        DmaError::Timeout { .. } => Errno::ETIMEDOUT,
        DmaError::Unavailable(why) => {
            log::warn!("dio: {why}");
            Errno::ENOMEM
        }
    }
}

/// Checks the arguments (Linux blkdev_dio_unaligned(): EINVAL): `buf`,
/// `len` and the device offset block-aligned, `0 < len <= MAX_LEN`, the
/// device range inside the device. Pointer problems are GUP's (EFAULT).
fn check(buf: UserAddr, len: u64, op: DioOp) -> Result<(), Errno> {
    if len == 0 || len > MAX_LEN || !len.is_multiple_of(BLOCK) || !buf.as_u64().is_multiple_of(BLOCK) {
        return Err(Errno::EINVAL);
    }
    if let DioOp::Read { dev_off } | DioOp::Write { dev_off } = op
        && (!dev_off.is_multiple_of(BLOCK) || dev_off.checked_add(len).is_none_or(|e| e > DEVICE_SIZE))
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Physical segments of the pinned pages, merging physically contiguous
/// neighbours (a THP gives one 2 MiB segment).
fn segments(pins: &[PinnedPage]) -> Vec<Segment> {
    let mut segs: Vec<Segment> = Vec::new();
    for p in pins {
        match segs.last_mut() {
            Some(s) if s.phys + s.len == p.phys() => s.len += PAGE_SIZE,
            _ => segs.push(Segment { phys: p.phys(), len: PAGE_SIZE }),
        }
    }
    segs
}

/// Direct I/O of `len` bytes at user address `buf` in `mm`, which must be
/// the calling task's address space (GUP-fast walks only the current one, as
/// Linux's does); returns `len`. `after_pin` runs once the pages are pinned
/// and before the request is submitted (scenarios record the pinned frames
/// there; tests unmap the buffer there).
///
/// Errors: EINVAL for misalignment, a bad length or device range, or `mm`
/// not being the current address space; EFAULT for an address that is not
/// mapped with the access the I/O needs; ENOMEM; ETIMEDOUT if the engine
/// never started the transfer (nothing was written).
pub fn direct_io_with(
    mm: &AddressSpace,
    buf: UserAddr,
    len: u64,
    op: DioOp,
    after_pin: impl FnOnce(&[PinnedPage]),
) -> Result<usize, Errno> {
    check(buf, len, op)?;
    let current = crate::mm::fault::current_mm();
    if !current.as_deref().is_some_and(|c| core::ptr::eq(c, mm)) {
        log::warn!("dio: the address space is not the calling task's");
        return Err(Errno::EINVAL);
    }
    let (dir, device) = match op {
        DioOp::Read { dev_off } => (Direction::ToMemory, DeviceSide::Store { offset: dev_off }),
        DioOp::ReadPattern { seq } => (Direction::ToMemory, DeviceSide::Pattern { seq }),
        DioOp::Write { dev_off } => (Direction::FromMemory, DeviceSide::Store { offset: dev_off }),
    };
    // The device writes memory on a read: the pin must break COW (FOLL_WRITE).
    let flags = if dir == Direction::ToMemory { Foll::PIN | Foll::WRITE } else { Foll::PIN };
    let grabbed = gup::get_user_pages_fast(buf, (len / PAGE_SIZE) as usize, flags).map_err(Errno::from)?;
    let pins: Vec<PinnedPage> = grabbed
        .into_iter()
        .map(|g| match g {
            Grabbed::Pin(p) => p,
            Grabbed::Ref(_) => unreachable!("FOLL_PIN gave a plain reference"),
        })
        .collect();
    after_pin(&pins);
    let req = DmaRequest { dir, device, segments: segments(&pins) };
    let ticket = super::engine().submit(req).map_err(dma_errno)?;
    ticket.wait().map_err(dma_errno)?;
    // Per folio, dirty if the device wrote the pages.
    crate::mm::page::unpin_user_pages_dirty_lock(pins, dir == Direction::ToMemory);
    Ok(len as usize)
}

/// [`direct_io_with`] with nothing run between pin and submit.
pub fn direct_io(mm: &AddressSpace, buf: UserAddr, len: u64, op: DioOp) -> Result<usize, Errno> {
    direct_io_with(mm, buf, len, op, |_| {})
}

/// A pattern read: fills `[buf, buf+len)` of the current address space `mm`
/// with `abi::dio::pattern_word(seq, offset)` by DMA into the pinned pages.
/// The scenario entry point for controls.md's "DMA loss": afterwards, any
/// word of the buffer (read through the process's mapping) that differs
/// from the pattern is one lost DMA write.
pub fn direct_read(mm: &AddressSpace, buf: UserAddr, len: u64, seq: u64) -> Result<usize, Errno> {
    direct_io(mm, buf, len, DioOp::ReadPattern { seq })
}

/// Writes `[buf, buf+len)` to the device store at `dev_off`.
pub fn direct_write(mm: &AddressSpace, buf: UserAddr, len: u64, dev_off: u64) -> Result<usize, Errno> {
    direct_io(mm, buf, len, DioOp::Write { dev_off })
}
