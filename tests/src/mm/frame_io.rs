//! Frame contents through `mm::frame_io`: word and byte access, compare,
//! hash, fill and copies (4 KiB and huge folios), the device side's pin
//! check, and readers that run while another CPU writes the page.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::mm::frame_io::{self, DevicePage, OwnedFrames, PAGE_WORDS};
use kernel::mm::page::{self, PageRef, PinnedPage};
use kernel::mm::PAGE_SIZE;
use kernel::{sched, smp};

use super::assert_no_leaks;

/// The word a generation-`g` fill writes at word `i`: the generation in the
/// high half, the index in the low half (a torn word would show neither).
fn gen_word(g: u64, i: usize) -> u64 {
    (g << 32) | i as u64
}

kernel::ktests! {
    fn words_and_bytes_round_trip_at_any_offset() {
        assert_no_leaks(|| {
            let p = page::alloc_folio(0, true).expect("folio");
            frame_io::write_word(&p, 8, 0x1122_3344_5566_7788);
            assert_eq!(frame_io::read_word(p.page(), 8), 0x1122_3344_5566_7788);
            let msg = b"an unaligned run of bytes crossing words";
            frame_io::write_bytes(&p, 13, msg);
            let mut back = [0u8; 40];
            frame_io::read_bytes(p.page(), 13, &mut back);
            assert_eq!(&back[..], &msg[..]);
            let mut around = [0u8; 2];
            frame_io::read_bytes(p.page(), 12, &mut around[..1]);
            frame_io::read_bytes(p.page(), 13 + msg.len(), &mut around[1..]);
            assert_eq!(around, [0x44, 0], "bytes next to the run were changed");
            let mut tail = [0xffu8; 3];
            frame_io::read_bytes(p.page(), PAGE_SIZE as usize - 3, &mut tail);
            assert_eq!(tail, [0; 3]);
        });
    }

    fn compare_hash_fill_and_copy_agree() {
        assert_no_leaks(|| {
            let a = page::alloc_folio(0, false).expect("folio");
            let b = page::alloc_folio(0, false).expect("folio");
            frame_io::fill(&a, 0xabcd);
            frame_io::fill(&b, 0xabcd);
            assert!(frame_io::same_contents(a.page(), b.page()));
            assert_eq!(frame_io::checksum(a.page()), frame_io::checksum(b.page()));
            frame_io::write_word(&b, PAGE_SIZE as usize - 8, 1);
            assert!(!frame_io::same_contents(a.page(), b.page()), "the last word differs");
            assert_ne!(frame_io::checksum(a.page()), frame_io::checksum(b.page()));
            frame_io::copy_page_from(&b, a.page());
            assert!(frame_io::same_contents(a.page(), b.page()));
            frame_io::zero(&b);
            assert_eq!((0..PAGE_WORDS).map(|i| frame_io::read_word(b.page(), i * 8)).max(), Some(0));
        });
    }

    fn huge_folios_are_filled_page_by_page_and_copied_whole() {
        assert_no_leaks(|| {
            let Some(h) = page::alloc_folio(9, false) else { panic!("no 2 MiB folio") };
            let Some(g) = page::alloc_folio(9, true) else { panic!("no 2 MiB folio") };
            let src = page::alloc_folio(0, false).expect("folio");
            frame_io::fill(&src, 7);
            for i in 0..512 {
                if i % 2 == 0 { frame_io::copy_page_into(&h, i, src.page()) } else { frame_io::zero_page_in(&h, i) }
            }
            for i in [0usize, 1, 510, 511] {
                let p = page::page(h.page().pfn() + i as u64);
                assert_eq!(frame_io::read_word(p, 4088), if i % 2 == 0 { 7 } else { 0 }, "page {i}");
            }
            frame_io::copy_folio_from(&g, h.page());
            for i in 0..512u64 {
                assert!(frame_io::same_contents(page::page(g.page().pfn() + i), page::page(h.page().pfn() + i)), "page {i}");
            }
        });
    }

    fn readers_run_while_another_cpu_writes_the_page() {
        let Some(cpu) = smp::online_cpus().iter().find(|&c| c != smp::cpu_index()) else {
            panic!("the suite runs with at least 2 CPUs");
        };
        assert_no_leaks(|| {
            let p = page::alloc_folio(0, true).expect("folio");
            let copy = page::alloc_folio(0, false).expect("folio");
            let stop = Arc::new(AtomicBool::new(false));
            let gens = Arc::new(AtomicU64::new(0));
            let (s, n, w) = (stop.clone(), gens.clone(), PageRef::new_ref(p.page()));
            let writer = sched::spawn_on(cpu, "frame-writer", move || {
                let mut g = 1;
                while !s.load(Ordering::Relaxed) {
                    for i in 0..PAGE_WORDS {
                        frame_io::write_word(&w, i * 8, gen_word(g, i));
                    }
                    n.store(g, Ordering::Release);
                    g += 1;
                }
            })
            .expect("spawn the writer");
            let d = kernel::time::Deadline::after_ns(5_000_000_000);
            while gens.load(Ordering::Acquire) == 0 {
                assert!(!d.expired(), "the writer on cpu{cpu} never ran");
                core::hint::spin_loop();
            }
            let g0 = gens.load(Ordering::Acquire);
            // At least 200 rounds, and until the writer finished two more
            // generations while we read (vCPUs are host threads: the
            // writer's may be descheduled for a while).
            let d = kernel::time::Deadline::after_ns(20_000_000_000);
            let mut rounds = 0;
            while rounds < 200 || gens.load(Ordering::Acquire) < g0 + 2 {
                assert!(!d.expired(), "the writer on cpu{cpu} made no progress in 20 s (gen {g0})");
                rounds += 1;
                let _ = frame_io::same_contents(p.page(), copy.page());
                let _ = frame_io::checksum(p.page());
                frame_io::copy_page_from(&copy, p.page());
                // Every word of the snapshot is a whole word some generation
                // wrote at that index: never torn, never misplaced.
                for i in 0..PAGE_WORDS {
                    let v = frame_io::read_word(copy.page(), i * 8);
                    assert_eq!(v & 0xffff_ffff, i as u64, "word {i} of the copy is torn: {v:#x}");
                    assert!(v >> 32 >= 1, "word {i} predates the writer: {v:#x}");
                }
            }
            let g1 = gens.load(Ordering::Acquire);
            stop.store(true, Ordering::Relaxed);
            writer.join();
            assert!(g1 > g0, "the writer made no progress while the readers ran (gen {g0})");
            // Quiet now: the page is one generation throughout.
            let last = frame_io::read_word(p.page(), 0) >> 32;
            assert!((0..PAGE_WORDS).all(|i| frame_io::read_word(p.page(), i * 8) == gen_word(last, i)));
            frame_io::copy_page_from(&copy, p.page());
            assert!(frame_io::same_contents(p.page(), copy.page()));
            assert_eq!(frame_io::checksum(p.page()), frame_io::checksum(copy.page()));
        });
    }

    fn the_device_side_touches_only_pinned_frames() {
        let before = page::uaf_events();
        let p = page::alloc_folio(0, true).expect("folio");
        assert!(DevicePage::pinned(p.phys()).is_err(), "an unpinned frame was given to the device");
        assert_eq!(page::uaf_events(), before + 1, "the unpinned device access was not reported");
        let pin = PinnedPage::pin(p.page());
        let dev = DevicePage::pinned(p.phys()).expect("a pinned frame");
        dev.write_word(16, 42);
        assert_eq!(dev.read_word(16), 42);
        assert_eq!(frame_io::read_word(p.page(), 16), 42);
        drop(pin);
        drop(p);
    }

    fn owned_frames_are_zeroed_and_bounded() {
        let free = kernel::mm::frame::stats().free;
        let f = OwnedFrames::alloc_zeroed(1).expect("2 frames");
        assert_eq!(f.len(), 2 * PAGE_SIZE);
        assert_eq!(f.read_word(PAGE_SIZE + 8), 0);
        f.write_word(PAGE_SIZE + 8, 5);
        assert_eq!(f.read_word(PAGE_SIZE + 8), 5);
        drop(f);
        assert_eq!(kernel::mm::frame::stats().free, free, "dropping did not free the frames");
    }
}
