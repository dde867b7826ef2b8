//! Kernel access to user memory from kernel code: checked ranges, a mapped
//! page copies, an unmapped one gives EFAULT through the exception table
//! instead of a crash.

use alloc::sync::Arc;
use kernel::mm::addr_space::AddressSpace;
use kernel::mm::layout::USER_END;
use kernel::mm::mmap;
use kernel::mm::phys_to_virt;
use kernel::mm::uaccess::{self, Efault, UserPtr};
use kernel::sched;

const PAGE: u64 = 0x7000_0000;

kernel::ktests! {
    fn bad_ranges_are_refused_before_any_access() {
        let mut buf = [0u8; 16];
        for (addr, len) in [
            (0, 8),
            (0xfff, 8),
            (0xffff_ffff_8000_0000, 8),
            (0x8000_0000_0000_0000, 8),
            (USER_END - 8, 16),
            (u64::MAX - 4, 16),
        ] {
            assert_eq!(uaccess::check_range(UserPtr(addr), len), Err(Efault), "{addr:#x}+{len}");
            assert_eq!(uaccess::copy_from_user(&mut buf[..len], UserPtr(addr)), Err(Efault));
        }
        assert_eq!(uaccess::check_range(UserPtr(0x40_0000), 4096), Ok(()));
    }

    fn copies_to_a_mapped_page_and_efault_on_an_unmapped_one() {
        let mm = Arc::new(AddressSpace::new().unwrap());
        // One page of user memory at PAGE, nothing around it. The copies fault
        // it in (demand-zero) through the uaccess path.
        let flags = mmap::map::PRIVATE | mmap::map::ANONYMOUS | mmap::map::FIXED;
        assert_eq!(mmap::mmap(&mm, PAGE, 4096, 3, flags).map(|a| a.as_u64()), Ok(PAGE));
        let h = sched::spawn_in(0, "uaccess", Some(mm.clone()), || {
            let ok = uaccess::copy_to_user(UserPtr(PAGE + 8), b"written by the kernel");
            let value: Result<u64, Efault> = uaccess::read_user(UserPtr(PAGE + 8));
            let unmapped = uaccess::copy_to_user(UserPtr(PAGE + 0x1000), b"x");
            // Starts in the mapped page, runs into the unmapped one.
            let straddle = uaccess::copy_to_user(UserPtr(PAGE + 0xff8), &[7u8; 16]);
            let mut back = [0u8; 8];
            let read_unmapped = uaccess::copy_from_user(&mut back, UserPtr(PAGE - 0x1000));
            let put = uaccess::write_user(UserPtr(PAGE + 0x100), &0x1122_3344_u32);
            (ok, value, unmapped, straddle, read_unmapped, put)
        }).unwrap();
        let (ok, value, unmapped, straddle, read_unmapped, put) = h.join();
        assert_eq!(ok, Ok(()));
        assert_eq!(value, Ok(u64::from_le_bytes(*b"written ")));
        assert_eq!(unmapped, Err(Efault));
        assert_eq!(straddle, Err(Efault));
        assert_eq!(read_unmapped, Err(Efault));
        assert_eq!(put, Ok(()));
        let page = kernel::process::loader::translate(&mm, kernel::mm::UserAddr::from_const(PAGE)).expect("the copy did not fault the page in");
        // SAFETY: the page stays mapped in `mm` (which we hold) until the
        // unload below; we read it through the direct map.
        let bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(page).as_ptr::<u8>(), 4096) };
        assert_eq!(&bytes[8..29], b"written by the kernel");
        assert_eq!(&bytes[0xff8..0x1000], &[7u8; 8], "the straddling copy wrote up to the page end");
        assert_eq!(&bytes[0x100..0x104], &0x1122_3344_u32.to_le_bytes());
        // Tear down: the loader's unload frees the page and the tables.
        super::settle();
        kernel::process::loader::unload(&mm, None);
        assert!(mm.cpus().is_empty(), "CPUs still have the address space loaded");
        assert_eq!(mm.rss(), 0);
    }
}
