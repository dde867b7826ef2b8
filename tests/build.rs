//! Links the test-kernel binaries as static ELFs in the top 2 GiB, as Linux does: symbols
//! in the ELF are the addresses the kernel runs at, so gdb and backtraces need
//! no offset (`mm::layout::KERNEL_IMAGE_START`). Only for the bare-metal target
//! (`cargo clippy --workspace` also checks the crate for the host).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=--image-base=0xffffffff80000000");
    }
}
