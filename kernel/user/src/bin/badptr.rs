//! Hands the kernel bad pointers; every one must get EFAULT (and other bad
//! arguments their errno), never a crash or a kill. Exits 0 when all did, else
//! the number of the first case that went wrong.
#![no_std]
#![no_main]

use userspace::{Errno, println, sys};

userspace::entry!(main);

const USER_END: usize = 0x0000_8000_0000_0000;

fn expect(case: i32, what: &str, got: Result<usize, Errno>, want: Errno) -> Result<(), i32> {
    if got == Err(want) {
        println!("badptr: {what}: {want} as expected");
        Ok(())
    } else {
        println!("badptr: {what}: got {got:?}, expected {want}");
        Err(case)
    }
}

fn run() -> Result<(), i32> {
    let e = Errno::EFAULT;
    expect(1, "null", sys::write_raw(0, 8), e)?;
    expect(2, "kernel address", sys::write_raw(0xffff_ffff_8000_0000, 8), e)?;
    expect(3, "non-canonical", sys::write_raw(0x8000_0000_0000_0000, 8), e)?;
    expect(4, "range past the user end", sys::write_raw(USER_END - 0x1000, 0x2000), e)?;
    expect(5, "range wrapping around", sys::write_raw(usize::MAX - 15, 64), e)?;
    expect(6, "unmapped user page", sys::write_raw(0x0000_1000_0000_0000, 8), e)?;
    // A buffer that starts in mapped memory (the stack) and runs off its top.
    let local = [0u8; 16];
    let top = (local.as_ptr() as usize | 0xfff) + 1;
    let stack_end = (top..USER_END).step_by(0x1000).find(|&p| p + 0x1000 >= 0x7fff_ffff_f000).unwrap_or(top);
    expect(7, "range running off the stack top", sys::write_raw(stack_end - 8, 0x2000), e)?;
    expect(8, "spawn with a bad name pointer", sys::spawn_raw(0xdead_0000, 5, 0), e)?;
    expect(9, "unknown syscall", Errno::from_raw(sys::raw_syscall(999, 0, 0, 0)), Errno::ENOSYS)?;
    expect(10, "thread on a CPU that does not exist", sys::thread_spawn_checked(4096), Errno::EINVAL)?;
    expect(11, "wait for a non-child", sys::wait(999_999).map(|s| s as usize), Errno::ECHILD)?;
    expect(12, "join an unknown thread", sys::thread_join(999_999).map(|s| s as usize), Errno::ESRCH)?;
    expect(13, "spawn an unknown program", sys::spawn("no-such-program", 0), Errno::EINVAL)?;
    // A good write still works after all that.
    if sys::write(b"badptr: a good write still works\n") != Ok(33) {
        return Err(14);
    }
    Ok(())
}

fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(case) => case,
    }
}
