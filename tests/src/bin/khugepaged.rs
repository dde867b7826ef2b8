//! The khugepaged suite: MADV_COLLAPSE (full, empty, single pte, already
//! huge, pinned/referenced/locked pages refused, partial munmap, argument
//! errors, fork), the negative-control switches on an idle range, sync=rcu,
//! and khugepaged's scan limits and thread.
#![no_std]
#![no_main]

kernel::ktest_main!("khugepaged", [ktests::khugepaged::collapse::TESTS, ktests::khugepaged::daemon::TESTS]);
