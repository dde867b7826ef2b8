//! The writer-side protocol as seen from outside: pinned and GUP-referenced
//! pages are refused (write_protect_page's reference check, which none of
//! Linux's KSM selftests covers) and their ptes restored; the
//! `ksm.check_before_clear` order and the `sync=rcu` marker path still merge,
//! and a fault on a page under the marker waits for it; ksmd merges on its
//! own CPU and stops.

use core::sync::atomic::{AtomicBool, Ordering};

use alloc::sync::Arc;
use kernel::gup::{self, Foll};
use kernel::ksm::{self, Tunables};
use kernel::mm::fault::AccessKind;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::PinnedPage;
use kernel::mm::paging::PteFlags;
use kernel::mm::{PAGE_SIZE, pgtable};
use kernel::race::{self, KsmSwitches, SyncMode};

use super::{
    assert_maps_ksm, assert_private, check, check_phys, fill, ksm_no_leaks, mapped, merge_all, raw_pte, sharing,
};
use crate::mm::{RW, in_mm, mmap, new_mm, touch};
use kernel::mm::UserAddr;

/// An online CPU other than this one.
fn other_cpu() -> usize {
    let me = kernel::smp::cpu_index();
    kernel::smp::online_cpus().iter().find(|&c| c != me).expect("the ksm suite needs 2 CPUs")
}

/// Two equal pages `a` (to be held) and `a + PAGE_SIZE` in a fresh mergeable
/// area; returns the address space and `a`.
fn equal_pair(v: u64) -> (Arc<kernel::mm::addr_space::AddressSpace>, UserAddr) {
    let mm = new_mm();
    let a = mmap(&mm, 2 * PAGE_SIZE, RW);
    in_mm(&mm, move || {
        fill(a, v);
        fill(a + PAGE_SIZE, v);
    });
    m::madvise(&mm, a.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
    (mm, a)
}

/// The refusal half of the held-page tests: with `a` held by `hold` (a pin or
/// a reference), scans refuse it for `refused_pinned`, its pte comes back
/// exactly as it was, and only its partner becomes a (lone) KSM page. After
/// `hold` is dropped, the page merges.
fn held_page_is_refused_then_merges<H>(mm: &kernel::mm::addr_space::AddressSpace, a: UserAddr, v: u64, hold: H) {
    let (p, before) = mapped(mm, a);
    assert!(before.flags().contains(PteFlags::WRITABLE));
    let s0 = ksm::stats();
    merge_all();
    let s = ksm::stats();
    assert!(s.refused_pinned > s0.refused_pinned, "the held page was not refused for its references: {s:?}");
    assert_eq!(raw_pte(mm, a), Some(before), "the held page's pte was not restored as it was");
    assert!(!p.has(kernel::mm::page::PageFlags::KSM), "the held page was made a KSM page");
    // The partner may stay a lone KSM page (this KSM keeps it; Linux's
    // break_cow() would undo it), but nothing shares it.
    assert_eq!(sharing().1, 0, "the held page's partner is shared: {s:?}");
    drop(hold);
    merge_all();
    assert_eq!(sharing(), (1, 1), "the released page did not merge: {:?}", ksm::stats());
    let (k, _) = mapped(mm, a + PAGE_SIZE);
    assert_maps_ksm(mm, a, k);
    assert_maps_ksm(mm, a + PAGE_SIZE, k);
    check_phys(k.phys(), v);
}

/// Starts a thread on another CPU in `mm` that spins (without a quiescent
/// state) until `a` or `b` holds a writer's marker, then faults that address
/// in for reading. Returns once the thread runs; its result is (address
/// faulted, nanoseconds the fault waited) or `None` if no marker was seen
/// within 3 s.
fn fault_on_marker(
    mm: &Arc<kernel::mm::addr_space::AddressSpace>,
    a: UserAddr,
    b: UserAddr,
) -> kernel::sched::JoinHandle<Option<(UserAddr, u64)>> {
    let ready = Arc::new(AtomicBool::new(false));
    let r = ready.clone();
    let m2 = mm.clone();
    let h = kernel::sched::spawn_in(other_cpu(), "ksm marker fault", Some(mm.clone()), move || {
        // Relaxed: only a start signal; nothing is published through it.
        r.store(true, Ordering::Relaxed);
        let deadline = kernel::time::now_ns() + 3_000_000_000;
        while kernel::time::now_ns() < deadline {
            for addr in [a, b] {
                if raw_pte(&m2, addr).is_some_and(pgtable::is_marker) {
                    let t0 = kernel::time::now_ns();
                    touch(addr, AccessKind::Read);
                    let waited = kernel::time::now_ns() - t0;
                    let e = raw_pte(&m2, addr).expect("pte table gone");
                    assert!(e.is_present() && !pgtable::is_marker(e), "the fault returned with {e:?} at {addr:#x}");
                    return Some((addr, waited));
                }
            }
            core::hint::spin_loop();
        }
        None
    })
    .expect("spawn");
    let deadline = kernel::time::now_ns() + 5_000_000_000;
    while !ready.load(Ordering::Relaxed) {
        assert!(kernel::time::now_ns() < deadline, "the marker-fault thread did not start within 5 s");
        kernel::sched::yield_now();
    }
    h
}

kernel::ktests! {
    fn a_pinned_page_is_not_merged_until_unpinned() {
        ksm_no_leaks(|| {
            let (mm, a) = equal_pair(0x9119);
            let pins = gup::get_user_pages(&mm, a, 1, Foll::PIN | Foll::WRITE).expect("pin");
            assert!(pins[0].page().maybe_dma_pinned());
            held_page_is_refused_then_merges(&mm, a, 0x9119, pins);
            in_mm(&mm, move || {
                check(a, 0x9119);
                check(a + PAGE_SIZE, 0x9119);
            });
        });
    }

    fn a_gup_reference_blocks_the_merge() {
        ksm_no_leaks(|| {
            let (mm, a) = equal_pair(0x6e7);
            let refs = gup::get_user_pages(&mm, a, 1, Foll::GET).expect("get");
            let p = refs[0].page();
            // A plain reference: refcount != mapcount + 1, no pin bias.
            assert!(!p.maybe_dma_pinned());
            assert_eq!((p.refcount(), p.mapcount()), (2, 1));
            held_page_is_refused_then_merges(&mm, a, 0x6e7, refs);
        });
    }

    fn check_before_clear_still_merges_and_refuses_pins() {
        ksm_no_leaks(|| {
            race::set_ksm_switches(KsmSwitches { check_before_clear: true, no_flush: false });
            let (mm, a) = equal_pair(0xcbc);
            // A pin taken directly on the page (as a driver would).
            let pin = PinnedPage::pin(mapped(&mm, a).0);
            held_page_is_refused_then_merges(&mm, a, 0xcbc, pin);
            // And a plain pair merges under this order.
            let b = mmap(&mm, 2 * PAGE_SIZE, RW);
            in_mm(&mm, move || {
                fill(b, 0xcbd);
                fill(b + PAGE_SIZE, 0xcbd);
            });
            m::madvise(&mm, b.as_u64(), 2 * PAGE_SIZE, advice::MERGEABLE).unwrap();
            merge_all();
            assert_eq!(sharing(), (2, 2));
            let (k, _) = mapped(&mm, b);
            assert_maps_ksm(&mm, b + PAGE_SIZE, k);
            race::set_ksm_switches(KsmSwitches::default());
        });
    }

    fn sync_rcu_merges_and_a_fault_under_the_marker_waits() {
        ksm_no_leaks(|| {
            race::set_sync_mode(SyncMode::Rcu);
            let (mm, a) = equal_pair(0x4c0);
            let b = a + PAGE_SIZE;
            // First visit: checksums only (no merge attempt, no marker).
            super::scan_passes(1);
            assert_eq!(sharing(), (0, 0));
            let gps = kernel::rcu::completed();
            let faulter = fault_on_marker(&mm, a, b);
            merge_all();
            let seen = match faulter.join_timeout(10_000_000_000) {
                Ok(r) => r,
                Err((t, _)) => panic!("the marker-fault thread on cpu{} did not finish within 10 s", t.cpu),
            };
            let (addr, waited) = seen.expect("no KSM marker pte seen within 3 s under sync=rcu");
            log::info!("fault at {addr:#x} waited {waited} ns for KSM's marker");
            assert!(kernel::rcu::completed() > gps, "sync=rcu merged without a grace period");
            assert_eq!(sharing(), (1, 1), "{:?}", ksm::stats());
            let (k, _) = mapped(&mm, a);
            assert_maps_ksm(&mm, b, k);
            in_mm(&mm, move || {
                check(a, 0x4c0);
                check(b, 0x4c0);
            });
            race::set_sync_mode(SyncMode::None);
        });
    }

    fn ksmd_on_another_cpu_merges_and_stops() {
        const N: u64 = 6;
        ksm_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, N * PAGE_SIZE, RW);
            in_mm(&mm, move || {
                for i in 0..N {
                    fill(a + i * PAGE_SIZE, 0xd00d);
                }
            });
            m::madvise(&mm, a.as_u64(), N * PAGE_SIZE, advice::MERGEABLE).unwrap();
            let cpu = other_cpu();
            ksm::start_ksmd(cpu, Tunables { pages_to_scan: 16, sleep_us: 500 }).expect("start ksmd");
            assert!(ksm::start_ksmd(cpu, Tunables::DEFAULT).is_err(), "a second ksmd started");
            let t0 = kernel::time::now_ns();
            while sharing() != (1, N - 1) {
                if kernel::time::now_ns() - t0 > 10_000_000_000 {
                    let _ = ksm::stop_ksmd();
                    panic!("ksmd on cpu{cpu} did not merge within 10 s: {:?}", ksm::stats());
                }
                kernel::sched::sleep_ns(1_000_000);
            }
            log::info!("ksmd merged {N} pages in {} us", (kernel::time::now_ns() - t0) / 1000);
            ksm::stop_ksmd().expect("stop ksmd");
            let scans = ksm::stats().pages_scanned;
            kernel::sched::sleep_ns(20_000_000);
            assert_eq!(ksm::stats().pages_scanned, scans, "ksmd still scans after stop_ksmd");
            for i in 0..N {
                assert_maps_ksm(&mm, a + i * PAGE_SIZE, mapped(&mm, a).0);
            }
            // A write after ksmd stopped copies as usual.
            in_mm(&mm, move || fill(a, 0xd00e));
            assert_private(&mm, a);
        });
    }
}
