//! The frame allocator and the heap.

use alloc::vec::Vec;
use kernel::mm::{PAGE_SIZE, frame, heap, phys_to_virt};

kernel::ktests! {
    fn frames_round_trip_without_leaking() {
        let before = frame::stats();
        let mut held = Vec::new();
        for order in [0, 0, 1, 3, 9, 0, 2, 10] {
            held.push((frame::alloc(order).expect("out of frames"), order));
        }
        let during = frame::stats();
        let taken: usize = held.iter().map(|&(_, o)| 1usize << o).sum();
        assert_eq!(before.free - during.free, taken);
        for (f, order) in held.drain(..).rev() {
            // SAFETY: allocated above with this order and never mapped.
            unsafe { frame::free(f, order) };
        }
        assert_eq!(frame::stats(), before, "free lists not restored (buddies not merged?)");
    }

    fn blocks_are_naturally_aligned() {
        for order in [1usize, 4, 9] {
            let f = frame::alloc(order).unwrap();
            let bytes = PAGE_SIZE << order;
            assert_eq!(f.start_address().as_u64() % bytes, 0, "order {order} block misaligned");
            // SAFETY: allocated just above with this order.
            unsafe { frame::free(f, order) };
        }
    }

    fn zeroed_frames_are_zero_and_low_memory_is_never_handed_out() {
        let mut held = Vec::new();
        for _ in 0..64 {
            let f = frame::alloc_zeroed(0).unwrap();
            assert!(f.start_address().as_u64() >= frame::LOW_MEMORY_END);
            // SAFETY: a frame we own, read through the direct map.
            let words = unsafe { core::slice::from_raw_parts(phys_to_virt(f.start_address()).as_ptr::<u64>(), 512) };
            assert!(words.iter().all(|&w| w == 0));
            held.push(f);
        }
        for f in held {
            // SAFETY: allocated above, order 0.
            unsafe { frame::free(f, 0) };
        }
    }

    fn heap_counts_and_returns_allocations() {
        let before = heap::stats();
        let v: Vec<u64> = (0..10_000).collect();
        let during = heap::stats();
        assert!(during.used >= before.used + 80_000);
        assert!(during.allocations > before.allocations);
        assert_eq!(v.iter().sum::<u64>(), 10_000 * 9_999 / 2);
        drop(v);
        let after = heap::stats();
        assert_eq!(after.used, before.used);
        assert!(after.frees > before.frees);
    }

    fn heap_grows_past_its_initial_size() {
        let before = heap::stats();
        let big: Vec<u8> = alloc::vec![0x5a; (heap::INITIAL_SIZE + (2 << 20)) as usize];
        assert!(big.iter().all(|&b| b == 0x5a));
        assert!(heap::stats().size > before.size.max(heap::INITIAL_SIZE), "heap did not grow");
        assert!(heap::stats().peak >= heap::INITIAL_SIZE);
        drop(big);
        assert_eq!(heap::stats().used, before.used);
    }
}
