//! The history suite: Linux's bugs of this family (linux-protocol.md §3),
//! each switch with its caught and its safe run.
#![no_std]
#![no_main]

kernel::ktest_main!("history", [ktests::history::TESTS]);
