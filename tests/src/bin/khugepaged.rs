//! The khugepaged suite: MADV_COLLAPSE (full, empty, single pte, already
//! huge, pinned/referenced/locked pages refused, partial munmap, argument
//! errors, fork), the negative-control switches on an idle range, sync=rcu,
//! khugepaged's scan limits and thread, and a pin forced right after the
//! isolate step with and without `collapse.check_before_clear`, and bug G:
//! a walker inside a pte table a collapse frees, with and without the table
//! sync.
#![no_std]
#![no_main]

kernel::ktest_main!("khugepaged", [ktests::khugepaged::collapse::TESTS, ktests::khugepaged::daemon::TESTS, ktests::khugepaged::protocol::TESTS, ktests::khugepaged::table_sync::TESTS]);
