//! Link arguments for the user programs: static, non-PIE ELFs at 0x400000 (the
//! user image base in the kernel's `mm::layout`), each loadable segment on its
//! own pages so the loader can give every segment its own protection.
//! Only for the bare-metal target: `cargo clippy --workspace` also checks this
//! crate for the host, where nothing is linked.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=--image-base=0x400000");
        println!("cargo:rustc-link-arg-bins=-zseparate-loadable-segments");
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
        // The ELFs are embedded in every kernel image: keep them small (the
        // kernel reports user faults by address, not by symbol).
        println!("cargo:rustc-link-arg-bins=--strip-debug");
    }
}
