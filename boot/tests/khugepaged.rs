//! The khugepaged suite (`tests/src/khugepaged/`: MADV_COLLAPSE of full,
//! empty and single-pte ranges, an already huge range, pinned, referenced
//! and locked subpages refused with EAGAIN and the pin coherent, partial
//! munmap, argument errors, COW after fork with collapse before and after
//! it, the collapse switches on an idle range, sync=rcu, max_ptes_none,
//! max_ptes_shared, the khugepaged thread, bug G's walker inside a freed
//! table) on BIOS with 2 and 4 CPUs, and with `tlb=nmi` on 2.

use testbed::qemu::Firmware;
use testbed::testkit;

fn khugepaged_suite(smp: u32) {
    let out = testkit::run_suite_ok("khugepaged", Firmware::Bios, smp, 240);
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}

#[test]
fn khugepaged_suite_bios_smp2() {
    khugepaged_suite(2);
}

#[test]
fn khugepaged_suite_bios_smp4() {
    khugepaged_suite(4);
}

/// The suite again with NMI flushes: bug G's deterministic test
/// (`tests/src/khugepaged/table_sync.rs`) then shows the walker reading the
/// freed table without the table sync, and the sync waiting for it.
#[test]
fn khugepaged_suite_bios_smp2_tlb_nmi() {
    let out = testkit::run_suite_with("khugepaged", 2, &["tlb=nmi"], 240);
    out.assert_ok();
    let report = out.report(40);
    assert_eq!(out.ignored(), 0, "nothing may be skipped:\n{report}");
    assert_eq!(Some(out.passed()), out.total, "not every test ran and passed:\n{report}");
}
