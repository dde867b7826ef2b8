//! Linux's mm selftests, ported as user programs (`kernel/user/src/bin/`
//! `ksft_cow`, `ksft_gup_longterm`, `ksft_ksm`: the cases of cow.c,
//! gup_longterm.c and ksm_functional_tests.c that apply, see the README),
//! the selftest-support syscalls they use with their errnos (`mmctl`), and
//! the release of pins a process still holds when it ends (`pinexit`).
//!
//! A ported program prints one line per case and a summary, and exits with
//! the number of failed cases. Each test here runs one program and checks,
//! besides its status, that no folio or page table was left behind and
//! that no oracle (use after free, broken count invariant) fired; the
//! daemons a program drives are stopped and their tunables reset after it.

use kernel::gup;
use kernel::mm::fault::{self, CowReuse};
use kernel::mm::{page, pgtable};
use kernel::process::{self, ExitInfo};
use kernel::{khugepaged, ksm};

use crate::user::settle;

/// Runs program `name` on CPU 0 and returns how it ended.
fn run(name: &str) -> ExitInfo {
    let pid = process::spawn(name, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    process::wait_info(pid).unwrap_or_else(|e| panic!("wait for {name} (pid {pid}): {e}"))
}

/// Stops ksmd and khugepaged and puts their tunables back to the defaults
/// (a program that failed half way may have left them changed).
fn reset_daemons() {
    ksm::stop_ksmd().unwrap_or_else(|e| panic!("{e}"));
    khugepaged::stop_khugepaged().unwrap_or_else(|e| panic!("{e}"));
    ksm::set_tunables(ksm::Tunables::DEFAULT);
    ksm::set_max_page_sharing(ksm::MAX_PAGE_SHARING_DEFAULT);
    khugepaged::set_tunables(khugepaged::Tunables::DEFAULT);
}

/// What must be the same before and after a program: live folios, live
/// page tables, and the uaf and invariant oracles.
fn footprint() -> (usize, usize, u64, u64) {
    settle();
    ksm::prune();
    (page::live_folios(), pgtable::live_tables(), page::uaf_events(), page::invariant_errors())
}

/// Runs `name`, expects exit status 0 and no leak or oracle event.
fn run_clean(name: &str) {
    reset_daemons();
    let before = footprint();
    let info = run(name);
    reset_daemons();
    let after = footprint();
    assert_eq!(info, ExitInfo { status: 0, killed: None }, "{name}: the status is the number of failed cases (or the failed check)");
    assert_eq!(after, before, "{name}: (live folios, live page tables, uaf events, invariant errors) before/after");
}

kernel::ktests! {
    fn mmctl_gup_test_page_info_ksm_and_khugepaged_control_and_their_errnos() {
        run_clean("mmctl");
    }

    fn cow_c_cases_pass() {
        run_clean("ksft_cow");
    }

    fn gup_longterm_c_cases_pass() {
        run_clean("ksft_gup_longterm");
    }

    fn ksm_functional_tests_cases_pass() {
        run_clean("ksft_ksm");
    }

    fn cow_c_catches_linux_bugs_d_e_and_j_under_their_switches() {
        // The same program, with one of Linux's old rules brought back at a
        // time (see "Linux's history, reproduced"): the cases that test that
        // rule must fail (the host test names them), and with the rule
        // restored (`cow_c_cases_pass`) they pass. Each line below prints a
        // marker the host test splits the log on.
        reset_daemons();
        log::info!("ksft: ksft_cow under cow.reuse=mapcount (bug D)");
        fault::set_cow_reuse(CowReuse::Mapcount);
        let d = run("ksft_cow");
        fault::set_cow_reuse(CowReuse::AnonExclusive);
        log::info!("ksft: ksft_cow under fork.early_cow=off (bug E)");
        kernel::mm::fork::set_early_cow(false);
        let e = run("ksft_cow");
        kernel::mm::fork::set_early_cow(true);
        log::info!("ksft: ksft_cow under unshare=off (bug J)");
        let c = gup::controls();
        gup::set_controls(gup::Controls { unshare: false, ..c });
        let j = run("ksft_cow");
        gup::set_controls(gup::Controls { unshare: true, ..gup::controls() });
        log::info!("ksft: ksft_cow switches restored");
        // D: the four vmsplice() cases on a base page (a page of a large
        // folio is never reused under the old rules here, so the THP
        // variants copy and pass). E: fork() with a R/W-pinned buffer, on
        // all five layouts. J: the R/O pins on shared and previously
        // shared pages, slow path and GUP-fast, on all five layouts, and
        // the "exclusive" ones on the partially shared THP (whose first
        // page was shared): 22.
        for (bug, info, failures) in [("D", d, 4), ("E", e, 5), ("J", j, 22)] {
            assert_eq!(info, ExitInfo { status: failures, killed: None }, "bug {bug}: the status is the number of cow.c cases that failed");
        }
    }

    fn pins_still_held_when_a_process_ends_are_released() {
        // The program and its child end with pins and references held
        // (some on memory already unmapped); nothing may stay pinned or
        // allocated, and no pinned frame may reach the free path.
        run_clean("pinexit");
        crate::user::assert_no_frame_leak("pinexit", || assert_eq!(run("pinexit").status, 0));
    }
}
