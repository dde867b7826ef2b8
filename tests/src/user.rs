//! Ring 3: user programs run, exit, fault, get EFAULT for bad pointers, run
//! threads on every CPU, are preempted on return to user, end all their
//! threads on `exit`, and leave no frame behind. Programs are the built-in
//! ones (`kernel/user/src/bin/`).

pub mod elf;
pub mod uaccess;

use alloc::vec::Vec;
use kernel::mm::frame;
use kernel::process::{self, ExitInfo};
use kernel::{rcu, sched, smp};

use crate::util::other_cpu;

/// Runs `name` on `cpu` and returns how it ended.
fn run(name: &str, cpu: usize) -> ExitInfo {
    let pid = process::spawn(name, cpu).unwrap_or_else(|e| panic!("spawn {name} on cpu{cpu}: {e}"));
    process::wait_info(pid).unwrap_or_else(|e| panic!("wait for {name} (pid {pid}): {e}"))
}

/// Makes every CPU drop a lazily kept address space (which holds its root
/// table), so frame counts compare like for like.
pub fn settle() {
    sched::leave_lazy_mm_everywhere().unwrap_or_else(|cpu| panic!("cpu{cpu} did not drop its lazy mm"));
}

/// Runs `f` once to warm the heap and the thread-stack pool, then again and
/// asserts that the free-frame count is the same before and after.
pub fn assert_no_frame_leak(what: &str, f: impl Fn()) {
    f();
    settle();
    let before = frame::stats().free;
    f();
    settle();
    let after = frame::stats().free;
    assert_eq!(after, before, "{what}: {} frames leaked", before as i64 - after as i64);
}

kernel::ktests! {
    fn hello_runs_and_exits_0_on_every_cpu() {
        for cpu in smp::online_cpus().iter() {
            let info = run("hello", cpu);
            assert_eq!(info, ExitInfo { status: 0, killed: None }, "hello on cpu{cpu}");
        }
    }

    fn a_faulting_program_is_killed_with_a_report_and_the_kernel_goes_on() {
        let info = run("fault", 0);
        assert_eq!(info.status, abi::status::KILLED_BY_FAULT);
        let report = info.killed.expect("no kill report");
        assert_eq!(report.vector, 14);
        assert_eq!(report.addr, 0x1234_5678_9000);
        assert!((0x40_0000..0x50_0000).contains(&report.rip), "rip {:#x} not in the program", report.rip);
        assert_eq!(run("hello", 0).status, 0, "the kernel did not go on running programs");
    }

    fn user_mode_cannot_disable_interrupts() {
        let info = run("privileged", 0);
        assert_eq!(info.status, abi::status::KILLED_BY_FAULT);
        assert_eq!(info.killed.expect("no kill report").vector, 13, "cli in ring 3 must be a #GP");
    }

    fn bad_pointers_get_efault_and_bad_arguments_their_errno() {
        // The program's exit status names the first case that went wrong.
        assert_eq!(run("badptr", 0), ExitInfo { status: 0, killed: None });
    }

    fn threads_on_every_cpu_report_their_cpu() {
        let n = smp::online_count() as i32;
        // The status is the number of CPUs whose thread ran there (>= 200: a failure).
        assert_eq!(run("threads", 0).status, n);
        // And from another CPU's main thread (no skip on one CPU: the first
        // part is the test).
        if let Some(&other) = crate::util::others().first() {
            assert_eq!(run("threads", other).status, n);
        }
    }

    fn exit_ends_every_thread_of_the_process() {
        // Threads spinning in user mode, sleeping in the kernel and yielding,
        // on every CPU: the process ends (and wait returns) only once all
        // are gone.
        let before = process::count();
        let info = run("exit_threads", 0);
        assert_eq!(info, ExitInfo { status: 42, killed: None });
        assert_eq!(process::count(), before, "the process was not reaped");
    }

    fn two_processes_on_one_cpu_preempt_each_other_on_return_to_user() {
        // Each spins 300 ms in user mode and exits with the time it started
        // (ms). The second is queued while the first spins: it can start
        // before the first ends only if returning to user (from the tick) is
        // a preemption point; otherwise it starts >= 300 ms later.
        let cpu = smp::online_cpus().iter().last().unwrap();
        let a = process::spawn("spin", cpu).unwrap();
        let b = process::spawn("spin", cpu).unwrap();
        let (start_a, start_b) = (process::wait(a).unwrap(), process::wait(b).unwrap());
        assert!(
            start_b.abs_diff(start_a) < 150,
            "the processes did not take turns on cpu{cpu}: started at {start_a} ms and {start_b} ms, each spins 300 ms"
        );
    }

    fn processes_on_different_cpus_run_at_once() {
        let Some(other) = other_cpu() else { return };
        let before = process::count();
        let a = process::spawn("spin", 0).unwrap();
        let b = process::spawn("spin", other).unwrap();
        let both_live = process::get(a).is_some_and(|p| p.live_threads() == 1)
            && process::get(b).is_some_and(|p| p.live_threads() == 1);
        let (start_a, start_b) = (process::wait(a).unwrap(), process::wait(b).unwrap());
        assert!(both_live, "the two processes were not alive at the same time");
        assert!(start_b.abs_diff(start_a) < 150, "started at {start_a} ms and {start_b} ms: not at once");
        assert_eq!(process::count(), before);
    }

    fn a_user_spinner_does_not_hold_up_rcu() {
        // A CPU running user code passes a quiescent state at every return
        // to user (each tick), so grace periods keep ending while it spins.
        // If it did not, the first grace period would end only when the
        // spinner exits (300 ms of wall time). Counted as grace periods
        // that both began and ended while the spinner was alive, not as a
        // time: under host load a vCPU's ticks come late, but they come.
        let Some(other) = other_cpu() else { return };
        let pid = process::spawn("spin", other).unwrap();
        let alive = || process::get(pid).is_some_and(|p| p.live_threads() == 1);
        sched::sleep_ns(20_000_000);
        let t0 = kernel::time::now_ns();
        let mut during = 0;
        while during < 5 && alive() {
            rcu::synchronize_rcu();
            if alive() {
                during += 1;
            }
        }
        let ms = (kernel::time::now_ns() - t0) / 1_000_000;
        process::wait(pid).unwrap();
        assert!(during >= 2, "{during} grace periods ended while a user spinner ran on cpu{other} ({ms} ms)");
    }

    fn spawn_and_wait_refuse_bad_arguments() {
        assert_eq!(process::spawn("no-such-program", 0), Err(abi::Errno::EINVAL));
        assert_eq!(process::spawn("hello", 4096), Err(abi::Errno::EINVAL));
        assert_eq!(process::wait(u64::MAX), Err(abi::Errno::ECHILD));
    }

    fn fork_gives_copy_on_write_memory_from_user_space() {
        // The child checks it sees the parent's data and writes its own; the
        // parent checks it does not see the child's writes (program `cow`).
        for cpu in smp::online_cpus().iter() {
            assert_eq!(run("cow", cpu).status, 0, "cow on cpu{cpu}");
        }
        assert_no_frame_leak("cow", || assert_eq!(run("cow", 0).status, 0));
    }

    fn memory_syscalls_work_and_refuse_bad_arguments() {
        assert_eq!(run("memcalls", 0).status, 0, "memcalls (the status is the failed check's number)");
        assert_no_frame_leak("memcalls", || assert_eq!(run("memcalls", 0).status, 0));
    }

    fn direct_io_from_user_space_on_every_cpu() {
        // Program `dio`: pattern reads and store round trips from a thread
        // on every CPU, a read into a COW-shared page, every errno. The
        // status is the failed check's number (workers: 100 + 10 * cpu + check).
        let before = kernel::dma::stats();
        let oracles = (kernel::mm::page::uaf_events(), kernel::mm::page::invariant_errors());
        assert_eq!(run("dio", 0).status, 0, "dio (the status is the failed check's number)");
        let after = kernel::dma::stats();
        assert_eq!(after.cancelled, before.cancelled, "a transfer timed out");
        assert!(after.completed > before.completed, "no transfer went through the DMA agent");
        assert_no_frame_leak("dio", || assert_eq!(run("dio", 0).status, 0));
        let now = (kernel::mm::page::uaf_events(), kernel::mm::page::invariant_errors());
        assert_eq!(now, oracles, "uaf or invariant errors (before/after)");
    }

    fn processes_free_every_frame() {
        let cpus: Vec<usize> = smp::online_cpus().iter().collect();
        assert_no_frame_leak("hello", || assert_eq!(run("hello", 0).status, 0));
        assert_no_frame_leak("fault", || assert_eq!(run("fault", 0).status, abi::status::KILLED_BY_FAULT));
        assert_no_frame_leak("threads", || assert_eq!(run("threads", 0).status, cpus.len() as i32));
        assert_no_frame_leak("exit_threads", || assert_eq!(run("exit_threads", 0).status, 42));
        assert_no_frame_leak("badptr", || assert_eq!(run("badptr", 0).status, 0));
    }
}
