//! The kernel's virtual address layout.
//!
//! ```text
//! 0x0000_0000_0000_0000 - 0x0000_7fff_ffff_ffff  user space (per process):
//!   0x0000_0000_0000_0000 - +64 KiB               never mapped (null pointers fault)
//!   0x0000_0000_0040_0000 - ...                   the program image (ELF PT_LOAD
//!                                                 segments; programs link at 0x400000)
//!   USER_STACK_TOP - USER_STACK_SIZE - top        the main thread's stack, with an
//!                                                 unmapped guard page below it
//!   0x0000_7fff_ffff_f000 - 0x0000_7fff_ffff_ffff  never mapped (the last user page:
//!                                                 keeps `sysret` away from the
//!                                                 non-canonical boundary)
//! 0xffff_8000_0000_0000 - 0xffff_bfff_ffff_ffff  bootloader's dynamic range: the
//!                                                 direct map of physical memory
//! 0xffff_c000_0000_0000 - +4 GiB                  kernel stacks, 1 MiB slots, each
//!                                                 with unmapped guard space below
//! 0xffff_d000_0000_0000 - +1 GiB                  kernel heap (grows on demand)
//! 0xffff_e000_0000_0000 - +512 GiB                MMIO mappings (devices, later)
//! 0xffff_ffff_8000_0000 - top                     kernel image (static ELF)
//! ```
//! Every kernel-half region has its top-level (PML4) entries allocated at boot
//! and never freed, so address spaces created later can share them by copying
//! the kernel half of the top-level table once.

/// First address of the kernel half.
pub(crate) const KERNEL_HALF_START: u64 = 0xffff_8000_0000_0000;
/// End (exclusive) of the user half.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// Where the bootloader may place dynamic mappings (the direct map among them).
pub(crate) const BOOTLOADER_DYNAMIC_START: u64 = 0xffff_8000_0000_0000;
/// End of the bootloader's dynamic range.
pub(crate) const BOOTLOADER_DYNAMIC_END: u64 = 0xffff_bfff_ffff_f000;
/// The largest physical address range the direct map can cover (64 TiB).
pub(crate) const DIRECT_MAP_MAX: u64 = 64 << 40;
/// Start of the kernel stack region.
pub(crate) const STACKS_START: u64 = 0xffff_c000_0000_0000;
/// Virtual space per kernel stack (the stack is at the top, the rest unmapped).
pub(crate) const STACK_SLOT_SIZE: u64 = 1 << 20;
/// Number of stack slots.
pub(crate) const STACK_SLOTS: usize = 4096;
/// Start of the kernel heap.
pub const HEAP_START: u64 = 0xffff_d000_0000_0000;
/// The most the heap may grow to.
pub(crate) const HEAP_MAX: u64 = 1 << 30;
/// Start of the MMIO region.
pub const MMIO_START: u64 = 0xffff_e000_0000_0000;
/// Lowest address a user mapping may have (below it: the null guard).
pub(crate) const USER_MIN: u64 = 0x1_0000;
/// End (exclusive) of what user mappings may use: the last user page stays
/// unmapped (Linux keeps it as a guard for the same `sysret` reason).
pub(crate) const USER_MAX: u64 = USER_END - 0x1000;
/// Top of the main thread's user stack.
pub(crate) const USER_STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
/// Size of the main thread's user stack (mapped at spawn).
pub(crate) const USER_STACK_SIZE: u64 = 64 * 1024;
/// Where the kernel image is linked (kernel/build.rs).
pub(crate) const KERNEL_IMAGE_START: u64 = 0xffff_ffff_8000_0000;
