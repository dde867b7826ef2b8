//! The sync suite: spinlocks, the reader-writer lock and the lock debug checks.
#![no_std]
#![no_main]

kernel::ktest_main!("sync", [ktests::sync::spin::TESTS, ktests::sync::rw::TESTS, ktests::sync::checks::TESTS]);
