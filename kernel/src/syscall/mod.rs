//! The syscall dispatcher: number and arguments from the saved user frame
//! (see `abi` for the convention), one handler per syscall, the result or a
//! negated errno back in `rax`.
//!
//! Handlers live in one file per group ([`process`], [`misc`], [`mm`],
//! [`dio`], [`uprobe`], and for selftest ports [`gup_test`],
//! [`page_info`], [`daemons`]). Every handler
//! validates its arguments (flags, ranges, CPU numbers; pointers through
//! `mm::uaccess`) and returns an errno for bad ones; unknown numbers get
//! ENOSYS.

#![deny(unsafe_code)]

pub(crate) mod daemons;
pub(crate) mod dio;
pub(crate) mod gup_test;
pub(crate) mod misc;
pub(crate) mod mm;
pub(crate) mod page_info;
pub(crate) mod process;
pub(crate) mod uprobe;

use crate::arch::idt::TrapFrame;
use abi::{Errno, Sys};

/// The calling process's address space (EINVAL from a kernel thread).
fn current_mm() -> Result<alloc::sync::Arc<crate::mm::addr_space::AddressSpace>, Errno> {
    crate::mm::fault::current_mm().ok_or(Errno::EINVAL)
}

/// A handler's result.
pub(crate) type SysResult = Result<usize, Errno>;

/// The six argument registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Args(pub(crate) [u64; 6]);

impl Args {
    fn from_frame(f: &TrapFrame) -> Args {
        Args([f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9])
    }
}

/// Runs the syscall in `frame` and stores the result in its `rax`.
pub(crate) fn dispatch(frame: &mut TrapFrame) {
    let args = Args::from_frame(frame);
    let result = match usize::try_from(frame.rax).ok().and_then(Sys::from_number) {
        None => Err(Errno::ENOSYS),
        Some(sys) => call(sys, args, frame),
    };
    frame.rax = match result {
        Ok(v) => v as u64,
        Err(e) => e.to_ret() as u64,
    };
}

fn call(sys: Sys, a: Args, frame: &TrapFrame) -> SysResult {
    let [a0, a1, a2, a3, _, _] = a.0;
    match sys {
        Sys::Exit => process::exit(a0),
        Sys::ThreadExit => process::thread_exit(a0),
        Sys::ThreadSpawn => process::thread_spawn(a0, a1, a2, a3),
        Sys::ThreadJoin => process::thread_join(a0),
        Sys::Spawn => process::spawn(a0, a1, a2),
        Sys::Wait => process::wait(a0),
        Sys::GetPid => process::getpid(),
        Sys::GetTid => process::gettid(),
        Sys::Fork => process::fork(frame),
        Sys::Write => misc::write(a0, a1),
        Sys::GetCpu => Ok(crate::smp::cpu_index()),
        Sys::ClockNs => Ok(crate::time::now_ns() as usize),
        Sys::Yield => misc::yield_now(),
        Sys::SleepNs => misc::sleep_ns(a0),
        Sys::Mmap => mm::mmap(a0, a1, a2, a3),
        Sys::Munmap => mm::munmap(a0, a1),
        Sys::Mprotect => mm::mprotect(a0, a1, a2),
        Sys::Madvise => mm::madvise(a0, a1, a2),
        Sys::DioRead => dio::dio_read(a0, a1, a2, a3),
        Sys::DioWrite => dio::dio_write(a0, a1, a2, a3),
        Sys::BenchResult => misc::bench_result(a0, a1),
        Sys::Race => crate::scenario::syscall::race(a0, a1, a2),
        Sys::Uprobe => uprobe::uprobe(a0, a1, a2),
        Sys::GupTest => gup_test::gup_test(a0, a1, a2, a3),
        Sys::PageInfo => page_info::page_info(a0, a1, a2, a3),
        Sys::KsmCtl => daemons::ksm_ctl(a0, a1, a2),
        Sys::KhugepagedCtl => daemons::khugepaged_ctl(a0, a1, a2),
    }
}
