//! Pins used for DMA: the software DMA agent writes pinned frames through
//! the direct map, and direct I/O (`kernel::dma::direct_io`) pins, submits,
//! waits and unpins. What GUP's own tests (`basic.rs`) check for the pins,
//! checked here for a transfer that really happens while they are held:
//! the frame outlives munmap and the DMA lands in it, it is freed on unpin,
//! pin counts return to zero, a device write into a COW-shared page breaks
//! COW, a device read of a shared page sees the process's later writes,
//! bad arguments get their errno, nothing leaks.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::dma::{self, DeviceSide, Direction, DioOp, DmaError, DmaRequest, Segment};
use kernel::gup::{self, Foll, Grabbed};
use kernel::mm::fork::fork_mm;
use kernel::mm::mmap::{self as m, advice};
use kernel::mm::page::{self, PIN_BIAS, POISON_BYTE, PageFlags};
use kernel::mm::{HUGE_PAGE_SIZE, PAGE_SIZE};
use x86_64::PhysAddr;

use abi::Errno;
use abi::dio::{DEVICE_SIZE, pattern_word};

use crate::mm::{RW, assert_no_leaks, in_mm, mmap, new_mm, read, read_phys, translate, write};
use kernel::mm::UserAddr;

const POISON_WORD: u64 = u64::from_ne_bytes([POISON_BYTE; 8]);
/// Where to look for the free poison in a freed frame: past the buddy
/// allocator's free-list node, which it keeps in the first 16 bytes.
const FREE_CHECK_OFF: u64 = 64;

/// The first word of `[pa, pa+len)` that is not the pattern of `seq` (offsets
/// counted from `start`), if any.
fn pattern_mismatch(pa: PhysAddr, len: u64, seq: u64, start: u64) -> Option<(u64, u64)> {
    (0..len / 8).map(|i| (start + i * 8, read_phys(pa + i * 8))).find(|&(off, v)| v != pattern_word(seq, off))
}

kernel::ktests! {
    fn dma_lands_in_a_pinned_frame_after_munmap_and_the_frame_is_freed_on_unpin() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, PAGE_SIZE, RW);
            let pin = in_mm(&mm, move || {
                write(a, 1);
                match gup::get_user_pages_fast(a, 1, Foll::PIN | Foll::WRITE).unwrap().pop().unwrap() {
                    Grabbed::Pin(p) => p,
                    Grabbed::Ref(_) => panic!("FOLL_PIN gave a reference"),
                }
            });
            m::munmap(&mm, a.as_u64(), PAGE_SIZE).unwrap();
            assert_eq!(pin.page().mapcount(), 0);
            assert_eq!(pin.page().refcount(), PIN_BIAS, "only the pin holds the frame");
            let pa = pin.phys();
            let uaf = page::uaf_events();
            let live = page::live_folios();
            let req = DmaRequest {
                dir: Direction::ToMemory,
                device: DeviceSide::Pattern { seq: 77 },
                segments: alloc::vec![Segment { phys: pa, len: PAGE_SIZE }],
            };
            dma::engine().submit(req).expect("submit").wait().expect("the DMA did not complete");
            assert_eq!(pattern_mismatch(pa, PAGE_SIZE, 77, 0), None, "the DMA did not land in the pinned frame");
            assert_eq!(page::uaf_events(), uaf, "the pinned frame was freed under the DMA");
            drop(pin);
            // The unpin dropped the last reference: the frame is free and
            // poisoned (read through the direct map; nothing uses it now).
            assert_eq!(page::live_folios(), live - 1, "the frame was not freed on unpin");
            assert_eq!(read_phys(pa + FREE_CHECK_OFF), POISON_WORD, "the frame was not poisoned on unpin");
        });
    }

    fn a_buffer_unmapped_while_pinned_for_direct_io_still_gets_the_dma() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 4 * PAGE_SIZE, RW);
            let m2 = mm.clone();
            let live = page::live_folios();
            let frames = in_mm(&mm, move || {
                let mut frames = Vec::new();
                let r = dma::direct_io_with(&m2, a, 4 * PAGE_SIZE, DioOp::ReadPattern { seq: 5 }, |pins| {
                    // Between pin and submit: the process unmaps the buffer.
                    m::munmap(&m2, a.as_u64(), 4 * PAGE_SIZE).unwrap();
                    assert_eq!(page::live_folios(), live + 4, "the pins do not keep the frames");
                    for p in pins {
                        assert_eq!(p.page().mapcount(), 0);
                        assert_eq!(p.page().refcount(), PIN_BIAS, "only the pin holds the frame");
                        frames.push(p.phys());
                    }
                });
                assert_eq!(r, Ok(4 * PAGE_SIZE as usize));
                frames
            });
            // Every frame got its DMA (it was pinned, not freed, while the
            // agent wrote), then was freed on unpin.
            assert_eq!(frames.len(), 4);
            assert_eq!(page::live_folios(), live, "the frames were not freed on unpin");
            for pa in frames {
                assert_eq!(read_phys(pa + FREE_CHECK_OFF), POISON_WORD, "frame {pa:#x} was not freed on unpin");
            }
        });
    }

    fn direct_io_pin_counts_balance_on_small_and_huge_pages() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 8 * PAGE_SIZE, RW);
            let h = mmap(&mm, HUGE_PAGE_SIZE, RW);
            m::madvise(&mm, h.as_u64(), HUGE_PAGE_SIZE, advice::HUGEPAGE).unwrap();
            let m2 = mm.clone();
            in_mm(&mm, move || {
                write(h, 1);
                let head = page::page_of(translate(&m2, h).unwrap().phys);
                assert!(head.is_large(), "no THP behind the huge buffer");
                let r = dma::direct_io_with(&m2, a, 8 * PAGE_SIZE, DioOp::ReadPattern { seq: 1 }, |pins| {
                    for p in pins {
                        assert_eq!((p.page().dma_pins(), p.page().refcount()), (1, 1 + PIN_BIAS));
                    }
                });
                assert_eq!(r, Ok(8 * PAGE_SIZE as usize));
                for i in 0..8 {
                    let p = page::page_of(translate(&m2, a + i * PAGE_SIZE).unwrap().phys);
                    assert_eq!((p.dma_pins(), p.refcount()), (0, 1), "page {i} not unpinned");
                    assert!(p.has(PageFlags::DIRTY), "a page the device wrote was not marked dirty");
                    assert_eq!(read(a + i * PAGE_SIZE), pattern_word(1, i * PAGE_SIZE));
                }
                let r = dma::direct_io_with(&m2, h, HUGE_PAGE_SIZE, DioOp::ReadPattern { seq: 2 }, |pins| {
                    assert_eq!(pins.len(), 512);
                    assert_eq!((head.pincount(), head.dma_pins(), head.refcount()), (512, 512, 513));
                });
                assert_eq!(r, Ok(HUGE_PAGE_SIZE as usize));
                assert_eq!((head.pincount(), head.dma_pins(), head.refcount()), (0, 0, 1));
                assert_eq!(pattern_mismatch(head.phys(), HUGE_PAGE_SIZE, 2, 0), None);
            });
        });
    }

    fn a_device_write_into_a_cow_shared_page_breaks_cow() {
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let child = fork_mm(&parent).unwrap();
            let shared = translate(&parent, a).unwrap().phys;
            let p2 = parent.clone();
            let pinned = Arc::new(AtomicU64::new(0));
            let pn = pinned.clone();
            let r = in_mm(&parent, move || {
                dma::direct_io_with(&p2, a, PAGE_SIZE, DioOp::ReadPattern { seq: 9 }, |pins| {
                    pn.store(pins[0].phys().as_u64(), Ordering::Relaxed);
                })
            });
            assert_eq!(r, Ok(PAGE_SIZE as usize));
            let pinned = PhysAddr::new(pinned.load(Ordering::Relaxed));
            assert_ne!(pinned, shared, "the device wrote the page the child still maps");
            assert_eq!(translate(&parent, a).unwrap().phys, pinned, "the parent does not map the page the device wrote");
            in_mm(&parent, move || assert_eq!(read(a), pattern_word(9, 0)));
            in_mm(&child, move || assert_eq!(read(a), 1, "the child saw the parent's DMA"));
        });
    }

    fn a_device_read_of_a_shared_page_sees_the_process_later_writes() {
        // cow.c's read-pin check, with a real device read: a dio_write pins
        // its buffer with FOLL_PIN and no FOLL_WRITE; for a page shared after
        // fork that pin must unshare, i.e. pin the page the process maps from
        // now on, so a write the process makes after the pin and before the
        // transfer reaches the device.
        assert_no_leaks(|| {
            let parent = new_mm();
            let a = mmap(&parent, PAGE_SIZE, RW);
            let b = mmap(&parent, PAGE_SIZE, RW);
            in_mm(&parent, move || write(a, 1));
            let child = fork_mm(&parent).unwrap();
            let shared = translate(&parent, a).unwrap().phys;
            let p2 = parent.clone();
            let dev_off = DEVICE_SIZE - PAGE_SIZE;
            let back = in_mm(&parent, move || {
                let r = dma::direct_io_with(&p2, a, PAGE_SIZE, DioOp::Write { dev_off }, |pins| {
                    assert_ne!(pins[0].phys(), shared, "the read pin did not unshare");
                    assert!(pins[0].page().has(PageFlags::ANON_EXCLUSIVE));
                    write(a, 0xabcd); // after the pin, before the transfer
                });
                assert_eq!(r, Ok(PAGE_SIZE as usize));
                assert_eq!(dma::direct_io(&p2, b, PAGE_SIZE, DioOp::Read { dev_off }), Ok(PAGE_SIZE as usize));
                read(b)
            });
            assert_eq!(back, 0xabcd, "the device read a stale copy, not the page the process writes");
            in_mm(&child, move || assert_eq!(read(a), 1));
        });
    }

    fn direct_io_round_trips_through_the_device_store() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 16 * PAGE_SIZE, RW);
            let m2 = mm.clone();
            in_mm(&mm, move || {
                for i in 0..8 {
                    for w in 0..PAGE_SIZE / 8 {
                        write(a + i * PAGE_SIZE + w * 8, (i << 32) | w | 0x77 << 56);
                    }
                }
                assert_eq!(dma::direct_write(&m2, a, 8 * PAGE_SIZE, 64 * PAGE_SIZE), Ok(8 * PAGE_SIZE as usize));
                let b = a + 8 * PAGE_SIZE;
                assert_eq!(dma::direct_io(&m2, b, 8 * PAGE_SIZE, DioOp::Read { dev_off: 64 * PAGE_SIZE }), Ok(8 * PAGE_SIZE as usize));
                for i in 0..8 {
                    for w in 0..PAGE_SIZE / 8 {
                        assert_eq!(read(b + i * PAGE_SIZE + w * 8), (i << 32) | w | 0x77 << 56, "page {i} word {w}");
                    }
                }
            });
        });
    }

    fn direct_io_refuses_bad_arguments_with_their_errno() {
        assert_no_leaks(|| {
            let mm = new_mm();
            let a = mmap(&mm, 4 * PAGE_SIZE, RW);
            let ro = mmap(&mm, PAGE_SIZE, 1);
            let other = new_mm();
            let m2 = mm.clone();
            let before = dma::stats();
            in_mm(&mm, move || {
                // A raw buffer address as the system call gives it: converted
                // first, as the syscall layer does (beyond the user half: EFAULT).
                let rd = |buf: u64, len: u64| UserAddr::new(buf).ok_or(Errno::EFAULT).and_then(|b| dma::direct_read(&m2, b, len, 3));
                assert_eq!(rd(0, PAGE_SIZE), Err(Errno::EFAULT), "null");
                assert_eq!(rd(0x1000_0000, PAGE_SIZE), Err(Errno::EFAULT), "unmapped");
                assert_eq!(rd(0xffff_8000_0000_0000, PAGE_SIZE), Err(Errno::EFAULT), "kernel address");
                assert_eq!(rd(a.as_u64(), 8 * PAGE_SIZE), Err(Errno::EFAULT), "runs into unmapped memory");
                assert_eq!(rd(ro.as_u64(), PAGE_SIZE), Err(Errno::EFAULT), "device write into read-only memory");
                assert_eq!(rd(a.as_u64() + 8, PAGE_SIZE), Err(Errno::EINVAL), "unaligned");
                assert_eq!(rd(a.as_u64(), 100), Err(Errno::EINVAL), "unaligned length");
                assert_eq!(rd(a.as_u64(), 0), Err(Errno::EINVAL), "empty");
                assert_eq!(rd(a.as_u64(), abi::dio::MAX_LEN + PAGE_SIZE), Err(Errno::EINVAL), "too long");
                let wr = |buf: UserAddr, off: u64| dma::direct_write(&m2, buf, PAGE_SIZE, off);
                assert_eq!(wr(a, DEVICE_SIZE), Err(Errno::EINVAL), "past the device");
                assert_eq!(wr(a, 512), Err(Errno::EINVAL), "unaligned device offset");
                assert_eq!(wr(ro, 0), Ok(PAGE_SIZE as usize), "device read of read-only memory");
                assert_eq!(dma::direct_read(&other, a, PAGE_SIZE, 1), Err(Errno::EINVAL), "not the current address space");
            });
            assert_eq!(dma::stats().submitted, before.submitted + 1, "a refused I/O reached the engine");
        });
    }

    fn the_engine_refuses_malformed_requests() {
        let req = |dir, device, segments: Vec<Segment>| DmaRequest { dir, device, segments };
        let seg = |pa: u64, len: u64| Segment { phys: PhysAddr::new(pa), len };
        let eng = dma::engine();
        let refused = |r: DmaRequest| matches!(eng.submit(r), Err(DmaError::Invalid(_)));
        assert!(refused(req(Direction::ToMemory, DeviceSide::Pattern { seq: 1 }, Vec::new())), "no segments");
        assert!(refused(req(Direction::FromMemory, DeviceSide::Pattern { seq: 1 }, alloc::vec![seg(0x10_0000, 8)])), "pattern write");
        assert!(refused(req(Direction::ToMemory, DeviceSide::Store { offset: DEVICE_SIZE }, alloc::vec![seg(0x10_0000, 8)])), "past the store");
        assert!(refused(req(Direction::ToMemory, DeviceSide::Store { offset: 4 }, alloc::vec![seg(0x10_0000, 8)])), "unaligned offset");
        assert!(refused(req(Direction::ToMemory, DeviceSide::Pattern { seq: 1 }, alloc::vec![seg(0x10_0004, 8)])), "unaligned segment");
        assert!(refused(req(Direction::ToMemory, DeviceSide::Pattern { seq: 1 }, alloc::vec![seg(1 << 50, 8)])), "outside memory");
    }
}
