//! Bug G (Jann Horn, 2022: "mm/khugepaged: fix GUP-fast interaction by
//! sending IPI") made deterministic: a GUP-fast walker has read the pmd of a
//! range and holds a pointer into its pte table (interrupts off) when a
//! collapse of that range detaches and frees the table. The walker pauses
//! at `gup.pre_pte` until the collapse reaches `collapse.post_free` (at most
//! 100 ms), then reads the table.
//!
//! * `tlb=nmi` with the table sync (`tlb_remove_table_sync_one`, the
//!   default): the sync's IPI cannot complete while the walker has
//!   interrupts off, so the table is still there when the walker's pause
//!   ends; it reads a valid pte, its pmd re-read sees the change and it
//!   backs off. No use after free.
//! * `tlb=nmi collapse.no_table_sync=on`: nothing waits for the walker; the
//!   table is freed (poisoned, quarantined) under it and its read of the
//!   poison is reported as a use after free: the oracle that catches bug G
//!   in the collapse-vs-gupfast scenario.
//! * `tlb=ipi`: the pmd flush's own IPI already waits for the walker, so
//!   neither run reads a freed table (the IPI flush makes the table sync
//!   redundant, the 2016 argument).
//!
//! The two runs of a boot differ by the one switch; the suite runs under
//! both flush modes (boot/tests/khugepaged.rs).

use kernel::gup::{self, Foll};
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page;
use kernel::mm::PageSize;
use kernel::mm::HUGE_PAGE_SIZE;
use kernel::race::widen::{self, Point, Widening};
use kernel::race::{self, CollapseSwitches};
use kernel::tlb::{self, FlushMode};

use super::{mapped_size, populated};
use crate::mm::{accounts, release_lazy_mms};

/// What the walker got, and the use-after-free reports during the run.
struct Outcome {
    pinned: usize,
    uaf: u64,
}

fn walk_across_a_collapse(no_table_sync: bool) -> Outcome {
    let me = kernel::smp::cpu_index();
    let other = kernel::smp::online_cpus().iter().find(|&c| c != me).expect("2 CPUs");
    race::set_collapse_switches(CollapseSwitches { check_before_clear: false, no_table_sync });
    widen::set(Point::GupPrePte, Widening::Wait(Some(Point::CollapsePostFree), 100_000));
    // A writer arrival on this CPU: the walker's pause is skipped when the
    // writer side last ran on the walker's own CPU (it could not progress).
    widen::at(Point::CollapsePreCopy, u64::MAX);
    // Freed tables stay poisoned (not reused) while the walker may read them.
    page::set_quarantine(true);
    let before = accounts();
    let (mm, a) = populated(0..512);
    let seen = widen::arrivals(Point::GupPrePte);
    let walker = kernel::sched::spawn_in(other, "walker", Some(mm.clone()), move || {
        gup::get_user_pages_fast_only(a, 1, Foll::PIN | Foll::WRITE).expect("GUP-fast arguments").len()
    })
    .expect("spawn");
    // The walker has read the pmd and pauses, interrupts off.
    let deadline = kernel::time::now_ns() + 5_000_000_000;
    while widen::arrivals(Point::GupPrePte) == seen {
        assert!(kernel::time::now_ns() < deadline, "the walker on cpu{other} never reached gup.pre_pte");
        core::hint::spin_loop();
    }
    let r = m::madvise(&mm, a.as_u64(), HUGE_PAGE_SIZE, advice::COLLAPSE);
    let pinned = walker.join();
    widen::set(Point::GupPrePte, Widening::None);
    race::set_collapse_switches(CollapseSwitches::default());
    r.expect("MADV_COLLAPSE");
    assert_eq!(mapped_size(&mm, a), Some(PageSize::Size2M), "the range was not collapsed");
    drop(mm);
    release_lazy_mms();
    page::set_quarantine(false);
    let after = accounts();
    assert_eq!((after.folios, after.tables), (before.folios, before.tables), "leak");
    assert_eq!(after.invariant_errors, before.invariant_errors, "invariant errors");
    Outcome { pinned, uaf: after.uaf - before.uaf }
}

fn nmi() -> bool {
    tlb::config().mode == FlushMode::Nmi
}

kernel::ktests! {
    fn a_walker_inside_the_old_table_is_waited_for_by_the_table_sync() {
        let o = walk_across_a_collapse(false);
        assert_eq!(o.uaf, 0, "the walker read a freed table although the collapse synced");
        assert_eq!(o.pinned, 0, "the walker pinned a page of a range whose pmd had changed");
    }

    fn without_the_table_sync_the_walker_reads_the_freed_table_under_nmi_flushes() {
        let o = walk_across_a_collapse(true);
        if nmi() {
            assert_eq!(o.uaf, 1, "the walker did not read the freed, poisoned table (bug G not reproduced)");
        } else {
            assert_eq!(o.uaf, 0, "the IPI flush should have waited for the walker");
        }
        assert_eq!(o.pinned, 0, "the walker pinned a page through a freed table");
    }
}
