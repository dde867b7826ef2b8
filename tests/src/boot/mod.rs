//! The boot suite's tests, by subsystem.

pub mod debug;
pub mod memory;
pub mod options;
pub mod paging;
pub mod platform;
