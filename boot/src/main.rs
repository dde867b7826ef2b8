fn main() {
    let k = env!("CARGO_BIN_FILE_KERNEL_kernel");
    let out = std::path::Path::new(k).with_extension("bios.img");
    bootloader::BiosBoot::new(std::path::Path::new(k)).create_disk_image(&out).unwrap();
    let uefi = std::path::Path::new(k).with_extension("uefi.img");
    bootloader::UefiBoot::new(std::path::Path::new(k)).create_disk_image(&uefi).unwrap();
    println!("{}\n{}", out.display(), uefi.display());
}
