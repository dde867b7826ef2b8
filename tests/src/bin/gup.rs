//! The gup suite: get_user_pages and pin_user_pages, fast and slow.
#![no_std]
#![no_main]

kernel::ktest_main!("gup", [ktests::gup::basic::TESTS, ktests::gup::cow_thp::TESTS, ktests::gup::dma::TESTS]);
