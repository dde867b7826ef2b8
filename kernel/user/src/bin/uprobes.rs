//! The uprobe syscall from a tool's side: its errors, a breakpoint in the
//! program's own text that traps and is emulated (a `nop`), a breakpoint in
//! a forked child's text that the child hits while the parent's copy of the
//! page stays untouched (COW broken for the child only), and a breakpoint
//! on an instruction that cannot be emulated, which kills the child with a
//! breakpoint report. Exits 0 on success, else the number of the failed check.
#![no_std]
#![no_main]

use abi::Errno;
use abi::mman::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use abi::uprobe::{HITS, REGISTER, SWBP_INSN, UNREGISTER};
use userspace::{println, sys};

userspace::entry!(main);

core::arch::global_asm!(
    ".pushsection .text, \"ax\"",
    ".globl uprobe_nop_site",
    "uprobe_nop_site:",
    "nop",
    "ret",
    ".globl uprobe_mov_site",
    "uprobe_mov_site:",
    "mov rax, rdi",
    "ret",
    ".popsection",
);

unsafe extern "C" {
    fn uprobe_nop_site();
    fn uprobe_mov_site(x: u64) -> u64;
}

fn nop_site() -> usize {
    uprobe_nop_site as *const () as usize
}

fn call_nop_site() {
    // SAFETY: `nop; ret`, a plain call.
    unsafe { uprobe_nop_site() }
}

fn text_byte(addr: usize) -> u8 {
    // SAFETY: our own text, readable.
    unsafe { (addr as *const u8).read_volatile() }
}

fn expect(what: &str, got: Result<usize, Errno>, want: Result<usize, Errno>, step: i32) -> Result<(), i32> {
    if got == want {
        return Ok(());
    }
    println!("uprobes: {what}: got {got:?}, expected {want:?}");
    Err(step)
}

fn main() -> i32 {
    match run() {
        Ok(()) => {
            println!("uprobes: ok");
            0
        }
        Err(step) => step,
    }
}

fn run() -> Result<(), i32> {
    let me = sys::getpid();
    let site = nop_site();
    let Ok(data) = sys::mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS) else { return Err(1) };

    // Errors.
    expect("unknown pid", sys::uprobe(REGISTER, 999_999, site), Err(Errno::ESRCH), 2)?;
    expect("unmapped address", sys::uprobe(REGISTER, me, 0x1000), Err(Errno::EFAULT), 3)?;
    expect("kernel address", sys::uprobe(REGISTER, me, 0xffff_8000_0000_0000), Err(Errno::EFAULT), 4)?;
    expect("non-canonical address", sys::uprobe(REGISTER, me, 0x8000_0000_0000_0000), Err(Errno::EFAULT), 5)?;
    expect("data (not executable)", sys::uprobe(REGISTER, me, data), Err(Errno::EINVAL), 6)?;
    expect("unknown op", sys::uprobe(99, me, site), Err(Errno::EINVAL), 7)?;
    expect("unregister without a probe", sys::uprobe(UNREGISTER, me, site), Err(Errno::ENOENT), 8)?;
    expect("hits without a probe", sys::uprobe(HITS, me, site), Err(Errno::ENOENT), 9)?;

    // Our own text: the breakpoint is there, traps, is emulated.
    let orig = text_byte(site);
    if orig != 0x90 {
        println!("uprobes: the probe site holds {orig:#x}, not a nop");
        return Err(10);
    }
    expect("register", sys::uprobe(REGISTER, me, site), Ok(0), 11)?;
    if text_byte(site) != SWBP_INSN {
        println!("uprobes: after register the site holds {:#x}", text_byte(site));
        return Err(12);
    }
    expect("register twice", sys::uprobe(REGISTER, me, site), Err(Errno::EEXIST), 13)?;
    for _ in 0..3 {
        call_nop_site();
    }
    expect("hits", sys::uprobe(HITS, me, site), Ok(3), 14)?;
    expect("unregister", sys::uprobe(UNREGISTER, me, site), Ok(0), 15)?;
    if text_byte(site) != orig {
        println!("uprobes: after unregister the site holds {:#x}", text_byte(site));
        return Err(16);
    }
    call_nop_site();
    expect("hits after unregister", sys::uprobe(HITS, me, site), Err(Errno::ENOENT), 17)?;

    // A forked child's text (COW-shared with ours): the child hits the
    // probe, our copy of the page never shows the breakpoint.
    let Ok(child) = sys::fork() else { return Err(20) };
    if child == 0 {
        let child_me = sys::getpid();
        let until = sys::clock_ns() + 5_000_000_000;
        loop {
            call_nop_site();
            if sys::uprobe(HITS, child_me, site).is_ok_and(|n| n >= 3) {
                sys::exit(0);
            }
            if sys::clock_ns() > until {
                sys::exit(7);
            }
        }
    }
    expect("register in the child", sys::uprobe(REGISTER, child, site), Ok(0), 21)?;
    if text_byte(site) != orig {
        println!("uprobes: the child's breakpoint shows in the parent: {:#x}", text_byte(site));
        return Err(22);
    }
    match sys::wait(child) {
        Ok(0) => {}
        other => {
            println!("uprobes: the child never hit its probe: {other:?}");
            return Err(23);
        }
    }
    call_nop_site();
    if text_byte(site) != orig {
        return Err(24);
    }
    expect("the ended child's pid", sys::uprobe(HITS, child, site), Err(Errno::ESRCH), 25)?;

    // An instruction that cannot be emulated: the child gets the breakpoint.
    let mov = uprobe_mov_site as *const () as usize;
    let Ok(child) = sys::fork() else { return Err(30) };
    if child == 0 {
        let until = sys::clock_ns() + 5_000_000_000;
        let mut x = 0u64;
        while sys::clock_ns() < until {
            // SAFETY: `mov rax, rdi; ret`.
            x = unsafe { uprobe_mov_site(x + 1) };
        }
        sys::exit(8);
    }
    expect("register on a mov", sys::uprobe(REGISTER, child, mov), Ok(0), 31)?;
    expect("the killed child's status", sys::wait(child).map(|s| s as usize), Ok(abi::status::KILLED_BY_FAULT as usize), 32)?;
    Ok(())
}
