//! Numbered checks for the test programs: each check that fails prints
//! `PROGRAM: check N failed: WHAT` (with the values for [`eq`]) and returns
//! `Err(N)`, so a program's `run() -> Result<(), i32>` stops at the first
//! failure with `?` and its exit status is that check's number.

use crate::println;

/// Check `case`: `ok` must hold.
pub fn check(case: i32, what: &str, ok: bool) -> Result<(), i32> {
    if ok {
        return Ok(());
    }
    println!("{}: check {case} failed: {what}", crate::program_name());
    Err(case)
}

/// Check `case`: `got` must equal `want` (errno results included).
pub fn eq<T: PartialEq + core::fmt::Debug>(case: i32, what: &str, got: T, want: T) -> Result<(), i32> {
    if got == want {
        return Ok(());
    }
    println!("{}: check {case} failed: {what}: got {got:?}, expected {want:?}", crate::program_name());
    Err(case)
}
