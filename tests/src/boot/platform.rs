//! The platform as ACPI describes it, and the timers it names.
//!
//! The suite runs under QEMU q35 (BIOS or UEFI), which always has an IOAPIC, an
//! HPET at 0xfed00000 and an ACPI PM timer; these tests expect all three, so a
//! kernel that silently fell back to the single-CPU platform fails here.

use kernel::acpi;
use kernel::arch::{hpet, pmtimer};
use kernel::mm::mmio;
use kernel::time::Deadline;
use x86_64::PhysAddr;

/// The boot CPU's APIC id as CPUID leaf 1 gives it (8 bits).
fn cpuid_leaf1_apic_id() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

kernel::ktests! {
    fn boot_cpu_is_listed_and_enabled() {
        let p = acpi::platform();
        assert!(p.from_madt, "expected CPUs from the MADT, got the single-CPU fallback");
        assert!(p.enabled_cpus().count() >= 1, "no enabled CPU: {:?}", p.cpus);
        let id = cpuid_leaf1_apic_id();
        assert_eq!(p.boot_apic_id & 0xff, id, "boot APIC id differs from CPUID leaf 1");
        let cpu = p.cpus.iter().find(|c| c.apic_id == p.boot_apic_id).expect("boot CPU not among the CPUs");
        assert!(cpu.enabled, "boot CPU listed as not enabled: {cpu:?}");
        for (i, a) in p.cpus.iter().enumerate() {
            assert!(p.cpus[i + 1..].iter().all(|b| b.apic_id != a.apic_id), "APIC id {} listed twice", a.apic_id);
        }
    }

    fn q35_has_ioapic_hpet_and_pm_timer() {
        let p = acpi::platform();
        assert!(!p.io_apics.is_empty(), "q35 has an IOAPIC; the MADT gave none");
        assert!(p.io_apics.iter().any(|io| io.gsi_base == 0), "no IOAPIC starts at GSI 0: {:?}", p.io_apics);
        let h = p.hpet.expect("q35 has an HPET; no HPET table was found");
        assert_eq!(h.base, 0xfed0_0000, "q35's HPET is at 0xfed00000");
        let pm = p.pm_timer.expect("q35 has an ACPI PM timer; the FADT gave none");
        assert!(pm.port != 0);
    }

    fn local_apic_address_is_page_aligned() {
        let a = acpi::platform().local_apic_address;
        assert!(a != 0 && a % 4096 == 0, "local APIC address {a:#x}");
    }

    fn hpet_registers_are_sane_and_counter_advances() {
        let base = acpi::platform().hpet.expect("no HPET on q35").base;
        // SAFETY: the HPET table names this block as the HPET's registers.
        let regs = unsafe { mmio::map(PhysAddr::new(base), hpet::REGISTER_BLOCK) }.expect("cannot map the HPET");
        let caps = regs.read64(hpet::CAPABILITIES);
        let vendor = (caps >> 16) & 0xffff;
        let period_fs = caps >> 32;
        assert!(vendor != 0, "HPET vendor id 0 (capabilities {caps:#x})");
        assert!(period_fs != 0 && period_fs <= 0x05F5_E100, "HPET period {period_fs} fs (capabilities {caps:#x})");
        let first = regs.read64(hpet::MAIN_COUNTER);
        let deadline = Deadline::after_ns(10_000_000);
        while regs.read64(hpet::MAIN_COUNTER) == first {
            assert!(!deadline.expired(), "HPET main counter stuck at {first:#x} for 10 ms");
        }
        assert!(hpet::get().is_some(), "the kernel did not keep the HPET");
    }

    fn pm_timer_advances() {
        let info = acpi::platform().pm_timer.expect("no PM timer on q35");
        let timer = pmtimer::get().expect("the kernel did not keep the PM timer");
        assert_eq!(timer.port(), info.port);
        let first = timer.counter();
        let deadline = Deadline::after_ns(10_000_000);
        while timer.counter() == first {
            assert!(!deadline.expired(), "PM timer stuck at {first:#x} for 10 ms");
        }
    }

    fn tsc_agrees_with_reference_timer() {
        let source = kernel::arch::tsc::source();
        let hpet = kernel::arch::hpet::get().map(|h| h as &dyn kernel::arch::tsc::ReferenceClock);
        let pm_timer = kernel::arch::pmtimer::get().map(|p| p as &dyn kernel::arch::tsc::ReferenceClock);
        let check = kernel::time::verify_tsc(hpet, pm_timer).unwrap_or_else(|e| panic!("TSC check failed: {e}"));
        log::info!(
            "TSC ({source}, {} kHz) vs {}: {} ns vs {} ns, {} ppm",
            kernel::arch::tsc::khz(),
            check.reference,
            check.tsc_ns,
            check.reference_ns,
            check.error_ppm()
        );
        assert!(check.reference_ns >= 40_000_000, "reference window only {} ns", check.reference_ns);
    }

    fn same_mmio_page_maps_to_same_virtual_page() {
        let base = acpi::platform().hpet.expect("no HPET on q35").base;
        // SAFETY: HPET registers, as above; two views of the same block.
        let (a, b) = unsafe {
            (
                mmio::map(PhysAddr::new(base), 8).expect("first mapping"),
                mmio::map(PhysAddr::new(base + hpet::MAIN_COUNTER), 8).expect("second mapping"),
            )
        };
        assert_eq!(a.virt.as_u64() & !0xfff, b.virt.as_u64() & !0xfff, "{a:?} vs {b:?}");
        assert_eq!(b.virt.as_u64() & 0xfff, hpet::MAIN_COUNTER);
        assert!(a.virt.as_u64() >= kernel::mm::layout::MMIO_START);
        // Same page, same registers: the capabilities read equal through both.
        let whole = hpet::get().expect("no HPET").registers();
        assert_eq!(a.read64(0), whole.read64(hpet::CAPABILITIES));
    }

    fn clock_is_monotonic_after_recalibration() {
        let mut last = kernel::time::now_ns();
        for _ in 0..100_000 {
            let now = kernel::time::now_ns();
            assert!(now >= last, "time went back from {last} to {now}");
            last = now;
        }
    }
}
