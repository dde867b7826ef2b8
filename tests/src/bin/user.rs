//! The ring-3 suite: user programs, syscalls, faults, uaccess, the ELF parser.
#![no_std]
#![no_main]

kernel::ktest_main!("user", [ktests::user::TESTS, ktests::user::uaccess::TESTS, ktests::user::elf::TESTS]);
