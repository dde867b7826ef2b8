//! User virtual addresses as a type (Linux passes `unsigned long`; the
//! x86_64 crate's `VirtAddr` is the model).
//!
//! A [`UserAddr`] is an address of the user half or its end: at most
//! [`USER_END`], so canonical and never in the kernel half. It is made once,
//! where a raw number comes in (a system call's argument, a test's constant),
//! by [`UserAddr::new`], which refuses anything else; below that point every
//! function takes the type, and arithmetic that would leave the user half is
//! a bug that panics (like integer overflow) instead of wrapping into the
//! kernel half. A [`UserRange`] is `[start, end)` with `start <= end`.
//!
//! What a given call accepts beyond that (page alignment, the null guard
//! below `MMAP_MIN`, the last page below `USER_END`) is the call's own rule
//! and is checked where Linux checks it (`mm::mmap`'s range check, `uaccess`'s
//! access_ok).

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

use super::layout::USER_END;
use super::paging::PageSize;

/// An address in the user half, or its end ([`USER_END`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UserAddr(u64);

impl UserAddr {
    /// The lowest address.
    pub const ZERO: UserAddr = UserAddr(0);
    /// The end of the user half (exclusive).
    pub const END: UserAddr = UserAddr(USER_END);

    /// `addr` if it is in the user half or its end, else `None`.
    pub const fn new(addr: u64) -> Option<UserAddr> {
        if addr <= USER_END { Some(UserAddr(addr)) } else { None }
    }

    /// `addr` for a constant known to be in the user half; panics (at
    /// compile time in a `const`) otherwise.
    pub const fn from_const(addr: u64) -> UserAddr {
        assert!(addr <= USER_END, "not a user address");
        UserAddr(addr)
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The start of the `size` page that holds this address.
    pub const fn align_down(self, size: PageSize) -> UserAddr {
        UserAddr(self.0 & !(size.bytes() - 1))
    }

    /// The next `size` boundary at or above this address, if it is still in
    /// the user half (or its end).
    pub const fn align_up(self, size: PageSize) -> Option<UserAddr> {
        match self.0.checked_next_multiple_of(size.bytes()) {
            Some(a) => UserAddr::new(a),
            None => None,
        }
    }

    /// Whether the address is on a `size` boundary.
    pub const fn is_aligned(self, size: PageSize) -> bool {
        self.0 & (size.bytes() - 1) == 0
    }

    /// The offset of the address inside its `size` page.
    pub const fn page_offset(self, size: PageSize) -> u64 {
        self.0 & (size.bytes() - 1)
    }

    /// The address `bytes` further on, if it is still in the user half (or
    /// its end).
    pub const fn checked_add(self, bytes: u64) -> Option<UserAddr> {
        match self.0.checked_add(bytes) {
            Some(a) => UserAddr::new(a),
            None => None,
        }
    }

    /// The end of the `entry_size` block (a power of two) that holds this
    /// address, or `end` if that comes first (Linux pgd_addr_end() and
    /// friends, `end` exclusive; never past `end`).
    #[inline]
    pub const fn block_end(self, entry_size: u64, end: UserAddr) -> UserAddr {
        // No wrap: `self.0 <= USER_END` (2^47) and page-table blocks are at
        // most 512 GiB.
        let boundary = (self.0 & !(entry_size - 1)).wrapping_add(entry_size);
        if boundary < end.0 { UserAddr(boundary) } else { end }
    }

    /// The address `bytes` back, if that is not below 0.
    pub const fn checked_sub(self, bytes: u64) -> Option<UserAddr> {
        match self.0.checked_sub(bytes) {
            Some(a) => Some(UserAddr(a)),
            None => None,
        }
    }
}

/// `addr + bytes`; leaving the user half is a bug (it panics, as integer
/// overflow does). One compare, as an overflow-checked add: walkers step
/// page by page with it (GUP-fast's pte loop under TCG felt a second one).
impl Add<u64> for UserAddr {
    type Output = UserAddr;
    #[inline]
    fn add(self, bytes: u64) -> UserAddr {
        // `self.0 <= USER_END`, so the difference does not wrap, and a sum
        // that passes the check neither wraps nor leaves the user half.
        assert!(bytes <= USER_END.wrapping_sub(self.0), "user address arithmetic left the user half");
        UserAddr(self.0.wrapping_add(bytes))
    }
}

impl AddAssign<u64> for UserAddr {
    fn add_assign(&mut self, bytes: u64) {
        *self = *self + bytes;
    }
}

/// `addr - bytes`; going below 0 is a bug (it panics).
impl Sub<u64> for UserAddr {
    type Output = UserAddr;
    fn sub(self, bytes: u64) -> UserAddr {
        self.checked_sub(bytes).expect("user address arithmetic went below 0")
    }
}

/// The distance from `base` up to `self`; `base` above `self` is a bug.
impl Sub<UserAddr> for UserAddr {
    type Output = u64;
    fn sub(self, base: UserAddr) -> u64 {
        self.0 - base.0
    }
}

impl fmt::Debug for UserAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserAddr({:#x})", self.0)
    }
}

impl fmt::Display for UserAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for UserAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl From<UserAddr> for x86_64::VirtAddr {
    fn from(a: UserAddr) -> x86_64::VirtAddr {
        x86_64::VirtAddr::new(a.0)
    }
}

/// A range `[start, end)` of user addresses, `start <= end`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserRange {
    start: UserAddr,
    end: UserAddr,
}

impl UserRange {
    /// `[start, end)`, or `None` if `end < start`.
    pub const fn new(start: UserAddr, end: UserAddr) -> Option<UserRange> {
        if start.0 <= end.0 { Some(UserRange { start, end }) } else { None }
    }

    /// `[start, start + len)`, or `None` if that leaves the user half.
    pub const fn from_len(start: UserAddr, len: u64) -> Option<UserRange> {
        match start.checked_add(len) {
            Some(end) => Some(UserRange { start, end }),
            None => None,
        }
    }

    /// The first address.
    pub const fn start(self) -> UserAddr {
        self.start
    }

    /// One past the last address.
    pub const fn end(self) -> UserAddr {
        self.end
    }

    /// The length in bytes.
    pub const fn len(self) -> u64 {
        self.end.0 - self.start.0
    }

    /// Whether the range is empty.
    pub const fn is_empty(self) -> bool {
        self.start.0 == self.end.0
    }

    /// Whether `addr` is inside.
    pub const fn contains(self, addr: UserAddr) -> bool {
        self.start.0 <= addr.0 && addr.0 < self.end.0
    }

    /// The start of every `size` page the range touches, in order (the first
    /// is `start` aligned down).
    pub fn pages(self, size: PageSize) -> impl Iterator<Item = UserAddr> {
        let first = self.start.align_down(size).0;
        (first..self.end.0).step_by(size.bytes() as usize).map(UserAddr)
    }

    /// `start`, `start + bytes`, ... while below `end`.
    pub fn step(self, bytes: u64) -> impl Iterator<Item = UserAddr> {
        (self.start.0..self.end.0).step_by(bytes as usize).map(UserAddr)
    }
}

impl fmt::Debug for UserRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

impl fmt::Display for UserRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
