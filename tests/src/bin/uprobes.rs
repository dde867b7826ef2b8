//! The uprobes suite: breakpoints installed and removed in both modes, on
//! pinned pages, after fork, their errors, and from a user program.
#![no_std]
#![no_main]

kernel::ktest_main!("uprobes", [ktests::uprobes::TESTS]);
