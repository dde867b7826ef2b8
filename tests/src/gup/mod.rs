//! GUP tests: the slow path and GUP-fast, references and pins, COW and
//! unshare semantics, bad addresses, and leak accounting.

pub mod basic;
