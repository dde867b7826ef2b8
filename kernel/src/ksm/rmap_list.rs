//! What ksmd remembers of each page of one address space between two visits:
//! the checksum it saw (Linux's `mm_slot->rmap_list` of `rmap_item`s with
//! their `oldchecksum`).
//!
//! Linux keeps the items in a list sorted by address and walks it in step
//! with the scan (get_next_rmap_item()): the item of the page being scanned
//! is the next one on the list; the items it passes over belong to pages
//! that are no longer scanned (unmapped, no longer mergeable) and are freed
//! on the way. This list does the same with two vectors, so that a visit in
//! the scan's order costs one comparison and one push, not a search:
//! `old[pos..]` holds what the previous pass left for the pages ahead,
//! `new` what this pass recorded so far, both sorted by address. When the
//! pass over the address space ends ([`RmapList::end_pass`]) what `old`
//! still holds is dropped and `new` becomes `old`.
//!
//! Visits out of the scan's order (a page the exploration steered ksmd to,
//! `race::steer`) find or place their item by binary search in whichever
//! vector holds its address, and leave the pass as it was: an item ahead of
//! the scan stays for the scan to reach.
//!
//! Invariants: each vector is sorted by address with no address twice;
//! `new` holds addresses at or below the highest one this pass took in
//! order (the frontier), `old[pos..]` addresses above it.

#![deny(unsafe_code)]

use alloc::vec::Vec;

use crate::mm::UserAddr;

/// Whether a visit follows the scan's order (addresses rising through one
/// pass) or is one out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The next page of the pass.
    InOrder,
    /// A page visited out of the pass's order.
    Steered,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    addr: UserAddr,
    sum: u64,
}

/// The checksums of one address space's pages (see the module docs).
#[derive(Debug, Default)]
pub struct RmapList {
    old: Vec<Item>,
    pos: usize,
    new: Vec<Item>,
    /// The highest address this pass took in order: `new` holds the items
    /// at or below it, `old[pos..]` those above.
    frontier: Option<UserAddr>,
}

impl RmapList {
    /// Nothing remembered.
    pub const fn new() -> RmapList {
        RmapList { old: Vec::new(), pos: 0, new: Vec::new(), frontier: None }
    }

    /// Takes the item of `addr` out of the list: the checksum last recorded
    /// for it, if any. In order, the items of the pages passed over since
    /// the last visit are dropped on the way (Linux get_next_rmap_item()
    /// freeing stale rmap_items).
    pub fn take(&mut self, addr: UserAddr, order: Order) -> Option<u64> {
        if self.frontier.is_none_or(|f| f < addr) {
            if order == Order::Steered {
                let ahead = &self.old[self.pos..];
                let i = ahead.binary_search_by_key(&addr, |i| i.addr).ok()?;
                return Some(self.old.remove(self.pos + i).sum);
            }
            // The pass only moves forward: what lies below `addr` in `old`
            // was not visited by this pass, so it is no longer scanned.
            self.frontier = Some(addr);
            while self.old.get(self.pos).is_some_and(|i| i.addr < addr) {
                self.pos += 1;
            }
            return match self.old.get(self.pos) {
                Some(i) if i.addr == addr => {
                    self.pos += 1;
                    Some(i.sum)
                }
                _ => None,
            };
        }
        let i = self.new.binary_search_by_key(&addr, |i| i.addr).ok()?;
        Some(self.new.remove(i).sum)
    }

    /// Records `sum` for `addr`, whose item was just [`take`](RmapList::take)n
    /// (so the list holds none for it).
    pub fn put(&mut self, addr: UserAddr, sum: u64) {
        let item = Item { addr, sum };
        if self.frontier.is_none_or(|f| f < addr) {
            // Ahead of the scan (a steered visit): the scan takes it there.
            let i = self.pos + self.old[self.pos..].partition_point(|i| i.addr < addr);
            self.old.insert(i, item);
        } else if self.new.last().is_none_or(|l| l.addr < addr) {
            // The page the scan just took: the common case, one push.
            if self.new.is_empty() {
                // A pass records about as many pages as the last one did.
                self.new.reserve(self.old.len());
            }
            self.new.push(item);
        } else {
            let i = self.new.partition_point(|i| i.addr < addr);
            self.new.insert(i, item);
        }
    }

    /// The scan went over the whole address space: what the previous pass
    /// left and this one did not visit is dropped.
    pub fn end_pass(&mut self) {
        self.old = core::mem::take(&mut self.new);
        self.pos = 0;
        self.frontier = None;
    }

    /// Forgets everything (Linux: the rmap_items are freed on unmerge).
    pub fn clear(&mut self) {
        *self = RmapList::new();
    }

    /// How many pages have an item.
    pub fn len(&self) -> usize {
        self.new.len() + self.old.len() - self.pos
    }

    /// Whether no page has an item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checksum recorded for `addr`, without taking it (for tests and
    /// statistics).
    pub fn get(&self, addr: UserAddr) -> Option<u64> {
        let find = |v: &[Item]| v.binary_search_by_key(&addr, |i| i.addr).ok().map(|i| v[i].sum);
        find(&self.new).or_else(|| find(&self.old[self.pos..]))
    }
}
