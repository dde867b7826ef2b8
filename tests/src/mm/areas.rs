//! The area set under mmap(MAP_FIXED), munmap, mprotect and madvise, against
//! a model: after every call the areas are exactly the model's and the call
//! returns the model's result. The model splits and merges area by area, as
//! the kernel did before `modify_range` became one walk of the tree, so the
//! walk (and its fallback past `WALK_AREAS` areas) must give the same splits,
//! the same merges (an mprotect also merges equal neighbours that mmap left
//! apart, before, inside and right after the range) and the same errnos.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use kernel::mm::PAGE_SIZE;
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::mmap::{self as m, MmError, advice, map};
use kernel::mm::vma::{Prot, VmFlags};

use super::{assert_no_leaks, new_mm};
use crate::util::Rng;

/// Where the window of the test starts, and its size in pages (more pages
/// than the walk keeps on the stack, so that its fallback runs too).
const BASE: u64 = 0x20_0000_0000;
const WINDOW: u64 = 24;

/// One model area, in pages from `BASE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Area {
    start: u64,
    end: u64,
    prot: Prot,
    flags: VmFlags,
}

/// The areas, keyed by start page, changed area by area.
#[derive(Default)]
struct Model {
    areas: BTreeMap<u64, Area>,
}

impl Model {
    fn find(&self, p: u64) -> Option<Area> {
        self.areas.range(..=p).next_back().map(|(_, a)| *a).filter(|a| a.start <= p && p < a.end)
    }

    fn intersects(&self, s: u64, e: u64) -> bool {
        self.areas.values().any(|a| a.start < e && s < a.end)
    }

    fn covers(&self, s: u64, e: u64) -> bool {
        (s..e).all(|p| self.find(p).is_some())
    }

    fn split_at(&mut self, p: u64) {
        if let Some(a) = self.find(p)
            && a.start != p
        {
            self.areas.insert(a.start, Area { end: p, ..a });
            self.areas.insert(p, Area { start: p, ..a });
        }
    }

    fn remove_range(&mut self, s: u64, e: u64) {
        self.split_at(s);
        self.split_at(e);
        self.areas.retain(|_, a| a.end <= s || a.start >= e);
    }

    /// Split at both ends, apply `f` inside, then from the area before `s`
    /// on: every area starting at or before `e` absorbs the equal areas that
    /// follow it without a gap.
    fn modify(&mut self, s: u64, e: u64, f: impl Fn(&mut Area)) {
        self.split_at(s);
        self.split_at(e);
        for a in self.areas.range_mut(s..e).map(|(_, a)| a) {
            f(a);
        }
        let mut k = self.areas.range(..s).next_back().map_or(s, |(&k, _)| k);
        loop {
            while let Some(cur) = self.areas.get(&k).copied()
                && let Some(next) = self.areas.get(&cur.end).copied()
                && (next.prot, next.flags) == (cur.prot, cur.flags)
            {
                self.areas.remove(&next.start);
                self.areas.insert(cur.start, Area { end: next.end, ..cur });
            }
            let after = self.areas.get(&k).map_or(k + 1, |c| c.end.max(k + 1));
            match self.areas.range(after..).next() {
                Some((&n, _)) if after <= e && n <= e => k = n,
                _ => break,
            }
        }
    }
}

/// The kernel's areas, in pages from `BASE`.
fn areas(mm: &AddressSpace) -> Vec<Area> {
    let page = |a: kernel::mm::UserAddr| (a.as_u64() - BASE) / PAGE_SIZE;
    let vmas = mm.vmas.read();
    vmas.iter()
        .map(|v| {
            assert!(v.file.is_none(), "{v:?}");
            Area { start: page(v.start), end: page(v.end), prot: v.prot, flags: v.flags }
        })
        .collect()
}

kernel::ktests! {
    fn areas_split_and_merge_as_the_model_over_random_calls() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let mut model = Model::default();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let prots = [Prot::empty(), Prot::READ, Prot::READ | Prot::WRITE];
            let (mut refused, mut merged_calls) = (0, 0);
            for call in 0..3000 {
                // Ranges reach one page past the window on either side, where
                // nothing is ever mapped.
                let s = rng.below(WINDOW + 1);
                let e = (s + 1 + rng.below(WINDOW / 2)).min(WINDOW + 1);
                let (addr, len) = (BASE + s * PAGE_SIZE, (e - s) * PAGE_SIZE);
                let prot = prots[rng.below(3) as usize];
                let before = model.areas.len();
                let what = rng.below(10);
                let (got, want) = match what {
                    // mmap(MAP_FIXED) inside the window: never merges.
                    0 | 1 if e <= WINDOW => {
                        model.remove_range(s, e);
                        model.areas.insert(s, Area { start: s, end: e, prot, flags: VmFlags::empty() });
                        let r = m::mmap(&mm, addr, len, prot.bits(), map::PRIVATE | map::ANONYMOUS | map::FIXED);
                        (r.map(|_| ()), Ok(()))
                    }
                    2 => {
                        if model.intersects(s, e) {
                            model.remove_range(s, e);
                        }
                        (m::munmap(&mm, addr, len), Ok(()))
                    }
                    3..=6 => {
                        let want = if model.covers(s, e) {
                            model.modify(s, e, |a| a.prot = prot);
                            Ok(())
                        } else {
                            Err(MmError::NoMemory)
                        };
                        (m::mprotect(&mm, addr, len, prot.bits()), want)
                    }
                    _ => {
                        let (adv, flag, on) = match what {
                            7 => (advice::DONTFORK, VmFlags::DONTCOPY, true),
                            8 => (advice::DOFORK, VmFlags::DONTCOPY, false),
                            _ => (advice::NOHUGEPAGE, VmFlags::NOHUGEPAGE, true),
                        };
                        let want = if model.covers(s, e) {
                            model.modify(s, e, |a| a.flags.set(flag, on));
                            Ok(())
                        } else {
                            Err(MmError::NoMemory)
                        };
                        (m::madvise(&mm, addr, len, adv), want)
                    }
                };
                assert_eq!(got, want, "call {call} ({what}, pages {s}..{e})");
                refused += usize::from(want.is_err());
                merged_calls += usize::from(what >= 3 && model.areas.len() < before);
                assert_eq!(areas(&mm), model.areas.values().copied().collect::<Vec<_>>(), "call {call} ({what}, pages {s}..{e})");
            }
            // The calls did what the test is about: refusals and merges.
            assert!(refused > 50 && merged_calls > 50, "refused {refused}, merging calls {merged_calls}");
            m::munmap(&mm, BASE, WINDOW * PAGE_SIZE).unwrap();
            assert!(mm.vmas.read().is_empty());
            // More areas than the walk keeps (one a page, alternating), then
            // one mprotect over all: one area, by the fallback; a hole among
            // them is ENOMEM with nothing changed.
            for p in 0..WINDOW {
                let prot = if p % 2 == 0 { Prot::READ } else { Prot::empty() };
                m::mmap(&mm, BASE + p * PAGE_SIZE, PAGE_SIZE, prot.bits(), map::PRIVATE | map::ANONYMOUS | map::FIXED).unwrap();
            }
            m::munmap(&mm, BASE + (WINDOW - 1) * PAGE_SIZE, PAGE_SIZE).unwrap();
            let all = areas(&mm);
            assert_eq!(all.len() as u64, WINDOW - 1);
            assert_eq!(m::mprotect(&mm, BASE, WINDOW * PAGE_SIZE, 3), Err(MmError::NoMemory), "hole at the top");
            assert_eq!(areas(&mm), all, "a refused mprotect changed the areas");
            m::mprotect(&mm, BASE, (WINDOW - 1) * PAGE_SIZE, 3).unwrap();
            let one = Area { start: 0, end: WINDOW - 1, prot: Prot::READ | Prot::WRITE, flags: VmFlags::empty() };
            assert_eq!(areas(&mm), [one]);
            m::munmap(&mm, BASE, WINDOW * PAGE_SIZE).unwrap();
        });
    }
}
