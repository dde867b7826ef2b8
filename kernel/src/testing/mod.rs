//! The in-kernel test harness.
//!
//! Tests are plain functions registered with [`ktests!`](crate::ktests); a test
//! kernel (see `tests/`) runs them in order and prints, per test,
//! `ktest: start index=I name=N` and then `test N ... ok`. A failure is a panic
//! (a failed `assert!` included) or a CPU exception: the fatal path prints
//! `test N ... FAILED (reason)` and ends the run; the host tool then boots the
//! suite again with `ktest.skip=I+1` to run the rest. A hang (even with
//! interrupts off) is caught by the host's per-test timeout the same way. So
//! every failure kind is reported with its reason, and one failure never hides
//! the results of later tests.
//!
//! The run ends with cargo's summary line, `test result: ok. N passed; ...`.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::boot::BootFacts;
use crate::power::{self, ExitStatus};

/// One test.
#[derive(Clone, Copy)]
pub struct Test {
    /// Full path, e.g. `ktests::boot::heap::grows`.
    pub name: &'static str,
    /// The test body; failing means panicking.
    pub func: fn(),
}

/// Defines test functions and a `TESTS` list of them, in order:
///
/// ```ignore
/// kernel::ktests! {
///     fn adds() { assert_eq!(1 + 1, 2); }
/// }
/// ```
#[macro_export]
macro_rules! ktests {
    ($( $(#[$meta:meta])* fn $name:ident() $body:block )*) => {
        $( $(#[$meta])* fn $name() $body )*
        /// The tests of this module, in order.
        pub const TESTS: &[$crate::testing::Test] = &[
            $( $crate::testing::Test { name: concat!(module_path!(), "::", stringify!($name)), func: $name } ),*
        ];
    };
}

/// Declares a test kernel: its entry point runs the boot sequence and then the
/// given test lists: `ktest_main!("boot", [a::TESTS, b::TESTS])`.
#[macro_export]
macro_rules! ktest_main {
    ($suite:literal, [$($tests:expr),* $(,)?]) => {
        $crate::kernel_entry!(__ktest_main);
        fn __ktest_main(facts: &'static $crate::boot::BootFacts) -> ! {
            $crate::testing::run_suite($suite, &[$($tests),*], facts)
        }
    };
}

/// The running test's name (pointer and length; 0 = none).
static CURRENT_PTR: AtomicUsize = AtomicUsize::new(0);
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);

/// The test running on this machine, if any (for failure reports).
pub fn current_test() -> Option<&'static str> {
    let ptr = CURRENT_PTR.load(Ordering::Acquire);
    if ptr == 0 {
        return None;
    }
    let len = CURRENT_LEN.load(Ordering::Relaxed);
    // SAFETY: set from a `&'static str` by `set_current`, length stored before
    // the pointer (Release/Acquire).
    Some(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr as *const u8, len)) })
}

fn set_current(name: Option<&'static str>) {
    match name {
        Some(n) => {
            CURRENT_LEN.store(n.len(), Ordering::Relaxed);
            CURRENT_PTR.store(n.as_ptr() as usize, Ordering::Release);
        }
        None => CURRENT_PTR.store(0, Ordering::Release),
    }
}

/// Why the running test skipped itself (pointer and length; 0 = not skipped).
static SKIP_PTR: AtomicUsize = AtomicUsize::new(0);
static SKIP_LEN: AtomicUsize = AtomicUsize::new(0);

/// Marks the running test as skipped with `reason` (it should return at once):
/// it is reported as `ignored`, never as passed. For tests that cannot run in
/// this configuration, e.g. a two-CPU test booted with one CPU.
pub fn skip(reason: &'static str) {
    SKIP_LEN.store(reason.len(), Ordering::Relaxed);
    SKIP_PTR.store(reason.as_ptr() as usize, Ordering::Release);
}

fn take_skip() -> Option<&'static str> {
    let ptr = SKIP_PTR.swap(0, Ordering::Acquire);
    (ptr != 0).then(|| {
        let len = SKIP_LEN.load(Ordering::Relaxed);
        // SAFETY: stored from a `&'static str` by `skip`.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr as *const u8, len)) }
    })
}

/// Runs the tests of a suite (honouring `ktest.skip` and `ktest.filter`) and
/// ends the run.
pub fn run_suite(suite: &str, lists: &[&[Test]], facts: &'static BootFacts) -> ! {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let skip = facts.options.ktest_skip;
    let filter = facts.options.ktest_filter;
    crate::println!("ktest: suite name={suite} tests={total} skip={skip}");
    let start = crate::time::now_ns();
    let (mut passed, mut ignored, mut filtered) = (0usize, 0usize, 0usize);
    for (index, test) in lists.iter().flat_map(|l| l.iter()).enumerate() {
        if index < skip {
            continue;
        }
        if filter.is_some_and(|f| !test.name.contains(f)) {
            filtered += 1;
            continue;
        }
        crate::println!("ktest: start index={index} name={}", test.name);
        set_current(Some(test.name));
        (test.func)();
        set_current(None);
        match take_skip() {
            Some(reason) => {
                crate::println!("test {} ... ignored, {reason}", test.name);
                ignored += 1;
            }
            None => {
                crate::println!("test {} ... ok", test.name);
                passed += 1;
            }
        }
    }
    let ms = (crate::time::now_ns() - start) / 1_000_000;
    crate::println!(
        "test result: ok. {passed} passed; 0 failed; {ignored} ignored; 0 measured; {filtered} filtered out; finished in {}.{:02}s",
        ms / 1000,
        (ms % 1000) / 10
    );
    power::exit(ExitStatus::Pass)
}
