//! The scheduler and RCU suite.
#![no_std]
#![no_main]

kernel::ktest_main!("sched", [ktests::sched::TESTS, ktests::sched::rwsem::TESTS, ktests::sched::mm_switch::TESTS, ktests::sched::misuse::TESTS]);
