//! ksmd's per-address-space checksum list (`kernel::ksm::rmap_list`) against
//! a model with Linux's rmap_list semantics, over random passes with visits
//! out of order among them: an item the scan passes over without visiting
//! is dropped, one ahead of the scan (put there by a steered visit) waits
//! for it, and a pass's end drops what is left ahead.

use alloc::collections::BTreeMap;
use kernel::ksm::rmap_list::{Order, RmapList};
use kernel::mm::{PAGE_SIZE, UserAddr};

use crate::util::Rng;

/// Linux's list as a map: `frontier` is the highest address the pass took
/// in order.
#[derive(Default)]
struct Model {
    items: BTreeMap<u64, u64>,
    frontier: Option<u64>,
}

impl Model {
    fn take(&mut self, addr: u64, order: Order) -> Option<u64> {
        if order == Order::InOrder && self.frontier.is_none_or(|f| f < addr) {
            let from = self.frontier.map_or(0, |f| f + 1);
            let passed: alloc::vec::Vec<u64> = self.items.range(from..addr).map(|(a, _)| *a).collect();
            for a in passed {
                self.items.remove(&a);
            }
            self.frontier = Some(addr);
        }
        self.items.remove(&addr)
    }

    fn end_pass(&mut self) {
        if let Some(f) = self.frontier {
            self.items.retain(|a, _| *a <= f);
        } else {
            self.items.clear();
        }
        self.frontier = None;
    }
}

const PAGES: u64 = 64;

fn at(page: u64) -> UserAddr {
    UserAddr::new(0x4000_0000 + page * PAGE_SIZE).expect("a user address")
}

kernel::ktests! {
    fn the_checksum_list_keeps_linux_rmap_list_semantics_over_random_passes() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut list = RmapList::new();
        let mut model = Model::default();
        let mut hits = 0;
        for pass in 0..300 {
            // Pages the pass visits in order: a random subset (the others
            // are unmapped or no longer mergeable this time).
            let mut page = rng.below(4);
            while page < PAGES {
                if rng.below(8) == 0 {
                    // A steered visit anywhere, behind or ahead.
                    let p = rng.below(PAGES);
                    let got = list.take(at(p), Order::Steered);
                    assert_eq!(got, model.take(p, Order::Steered), "steered take of page {p} in pass {pass}");
                    if rng.below(4) != 0 {
                        let sum = got.unwrap_or(rng.below(3));
                        list.put(at(p), sum);
                        model.items.insert(p, sum);
                    }
                }
                let got = list.take(at(page), Order::InOrder);
                assert_eq!(got, model.take(page, Order::InOrder), "take of page {page} in pass {pass}");
                hits += u64::from(got.is_some());
                if rng.below(6) != 0 {
                    let sum = if rng.below(3) == 0 { rng.below(3) } else { got.unwrap_or(7) };
                    list.put(at(page), sum);
                    model.items.insert(page, sum);
                }
                assert_eq!(list.len(), model.items.len(), "items after page {page} in pass {pass}");
                page += 1 + rng.below(3);
            }
            if rng.below(10) != 0 {
                list.end_pass();
                model.end_pass();
            }
            for p in 0..PAGES {
                assert_eq!(list.get(at(p)), model.items.get(&p).copied(), "page {p} after pass {pass}");
            }
        }
        assert!(hits > 1000, "the passes found earlier checksums only {hits} times");
        list.clear();
        assert!(list.is_empty());
    }
}
