//! A port of the cases of Linux's tools/testing/selftests/mm/gup_longterm.c
//! that apply here (written anew; see README "Linux's mm selftests,
//! ported"): R/W and R/O long-term pins (slow path and GUP-fast) through
//! `gup_test`'s `PIN_LONGTERM_TEST_START/STOP`, in private memory the
//! process wrote (gup_longterm's MAP_PRIVATE cases: its memset() makes
//! every page an anonymous COW copy, which is what this kernel's private
//! anonymous memory is), on a base page and on a THP; and, as gup_longterm
//! does for the file systems whose answer it knows, in a private file
//! mapping left unwritten (the program's own text, page-cache pages): R/O
//! pins must work, unsharing the page into an anonymous copy first (Linux's
//! gup_must_unshare() for R/O long-term pins in COW mappings), R/W pins
//! must fail (the mapping is read-only and no FOLL_FORCE is given). Beyond "should have worked", each pin is checked
//! through `page_info` (one exact pin per pinned page of each folio
//! while held, none after STOP). Exits with the number of failed cases.
#![no_std]
#![no_main]

use abi::Errno;
use abi::gup_test::{FLAG_FAST, FLAG_WRITE};
use abi::mman::{MADV_HUGEPAGE, MADV_NOHUGEPAGE, PROT_READ};
use abi::page_info as pi;
use userspace::ksft::{self, HPAGE, Ksft, Outcome, PAGE};
use userspace::sys;

userspace::entry!(main);

/// gup_longterm.c's `enum test_type` (without io_uring, which is
/// cow.c's R/W pin here).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Ro,
    RoFast,
    Rw,
    RwFast,
}

impl Type {
    fn fast(self) -> bool {
        matches!(self, Type::RoFast | Type::RwFast)
    }

    fn rw(self) -> bool {
        matches!(self, Type::Rw | Type::RwFast)
    }

    fn flags(self) -> u64 {
        (if self.fast() { FLAG_FAST } else { 0 }) | (if self.rw() { FLAG_WRITE } else { 0 })
    }
}

/// Pins, checks the pins through `page_info` (counted per folio: one per
/// page of it pinned, so 512 on a THP pinned whole), unpins, checks they
/// are gone.
fn pin_and_check(mem: usize, size: usize, t: Type) -> Result<(), &'static str> {
    let h = sys::pin_start(mem, size, t.flags()).map_err(|_| "PIN_LONGTERM_TEST_START failed")?;
    let held = (0..size).step_by(PAGE).all(|off| {
        let w = ksft::info(mem + off);
        let per_folio = if w[pi::W_FLAGS] & pi::F_THP != 0 { (size / PAGE) as u64 } else { 1 };
        w[pi::W_PINS] == per_folio && w[pi::W_FLAGS] & pi::F_MAYBE_PINNED != 0
    });
    sys::pin_stop(h).map_err(|_| "PIN_LONGTERM_TEST_STOP failed")?;
    if !held {
        return Err("a folio did not show exactly one pin per page pinned while pinned");
    }
    if (0..size).step_by(PAGE).any(|off| ksft::info(mem + off)[pi::W_PINS] != 0) {
        return Err("a pin was left after STOP");
    }
    Ok(())
}

/// gup_longterm.c do_test() on private memory: fault it in, map it R/O for
/// the R/O types, pin; must work.
fn do_test_private(size: usize, t: Type) -> Outcome {
    let mmap_len = if size == HPAGE { 2 * HPAGE } else { size };
    let (mmap_mem, thp) = if size == HPAGE { ksft::map_thp_area() } else { ksft::map(size).map(|m| (m, m)) }.map_err(|_| "mmap() failed")?;
    let r = (|| {
        let mem = if size == HPAGE {
            let mem = thp;
            sys::madvise(mem, HPAGE, MADV_HUGEPAGE).map_err(|_| "MADV_HUGEPAGE failed")?;
            mem
        } else {
            sys::madvise(mmap_mem, size, MADV_NOHUGEPAGE).map_err(|_| "MADV_NOHUGEPAGE failed")?;
            mmap_mem
        };
        // Fault the memory in, so that GUP-fast can pin it directly.
        ksft::fill(mem, size, 0);
        if size == HPAGE && !ksft::pmd_mapped(mem) {
            return Err("did not get a THP");
        }
        if !t.rw() {
            // Cover the unsharing decisions of R/O pins: map it R/O.
            sys::mprotect(mem, size, PROT_READ).map_err(|_| "mprotect() failed")?;
        }
        pin_and_check(mem, size, t)?;
        Ok("Should have worked")
    })();
    ksft::unmap(mmap_mem, mmap_len);
    r
}

core::arch::global_asm!(
    ".pushsection .text, \"ax\"",
    ".balign 4096",
    ".globl ksft_gup_longterm_text_page",
    "ksft_gup_longterm_text_page:",
    ".fill 8192, 1, 0x90",
    ".popsection",
);

unsafe extern "C" {
    fn ksft_gup_longterm_text_page();
}

/// Page `i` (0 or 1) of two whole pages of this program's text (`nop`s,
/// page-aligned): a private file mapping of the page cache, never written.
/// Each R/O case takes its own (the first one's pin leaves an anonymous
/// copy behind).
fn text_page(i: usize) -> usize {
    ksft_gup_longterm_text_page as *const () as usize + i * PAGE
}

/// gup_longterm.c do_test() on a private file mapping nobody wrote: R/O
/// pins must work, on an anonymous copy (the unshare a R/O long-term pin
/// of a COW mapping's page-cache page takes, as in Linux, so that the pin
/// would see the process's later writes); R/W pins must fail with EFAULT
/// here, the mapping being read-only (gup_longterm maps its files
/// read-write; its R/W case on MAP_PRIVATE COWs first).
fn do_test_text(t: Type) -> Outcome {
    let mem = text_page(if t.fast() { 1 } else { 0 });
    ksft::touch_read(mem);
    if ksft::info(mem)[pi::W_FLAGS] & pi::F_ANON != 0 {
        return Err("the text page is not a page-cache page");
    }
    if t.rw() {
        return match sys::pin_start(mem, PAGE, t.flags()) {
            Err(Errno::EFAULT) => Ok("Should have failed (EFAULT)"),
            Err(_) => Err("failed, but not with EFAULT"),
            Ok(h) => {
                let _ = sys::pin_stop(h);
                Err("Should have failed")
            }
        };
    }
    pin_and_check(mem, PAGE, t)?;
    let w = ksft::info(mem)[pi::W_FLAGS];
    if w & (pi::F_ANON | pi::F_ANON_EXCLUSIVE) != pi::F_ANON | pi::F_ANON_EXCLUSIVE {
        return Err("the R/O long-term pin did not unshare the page-cache page");
    }
    Ok("Should have worked")
}

const TYPES: [(Type, &str); 4] = [
    (Type::Rw, "R/W longterm GUP pin in MAP_PRIVATE mapping"),
    (Type::RwFast, "R/W longterm GUP-fast pin in MAP_PRIVATE mapping"),
    (Type::Ro, "R/O longterm GUP pin in MAP_PRIVATE mapping"),
    (Type::RoFast, "R/O longterm GUP-fast pin in MAP_PRIVATE mapping"),
];

fn main() -> i32 {
    let mut k = Ksft::new("gup_longterm");
    for (t, desc) in TYPES {
        k.record(desc, "with written anonymous memory (base page)", do_test_private(PAGE, t));
        k.record(desc, "with written anonymous memory (THP)", do_test_private(HPAGE, t));
        k.record(desc, "with unwritten file mapping (program text)", do_test_text(t));
    }
    k.finish()
}
