//! Page faults at user addresses: the memory manager's chance to resolve them
//! (demand paging, copy-on-write) before the faulting context is killed (user
//! mode) or fixed up (uaccess). The memory-management work replaces the body
//! of [`handle`] with the real fault handler (VMAs, demand paging, COW); until
//! then every user address is either mapped at load time or not at all.

use x86_64::VirtAddr;

/// What kind of access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
}

/// A faulting access, decoded from the page-fault error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Read, write or fetch.
    pub kind: AccessKind,
    /// From user mode (false: the kernel, in a uaccess copy).
    pub user: bool,
    /// The page was present (a protection fault, not a missing page).
    pub present: bool,
}

impl Access {
    /// Decodes a page-fault error code (Intel SDM vol. 3, 4.7).
    pub fn from_error_code(code: u64) -> Access {
        let kind = if code & (1 << 4) != 0 {
            AccessKind::Exec
        } else if code & (1 << 1) != 0 {
            AccessKind::Write
        } else {
            AccessKind::Read
        };
        Access { kind, user: code & (1 << 2) != 0, present: code & 1 != 0 }
    }
}

/// Why a fault could not be resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// Nothing is (or may be) mapped at the address.
    NotMapped,
    /// Mapped, but the access is not allowed (write to read-only, fetch from NX).
    Protection,
    /// Resolving it needed memory that was not there.
    OutOfMemory,
}

impl FaultError {
    /// Words for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultError::NotMapped => "not mapped",
            FaultError::Protection => "protection violation",
            FaultError::OutOfMemory => "out of memory",
        }
    }
}

/// Tries to resolve a fault at user address `addr` in the current address
/// space. Called with interrupts enabled (it may sleep), from the page-fault
/// handler for user-mode faults and for kernel faults inside uaccess copies.
pub fn handle(addr: VirtAddr, access: Access) -> Result<(), FaultError> {
    let _ = addr;
    // Everything a process may touch is mapped when it is loaded: a fault is
    // an access to an address the process does not have, or a protection
    // violation on one it has.
    if access.present { Err(FaultError::Protection) } else { Err(FaultError::NotMapped) }
}
