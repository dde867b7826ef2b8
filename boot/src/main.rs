//! `testbed`: build a boot image for the kernel and run it under QEMU (see `--help`).
//! The work is in the library (`src/lib.rs`); this only passes the arguments and
//! turns the result into the exit status.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(testbed::main_with_args(args));
}
