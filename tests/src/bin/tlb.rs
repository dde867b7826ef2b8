//! The TLB suite (`tests/src/tlb/`).
#![no_std]
#![no_main]

kernel::ktest_main!("tlb", [ktests::tlb::local::TESTS, ktests::tlb::remote::TESTS, ktests::tlb::user::TESTS, ktests::tlb::gather::TESTS]);
