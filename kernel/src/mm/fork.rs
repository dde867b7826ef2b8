//! Copying an address space for `fork`. The memory-management work implements
//! the copy (VMAs, copy-on-write page tables, the anon-exclusive rules that make
//! GUP pins survive a fork); until then [`fork_mm`] refuses with ENOMEM, so the
//! `fork` syscall's plumbing (`syscall::process`) is in place and returns an
//! error rather than a half-copied process.

use alloc::sync::Arc;

use super::addr_space::AddressSpace;
use abi::Errno;

/// A copy of `parent` for a child process.
pub fn fork_mm(parent: &AddressSpace) -> Result<Arc<AddressSpace>, Errno> {
    let _ = parent;
    Err(Errno::ENOMEM)
}
