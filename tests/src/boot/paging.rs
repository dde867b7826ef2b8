//! The kernel's own page tables: active, with section permissions, a
//! no-execute direct map, and guard pages below stacks.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::arch::cpu;
use kernel::mm::paging::{self, PageSize, PteFlags};
use kernel::mm::{kernel_map, layout, stack};
use x86_64::VirtAddr;

static RODATA: [u8; 16] = *b"read-only data!!";
static DATA: AtomicU64 = AtomicU64::new(7);

fn leaf_flags(va: u64) -> PteFlags {
    paging::translate(paging::active_root(), VirtAddr::new(va)).expect("address not mapped").leaf.flags()
}

kernel::ktests! {
    fn kernel_tables_replaced_the_bootloaders() {
        assert_eq!(paging::active_root(), kernel_map::kernel_root());
    }

    fn protection_features_are_on() {
        let efer = x86_64::registers::model_specific::Efer::read();
        assert!(efer.contains(x86_64::registers::model_specific::EferFlags::NO_EXECUTE_ENABLE));
        assert!(cpu::cr0() & (1 << 16) != 0, "CR0.WP is off");
        assert!(cpu::cr4() & (1 << 7) != 0, "CR4.PGE is off");
    }

    fn text_is_read_execute() {
        let f = leaf_flags(text_is_read_execute as *const () as u64);
        assert!(!f.contains(PteFlags::WRITABLE), "text is writable: {f:?}");
        assert!(!f.contains(PteFlags::NO_EXECUTE), "text is not executable: {f:?}");
        assert!(f.contains(PteFlags::GLOBAL));
    }

    fn rodata_is_read_only_no_execute() {
        let f = leaf_flags(RODATA.as_ptr() as u64);
        assert!(!f.contains(PteFlags::WRITABLE), "rodata is writable: {f:?}");
        assert!(f.contains(PteFlags::NO_EXECUTE), "rodata is executable: {f:?}");
    }

    fn data_is_read_write_no_execute() {
        DATA.fetch_add(1, Ordering::Relaxed);
        let f = leaf_flags(&DATA as *const AtomicU64 as u64);
        assert!(f.contains(PteFlags::WRITABLE) && f.contains(PteFlags::NO_EXECUTE), "data: {f:?}");
    }

    fn direct_map_covers_memory_with_huge_no_execute_pages() {
        let t = paging::translate(paging::active_root(), kernel::mm::phys_to_virt(x86_64::PhysAddr::new(0x20_0000)))
            .expect("direct map missing");
        assert_eq!(t.phys.as_u64(), 0x20_0000);
        assert_eq!(t.size, PageSize::Size2M);
        assert!(t.leaf.flags().contains(PteFlags::NO_EXECUTE | PteFlags::WRITABLE));
    }

    fn the_kernel_stack_has_a_guard_page() {
        let rsp = cpu::stack_pointer();
        let info = stack::lookup(rsp).expect("not running on a kernel stack");
        assert_eq!(info.name, "boot");
        assert!(rsp >= info.bottom && rsp < info.top);
        let guard = info.bottom - 8;
        assert!(paging::translate(paging::active_root(), VirtAddr::new(guard)).is_none(), "guard page is mapped");
        assert_eq!(stack::guard_page_owner(guard), Some("boot"));
        assert_eq!(stack::guard_page_owner(info.bottom), None);
    }

    fn user_half_is_empty() {
        for va in [0u64, 0x1000, 0x40_0000, layout::USER_END - 0x1000] {
            assert!(paging::translate(paging::active_root(), VirtAddr::new(va)).is_none(), "{va:#x} is mapped");
        }
    }

    fn new_stacks_are_mapped_with_guard_below() {
        let s = stack::alloc("test stack", 16 * 1024);
        assert!(stack::is_fully_mapped(&s));
        assert_eq!(stack::guard_page_owner(s.bottom().as_u64() - 1), Some("test stack"));
    }
}
