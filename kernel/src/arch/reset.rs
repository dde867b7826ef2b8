//! Resetting a PC without ACPI's reset register: the 8042 keyboard
//! controller's reset line (Linux's `reboot=kbd`, tried after ACPI). The last
//! resort, a triple fault, is `crash::triple_fault`.

use x86_64::instructions::port::Port;

/// The 8042's status (read) and command (write) port.
const KBD_STATUS_COMMAND: u16 = 0x64;
/// Status bit: the controller's input buffer is full (not ready for a command).
const INPUT_FULL: u8 = 1 << 1;
/// Command: pulse output line 0 low, the CPU reset line.
const PULSE_RESET: u8 = 0xfe;

/// Asks the 8042 keyboard controller to pulse the CPU reset line, ten times
/// as Linux does, waiting (bounded, about 1 ms per try) for its input buffer
/// to empty before each command. Returns if the machine did not reset. Only
/// for machines that have an 8042 (the FADT's IAPC_BOOT_ARCH says so, or an
/// ACPI 1.0 PC).
pub(crate) fn reset_via_8042() {
    let mut port = Port::<u8>::new(KBD_STATUS_COMMAND);
    for _ in 0..10 {
        let deadline = crate::time::Deadline::after_ns(1_000_000);
        // SAFETY: port 0x64 is the 8042's status/command port on a machine
        // that has one (the caller checked); reading the status has no side
        // effect, and the command resets the machine, which is the point.
        unsafe {
            while port.read() & INPUT_FULL != 0 && !deadline.expired() {
                core::hint::spin_loop();
            }
            port.write(PULSE_RESET);
        }
        let settle = crate::time::Deadline::after_ns(50_000);
        while !settle.expired() {
            core::hint::spin_loop();
        }
    }
}
