//! The mm suite: page metadata, user page tables, faults, fork and the memory calls.
#![no_std]
#![no_main]

kernel::ktest_main!(
    "mm",
    [ktests::mm::pages::TESTS, ktests::mm::frame_io::TESTS, ktests::mm::faults::TESTS, ktests::mm::cow::TESTS, ktests::mm::calls::TESTS, ktests::mm::areas::TESTS, ktests::mm::user_addr::TESTS]
);
