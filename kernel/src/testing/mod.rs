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
//! A test marked `#[should_panic = "text"]` passes by panicking with a message
//! containing `text` (the fatal path prints `test N ... ok` and ends the run;
//! the host boots on with the next test, as after any death). If it returns,
//! it fails with `FAILED (did not panic)`; if it panics otherwise or takes a CPU
//! exception, it fails naming what was expected and what happened.
//!
//! The run ends with cargo's summary line, `test result: ok. N passed; ...`.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::boot::BootFacts;
use crate::power::{self, ExitStatus};

/// One test.
#[derive(Clone, Copy)]
pub struct Test {
    /// Full path, e.g. `ktests::boot::heap::grows`.
    pub name: &'static str,
    /// The test body; failing means panicking.
    pub func: fn(),
    /// `Some(text)`: the test must panic with a message containing `text`.
    pub should_panic: Option<&'static str>,
}

/// Defines test functions and a `TESTS` list of them, in order. An optional
/// `#[should_panic = "text"]` (among the other attributes) makes a test pass
/// only by panicking with a message containing `text`:
///
/// ```ignore
/// kernel::ktests! {
///     fn adds() { assert_eq!(1 + 1, 2); }
///     #[should_panic = "overflow"]
///     fn overflows() { let _ = core::hint::black_box(u8::MAX) + 1; }
/// }
/// ```
#[macro_export]
macro_rules! ktests {
    ($( $(#[$($attr:tt)*])* fn $name:ident() $body:block )*) => {
        $( $crate::__ktest_fn! { [] [$( [$($attr)*] )*] fn $name() $body } )*
        /// The tests of this module, in order.
        pub const TESTS: &[$crate::testing::Test] = &[
            $( $crate::testing::Test {
                name: concat!(module_path!(), "::", stringify!($name)),
                func: $name,
                should_panic: $crate::__ktest_should_panic!($( [$($attr)*] )*),
            } ),*
        ];
    };
}

/// For [`ktests!`]: emits a test function with its attributes except
/// `should_panic` (kept ones accumulate in the first bracket).
#[doc(hidden)]
#[macro_export]
macro_rules! __ktest_fn {
    ([$($kept:tt)*] [] fn $name:ident() $body:block) => {
        $($kept)* fn $name() $body
    };
    ([$($kept:tt)*] [[should_panic = $text:literal] $($rest:tt)*] fn $name:ident() $body:block) => {
        $crate::__ktest_fn! { [$($kept)*] [$($rest)*] fn $name() $body }
    };
    ([$($kept:tt)*] [[$($attr:tt)*] $($rest:tt)*] fn $name:ident() $body:block) => {
        $crate::__ktest_fn! { [$($kept)* #[$($attr)*]] [$($rest)*] fn $name() $body }
    };
}

/// For [`ktests!`]: `Some(text)` for a `#[should_panic = text]` among the
/// attributes, else `None`.
#[doc(hidden)]
#[macro_export]
macro_rules! __ktest_should_panic {
    () => {
        None
    };
    ([should_panic = $text:literal] $($rest:tt)*) => {
        Some($text)
    };
    ([$($attr:tt)*] $($rest:tt)*) => {
        $crate::__ktest_should_panic!($($rest)*)
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

/// The running test (null = none).
static CURRENT: AtomicPtr<Test> = AtomicPtr::new(core::ptr::null_mut());

/// The test running on this machine, if any (for failure reports).
pub(crate) fn current() -> Option<&'static Test> {
    // Acquire pairs with the Release in `set_current` (any CPU may ask).
    let ptr = CURRENT.load(Ordering::Acquire);
    // SAFETY: only `set_current` stores non-null values, from `&'static Test`.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

fn set_current(test: Option<&'static Test>) {
    let ptr = test.map_or(core::ptr::null_mut(), |t| t as *const Test as *mut Test);
    CURRENT.store(ptr, Ordering::Release);
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
pub fn run_suite(suite: &str, lists: &[&'static [Test]], facts: &'static BootFacts) -> ! {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    let skip = facts.options.ktest_skip;
    let filter = facts.options.ktest_filter;
    crate::println!("ktest: suite name={suite} tests={total} skip={skip}");
    let start = crate::time::now_ns();
    let (mut passed, mut failed, mut ignored, mut filtered) = (0usize, 0usize, 0usize, 0usize);
    for (index, test) in lists.iter().flat_map(|&l| l.iter()).enumerate() {
        if index < skip {
            continue;
        }
        if filter.is_some_and(|f| !f.split('|').any(|alt| test.name.contains(alt))) {
            filtered += 1;
            continue;
        }
        crate::println!("ktest: start index={index} name={}", test.name);
        set_current(Some(test));
        (test.func)();
        set_current(None);
        match take_skip() {
            Some(reason) => {
                crate::println!("test {} ... ignored, {reason}", test.name);
                ignored += 1;
            }
            None if test.should_panic.is_some() => {
                crate::println!("test {} ... FAILED (did not panic)", test.name);
                failed += 1;
            }
            None => {
                crate::println!("test {} ... ok", test.name);
                passed += 1;
            }
        }
    }
    let ms = (crate::time::now_ns() - start) / 1_000_000;
    crate::println!(
        "test result: {}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; {filtered} filtered out; finished in {}.{:02}s",
        if failed == 0 { "ok" } else { "FAILED" },
        ms / 1000,
        (ms % 1000) / 10
    );
    power::exit(if failed == 0 { ExitStatus::Pass } else { ExitStatus::Fail })
}
