//! The boot sequence, in order, readable top to bottom.
//!
//! Stage 1 runs on the bootloader's stack and page tables: console, exception
//! handling, the clock, the boot options, the frame allocator, and the kernel's
//! own page tables. Everything later stages need from `BootInfo` is copied into
//! [`BootFacts`] first, because the bootloader's mappings (the boot info among
//! them) do not exist in the kernel's tables. Stage 2 runs on a kernel stack
//! with a guard page, on the kernel's tables: heap, per-CPU segments with
//! guarded IST stacks, the ACPI tables and the TSC frequency refined against
//! the timers they name, the framebuffer console, then the kernel's `main`.

mod facts;

pub use facts::BootFacts;

use bootloader_api::BootInfo;
use bootloader_api::config::{BootloaderConfig, Mapping};
use log::LevelFilter;

use crate::arch::{cpu, gdt, idt};
use crate::boot_options;
use crate::console::{self, logger};
use crate::debug::symbols;
use crate::mm::{self, frame, heap, kernel_map, layout, stack};
use crate::power::{self, ExitStatus};

/// Size of the boot CPU's kernel stack.
pub(crate) const BOOT_STACK_SIZE: usize = 256 * 1024;
pub(crate) use crate::arch::gdt::IST_STACK_SIZE;

/// What the kernel asks of the bootloader: a direct map of physical memory at a
/// dynamic offset, and every dynamic mapping (direct map, boot info, its stack,
/// the framebuffer) inside the bootloader's part of the kernel half, away from
/// the kernel's own regions (see `mm::layout`).
pub const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.mappings.dynamic_range_start = Some(layout::BOOTLOADER_DYNAMIC_START);
    config.mappings.dynamic_range_end = Some(layout::BOOTLOADER_DYNAMIC_END);
    config.kernel_stack_size = 128 * 1024;
    config
};

/// Declares a kernel binary's entry point: `kernel_entry!(main)` with
/// `fn main(&'static BootFacts) -> !`, called after the boot sequence.
#[macro_export]
macro_rules! kernel_entry {
    ($main:path) => {
        $crate::bootloader_api::entry_point!(__kernel_entry, config = &$crate::boot::BOOTLOADER_CONFIG);
        fn __kernel_entry(info: &'static mut $crate::bootloader_api::BootInfo) -> ! {
            $crate::boot::start(info, $main)
        }
    };
}

/// The binary's main function, called at the end of stage 2.
pub(crate) type KernelMain = fn(&'static BootFacts) -> !;

static MAIN: spin::Once<KernelMain> = spin::Once::new();

/// Stage 1 (see the module docs). Called by [`kernel_entry!`].
pub fn start(info: &'static mut BootInfo, main: KernelMain) -> ! {
    // Per-CPU data first: the logger and the fault handlers read it.
    crate::smp::percpu::init_boot_cpu(crate::arch::apic::id());
    let serial = console::init_serial();
    logger::init(LevelFilter::Info);
    gdt::install_early();
    // Before the IDT: exceptions reach the layers above arch through these.
    crate::arch::exceptions::register(crate::debug::exceptions::handlers());
    idt::install();
    if let Err(why) = serial {
        log::warn!("no serial console: {why}");
    }
    let facts = facts::collect(info);
    // The clock starts once the FADT was looked at: a hardware-reduced ACPI
    // platform has no PIT, so the early calibration must not program one.
    mm::set_phys_offset(facts.phys_offset);
    let mem_end = facts.ranges().iter().map(|r| r.end).max().unwrap_or(0);
    let hardware_reduced = crate::acpi::early::hardware_reduced(facts.rsdp, mem_end);
    crate::time::init(!matches!(hardware_reduced, Ok(true)));
    if let Some((buffer, fb_info)) = facts::early_framebuffer(info) {
        // The bootloader's mapping, valid until the switch: lets a machine
        // without serial show early errors (bad boot options) on screen.
        console::attach_framebuffer(buffer, fb_info);
        console::choose(console::ConsoleChoice::Auto);
    }
    log::info!(
        "testbed kernel {} booting; TSC {} kHz ({}){}",
        env!("CARGO_PKG_VERSION"),
        crate::arch::tsc::khz(),
        crate::arch::tsc::source(),
        match hardware_reduced {
            Ok(true) => " - hardware-reduced ACPI: no PIT, the clock waits for the HPET",
            Ok(false) => "",
            Err(_) => " - FADT not read early; assuming a PIT",
        }
    );
    let options = match boot_options::parse_bytes(facts.boot_options_raw) {
        Ok(options) => options,
        Err(e) => {
            log::error!("boot options: {e}");
            crate::println!("boot options error: {e}");
            power::exit(ExitStatus::Usage)
        }
    };
    logger::set_level(options.log_level);
    power::set_end_action(options.end);
    cpu::enable_protection_features();

    symbols::init(facts.kernel_elf());
    let mut usable = [frame::UsableRange { start: 0, end: 0 }; facts::MAX_RANGES];
    let n = facts.usable_ranges(&mut usable);
    frame::init(&usable[..n]);
    let image = kernel_map::build(facts.phys_end(), facts.kernel_elf());
    log::debug!("kernel image: {image:?}");
    let boot_stack = stack::alloc("boot", BOOT_STACK_SIZE);
    let facts = facts::publish(facts, options);
    MAIN.call_once(|| main);
    let _ = facts;
    kernel_map::activate_and_continue(boot_stack.top(), stage2)
}

/// Stage 2: on the kernel's tables and the guarded boot stack.
extern "C" fn stage2() -> ! {
    let facts = facts::get();
    // First: the console still points at the bootloader's framebuffer mapping,
    // which the kernel tables do not have; any report would fault on it.
    if let Some((buffer, info)) = facts.framebuffer() {
        console::attach_framebuffer(buffer, info);
    }
    heap::init();
    // The framebuffer console draws into RAM from here on and copies only
    // what changed to the screen (scrolls never read the framebuffer).
    match console::enable_shadow() {
        Ok(bytes) => log::debug!("console: framebuffer shadow buffer of {} KiB", bytes / 1024),
        Err("no framebuffer") => {}
        Err(why) => log::warn!("console: {why}; drawing on the framebuffer directly"),
    }
    let protection = cpu::enable_smep_smap();
    log::info!(
        "cpu: SMEP {}, SMAP {}",
        if protection.smep { "on" } else { "not offered" },
        if protection.smap { "on" } else { "not offered" }
    );
    gdt::install(gdt::TssStacks {
        double_fault: stack::alloc("cpu0 double-fault IST", IST_STACK_SIZE).top(),
        nmi: stack::alloc("cpu0 NMI IST", IST_STACK_SIZE).top(),
        machine_check: stack::alloc("cpu0 machine-check IST", IST_STACK_SIZE).top(),
        privilege0: stack::alloc("cpu0 ring-0 entry", IST_STACK_SIZE).top(),
    });
    crate::arch::usermode::init_this_cpu();
    // Syscalls and the return to user reach the layers above arch through these.
    crate::arch::usermode::register(crate::arch::usermode::UserHandlers {
        syscall: crate::syscall::dispatch,
        return_work: crate::process::return_work,
    });
    crate::acpi::init(facts.rsdp);
    crate::acpi::log_platform(crate::acpi::platform());
    if facts.options.end == power::EndAction::Poweroff {
        match crate::acpi::poweroff::find_s5(facts.rsdp) {
            Ok(s5) => {
                log::info!(
                    "end=poweroff: S5 by SLP_TYP {:#x}/{:#x} to PM1a_CNT port {:#x}{}",
                    s5.slp_typ.0,
                    s5.slp_typ.1,
                    s5.pm1a,
                    s5.pm1b.map_or(alloc::string::String::new(), |b| alloc::format!(" and PM1b_CNT port {b:#x}"))
                );
                S5.call_once(|| s5);
            }
            Err(why) => {
                log::error!("boot options: end=poweroff is not possible on this machine: {why}");
                crate::println!("boot options error: end=poweroff: {why}");
                power::exit(ExitStatus::Usage)
            }
        }
    }
    power::register_end_handler(end_machine);
    let platform = crate::acpi::platform();
    let hpet = platform.hpet.and_then(|h| crate::arch::hpet::init(h.base));
    let pm_timer = platform.pm_timer.and_then(|p| crate::arch::pmtimer::init(p.port, p.bits32));
    crate::time::recalibrate(
        hpet.map(|h| h as &dyn crate::arch::tsc::ReferenceClock),
        pm_timer.map(|p| p as &dyn crate::arch::tsc::ReferenceClock),
        platform.has_pit(),
    );
    let apic_ids: alloc::vec::Vec<u32> = platform.enabled_cpus().map(|c| c.apic_id).collect();
    crate::smp::call::set_call_timeout_ms(facts.options.call_timeout_ms);
    crate::stamps::set_enabled(facts.options.bench_breakdown);
    crate::smp::ipi::set_shorthand(facts.options.ipi_shorthand);
    crate::smp::ipi::set_logical(facts.options.ipi_logical);

    crate::rcu::set_stall_ms(facts.options.rcu_stall_ms);
    crate::tlb::init(facts.options.tlb);
    crate::race::init(&facts.options.race);
    crate::khugepaged::set_tunables(facts.options.khugepaged);
    crate::ksm::set_max_page_sharing(facts.options.ksm_max_page_sharing);
    // The writers above mm hook into fork and madvise (mm calls nothing above it).
    crate::mm::hooks::register_ksm(crate::mm::hooks::KsmHooks { madvise: crate::ksm::madvise, fork: crate::ksm::fork });
    crate::mm::hooks::register_khugepaged(crate::mm::hooks::KhugepagedHooks {
        madvise_collapse: crate::khugepaged::madvise_collapse,
        enter: crate::khugepaged::register,
        fork: crate::khugepaged::fork,
    });
    crate::gup::set_controls(crate::gup::Controls::of(&facts.options.race));
    log::info!("tlb: {}", crate::tlb::config());
    crate::smp::init_boot_cpu(platform.local_apic_address, facts.options.force_xapic, platform.has_8259_pics());
    if let Some(on) = facts.options.icr_poll {
        // After the APIC's set-up chose the default (bare metal or not).
        crate::arch::apic::set_icr_poll(on);
    }
    let timer_mode = crate::sched::init_global();
    let low_pages = crate::smp::startup::LOW_PAGES;
    let low_pages_usable = facts.is_usable(low_pages.start, low_pages.end);
    crate::smp::start_aps(low_pages_usable, &apic_ids, facts.options.ap_timeout_ms, crate::sched::start_ap);
    crate::sched::init_boot_cpu();
    if let Err(e) = crate::dma::init(facts.options.dma) {
        log::error!("boot options: {e}");
        crate::println!("boot options error: {e}");
        power::exit(ExitStatus::Usage)
    }
    crate::process::loader::prime_page_cache();
    if let Some(Err(e)) = facts.options.wedge_cpu.map(crate::debug::wedge::check) {
        log::error!("boot options: {e}");
        crate::println!("boot options error: {e}");
        power::exit(ExitStatus::Usage)
    }
    log::info!("scheduler: {timer_mode} tick at {} Hz on every CPU", crate::arch::timer::HZ);
    // The boot CPU runs with interrupts enabled from here on: it must answer
    // IPIs like every other CPU.
    x86_64::instructions::interrupts::enable();
    let sinks = console::choose(facts.options.console);
    console::set_status(
        console::Status::Running,
        format_args!(
            "RUNNING: testbed {} ({}, {} CPUs) - boot options: {}",
            env!("CARGO_PKG_VERSION"),
            if facts.uefi { "UEFI" } else { "BIOS" },
            crate::smp::online_cpus().len(),
            facts.boot_options_summary()
        ),
    );
    let frames = frame::stats();
    log::info!(
        "memory: {} MiB usable, {} MiB free; console: {sinks}; boot options: {}",
        frames.total * 4 / 1024,
        frames.free * 4 / 1024,
        facts.boot_options_summary()
    );
    if let Some(cpu) = facts.options.wedge_cpu {
        crate::debug::wedge::wedge_and_shoot_down(cpu);
    }
    (MAIN.get().expect("main not set"))(facts)
}

/// `end=poweroff`'s S5 registers and sleep types, found at boot.
static S5: spin::Once<crate::acpi::poweroff::S5> = spin::Once::new();

/// `end=reboot`: the FADT's reset register; `end=poweroff`: ACPI S5.
/// Returns why the machine did not reset or power off.
fn end_machine(action: power::EndAction) -> &'static str {
    match (action, crate::acpi::platform().reset) {
        (power::EndAction::Halt, _) => "nothing to do",
        (power::EndAction::Poweroff, _) => {
            let Some(&s5) = S5.get() else { return "S5 was not prepared at boot" };
            crate::console::emergency_print(format_args!(
                "end=poweroff: entering S5 (SLP_TYP {:#x} to PM1a_CNT port {:#x})\n",
                s5.slp_typ.0, s5.pm1a
            ));
            crate::acpi::poweroff::enter_s5(s5);
            let deadline = crate::time::Deadline::after_ns(100_000_000);
            while !deadline.expired() {
                core::hint::spin_loop();
            }
            "writing SLP_TYP|SLP_EN did not power the machine off within 100 ms"
        }
        (power::EndAction::Reboot, reset) => {
            // As Linux's reboot: ACPI's reset register, then the 8042, then a
            // triple fault (which resets every PC).
            match reset {
                Ok(reg) => {
                    crate::console::emergency_print(format_args!(
                        "end=reboot: writing {:#x} to the FADT reset register ({} {:#x})\n",
                        reg.value,
                        if reg.io { "I/O port" } else { "memory" },
                        reg.address
                    ));
                    crate::acpi::reset::reset(reg);
                    wait_100ms();
                    crate::console::emergency_print(format_args!(
                        "end=reboot: the FADT reset register did not reset the machine within 100 ms\n"
                    ));
                }
                Err(why) => crate::console::emergency_print(format_args!("end=reboot: no reset register ({why})\n")),
            }
            if crate::acpi::platform().has_8042 {
                crate::console::emergency_print(format_args!(
                    "end=reboot: pulsing the reset line of the 8042 keyboard controller (port 0x64 <- 0xfe)\n"
                ));
                crate::arch::reset::reset_via_8042();
                wait_100ms();
            }
            crate::console::emergency_print(format_args!("end=reboot: resetting by triple fault\n"));
            crate::arch::crash::triple_fault()
        }
    }
}

fn wait_100ms() {
    let deadline = crate::time::Deadline::after_ns(100_000_000);
    while !deadline.expired() {
        core::hint::spin_loop();
    }
}
