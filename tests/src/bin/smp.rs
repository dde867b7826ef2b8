//! The SMP suite: CPU bring-up, IPIs, cross-CPU calls, NMIs.
#![no_std]
#![no_main]

kernel::ktest_main!("smp", [ktests::smp::TESTS]);
