//! The ksm suite: merging equal pages, copy-on-write and unmerge of merged
//! pages, refusals of pinned and referenced pages, the protocol switches, ksmd.
#![no_std]
#![no_main]

kernel::ktest_main!("ksm", [ktests::ksm::merge::TESTS, ktests::ksm::protocol::TESTS, ktests::ksm::rmap_list::TESTS]);
