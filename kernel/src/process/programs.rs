//! The user programs built into the kernel: name -> ELF bytes.
//!
//! The ELFs come from the `userspace` crate (`kernel/user/src/bin/`), an
//! artifact dependency of the kernel. To add a program `foo`: write
//! `kernel/user/src/bin/foo.rs`, declare it as a `[[bin]]` in
//! `kernel/user/Cargo.toml`, and add a line to [`PROGRAMS`] here.

/// One embedded program.
macro_rules! program {
    ($name:literal) => {
        ($name, include_bytes!(env!(concat!("CARGO_BIN_FILE_USERSPACE_", $name))) as &'static [u8])
    };
}

/// Every built-in program.
pub(crate) const PROGRAMS: &[(&str, &[u8])] = &[
    program!("hello"),
    program!("cow"),
    program!("memcalls"),
    program!("ksmrace"),
    program!("collrace"),
    program!("dio"),
    program!("fault"),
    program!("badptr"),
    program!("threads"),
    program!("exit_threads"),
    program!("spin"),
    program!("privileged"),
    program!("shootdown"),
    program!("tlbwriter"),
    program!("uprobes"),
    program!("uprobepin"),
    program!("mmctl"),
    program!("pinexit"),
    program!("ksft_cow"),
    program!("ksft_gup_longterm"),
    program!("ksft_ksm"),
];

/// The ELF of program `name`.
pub fn lookup(name: &str) -> Option<&'static [u8]> {
    PROGRAMS.iter().find(|(n, _)| *n == name).map(|(_, elf)| *elf)
}

/// The names of all built-in programs.
pub fn names() -> impl Iterator<Item = &'static str> {
    PROGRAMS.iter().map(|(n, _)| *n)
}
