//! COM1 through `uart_16550`, treated as optional hardware.
//!
//! Initialisation checks that a UART answers (scratch register and loopback
//! test); a machine without one simply has no serial sink. Writing never waits
//! without bound: if the transmitter makes no progress for a while (no cable, a
//! stuck FIFO) the port is declared dead and further output is dropped.

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

/// I/O base of COM1.
const COM1: u16 = 0x3f8;
/// Polls of a full transmitter before the port is declared dead (about 100 ms
/// of port reads at 115200 baud; a healthy port drains a byte in ~87 us).
const MAX_STALLED_POLLS: u32 = 1_000_000;

/// A working serial port, or nothing.
pub(crate) struct Serial {
    uart: Option<Uart16550<PioBackend>>,
}

impl Serial {
    /// A serial sink that has not been probed yet (writes go nowhere).
    pub(crate) const fn absent() -> Self {
        Serial { uart: None }
    }

    /// Probes and initialises COM1. Returns the sink and, on failure, why.
    pub(crate) fn probe() -> (Self, Option<&'static str>) {
        // SAFETY: 0x3f8..0x3ff is the architectural COM1 range; nothing else in
        // the kernel uses these ports.
        let uart = unsafe { Uart16550::new_port(COM1) };
        let Ok(mut uart) = uart else {
            return (Self::absent(), Some("invalid COM1 base"));
        };
        if uart.init(Config::default()).is_err() {
            return (Self::absent(), Some("no UART answers at COM1"));
        }
        if uart.test_loopback().is_err() {
            return (Self::absent(), Some("COM1 failed its loopback test"));
        }
        (Serial { uart: Some(uart) }, None)
    }

    /// Whether a port is present and alive.
    pub(crate) fn present(&self) -> bool {
        self.uart.is_some()
    }

    /// Sends `bytes`, translating "\n" to "\r\n" for terminals.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.send(b'\r');
            }
            self.send(b);
        }
    }

    fn send(&mut self, byte: u8) {
        let Some(uart) = self.uart.as_mut() else { return };
        let mut stalled = 0;
        while uart.try_send_byte(byte).is_err() {
            stalled += 1;
            if stalled > MAX_STALLED_POLLS {
                // Never hang the kernel on a console: drop the port.
                self.uart = None;
                return;
            }
            core::hint::spin_loop();
        }
    }
}
