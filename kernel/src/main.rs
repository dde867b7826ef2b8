//! The main testbed kernel: boots, reports what it found, runs the race
//! scenario `scenario=` names, the program `init=` names or the benchmarks
//! `bench=` lists, or else the main job (every scenario's table held and
//! broken; `job=none` only boots, `job=keys` lists the boot keys), and ends
//! the run. `crash=` makes it crash deliberately to check the crash reports.

#![no_std]
#![no_main]

use kernel::boot::BootFacts;
use kernel::power::{self, ExitStatus};

kernel::kernel_entry!(main);

fn main(facts: &'static BootFacts) -> ! {
    if let Some(kind) = facts.options.crash {
        kernel::debug::crash::perform(kind);
    }
    let heap = kernel::mm::heap::stats();
    log::info!(
        "boot complete ({} firmware); heap {} KiB mapped, {} bytes in use",
        if facts.uefi { "UEFI" } else { "BIOS" },
        heap.size / 1024,
        heap.used
    );
    if let Some(program) = facts.options.init {
        match kernel::process::spawn(program, 0).and_then(kernel::process::wait) {
            Ok(status) => {
                log::info!("init: {program} exited with status {status}");
                if status != 0 {
                    power::exit(ExitStatus::Fail);
                }
            }
            Err(e) => {
                log::error!("init: {program}: {e}");
                power::exit(ExitStatus::Fail);
            }
        }
    }
    if facts.options.race.scenario.is_some() {
        match kernel::scenario::run(&facts.options.race) {
            Ok(true) => {}
            Ok(false) => power::exit(ExitStatus::Fail),
            Err(e @ kernel::scenario::ScenarioError::Cpus { .. }) => {
                // A scenario the CPUs online cannot run is a bad boot option.
                log::error!("{e}");
                power::exit(ExitStatus::Usage);
            }
            Err(e) => {
                log::error!("{e}");
                power::exit(ExitStatus::Fail);
            }
        }
    }
    let nothing_asked = facts.options.race.scenario.is_none() && facts.options.bench.is_empty() && facts.options.init.is_none();
    let job = facts.options.job;
    if nothing_asked && job == kernel::scenario::job::Job::Keys {
        kernel::boot_options::print_keys();
    } else if nothing_asked && job != kernel::scenario::job::Job::None {
        // The main job: every scenario's rows, held and broken (`job=none`:
        // boot only; `job=list`: the rows only; `job=keys`: the boot keys).
        if job == kernel::scenario::job::Job::Races && kernel::smp::online_count() < 2 {
            log::warn!("main job: the races need at least 2 CPUs and 1 is online: booted only (--smp 2 or more runs them)");
        } else {
            match kernel::scenario::run_job(&facts.options.race, job, facts.options.job_rows) {
                Ok(true) => {}
                Ok(false) => power::exit(ExitStatus::Fail),
                Err(e @ kernel::scenario::ScenarioError::Option(_)) => {
                    log::error!("{e}");
                    power::exit(ExitStatus::Usage);
                }
                Err(e) => {
                    log::error!("{e}");
                    power::exit(ExitStatus::Fail);
                }
            }
        }
    }
    if !facts.options.bench.is_empty()
        && let Err(e) = kernel::bench::run(facts.options.bench)
    {
        log::error!("{e}");
        power::exit(ExitStatus::Fail);
    }
    power::exit(ExitStatus::Pass)
}
