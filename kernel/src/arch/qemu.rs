//! QEMU's `isa-debug-exit` device: the way a run reports its outcome to the host.
//!
//! The host starts QEMU with `-device isa-debug-exit,iobase=0xf4,iosize=0x04`;
//! writing a value `v` to port 0xf4 ends QEMU with exit status `(v << 1) | 1`.
//! On a machine without the device the write goes nowhere and the caller halts.

use x86_64::instructions::port::Port;

/// I/O port of the isa-debug-exit device.
const EXIT_PORT: u16 = 0xf4;

/// Asks QEMU to exit with status `(code << 1) | 1`. Returns if no such device
/// exists (real hardware), so the caller must halt afterwards.
pub(crate) fn request_exit(code: u8) {
    let mut port = Port::<u32>::new(EXIT_PORT);
    // SAFETY: port 0xf4 is unassigned on PC-compatible hardware and is the
    // isa-debug-exit device under QEMU; a 32-bit write has no other effect.
    unsafe { port.write(u32::from(code)) };
}
