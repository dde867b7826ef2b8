//! Pages a process holds across system calls (Linux mm/gup_test.c's
//! `PIN_LONGTERM_TEST_START/READ/STOP`, and the FOLL_GET references a pipe
//! holds after vmsplice): a [`HeldSet`] is the pages of one user range,
//! each a long-term pin (FOLL_PIN | FOLL_LONGTERM, plus FOLL_WRITE if
//! asked) or a plain reference, taken all or nothing; a [`HeldTable`] is a
//! process's sets by handle.
//!
//! Invariants: a set's pins or references live exactly as long as the set
//! (dropping the last `Arc` of it releases them, marking the pages dirty
//! if they were written through); the table is emptied when its process
//! ends (`process::process_finished`), so a process cannot leak a pin by
//! exiting. Reads and writes go to the frames the set holds, whatever the
//! process maps there now: that is what a device or a pipe sees.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Foll, GupError, Grabbed};
use crate::mm::addr_space::AddressSpace;
use crate::mm::frame_io::{self, DevicePage};
use crate::mm::{PAGE_SIZE, UserAddr};
use crate::sync::SpinLock;

/// How a set takes its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// FOLL_PIN | FOLL_LONGTERM (Linux pin_user_pages() in gup_test.c),
    /// plus FOLL_WRITE if `write`; GUP-fast first if `fast`.
    LongtermPin {
        /// FOLL_WRITE.
        write: bool,
        /// pin_user_pages_fast() instead of pin_user_pages().
        fast: bool,
        /// FOLL_FORCE (with `write`: a /proc/PID/mem-style write).
        force: bool,
    },
    /// FOLL_GET without FOLL_WRITE (vmsplice: get_user_pages_fast()); no
    /// unshare of a COW-shared page, as Linux's FOLL_GET.
    ReadRef {
        /// GUP-fast first.
        fast: bool,
    },
}

/// The pages of one range, held.
pub struct HeldSet {
    start: UserAddr,
    hold: Hold,
    pages: Vec<Grabbed>,
    /// Written through ([`HeldSet::write_page`]): the pages are marked
    /// dirty when unpinned (unpin_user_pages_dirty_lock()).
    written: AtomicBool,
}

impl HeldSet {
    /// Takes `nr` pages from `start` of `mm` (the caller's address space:
    /// the fast path walks the current one). All or nothing.
    pub fn take(mm: &AddressSpace, start: UserAddr, nr: usize, hold: Hold) -> Result<HeldSet, GupError> {
        let (flags, fast) = match hold {
            Hold::LongtermPin { write, fast, force } => {
                let w = if write { Foll::WRITE } else { Foll::empty() };
                let f = if force { Foll::FORCE } else { Foll::empty() };
                (Foll::PIN | Foll::LONGTERM | w | f, fast)
            }
            Hold::ReadRef { fast } => (Foll::GET, fast),
        };
        let pages = if fast { super::get_user_pages_fast(start, nr, flags)? } else { super::get_user_pages(mm, start, nr, flags)? };
        Ok(HeldSet { start, hold, pages, written: AtomicBool::new(false) })
    }

    /// The range's first address.
    pub fn start(&self) -> UserAddr {
        self.start
    }

    /// Pages held.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether the set is empty (never: a set holds at least one page).
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// How the pages were taken.
    pub fn hold(&self) -> Hold {
        self.hold
    }

    /// Whether the set may be written through (a FOLL_WRITE pin).
    pub fn writable(&self) -> bool {
        matches!(self.hold, Hold::LongtermPin { write: true, .. })
    }

    /// Copies held page `i` as its frame holds it now into `dst` (one page).
    pub fn read_page(&self, i: usize, dst: &mut [u8; PAGE_SIZE as usize]) {
        frame_io::read_bytes(self.pages[i].page(), 0, dst);
    }

    /// Writes `src` into held page `i`'s frame, as a device writes through
    /// its pin (`DevicePage`: the frame must be pinned). `false` if the set
    /// is not a writable pin (nothing written).
    pub fn write_page(&self, i: usize, src: &[u8; PAGE_SIZE as usize]) -> bool {
        if !self.writable() {
            return false;
        }
        let Ok(dev) = DevicePage::pinned(self.pages[i].phys()) else { return false };
        // Relaxed: the dirty mark is read when the set is dropped, after
        // every writer returned (the table's lock and the Arc order it).
        self.written.store(true, Ordering::Relaxed);
        for (w, chunk) in src.chunks_exact(8).enumerate() {
            dev.write_word(w * 8, u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        true
    }
}

impl Drop for HeldSet {
    fn drop(&mut self) {
        let pages = core::mem::take(&mut self.pages);
        match self.hold {
            Hold::LongtermPin { .. } => super::unpin_user_pages_dirty_lock(pages, self.written.load(Ordering::Relaxed)),
            Hold::ReadRef { .. } => drop(pages),
        }
    }
}

/// Why a set could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// A process's held sets, by handle (1, 2, ...; never reused while the
/// process lives).
pub struct HeldTable {
    sets: SpinLock<BTreeMap<u64, Arc<HeldSet>>>,
    next: AtomicU64,
    max: usize,
}

impl HeldTable {
    /// An empty table taking at most `max` sets.
    pub const fn new(max: usize) -> HeldTable {
        HeldTable { sets: SpinLock::new("held gup sets", BTreeMap::new()), next: AtomicU64::new(1), max }
    }

    /// Adds `set`; its handle. A full table refuses (the set is dropped:
    /// its pages are released).
    pub fn insert(&self, set: HeldSet) -> Result<u64, TableFull> {
        let mut sets = self.sets.lock();
        if sets.len() >= self.max {
            drop(sets);
            drop(set);
            return Err(TableFull);
        }
        // Relaxed: handles only need to be unique, the table lock orders the rest.
        let h = self.next.fetch_add(1, Ordering::Relaxed);
        sets.insert(h, Arc::new(set));
        Ok(h)
    }

    /// The set `handle` names (kept alive by the returned `Arc` even if
    /// another thread removes it meanwhile).
    pub fn get(&self, handle: u64) -> Option<Arc<HeldSet>> {
        self.sets.lock().get(&handle).cloned()
    }

    /// Removes set `handle`; its pages are released once no reader holds
    /// it. Whether it existed.
    pub fn remove(&self, handle: u64) -> bool {
        let set = self.sets.lock().remove(&handle);
        set.is_some()
    }

    /// Sets held now.
    pub fn count(&self) -> usize {
        self.sets.lock().len()
    }

    /// Removes every set (the process ended); their pages are released
    /// outside the lock.
    pub fn release_all(&self) {
        let sets = core::mem::take(&mut *self.sets.lock());
        drop(sets);
    }
}
