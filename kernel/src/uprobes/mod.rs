//! uprobes: breakpoints in user programs (Linux kernel/events/uprobes.c),
//! the third page-table writer of the seed.
//!
//! A tool (the `uprobe` syscall, a scenario's tracer) installs an `int3`
//! at an address of a process's executable private mapping and removes it
//! again; a thread that executes it traps into [`handle_swbp`]. Writing the
//! breakpoint byte into a page that other parties may see — the file's
//! page cache, a parent's COW-shared page, a page pinned for DMA — is what
//! the two modes do differently (`uprobes=`, read once per write):
//!
//! * [`write_opcode`] (`uprobes=fixed`, the default; David Hildenbrand's
//!   2025 rewrite of uprobe_write_opcode()): GUP with FOLL_WRITE|FOLL_FORCE
//!   breaks COW so the page is an exclusive anonymous page, then the byte is
//!   written **in place** while the pte is cleared and flushed. A pin on the
//!   page stays coherent: the process keeps mapping the frame the device
//!   writes.
//! * [`legacy`] (`uprobes=legacy`, negative control: Linux 2012-2025,
//!   bug C): the page is looked up read-only (FOLL_FORCE), copied into a new
//!   page with the opcode written there, and `__replace_page()` clears and
//!   flushes the pte, maps the new page and drops the old one **without any
//!   reference check**. A DMA still writing the pinned old page writes into
//!   a frame the process no longer maps.
//!
//! What is modelled and how it differs from Linux (see also the README):
//! * Linux probes a file (inode, offset) and installs the breakpoint in every
//!   mm that maps it; here a probe is one (address space, address), as the
//!   syscall names a pid. Program text is a private mapping of a page-cache
//!   file (`mm::filemap`) shared by every process running the program; the
//!   first breakpoint COWs the page to an anonymous page of that process.
//!   Any other executable private area (anonymous `PROT_EXEC` memory) may be
//!   probed too (Linux needs a file): its page is the anonymous page that a
//!   text page becomes once COWed, which is the page bug C is about.
//! * Unregister in a file mapping zaps the anonymous page when the page
//!   cache's original equals it again: legacy always (Linux 2019-2025, no
//!   reference check), fixed only when its reference count is the expected
//!   one. Elsewhere, and when the contents differ, the original byte is
//!   written back the way the breakpoint was (legacy: copy and replace;
//!   fixed: in place).
//! * A hit is handled as Linux handles a probe on a `nop` (emulated: the
//!   thread continues after it); any other probed instruction cannot be
//!   single-stepped out of line here, so the thread's process is killed with
//!   the breakpoint report, as for an `int3` nobody registered.
//!
//! Invariants: one probe per (address space, address) ([`REGISTRY`]);
//! registrations and unregistrations are serialised ([`REGISTER_LOCK`],
//! Linux's uprobe->register_rwsem) and run under the target's mmap lock for
//! reading; the pte is only changed under its page-table lock, and only
//! after the flush is a replaced page's mapping reference dropped.

#![deny(unsafe_code)]

pub(crate) mod legacy;
pub(crate) mod write_opcode;

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::gup::GupError;
use crate::mm::addr_space::AddressSpace;
use crate::mm::uaccess::{self, UserPtr};
use crate::mm::vma::Prot;
use crate::mm::UserAddr;
use crate::sync::SpinLock;
use crate::sync::rwsem::RwSemaphore;

pub(crate) use abi::uprobe::SWBP_INSN as UPROBE_SWBP_INSN;

/// Bytes of the breakpoint instruction (Linux UPROBE_SWBP_INSN_SIZE): probe
/// addresses must be multiples of it (always true on x86).
pub(crate) const UPROBE_SWBP_INSN_SIZE: u64 = 1;
/// The one instruction a hit emulates (a one-byte `nop`).
const NOP: u8 = 0x90;

/// Why a registration or unregistration failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UprobeError {
    /// Not mapped, or not a user address (EFAULT).
    NotMapped,
    /// The mapping does not allow execution (Linux valid_vma(); EINVAL).
    NotExecutable,
    /// Not a multiple of the breakpoint size (EINVAL).
    Misaligned,
    /// A probe is registered there already (EEXIST).
    Exists,
    /// No probe is registered there (ENOENT).
    NoProbe,
    /// No memory for a page (ENOMEM).
    NoMemory,
    /// The page kept changing under the writer for a second (EAGAIN).
    Busy,
}

impl From<UprobeError> for abi::Errno {
    fn from(e: UprobeError) -> abi::Errno {
        match e {
            UprobeError::NotMapped => abi::Errno::EFAULT,
            UprobeError::NotExecutable | UprobeError::Misaligned => abi::Errno::EINVAL,
            UprobeError::Exists => abi::Errno::EEXIST,
            UprobeError::NoProbe => abi::Errno::ENOENT,
            UprobeError::NoMemory => abi::Errno::ENOMEM,
            UprobeError::Busy => abi::Errno::EAGAIN,
        }
    }
}

impl From<GupError> for UprobeError {
    fn from(e: GupError) -> UprobeError {
        match e {
            GupError::Fault | GupError::Invalid => UprobeError::NotMapped,
            GupError::NoMemory => UprobeError::NoMemory,
            GupError::Busy => UprobeError::Busy,
        }
    }
}

/// One registered probe.
struct Probe {
    /// The byte the breakpoint replaced (Linux arch_uprobe.insn's first byte).
    orig: u8,
    /// Times a thread trapped on it.
    hits: u64,
}

/// Probes by (address-space id, address). Address-space ids are never
/// reused, so a probe left by an exited process never matches another.
static REGISTRY: SpinLock<BTreeMap<(u64, UserAddr), Probe>> = SpinLock::new("uprobes registry", BTreeMap::new());
/// Serialises registrations (Linux uprobe->register_rwsem, one for all).
static REGISTER_LOCK: RwSemaphore<()> = RwSemaphore::new("uprobes register", ());

/// Cumulative counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Breakpoints written (registrations that changed a page).
    pub installed: u64,
    /// Original bytes written back.
    pub removed: u64,
    /// Pages replaced by a copy (`uprobes=legacy`).
    pub replaced: u64,
    /// Bytes written in place (`uprobes=fixed`).
    pub in_place: u64,
    /// Anonymous pages zapped on unregister (the page-cache original comes
    /// back on the next fault).
    pub zapped: u64,
    /// Hits handled.
    pub hits: u64,
}

static INSTALLED: AtomicU64 = AtomicU64::new(0);
static REMOVED: AtomicU64 = AtomicU64::new(0);
pub(crate) static REPLACED: AtomicU64 = AtomicU64::new(0);
pub(crate) static IN_PLACE: AtomicU64 = AtomicU64::new(0);
pub(crate) static ZAPPED: AtomicU64 = AtomicU64::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);

/// The counters now.
pub fn stats() -> Stats {
    Stats {
        installed: INSTALLED.load(Ordering::Relaxed),
        removed: REMOVED.load(Ordering::Relaxed),
        replaced: REPLACED.load(Ordering::Relaxed),
        in_place: IN_PLACE.load(Ordering::Relaxed),
        zapped: ZAPPED.load(Ordering::Relaxed),
        hits: HITS.load(Ordering::Relaxed),
    }
}

/// Linux valid_vma(): `vaddr` must be a user address in an area that allows
/// execution (every area is private here). The caller holds the mmap lock.
fn valid_vma(vmas: &crate::mm::vma::VmaSet, vaddr: UserAddr) -> Result<(), UprobeError> {
    if !vaddr.as_u64().is_multiple_of(UPROBE_SWBP_INSN_SIZE) {
        return Err(UprobeError::Misaligned);
    }
    if vaddr == UserAddr::END {
        return Err(UprobeError::NotMapped);
    }
    let vma = vmas.find(vaddr).ok_or(UprobeError::NotMapped)?;
    if !vma.prot.contains(Prot::EXEC) {
        return Err(UprobeError::NotExecutable);
    }
    Ok(())
}

/// Writes `opcode` at `vaddr` the configured way; `Some(previous byte)` if
/// written, `None` if verify_opcode() found nothing to do.
fn write(mm: &AddressSpace, vmas: &crate::mm::vma::VmaSet, vaddr: UserAddr, opcode: u8, is_register: bool) -> Result<Option<u8>, UprobeError> {
    if crate::race::uprobes_legacy() {
        legacy::uprobe_write_opcode(mm, vmas, vaddr, opcode, is_register)
    } else {
        write_opcode::uprobe_write_opcode(mm, vmas, vaddr, opcode, is_register)
    }
}

/// Installs a breakpoint at `vaddr` of `mm` (Linux uprobe_register() for
/// one mm: install_breakpoint() -> set_swbp() -> uprobe_write_opcode()).
pub fn uprobe_register(mm: &AddressSpace, vaddr: UserAddr) -> Result<(), UprobeError> {
    let _reg = REGISTER_LOCK.write();
    let vmas = mm.vmas.read();
    valid_vma(&vmas, vaddr)?;
    if REGISTRY.lock().contains_key(&(mm.id, vaddr)) {
        return Err(UprobeError::Exists);
    }
    // A byte that is an int3 already (the program's own) is left alone and
    // restored as an int3.
    let orig = match write(mm, &vmas, vaddr, UPROBE_SWBP_INSN, true)? {
        Some(b) => {
            INSTALLED.fetch_add(1, Ordering::Relaxed);
            b
        }
        None => UPROBE_SWBP_INSN,
    };
    REGISTRY.lock().insert((mm.id, vaddr), Probe { orig, hits: 0 });
    Ok(())
}

/// Removes the breakpoint at `vaddr` of `mm` (Linux uprobe_unregister() for
/// one mm: remove_breakpoint() -> set_orig_insn()). A byte that is no longer
/// the breakpoint (the process or a device overwrote it) is left alone, as
/// Linux's verify_opcode() does.
pub fn uprobe_unregister(mm: &AddressSpace, vaddr: UserAddr) -> Result<(), UprobeError> {
    let _reg = REGISTER_LOCK.write();
    let vmas = mm.vmas.read();
    let orig = REGISTRY.lock().get(&(mm.id, vaddr)).map(|p| p.orig).ok_or(UprobeError::NoProbe)?;
    // The probe goes even if its area went (munmap): nothing to restore then.
    let result = match valid_vma(&vmas, vaddr) {
        Ok(()) => write(mm, &vmas, vaddr, orig, false).map(|w| {
            if w.is_some() {
                REMOVED.fetch_add(1, Ordering::Relaxed);
            }
        }),
        Err(UprobeError::NotMapped | UprobeError::NotExecutable) => Ok(()),
        Err(e) => Err(e),
    };
    if result.is_ok() {
        REGISTRY.lock().remove(&(mm.id, vaddr));
    }
    result
}

/// Hits of the probe at `vaddr` of `mm`.
pub fn hits(mm: &AddressSpace, vaddr: UserAddr) -> Result<u64, UprobeError> {
    REGISTRY.lock().get(&(mm.id, vaddr)).map(|p| p.hits).ok_or(UprobeError::NoProbe)
}

/// Probes registered now (all address spaces).
pub fn registered() -> usize {
    REGISTRY.lock().len()
}

/// Forgets the probes of address space `mm_id` (its process ended).
pub(crate) fn forget_mm(mm_id: u64) {
    REGISTRY.lock().retain(|&(id, _), _| id != mm_id);
}

/// What the trap handler does after a breakpoint trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Swbp {
    /// A probe on a `nop`: emulated, the thread continues after it.
    Continue,
    /// No probe there any more and the byte is no longer an `int3` (the
    /// probe was removed after the trap): re-execute the restored
    /// instruction at `bp_vaddr`.
    Restart,
    /// A probe whose instruction cannot be emulated, or an `int3` nobody
    /// registered: the process gets the breakpoint (it is killed).
    Signal,
}

/// A breakpoint trap at `bp_vaddr` (the `int3`'s address: the trap's rip
/// minus 1) in the current process, whose address space is `mm` (Linux
/// handle_swbp()). Runs in the trapping thread with interrupts enabled.
pub(crate) fn handle_swbp(mm: &AddressSpace, bp_vaddr: UserAddr) -> Swbp {
    let orig = {
        let mut reg = REGISTRY.lock();
        reg.get_mut(&(mm.id, bp_vaddr)).map(|p| {
            p.hits += 1;
            p.orig
        })
    };
    match orig {
        Some(b) => {
            HITS.fetch_add(1, Ordering::Relaxed);
            if b == NOP { Swbp::Continue } else { Swbp::Signal }
        }
        // Linux is_trap_at_addr(): the probe went between the trap and here.
        None => match uaccess::read_user::<u8>(UserPtr(bp_vaddr.as_u64())) {
            Ok(b) if b != UPROBE_SWBP_INSN => Swbp::Restart,
            _ => Swbp::Signal,
        },
    }
}

/// The byte at `vaddr` of the page `p` (which maps `vaddr & !0xfff`).
fn byte_at(p: &crate::mm::page::Page, vaddr: UserAddr) -> u8 {
    let mut b = [0u8; 1];
    crate::mm::frame_io::read_bytes(p, vaddr.page_offset(crate::mm::PageSize::Size4K) as usize, &mut b);
    b[0]
}

/// Linux verify_opcode(): whether writing `new` at a place holding `cur`
/// changes anything (registering over an `int3`, or unregistering where the
/// `int3` is gone, does nothing).
fn verify_opcode(cur: u8, new: u8) -> bool {
    let is_swbp = cur == UPROBE_SWBP_INSN;
    if new == UPROBE_SWBP_INSN { !is_swbp } else { is_swbp }
}

/// FOLL_SPLIT_PMD: a huge pmd mapping `vaddr` is split first, so the byte
/// is written through a pte.
fn split_pmd(mm: &AddressSpace, vaddr: UserAddr) -> Result<(), UprobeError> {
    let Some(pmd) = crate::mm::pgtable::pmd(mm, vaddr, false).ok().flatten() else { return Ok(()) };
    if !pmd.get().is_huge() {
        return Ok(());
    }
    let mut batch = crate::tlb::Gather::new(mm.tlb());
    let r = crate::mm::pgtable::split_huge_pmd(pmd, vaddr, &mut batch);
    batch.finish();
    r.map_err(|_| UprobeError::NoMemory)
}
