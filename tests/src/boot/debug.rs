//! Crash-report machinery that can be checked without crashing: symbols, the
//! clock. (Real crashes are checked by the host tests with `crash=`.)

use kernel::debug::symbols;

kernel::ktests! {
    fn symbols_resolve_to_demangled_names() {
        let addr = symbols_resolve_to_demangled_names as *const () as u64;
        let (name, offset) = symbols::lookup(addr + 3).expect("no symbol for a test function");
        assert_eq!(offset, 3);
        let shown = alloc::format!("{:#}", rustc_demangle_shim(name));
        assert!(shown.contains("symbols_resolve_to_demangled_names"), "{shown}");
        let line = alloc::format!("{}", symbols::Symbolized(addr));
        assert!(line.contains("ktests::boot::debug::symbols_resolve_to_demangled_names+0x0"), "{line}");
    }

    fn unknown_addresses_have_no_symbol() {
        assert!(symbols::lookup(0x1000).is_none());
    }

    fn clock_advances_and_is_calibrated() {
        assert!(kernel::arch::tsc::khz() > 100_000, "TSC below 100 MHz: {} kHz", kernel::arch::tsc::khz());
        let a = kernel::time::now_ns();
        let deadline = kernel::time::Deadline::after_ns(1_000_000);
        while !deadline.expired() {
            core::hint::spin_loop();
        }
        let b = kernel::time::now_ns();
        assert!(b - a >= 1_000_000, "1 ms deadline expired after {} ns", b - a);
        assert!(b - a < 1_000_000_000, "1 ms deadline took {} ns", b - a);
    }
}

fn rustc_demangle_shim(name: &str) -> impl core::fmt::Display + '_ {
    // The test only needs the demangled text; Symbolized does the same.
    struct D<'a>(&'a str);
    impl core::fmt::Display for D<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}", kernel::debug::symbols::demangled(self.0))
        }
    }
    D(name)
}
