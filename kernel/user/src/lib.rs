//! The user-mode runtime: `_start`, the panic handler, typed syscall wrappers
//! and `print!`/`println!`.
//!
//! A program is a binary in `src/bin/` that declares its `main` with
//! [`entry!`]: `_start` (this crate) aligns the stack, calls it and passes its
//! return value to `exit`. A panic prints its message and exits with
//! [`abi::status::PANIC`] (101). Test programs number their checks
//! ([`check`]).

#![no_std]

pub mod check;
pub mod race;
pub mod ksft;
pub mod sys;
pub mod thread;

pub use abi::{Errno, mman};

/// Declares the program's `fn main() -> i32` (and its name, the binary's,
/// for [`program_name`]).
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn __user_main() -> i32 {
            $main()
        }

        #[unsafe(no_mangle)]
        fn __user_program_name() -> &'static str {
            env!("CARGO_BIN_NAME")
        }
    };
}

unsafe extern "C" {
    fn __user_main() -> i32;
}

unsafe extern "Rust" {
    fn __user_program_name() -> &'static str;
}

/// The program's name (its binary's: `mmctl`), for its messages.
pub fn program_name() -> &'static str {
    // SAFETY: `entry!` defines `__user_program_name` in every program, with
    // this signature.
    unsafe { __user_program_name() }
}

/// The process entry point: the kernel starts the first thread here with
/// `rsp` at the top of the user stack (16-byte aligned) and every other
/// register zero.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start_rust,
    )
}

extern "C" fn start_rust() -> ! {
    // SAFETY: `entry!` defines `__user_main` in every program.
    let status = unsafe { __user_main() };
    sys::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("user panic ({}, pid {}): {}", program_name(), sys::getpid(), info);
    sys::exit(abi::status::PANIC)
}

/// A `core::fmt::Write` sink for the console (one `write` syscall per piece).
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        sys::write(s.as_bytes()).map(|_| ()).map_err(|_| core::fmt::Error)
    }
}

/// Formats into a stack buffer and writes it with one syscall, so lines of
/// different threads do not interleave mid-line.
pub fn print_fmt(args: core::fmt::Arguments<'_>) {
    struct Buf {
        bytes: [u8; 256],
        len: usize,
    }
    impl core::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                if self.len == self.bytes.len() {
                    let _ = sys::write(&self.bytes);
                    self.len = 0;
                }
                self.bytes[self.len] = b;
                self.len += 1;
            }
            Ok(())
        }
    }
    let mut buf = Buf { bytes: [0; 256], len: 0 };
    let _ = core::fmt::write(&mut buf, args);
    let _ = sys::write(&buf.bytes[..buf.len]);
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
