//! The free-frame quarantine of the race scenarios: freed folios of any
//! order and freed page-table frames are held back from reuse, poisoned, for
//! a while (the last [`QUARANTINE_FRAMES`] frames freed), and their poison is
//! checked when they leave.
//!
//! What it catches: a late user of a freed frame. A write to a freed frame
//! (a stale TLB entry, a DMA into an unpinned frame) is reported when the
//! frame leaves, instead of silently damaging its next owner; a lockless
//! walker (GUP-fast) that follows a stale entry into a freed table reads the
//! poison ([`super::paging::POISON_ENTRY`]) and reports a use after free,
//! instead of reading a reused frame's contents as page-table entries.
//!
//! Invariants: a held frame is free (no metadata references, flags cleared,
//! not a page table any more) and owned by the quarantine alone; it goes
//! back to the buddy allocator only from here (when pushed out by newer
//! frees, or when the quarantine is turned off, which drains it).

use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::structures::paging::PhysFrame;

use super::page::{self, POISON_BYTE};
use super::{PAGE_SIZE, frame, frame_io};
use crate::sync::SpinLock;

/// Frames held (4 KiB each; a 2 MiB folio counts 512): 8 MiB.
pub(crate) const QUARANTINE_FRAMES: usize = 2048;

/// How a held frame was poisoned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poison {
    /// A folio: every byte [`POISON_BYTE`].
    Folio,
    /// A page table: every entry [`super::paging::POISON_ENTRY`].
    Table,
}

#[derive(Clone, Copy)]
struct Held {
    pfn: u64,
    order: u8,
    poison: Poison,
}

const EMPTY: Held = Held { pfn: 0, order: 0, poison: Poison::Folio };

/// A ring of held blocks, oldest first; `frames` counts their 4 KiB frames.
struct Ring {
    held: [Held; QUARANTINE_FRAMES],
    head: usize,
    len: usize,
    frames: usize,
}

impl Ring {
    fn push(&mut self, h: Held) {
        self.held[(self.head + self.len) % QUARANTINE_FRAMES] = h;
        self.len += 1;
        self.frames += 1 << h.order;
    }

    fn pop(&mut self) -> Option<Held> {
        if self.len == 0 {
            return None;
        }
        let h = self.held[self.head];
        self.head = (self.head + 1) % QUARANTINE_FRAMES;
        self.len -= 1;
        self.frames -= 1 << h.order;
        Some(h)
    }

    /// The oldest block, if one must leave to make room for `order`.
    fn pop_for(&mut self, order: u8) -> Option<Held> {
        let full = self.len == QUARANTINE_FRAMES || self.frames + (1 << order) > QUARANTINE_FRAMES;
        if full { self.pop() } else { None }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static RING: SpinLock<Ring> =
    SpinLock::new("frame quarantine", Ring { held: [EMPTY; QUARANTINE_FRAMES], head: 0, len: 0, frames: 0 });

/// Turns the quarantine on or off. Off releases every held frame (checking
/// its poison first).
pub(crate) fn set(on: bool) {
    ON.store(on, Ordering::Relaxed);
    if !on {
        loop {
            // The lock only for the pop: the release reads the whole block.
            let next = RING.lock().pop();
            match next {
                Some(h) => release(h),
                None => break,
            }
        }
    }
}

/// Whether freed frames are held now.
pub(crate) fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Takes a freed, poisoned block of 2^`order` frames from `pfn` if the
/// quarantine is on (`true`: the caller must not free it), releasing the
/// oldest held blocks to make room.
pub(crate) fn hold(pfn: u64, order: usize, poison: Poison) -> bool {
    if !enabled() || (1usize << order) > QUARANTINE_FRAMES {
        return false;
    }
    let order = order as u8;
    loop {
        // Release the oldest outside the lock (its poison check reads it all).
        let out = {
            let mut r = RING.lock();
            match r.pop_for(order) {
                Some(h) => Some(h),
                None => {
                    r.push(Held { pfn, order, poison });
                    None
                }
            }
        };
        match out {
            Some(h) => release(h),
            None => return true,
        }
    }
}

/// Checks a block's poison and gives it to the buddy allocator.
fn release(h: Held) {
    for i in 0..(1u64 << h.order) {
        let p = page::page(h.pfn + i);
        // The frame is free and the quarantine's; a stale writer may still
        // race with this read (atomic, see frame_io), which is what it looks
        // for.
        let bad = match h.poison {
            Poison::Folio => frame_io::first_byte_not(p, POISON_BYTE),
            Poison::Table => frame_io::first_word_not(p, super::paging::POISON_ENTRY),
        };
        if let Some(off) = bad {
            page::report_uaf(format_args!(
                "freed {} {:#x} was written after its free (offset {off:#x})",
                if h.poison == Poison::Table { "page table" } else { "frame" },
                p.phys()
            ));
            break;
        }
    }
    let pa = x86_64::PhysAddr::new(h.pfn * PAGE_SIZE);
    // SAFETY: a freed block of this order, held by the quarantine until now.
    unsafe { frame::free(PhysFrame::containing_address(pa), h.order as usize) };
}
