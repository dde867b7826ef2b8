//! The ksft suite: Linux's cow.c, gup_longterm.c and ksm_functional_tests.c
//! cases ported as user programs, and the syscalls they need.
#![no_std]
#![no_main]

kernel::ktest_main!("ksft", [ktests::ksft::TESTS]);
