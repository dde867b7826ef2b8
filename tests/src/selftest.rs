//! Tests that fail on purpose, one of each failure kind (see
//! `src/bin/selftest_fail.rs` for the expected outcome).

kernel::ktests! {
    fn passes_first() {
        assert_eq!(core::hint::black_box(2) + 2, 4);
    }

    fn assertion_fails() {
        let answer = core::hint::black_box(41);
        assert_eq!(answer, 42, "the answer");
    }

    fn panics() {
        panic!("deliberate panic in selftest");
    }

    fn page_faults() {
        let p = core::hint::black_box(0x0000_0bad_0000_0000u64) as *const u64;
        // SAFETY: not safe: the page fault is what this test is for.
        let v = unsafe { core::ptr::read_volatile(p) };
        panic!("expected a page fault, read {v}");
    }

    fn hangs_with_interrupts_off() {
        x86_64::instructions::interrupts::disable();
        loop {
            core::hint::spin_loop();
        }
    }

    fn passes_last() {
        assert!(kernel::time::now_ns() > 0);
    }
}
