//! The boot suite: what every later subsystem stands on.
#![no_std]
#![no_main]

kernel::ktest_main!("boot", [
    ktests::boot::options::TESTS,
    ktests::boot::memory::TESTS,
    ktests::boot::paging::TESTS,
    ktests::boot::debug::TESTS,
    ktests::boot::platform::TESTS,
]);
