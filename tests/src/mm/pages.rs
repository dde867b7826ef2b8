//! Page metadata: references, pins, mapcounts, the page lock and the
//! oracles of the free path.

use kernel::mm::page::{self, PIN_BIAS, PageFlags, PinnedPage, PageRef};
use kernel::mm::{frame, frame_io};

use super::assert_no_leaks;

kernel::ktests! {
    fn the_quarantine_holds_huge_folios_and_page_tables_poisoned_until_turned_off() {
        assert_no_leaks(|| {
            use kernel::mm::{HUGE_PAGE_SIZE, pgtable};
            page::set_quarantine(true);
            let free = frame::stats().free;
            let huge = page::alloc_folio(9, true).expect("huge folio");
            let huge_pa = huge.phys();
            let table = pgtable::alloc_table().expect("table");
            assert_eq!(frame::stats().free, free - 513);
            drop(huge);
            pgtable::free_table(table);
            assert_eq!(frame::stats().free, free - 513, "a freed huge folio or page table skipped the quarantine");
            // Held poisoned: a late reader sees the poison, not a new owner's data.
            let read = |pa: x86_64::PhysAddr| {
                // SAFETY: a frame held by the quarantine: free, mapped by the
                // direct map, not reused until the quarantine is off.
                unsafe { kernel::mm::phys_to_virt(pa).as_ptr::<u64>().read_volatile() }
            };
            assert_eq!(read(huge_pa + (HUGE_PAGE_SIZE - 8)), u64::from_ne_bytes([page::POISON_BYTE; 8]));
            assert_eq!(read(table + 8u64), pgtable::POISON_ENTRY);
            page::set_quarantine(false);
            assert_eq!(frame::stats().free, free, "turning the quarantine off did not release its frames");
        });
    }

    fn a_folio_starts_with_one_reference_and_is_freed_by_the_last_put() {
        assert_no_leaks(|| {
            let free = frame::stats().free;
            let p = page::alloc_folio(0, true).expect("folio");
            assert_eq!(p.page().refcount(), 1);
            assert_eq!(frame::stats().free, free - 1);
            let second = PageRef::new_ref(p.page());
            assert_eq!(p.page().refcount(), 2);
            drop(p);
            assert_eq!(frame::stats().free, free - 1, "freed while referenced");
            drop(second);
            assert_eq!(frame::stats().free, free, "the last put did not free the frame");
        });
    }

    fn try_get_fails_on_a_free_folio_and_succeeds_on_a_live_one() {
        assert_no_leaks(|| {
            let p = page::alloc_folio(0, false).expect("folio");
            let meta = p.page();
            assert!(meta.try_get_many(1));
            meta.put();
            drop(p);
            // Freed now: add-unless-zero must refuse (that is what protects a
            // lockless walker racing with the free).
            assert!(!meta.try_get_many(1), "reference taken on a free frame");
            assert!(PinnedPage::try_pin(meta).is_none());
        });
    }

    fn a_pin_adds_the_bias_on_small_folios_and_pincount_on_large_ones() {
        assert_no_leaks(|| {
            let small = page::alloc_folio(0, false).expect("folio");
            assert!(!small.page().maybe_dma_pinned());
            let pin = PinnedPage::pin(small.page());
            assert_eq!(small.page().refcount(), 1 + PIN_BIAS);
            assert!(small.page().maybe_dma_pinned());
            drop(pin);
            assert_eq!(small.page().refcount(), 1);
            assert!(!small.page().maybe_dma_pinned());

            let huge = page::alloc_folio(9, false).expect("2 MiB folio");
            let sub = page::page(huge.page().pfn() + 17);
            assert!(sub.is_large());
            assert_eq!(sub.folio().pfn(), huge.page().pfn());
            let pin = PinnedPage::try_pin(sub).expect("pin");
            assert_eq!(huge.page().refcount(), 2);
            assert_eq!(sub.pincount(), 1);
            assert!(sub.maybe_dma_pinned());
            drop(pin);
            assert_eq!(huge.page().pincount(), 0);
            assert_eq!(huge.page().refcount(), 1);
        });
    }

    fn freeing_a_pinned_folio_is_reported_as_uaf() {
        let before = page::uaf_events();
        let p = page::alloc_folio(0, false).expect("folio");
        let meta = p.page();
        let pin = PinnedPage::pin(meta);
        // A buggy path drops every reference, the pin's included.
        meta.put_many(PIN_BIAS);
        drop(p);
        assert_eq!(page::uaf_events(), before + 1, "a pinned folio reached the free path unnoticed");
        // The stale pin's release is a put on a free frame: reported too.
        drop(pin);
        assert!(page::uaf_events() >= before + 2);
    }

    fn freed_folios_are_poisoned() {
        assert_no_leaks(|| {
            let p = page::alloc_folio(0, true).expect("folio");
            let meta = p.page();
            drop(p);
            // Reading a free frame is allowed (frame_io reads any frame).
            // (The first 16 bytes hold the free list links of the buddy allocator.)
            let mut b = [0u8; 1];
            frame_io::read_bytes(meta, 100, &mut b);
            assert_eq!(b[0], page::POISON_BYTE);
        });
    }

    fn the_page_lock_excludes_and_is_released_on_drop() {
        assert_no_leaks(|| {
            let p = page::alloc_folio(0, false).expect("folio");
            let l = p.page().lock();
            assert!(p.page().has(PageFlags::LOCKED));
            assert!(p.page().try_lock().is_none());
            drop(l);
            assert!(p.page().try_lock().is_some());
            assert!(!p.page().has(PageFlags::LOCKED));
        });
    }

    fn huge_folios_come_from_order_9_blocks() {
        assert_no_leaks(|| {
            let h = page::alloc_folio(9, true).expect("2 MiB folio");
            assert_eq!(h.phys().as_u64() % (2 << 20), 0);
            assert_eq!(h.page().order(), 9);
            assert!(page::page(h.page().pfn() + 511).has(PageFlags::TAIL));
        });
    }
}
