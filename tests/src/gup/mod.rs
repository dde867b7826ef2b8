//! GUP tests: the slow path and GUP-fast, references and pins, COW and
//! unshare semantics, bad addresses, and leak accounting; pins held for
//! DMA by the software agent and direct I/O (`dma`).

pub mod basic;
pub mod cow_thp;
pub mod dma;
