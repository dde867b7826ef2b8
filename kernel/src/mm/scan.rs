//! The scanners' cursor over registered address spaces (ksmd's
//! ksm_scan, khugepaged's khugepaged_scan in Linux): the address spaces
//! that asked to be scanned, each with the scanner's own data, and where
//! the scan stands (which address space, which address in it).
//!
//! Invariants: an address space is listed once; the cursor holds it weakly
//! (a scan never keeps an exited process's memory alive), and the ones
//! that are gone are dropped when a pass ends (or by [`MmCursor::retain_live`]).

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use super::addr_space::AddressSpace;
use super::user_addr::UserAddr;

/// Where the cursor stands.
pub enum Position {
    /// At this address space (from [`MmCursor::addr`] on).
    At(Arc<AddressSpace>),
    /// A pass over every address space ended: the cursor is back at the
    /// first, and the ones that are gone were dropped.
    PassEnd,
}

/// The registered address spaces, with `T` each, and the scan position.
pub struct MmCursor<T> {
    slots: Vec<(Weak<AddressSpace>, T)>,
    slot: usize,
    /// The address the scan of the current address space goes on from.
    pub addr: UserAddr,
}

impl<T> MmCursor<T> {
    /// No address space, at the start.
    pub const fn new() -> MmCursor<T> {
        MmCursor { slots: Vec::new(), slot: 0, addr: UserAddr::ZERO }
    }

    /// Lists `mm` with `data()` unless it is listed. Whether it was new.
    pub fn register(&mut self, mm: Weak<AddressSpace>, data: impl FnOnce() -> T) -> bool {
        if self.slots.iter().any(|(w, _)| w.ptr_eq(&mm)) {
            return false;
        }
        self.slots.push((mm, data()));
        true
    }

    /// Drops the address spaces that are gone.
    pub fn retain_live(&mut self) {
        self.slots.retain(|(w, _)| w.strong_count() > 0);
        self.slot = self.slot.min(self.slots.len());
    }

    /// Whether no address space is listed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The address space under the cursor (one that is gone is skipped);
    /// past the last one, [`Position::PassEnd`] and the cursor starts over.
    pub fn position(&mut self) -> Position {
        loop {
            if self.slot >= self.slots.len() {
                self.rewind();
                self.retain_live();
                return Position::PassEnd;
            }
            match self.slots[self.slot].0.upgrade() {
                Some(mm) => return Position::At(mm),
                None => self.next_mm(),
            }
        }
    }

    /// On to the next address space, from its start.
    pub fn next_mm(&mut self) {
        self.slot += 1;
        self.addr = UserAddr::ZERO;
    }

    /// Back to the first address space's start.
    pub fn rewind(&mut self) {
        self.slot = 0;
        self.addr = UserAddr::ZERO;
    }

    /// The data of the address space under the cursor (after
    /// [`position`](MmCursor::position) answered `At`).
    pub fn data(&mut self) -> &mut T {
        &mut self.slots[self.slot].1
    }

    /// The listed address space whose id is `id`, if it is alive, and its
    /// slot (for [`visit`](MmCursor::visit)).
    pub fn find(&self, id: u64) -> Option<(usize, Arc<AddressSpace>)> {
        self.slots.iter().enumerate().find_map(|(i, (w, _))| w.upgrade().filter(|m| m.id == id).map(|m| (i, m)))
    }

    /// Puts the cursor on `slot` (from [`find`](MmCursor::find)) at `addr`
    /// for a visit out of the scan's order; [`restore`](MmCursor::restore)
    /// with the answer puts it back where the scan stands.
    pub fn visit(&mut self, slot: usize, addr: UserAddr) -> (usize, UserAddr) {
        let saved = (self.slot, self.addr);
        self.slot = slot.min(self.slots.len().saturating_sub(1));
        self.addr = addr;
        saved
    }

    /// Back to where [`visit`](MmCursor::visit) found the cursor.
    pub fn restore(&mut self, saved: (usize, UserAddr)) {
        (self.slot, self.addr) = saved;
    }

    /// Every listed address space that is alive.
    pub fn live(&self) -> impl Iterator<Item = Arc<AddressSpace>> + '_ {
        self.slots.iter().filter_map(|(w, _)| w.upgrade())
    }

    /// Every listed address space's data.
    pub fn data_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|(_, d)| d)
    }
}

impl<T> Default for MmCursor<T> {
    fn default() -> Self {
        MmCursor::new()
    }
}
