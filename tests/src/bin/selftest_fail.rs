//! A deliberately failing suite: proves the harness reports every kind of
//! failure with its reason and keeps going after each.
//!
//! Expected outcome (asserted by the host test `harness_reports_every_failure`):
//! 6 tests, 2 passed, 4 failed:
//!   passes_first                 ok
//!   assertion_fails              FAILED, reason contains "assertion"
//!   panics                       FAILED, reason contains "deliberate panic in selftest"
//!   page_faults                  FAILED, reason contains "PAGE FAULT"
//!   hangs_with_interrupts_off    FAILED, reason contains "timeout"
//!   passes_last                  ok
#![no_std]
#![no_main]

kernel::ktest_main!("selftest_fail", [ktests::selftest::TESTS]);
