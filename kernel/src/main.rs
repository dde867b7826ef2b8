#![no_std]
#![no_main]
use bootloader_api::{entry_point, BootInfo, config::{BootloaderConfig, Mapping}};
pub static CONFIG: BootloaderConfig = {
    let mut c = BootloaderConfig::new_default();
    c.mappings.physical_memory = Some(Mapping::Dynamic);
    c.mappings.dynamic_range_start = Some(0xffff_8000_0000_0000);
    c
};
entry_point!(main, config = &CONFIG);
fn main(_bi: &'static mut BootInfo) -> ! {
    kernel::puts("hello from kernel\n");
    kernel::exit(0x10)
}
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! { kernel::exit(0x11) }
