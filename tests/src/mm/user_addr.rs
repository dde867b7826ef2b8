//! The user-address type: construction only in the user half, alignment,
//! arithmetic that cannot leave the user half, ranges and their page walks.

use alloc::format;
use alloc::vec::Vec;
use kernel::mm::layout::USER_END;
use kernel::mm::{PageSize, UserAddr, UserRange};

kernel::ktests! {
    fn a_user_address_is_made_only_in_the_user_half_or_at_its_end() {
        assert_eq!(UserAddr::new(0), Some(UserAddr::ZERO));
        assert_eq!(UserAddr::new(USER_END), Some(UserAddr::END));
        assert_eq!(UserAddr::new(USER_END - 1).map(UserAddr::as_u64), Some(USER_END - 1));
        // Non-canonical and kernel-half numbers are no user addresses.
        assert_eq!(UserAddr::new(USER_END + 1), None);
        assert_eq!(UserAddr::new(0xffff_8000_0000_0000), None);
        assert_eq!(UserAddr::new(u64::MAX), None);
    }

    fn alignment_helpers_follow_the_page_size() {
        let a = UserAddr::from_const(0x1234_5678);
        assert_eq!(a.align_down(PageSize::Size4K).as_u64(), 0x1234_5000);
        assert_eq!(a.align_down(PageSize::Size2M).as_u64(), 0x1220_0000);
        assert_eq!(a.page_offset(PageSize::Size4K), 0x678);
        assert_eq!(a.page_offset(PageSize::Size2M), 0x14_5678);
        assert_eq!(a.align_up(PageSize::Size4K).map(UserAddr::as_u64), Some(0x1234_6000));
        assert!(!a.is_aligned(PageSize::Size4K));
        assert!(a.align_down(PageSize::Size2M).is_aligned(PageSize::Size2M));
        // Aligning up past the user half's end is refused.
        assert_eq!(UserAddr::from_const(USER_END - 1).align_up(PageSize::Size4K), Some(UserAddr::END));
        assert_eq!(UserAddr::END.align_up(PageSize::Size2M), Some(UserAddr::END));
    }

    fn arithmetic_stays_in_the_user_half() {
        let a = UserAddr::from_const(0x4000);
        assert_eq!((a + 0x1000).as_u64(), 0x5000);
        assert_eq!((a - 0x1000).as_u64(), 0x3000);
        assert_eq!((a + 0x1000) - a, 0x1000);
        assert_eq!(a.checked_add(USER_END - 0x4000), Some(UserAddr::END));
        assert_eq!(a.checked_add(USER_END - 0x3fff), None, "past the user half's end");
        assert_eq!(a.checked_add(u64::MAX), None, "wraps");
        assert_eq!(a.checked_sub(0x4001), None, "below 0");
        assert!(a < a + 1);
        assert_eq!((UserAddr::END - 0x1000) + 0x1000, UserAddr::END);
        // A block's end, capped at the range's end (Linux pmd_addr_end()).
        let b = UserAddr::from_const(0x20_1000);
        assert_eq!(b.block_end(1 << 21, UserAddr::END).as_u64(), 0x40_0000);
        assert_eq!(b.block_end(1 << 21, b + 0x3000), b + 0x3000);
        assert_eq!((UserAddr::END - 1).block_end(1 << 39, UserAddr::END), UserAddr::END);
        assert_eq!(format!("{a:?} {a} {a:x}"), "UserAddr(0x4000) 0x4000 4000");
    }

    #[should_panic = "user address arithmetic left the user half"]
    fn stepping_past_the_user_half_panics_instead_of_wrapping() {
        let _ = core::hint::black_box(UserAddr::END - 0x1000) + 0x1001;
    }

    fn ranges_check_their_ends_and_walk_their_pages() {
        let a = UserAddr::from_const(0x20_1000);
        assert_eq!(UserRange::new(a, a - 1), None, "end before start");
        assert_eq!(UserRange::from_len(UserAddr::END, 1), None, "past the user half");
        let r = UserRange::from_len(a, 3 * 0x1000).unwrap();
        assert_eq!((r.start(), r.end(), r.len()), (a, a + 0x3000, 0x3000));
        assert!(r.contains(a + 0x2fff) && !r.contains(r.end()) && !r.contains(a - 1));
        let pages: Vec<u64> = r.pages(PageSize::Size4K).map(UserAddr::as_u64).collect();
        assert_eq!(pages, [0x20_1000, 0x20_2000, 0x20_3000]);
        // The 2 MiB pages a range touches start at its start aligned down.
        let blocks: Vec<u64> = r.pages(PageSize::Size2M).map(UserAddr::as_u64).collect();
        assert_eq!(blocks, [0x20_0000]);
        let words: Vec<u64> = UserRange::from_len(a, 24).unwrap().step(8).map(UserAddr::as_u64).collect();
        assert_eq!(words, [0x20_1000, 0x20_1008, 0x20_1010]);
        assert!(UserRange::new(a, a).unwrap().is_empty());
        assert_eq!(UserRange::new(a, a).unwrap().pages(PageSize::Size4K).count(), 0);
        assert_eq!(format!("{r:?}"), "[0x201000, 0x204000)");
    }
}
