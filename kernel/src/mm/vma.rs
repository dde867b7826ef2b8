//! Virtual memory areas (Linux: struct vm_area_struct and the mm's maple
//! tree): the ranges of an address space's user half that may be mapped, with
//! their protection and flags. Private memory: anonymous, or a private
//! mapping of a read-only page-cache file (`FileMap`, program text).
//!
//! Invariants: areas are page-aligned, non-empty, inside the user half and do
//! not overlap. The set is protected by the address space's mmap lock (read to
//! look up, write to change); faults read it, mmap/munmap/mprotect/madvise
//! change it.

use alloc::collections::BTreeMap;
use core::ops::Bound;
use arrayvec::ArrayVec;
use bitflags::bitflags;

use super::layout;
use super::user_addr::{UserAddr, UserRange};
use super::{PAGE_SIZE, PageSize};

bitflags! {
    /// Access an area allows (PROT_*; Linux's values).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Prot: u32 {
        /// Readable.
        const READ = 1;
        /// Writable.
        const WRITE = 2;
        /// Executable.
        const EXEC = 4;
    }
}

bitflags! {
    /// Area flags (Linux VM_*).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct VmFlags: u32 {
        /// KSM may merge its pages (VM_MERGEABLE, madvise(MADV_MERGEABLE)).
        const MERGEABLE = 1 << 0;
        /// Transparent huge pages wanted (VM_HUGEPAGE, madvise(MADV_HUGEPAGE)).
        const HUGEPAGE = 1 << 1;
        /// Transparent huge pages refused (VM_NOHUGEPAGE).
        const NOHUGEPAGE = 1 << 2;
        /// A stack: a fault just below does not grow it (no growsdown here),
        /// the flag is for reports.
        const STACK = 1 << 3;
        /// Not copied into a fork child (VM_DONTCOPY, madvise(MADV_DONTFORK)).
        const DONTCOPY = 1 << 4;
    }
}

/// The file a private file mapping maps (Linux vm_file and vm_pgoff).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMap {
    /// The page-cache file.
    pub id: super::filemap::FileId,
    /// The file page mapped at the area's start.
    pub pgoff: u64,
}

/// One area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    /// First byte (page-aligned).
    pub start: UserAddr,
    /// One past the last byte (page-aligned).
    pub end: UserAddr,
    /// What the pages may be used for.
    pub prot: Prot,
    /// Flags.
    pub flags: VmFlags,
    /// The file mapped privately, or `None` for anonymous memory.
    pub file: Option<FileMap>,
}

impl Vma {
    /// Whether `addr` is inside.
    pub(crate) fn contains(&self, addr: UserAddr) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The area's range.
    pub fn range(&self) -> UserRange {
        UserRange::new(self.start, self.end).expect("an area ends after its start")
    }

    /// The file page mapping `addr` (inside the area) would show, for a file
    /// mapping.
    pub(crate) fn file_page(&self, addr: UserAddr) -> Option<(super::filemap::FileId, u64)> {
        self.file.map(|f| (f.id, f.pgoff + (addr - self.start) / PAGE_SIZE))
    }

    /// The area cut at `addr` (strictly inside) into the part below and the
    /// part from `addr` (Linux split_vma()).
    fn split(&self, addr: UserAddr) -> (Vma, Vma) {
        let file = self.file.map(|f| FileMap { pgoff: f.pgoff + (addr - self.start) / PAGE_SIZE, ..f });
        (Vma { end: addr, ..*self }, Vma { start: addr, file, ..*self })
    }

    /// Whether the 2 MiB-aligned block around `addr` lies inside, so that a
    /// huge pmd may map it.
    pub(crate) fn huge_fits(&self, addr: UserAddr) -> bool {
        let base = addr.align_down(PageSize::Size2M);
        base >= self.start && base.checked_add(super::HUGE_PAGE_SIZE).is_some_and(|end| end <= self.end)
    }
}

/// Whether `next` continues `cur`: it starts where `cur` ends, with the same
/// protection and flags and the same file at the following page (the test
/// of Linux vma_merge()).
fn continues(cur: &Vma, next: &Vma) -> bool {
    next.start == cur.end
        && next.prot == cur.prot
        && next.flags == cur.flags
        && next.file == cur.file.map(|f| FileMap { pgoff: f.pgoff + (cur.end - cur.start) / PAGE_SIZE, ..f })
}

/// Most areas [`VmaSet::modify_walk`] keeps on the stack; a call that meets
/// more is done area by area.
const WALK_AREAS: usize = 16;

/// How [`VmaSet::modify_walk`] ended.
enum Walk {
    /// Changed and merged.
    Done,
    /// A hole lies in the range; nothing changed.
    NotCovered,
    /// More than [`WALK_AREAS`] areas; nothing changed.
    TooMany,
}

/// A short list of areas on the stack (left uninitialised past its length:
/// clearing a few hundred bytes per call cost mprotect 0.3-0.4 us under TCG).
type Areas = ArrayVec<Vma, WALK_AREAS>;

/// Appends `v` to `out`, or extends the last area over it if `v` continues
/// it; `Err` when full.
fn push_merged(out: &mut Areas, v: Vma) -> Result<(), ()> {
    match out.last_mut() {
        Some(c) if continues(c, &v) => {
            c.end = v.end;
            Ok(())
        }
        _ => out.try_push(v).map_err(drop),
    }
}

/// The areas of one address space, ordered by start.
#[derive(Default)]
pub struct VmaSet {
    areas: BTreeMap<UserAddr, Vma>,
}

/// Lowest address mmap hands out without a hint (the first 4 MiB stay free,
/// as Linux's mmap_min_addr keeps address 0 unmappable).
pub const MMAP_MIN: u64 = 0x40_0000;
/// Where mmap starts looking for free space without a hint.
pub(crate) const MMAP_BASE: UserAddr = UserAddr::from_const(0x10_0000_0000);
/// The user half's last usable address + 1 (one page below the canonical
/// hole, as Linux's TASK_SIZE keeps the last page unmapped).
pub const USER_TOP: u64 = layout::USER_END - PAGE_SIZE;

impl VmaSet {
    /// An empty set.
    pub(crate) fn new() -> VmaSet {
        VmaSet { areas: BTreeMap::new() }
    }

    /// The area containing `addr`.
    pub(crate) fn find(&self, addr: UserAddr) -> Option<&Vma> {
        self.areas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// Areas intersecting `[start, end)`, in order.
    pub(crate) fn overlapping(&self, start: UserAddr, end: UserAddr) -> impl Iterator<Item = &Vma> {
        let first = self.areas.range(..=start).next_back().map(|(&k, _)| k).unwrap_or(start);
        self.areas.range(first..end).map(|(_, v)| v).filter(move |v| v.end > start && v.start < end)
    }

    /// Whether any area intersects `[start, end)`.
    pub(crate) fn intersects(&self, start: UserAddr, end: UserAddr) -> bool {
        self.overlapping(start, end).next().is_some()
    }

    /// Whether `[start, end)` is entirely covered by areas (no holes).
    pub(crate) fn covers(&self, start: UserAddr, end: UserAddr) -> bool {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
        }
        at >= end
    }

    /// The gap `[start, end)` lies in: from the end of the last area below
    /// `start` (0 if none) to the start of the first area at or above `end`
    /// ([`layout::USER_END`] if none); Linux's floor and ceiling of
    /// free_pgtables(). The caller removed the areas inside first.
    pub(crate) fn gap_around(&self, start: UserAddr, end: UserAddr) -> (UserAddr, UserAddr) {
        let floor = self.areas.range(..start).next_back().map_or(UserAddr::ZERO, |(_, v)| v.end.min(start));
        let ceiling = self.areas.range(end..).next().map_or(UserAddr::END, |(&k, _)| k);
        (floor, ceiling)
    }

    /// Adds an area. The caller checked that nothing overlaps.
    pub(crate) fn insert(&mut self, vma: Vma) {
        debug_assert!(!self.intersects(vma.start, vma.end), "overlapping vma {vma:?}");
        self.areas.insert(vma.start, vma);
    }

    /// Splits the area containing `addr` so that an area starts at `addr`
    /// (Linux split_vma()).
    pub(crate) fn split_at(&mut self, addr: UserAddr) {
        if let Some(v) = self.find(addr).copied()
            && v.start != addr
        {
            let (low, high) = v.split(addr);
            self.areas.insert(low.start, low);
            self.areas.insert(high.start, high);
        }
    }

    /// Removes `[start, end)` from every area (splitting the ones it cuts).
    pub(crate) fn remove_range(&mut self, start: UserAddr, end: UserAddr) {
        self.split_at(start);
        self.split_at(end);
        let keys: alloc::vec::Vec<UserAddr> = self.overlapping(start, end).map(|v| v.start).collect();
        for k in keys {
            self.areas.remove(&k);
        }
    }

    /// Applies `f` to every area inside `[start, end)` (splitting at the
    /// ends first), then merges neighbours that became equal (vma_merge()):
    /// the area before the range, the areas in it, the one starting at
    /// `end`, and what follows each of them while it continues it. `f` must
    /// change only the area it is given (it may first be called on copies).
    pub(crate) fn modify_range(&mut self, start: UserAddr, end: UserAddr, mut f: impl FnMut(&mut Vma)) {
        if !matches!(self.modify_walk(start, end, &mut f), Walk::Done) {
            self.modify_range_by_area(start, end, f);
        }
    }

    /// [`Self::modify_range`] if `[start, end)` is entirely covered by
    /// areas; `false` (and nothing changed) if not. Linux mprotect_fixup()'s
    /// shape: one walk finds the areas and checks that no hole lies between.
    pub(crate) fn modify_covered(&mut self, start: UserAddr, end: UserAddr, mut f: impl FnMut(&mut Vma)) -> bool {
        match self.modify_walk(start, end, &mut f) {
            Walk::Done => true,
            Walk::NotCovered => false,
            Walk::TooMany => {
                let covered = self.covers(start, end);
                if covered {
                    self.modify_range_by_area(start, end, f);
                }
                covered
            }
        }
    }

    /// [`Self::modify_range`] in one walk of the tree, as Linux's
    /// mprotect_fixup() walks the maple tree once: one search puts a cursor
    /// after the last area starting below `end`; it steps down to the area
    /// before `start`, back up over the range and on over the areas after
    /// it that may merge, then back down writing only what changed (in
    /// place where an area keeps its start; removals and insertions at the
    /// cursor). The new areas are computed on copies on the stack (no
    /// allocation: an allocation per call was a large part of mprotect's VMA
    /// work under TCG); nothing changes before the outcome is known.
    /// `NotCovered` and `TooMany` (more areas than [`WALK_AREAS`]) leave the
    /// set as it was.
    fn modify_walk(&mut self, start: UserAddr, end: UserAddr, f: &mut impl FnMut(&mut Vma)) -> Walk {
        if self.modify_one(start, end, f) {
            return Walk::Done;
        }
        let mut cur = self.areas.upper_bound_mut(Bound::Excluded(&end));
        // Down: the areas meeting the range (top first) and the one before.
        let mut old = Areas::new();
        let mut before = None;
        let mut at = end;
        while let Some((_, v)) = cur.prev() {
            if v.end <= start {
                before = Some(*v);
                break;
            }
            if v.end < at {
                return Walk::NotCovered;
            }
            if old.try_push(*v).is_err() {
                return Walk::TooMany;
            }
            at = v.start;
            if v.start < start {
                break;
            }
        }
        if old.is_empty() || at > start {
            return Walk::NotCovered;
        }
        // Split at most at the two ends, apply `f` between, merge in order.
        let mut out = Areas::new();
        if let Some(p) = before
            && out.try_push(p).is_err()
        {
            return Walk::TooMany;
        }
        for v in old.as_slice().iter().rev() {
            let mut v = *v;
            if v.start < start {
                let (low, high) = v.split(start);
                if push_merged(&mut out, low).is_err() {
                    return Walk::TooMany;
                }
                v = high;
            }
            let tail = (v.end > end).then(|| {
                let (low, high) = v.split(end);
                v = low;
                high
            });
            f(&mut v);
            if push_merged(&mut out, v).is_err() || tail.is_some_and(|t| push_merged(&mut out, t).is_err()) {
                return Walk::TooMany;
            }
        }
        // Back up over the areas read (the cursor is before the lowest), then
        // on: what follows continues the last area, or (right at `end`)
        // starts an area whose own followers may continue it.
        let mut olds = old.len() + usize::from(before.is_some());
        for _ in 0..olds {
            cur.next();
        }
        while let Some((_, s)) = cur.peek_next() {
            let absorbed = out.last().is_some_and(|c| continues(c, s));
            if !absorbed && s.start != end {
                break;
            }
            let s = *s;
            if push_merged(&mut out, s).is_err() {
                return Walk::TooMany;
            }
            cur.next();
            olds += 1;
        }
        // Write, back down over the `olds` areas just read: both lists are
        // ordered by start; an old start not in the new list goes, a new one
        // not in the old list is inserted, a kept start is updated in place.
        let mut news = out.len();
        while olds > 0 || news > 0 {
            let o = if olds > 0 { cur.peek_prev().map(|(k, _)| *k) } else { None };
            let n = news.checked_sub(1).map(|i| out[i]);
            match (o, n) {
                (Some(o), Some(n)) if o == n.start => {
                    if let Some((_, v)) = cur.prev() {
                        *v = n;
                    }
                    olds -= 1;
                    news -= 1;
                }
                (Some(o), n) if n.is_none_or(|n| o > n.start) => {
                    cur.remove_prev();
                    olds -= 1;
                }
                (_, Some(n)) => {
                    cur.insert_after(n.start, n).expect("a new area out of order");
                    news -= 1;
                }
                (o, n) => unreachable!("areas left to write: old {o:?}, new {n:?}"),
            }
        }
        Walk::Done
    }

    /// The common case of [`Self::modify_walk`] without its copies: `[start,
    /// end)` is exactly one area and, changed, it still continues neither
    /// its predecessor nor into its successor (a whole mapping between
    /// areas of other protections; Linux's vma_modify() finding nothing to
    /// split or merge). One search, a few cursor steps, the area changed in
    /// place. `false`, and nothing changed, in every other case.
    fn modify_one(&mut self, start: UserAddr, end: UserAddr, f: &mut impl FnMut(&mut Vma)) -> bool {
        let mut cur = self.areas.upper_bound_mut(Bound::Excluded(&end));
        // The area after and the one after that: an area starting right at
        // `end` absorbs its equal followers in the general walk (as the
        // model of tests/src/mm/areas.rs, after mmap(MAP_FIXED) left equal
        // neighbours apart), so that case is the general walk's too.
        let after = cur.next().map(|(_, a)| *a);
        let after2 = cur.peek_next().map(|(_, b)| *b);
        if after.is_some() {
            cur.prev();
        }
        if let (Some(a), Some(b)) = (after, after2)
            && a.start == end
            && continues(&a, &b)
        {
            return false;
        }
        let new = match cur.prev() {
            Some((_, v)) if v.start == start && v.end == end => {
                let mut n = *v;
                f(&mut n);
                n
            }
            _ => return false,
        };
        let before = cur.peek_prev().map(|(_, b)| *b);
        if before.is_some_and(|b| continues(&b, &new)) || after.is_some_and(|a| continues(&new, &a)) {
            return false;
        }
        match cur.peek_next() {
            Some((_, v)) => *v = new,
            None => unreachable!("the area the cursor just stepped over"),
        }
        true
    }

    /// [`Self::modify_range`] area by area (split, apply, merge, each with
    /// its own lookups): for ranges [`Self::modify_walk`] does not take.
    fn modify_range_by_area(&mut self, start: UserAddr, end: UserAddr, mut f: impl FnMut(&mut Vma)) {
        self.split_at(start);
        self.split_at(end);
        for v in self.areas.range_mut(start..end).map(|(_, v)| v) {
            f(v);
        }
        self.merge_around(start, end);
    }

    /// Merges adjacent areas with equal protection and flags in and around
    /// `[start, end]`.
    fn merge_around(&mut self, start: UserAddr, end: UserAddr) {
        let from = self.areas.range(..start).next_back().map(|(&k, _)| k).unwrap_or(start);
        let mut k = from;
        loop {
            // Absorb following neighbours while they match.
            while let Some(cur) = self.areas.get(&k).copied()
                && let Some(next) = self.areas.get(&cur.end).copied()
                && continues(&cur, &next)
            {
                self.areas.remove(&next.start);
                self.areas.insert(cur.start, Vma { end: next.end, ..cur });
            }
            // The next area at or below `end`.
            let after = self.areas.get(&k).map_or(k + 1, |c| c.end.max(k + 1));
            if after > end {
                break;
            }
            match self.areas.range(after..=end).next() {
                Some((&n, _)) => k = n,
                None => break,
            }
        }
    }

    /// A free range of `len` bytes at or above `MMAP_BASE` (first fit),
    /// aligned to `align`.
    pub(crate) fn find_free(&self, len: u64, align: PageSize) -> Option<UserAddr> {
        let mut at = self.find(MMAP_BASE).map_or(MMAP_BASE, |v| v.end).align_up(align)?;
        for v in self.areas.range(MMAP_BASE..).map(|(_, v)| v) {
            if v.end <= at {
                continue;
            }
            if v.start >= at && v.start - at >= len {
                return Some(at);
            }
            at = at.max(v.end).align_up(align)?;
        }
        (at.checked_add(len)?.as_u64() <= USER_TOP).then_some(at)
    }

    /// All areas, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.areas.values()
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.areas.len()
    }

    /// Whether there are no areas.
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }
}
