//! Disk images and the boot-options file.
//!
//! The kernel's boot options (`key=value` words from the command line) are written as
//! a text file, one `key=value` per line after a `#` comment line (always, even when
//! there are no options: bootloader 0.11.17 cannot load a 0-byte ramdisk: the UEFI
//! loader panics "Failed to allocate memory for the file", the BIOS one hangs), and put
//! into the image as the bootloader's ramdisk (`DiskImageBuilder::set_ramdisk`): in the
//! FAT partition of the image it is the file named `ramdisk`, so it can be edited on a
//! USB stick. The bootloader loads it into memory and hands its address to the kernel.
//!
//! Every run gets its own directory `target/testbed/<kernel>-<firmware>-<time>-<pid>-<n>/`
//! holding `boot-options.txt`, the image, the OVMF VARS copy (UEFI) and `qemu.log`.
//! The target directory is found from the kernel ELF's path (the top-most ancestor
//! holding a `CACHEDIR.TAG`), else `CARGO_TARGET_DIR`, else the system temp dir. Old
//! run directories beyond the newest [`KEEP_RUN_DIRS`] are removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};


use crate::qemu::{Firmware, OVMF_VARS};

/// Errors here are messages for the user.
pub type Result<T> = std::result::Result<T, String>;

fn ctx<T, E: std::fmt::Display>(r: std::result::Result<T, E>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| format!("{}: {e:#}", what()))
}

/// How many run directories are kept under `target/testbed/`.
pub const KEEP_RUN_DIRS: usize = 40;

/// The name of the boot-options file inside a run directory.
pub const BOOT_OPTIONS_FILE: &str = "boot-options.txt";

/// The first line of every boot-options file (never empty: see the module doc).
pub const BOOT_OPTIONS_HEADER: &str =
    "# testbed boot options: one key=value per line; '#' starts a comment\n";

/// The boot-options file's text: a comment line, then one `key=value` per line.
pub fn boot_options_text(options: &[String]) -> String {
    let mut s = String::from(BOOT_OPTIONS_HEADER);
    for o in options {
        s.push_str(o);
        s.push('\n');
    }
    s
}

/// The cargo target directory a kernel ELF was built in, if it lies in one.
pub fn target_dir_of(kernel: &Path) -> Option<PathBuf> {
    let kernel = kernel.canonicalize().unwrap_or_else(|_| kernel.to_path_buf());
    kernel
        .ancestors()
        .skip(1)
        .filter(|d| d.join("CACHEDIR.TAG").is_file())
        .last()
        .map(Path::to_path_buf)
}

/// The directory run directories go in: `<target>/testbed`.
pub fn testbed_dir(kernel: &Path) -> PathBuf {
    let target = target_dir_of(kernel)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    target.join("testbed")
}

/// Creates a fresh run directory for `kernel` and `firmware`.
pub fn new_run_dir(kernel: &Path, firmware: Firmware) -> Result<PathBuf> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let base = testbed_dir(kernel);
    ctx(fs::create_dir_all(&base), || format!("cannot create {}", base.display()))?;
    prune_run_dirs(&base);
    let stem = kernel.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!(
        "{stem}-{firmware}-{}{:03}-{}-{n}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    ));
    ctx(fs::create_dir(&dir), || format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Removes the oldest run directories beyond [`KEEP_RUN_DIRS`] (only those older than
/// ten minutes, so a concurrent run keeps its own).
fn prune_run_dirs(base: &Path) {
    let Ok(rd) = fs::read_dir(base) else { return };
    let mut dirs: Vec<(SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if dirs.len() <= KEEP_RUN_DIRS {
        return;
    }
    dirs.sort();
    let excess = dirs.len() - KEEP_RUN_DIRS;
    let cutoff = SystemTime::now() - Duration::from_secs(600);
    for (mtime, path) in dirs.into_iter().take(excess) {
        if mtime < cutoff {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Writes the boot-options file into `dir` and returns its path.
pub fn write_boot_options(dir: &Path, options: &[String]) -> Result<PathBuf> {
    let path = dir.join(BOOT_OPTIONS_FILE);
    ctx(fs::write(&path, boot_options_text(options)), || format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Builds a disk image for `firmware` at `out` from `kernel` with `boot_options`
/// (the file at `options_file`) as ramdisk.
pub fn build_image(kernel: &Path, options_file: &Path, firmware: Firmware, out: &Path) -> Result<()> {
    if !kernel.is_file() {
        return Err(format!("kernel ELF {} does not exist", kernel.display()));
    }
    // The image gets the kernel without its DWARF (three quarters of a debug
    // build's ELF): the firmware reads the whole file, and under TCG that
    // took 10 s of a 20 s boot for 22 MB. `.symtab` stays (the kernel names
    // its crash backtraces' frames from it); gdb and addr2line use the ELF
    // on disk.
    let stripped = out.with_extension("kernel.elf");
    let loaded = match strip_debug(kernel, &stripped) {
        Ok(()) => stripped.clone(),
        Err(e) => {
            eprintln!("testbed: {e}: the image gets the whole ELF");
            kernel.to_path_buf()
        }
    };
    let mut b = bootloader::DiskImageBuilder::new(loaded.clone());
    b.set_ramdisk(options_file.to_path_buf());
    let r = match firmware {
        Firmware::Bios => b.create_bios_image(out),
        Firmware::Uefi => b.create_uefi_image(out),
    };
    if loaded == stripped {
        let _ = fs::remove_file(&stripped);
    }
    ctx(r, || format!("cannot create {firmware} image {}", out.display()))
}

/// Writes `kernel` without its `.debug_*` sections to `out` (the object
/// crate's ELF builder; segments, `.symtab` and `.strtab` unchanged).
pub fn strip_debug(kernel: &Path, out: &Path) -> Result<()> {
    let data = ctx(fs::read(kernel), || format!("cannot read {}", kernel.display()))?;
    let mut elf = ctx(object::build::elf::Builder::read(&*data), || format!("cannot parse {}", kernel.display()))?;
    for s in elf.sections.iter_mut() {
        if s.name.starts_with(b".debug") {
            s.delete = true;
        }
    }
    let mut bytes = Vec::new();
    ctx(elf.write(&mut bytes), || format!("cannot strip {}", kernel.display()))?;
    ctx(fs::write(out, bytes), || format!("cannot write {}", out.display()))
}

/// Everything one boot needs on disk.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub dir: PathBuf,
    pub image: PathBuf,
    pub ovmf_vars: Option<PathBuf>,
    pub qemu_log: PathBuf,
}

/// Creates a run directory with the boot-options file, the image and (UEFI) a
/// writable copy of the OVMF VARS file. `qemu_log` overrides where QEMU's log goes.
pub fn prepare(
    kernel: &Path,
    firmware: Firmware,
    boot_options: &[String],
    qemu_log: Option<&Path>,
) -> Result<Prepared> {
    let dir = new_run_dir(kernel, firmware)?;
    let options_file = write_boot_options(&dir, boot_options)?;
    let image = dir.join(format!("{firmware}.img"));
    build_image(kernel, &options_file, firmware, &image)?;
    let ovmf_vars = match firmware {
        Firmware::Bios => None,
        Firmware::Uefi => {
            let vars = dir.join("OVMF_VARS.fd");
            copy_writable(Path::new(OVMF_VARS), &vars)?;
            Some(vars)
        }
    };
    let qemu_log = qemu_log.map_or_else(|| dir.join("qemu.log"), Path::to_path_buf);
    Ok(Prepared { dir, image, ovmf_vars, qemu_log })
}

fn copy_writable(from: &Path, to: &Path) -> Result<()> {
    ctx(fs::copy(from, to), || format!("cannot copy {} to {}", from.display(), to.display()))?;
    let mut perm = ctx(fs::metadata(to), || format!("cannot stat {}", to.display()))?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    ctx(fs::set_permissions(to, perm), || format!("cannot make {} writable", to.display()))
}

/// `testbed image`: writes `out/bios.img` and `out/uefi.img` (and `out/boot-options.txt`).
pub fn write_images(kernel: &Path, boot_options: &[String], out: &Path) -> Result<Vec<PathBuf>> {
    ctx(fs::create_dir_all(out), || format!("cannot create {}", out.display()))?;
    let options_file = write_boot_options(out, boot_options)?;
    let mut written = Vec::new();
    for fw in [Firmware::Bios, Firmware::Uefi] {
        let img = out.join(format!("{fw}.img"));
        build_image(kernel, &options_file, fw, &img)?;
        written.push(img);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::{ElfFile64, ProgramHeader};
    use object::{Object, ObjectSection, ObjectSymbol};

    #[test]
    fn the_loaded_kernel_keeps_its_segments_and_symbols_but_not_its_dwarf() {
        let elf = fs::read(crate::suites::MAIN_KERNEL).expect("read the main kernel ELF");
        let out = std::env::temp_dir().join(format!("testbed-strip-{}.elf", std::process::id()));
        strip_debug(Path::new(crate::suites::MAIN_KERNEL), &out).expect("strip");
        let stripped = fs::read(&out).expect("read the stripped ELF");
        let _ = fs::remove_file(&out);
        let (a, b) = (ElfFile64::<object::Endianness>::parse(&*elf).unwrap(), ElfFile64::<object::Endianness>::parse(&*stripped).unwrap());
        assert!(a.sections().any(|s| s.name().is_ok_and(|n| n.starts_with(".debug"))), "the debug build has DWARF");
        assert!(!b.sections().any(|s| s.name().is_ok_and(|n| n.starts_with(".debug"))), "DWARF left in");
        assert!(stripped.len() * 2 < elf.len(), "{} of {} bytes", stripped.len(), elf.len());
        // What the bootloader loads is byte for byte the same (but for the
        // ELF header's section-table fields, in the first segment) ...
        let e = a.endian();
        let loads = |f: &ElfFile64<object::Endianness>, data: &[u8]| -> Vec<(u64, u64, u32, Vec<u8>)> {
            f.elf_program_headers()
                .iter()
                .filter(|p| p.p_type(e) == object::elf::PT_LOAD)
                .map(|p| {
                    let bytes = p.data(e, data).unwrap();
                    let skip = if p.p_offset(e) == 0 { 64 } else { 0 };
                    (p.p_vaddr(e), p.p_memsz(e), p.p_flags(e), bytes[skip.min(bytes.len())..].to_vec())
                })
                .collect()
        };
        let (la, lb) = (loads(&a, &elf), loads(&b, &stripped));
        assert_eq!(la.len(), lb.len(), "segment count");
        for (x, y) in la.iter().zip(&lb) {
            assert_eq!((x.0, x.1, x.2, x.3.len()), (y.0, y.1, y.2, y.3.len()), "segment header at {:#x}", x.0);
            assert!(x.3 == y.3, "segment at {:#x} differs", x.0);
        }
        assert_eq!(a.entry(), b.entry());
        // ... and the symbols the crash reports name are all there.
        let names = |f: &ElfFile64<object::Endianness>| -> Vec<(String, u64)> {
            f.symbols().map(|s| (s.name().unwrap_or("").to_string(), s.address())).collect()
        };
        let (sa, sb) = (names(&a), names(&b));
        assert!(sa.len() > 1000, "{} symbols", sa.len());
        assert!(sa == sb, "symbols differ: {} before, {} after", sa.len(), sb.len());
    }


    #[test]
    fn options_text() {
        assert_eq!(boot_options_text(&[]), BOOT_OPTIONS_HEADER);
        assert!(BOOT_OPTIONS_HEADER.starts_with('#') && BOOT_OPTIONS_HEADER.ends_with('\n'));
        assert_eq!(
            boot_options_text(&["a=1".into(), "b.c=".into()]),
            format!("{BOOT_OPTIONS_HEADER}a=1\nb.c=\n")
        );
    }

    #[test]
    fn target_dir_from_kernel_path() {
        let base = std::env::temp_dir().join(format!("testbed-unit-{}", std::process::id()));
        let inner = base.join("target/x86_64-unknown-none/debug/build/kernel/abc/artifact/bin");
        fs::create_dir_all(&inner).unwrap();
        fs::write(base.join("target/CACHEDIR.TAG"), "").unwrap();
        fs::write(base.join("target/x86_64-unknown-none/CACHEDIR.TAG"), "").unwrap();
        fs::write(inner.join("kernel"), "").unwrap();
        let got = target_dir_of(&inner.join("kernel")).unwrap();
        assert_eq!(got, base.join("target").canonicalize().unwrap());
        assert_eq!(testbed_dir(&inner.join("kernel")), got.join("testbed"));
        let dir = new_run_dir(&inner.join("kernel"), Firmware::Uefi).unwrap();
        assert!(dir.starts_with(got.join("testbed")));
        assert!(dir.file_name().unwrap().to_string_lossy().starts_with("kernel-uefi-"));
        let f = write_boot_options(&dir, &["x=1".into()]).unwrap();
        assert_eq!(fs::read_to_string(f).unwrap(), format!("{BOOT_OPTIONS_HEADER}x=1\n"));
        fs::remove_dir_all(&base).unwrap();
    }
}
