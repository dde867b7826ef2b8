//! Links the kernel binaries as static ELFs in the top 2 GiB, as Linux does: symbols
//! in the ELF are the addresses the kernel runs at, so gdb and backtraces need
//! no offset (`mm::layout::KERNEL_IMAGE_START`). Only for the bare-metal target
//! (`cargo clippy --workspace` also checks the crate for the host).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=--image-base=0xffffffff80000000");
        // Every loadable segment starts on a page of its own in the file as
        // well as in memory. The bootloader maps segments straight from the
        // file's frames, so without this the frame holding the end of .text
        // also held .data.rel.ro and the start of .data, mapped twice
        // (executable and writable): a W^X breach, and under TCG every store
        // to that page's data (the first cross-CPU call slot, the scenario's
        // shared state) took QEMU's self-modifying-code slow path, since the
        // page holds translated code.
        println!("cargo:rustc-link-arg-bins=-zseparate-loadable-segments");
    }
}
