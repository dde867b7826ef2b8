//! get_user_pages: references and pins on the pages behind a user range, for
//! direct I/O and DMA (Linux mm/gup.c).
//!
//! Two paths, as in Linux:
//! * [`slow`]: under the mmap lock for reading; walks with the page-table
//!   locks, faults pages in as needed (a write breaks COW; a read-only pin of
//!   a shared anonymous page unshares it first).
//! * [`fast`]: lockless, with interrupts disabled (the [`IrqsOff`] guard is a
//!   parameter, so it cannot be called with interrupts on by mistake). It
//!   reads each level once, takes its reference with add-unless-zero, issues
//!   a full fence and re-reads the pmd and pte, dropping the reference if
//!   either changed. What it cannot do falls to the slow path.
//!
//! A grabbed page is a [`Grabbed`]: a reference (FOLL_GET) or a pin
//! (FOLL_PIN), released when dropped. [`held`] keeps them across system
//! calls for a process (GUP_TEST's long-term pins, vmsplice's references).
//!
//! The negative-control switches of `../shared/reference/controls.md` that
//! belong here ([`Controls`]) each change exactly one decision point in
//! [`fast`]: `gup.recheck=off` (no pte/pmd re-read), `gup.pmd_recheck=off`
//! (pte re-read only), `gup.head_recheck=off` (no re-check that the page is
//! still in the folio the reference was taken on, bug H) and `gup.irqs=on`
//! (the walk runs with interrupts on);
//! `unshare=off` changes [`gup_must_unshare`], which both paths ask.

#![deny(unsafe_code)]

pub mod fast;
pub mod held;
pub(crate) mod slow;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::mm::page::{PageRef, PinnedPage};
use crate::mm::{PAGE_SIZE, PageSize, UserAddr, UserRange};

pub use fast::{IrqsOff, get_user_pages_fast, get_user_pages_fast_only};
pub use slow::get_user_pages;

bitflags::bitflags! {
    /// GUP flags (Linux FOLL_*).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Foll: u32 {
        /// The caller will write to the pages (breaks COW).
        const WRITE = 1 << 0;
        /// Take plain references (get_user_pages).
        const GET = 1 << 1;
        /// Take pins (pin_user_pages): FOLL_PIN accounting.
        const PIN = 1 << 2;
        /// A long-term pin (RDMA-style registration; anonymous memory only here).
        const LONGTERM = 1 << 3;
        /// Access a private mapping the area's protection does not allow
        /// (FOLL_FORCE, for ptrace and uprobes): with WRITE on a read-only
        /// private area, COW is broken and the page returned is an exclusive
        /// anonymous page whose pte stays read-only. Slow path only.
        const FORCE = 1 << 4;
    }
}

/// Why GUP refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GupError {
    /// Unmapped, kernel, non-canonical or wrapping address, or an access the
    /// area does not allow (EFAULT, as Linux for anonymous memory).
    Fault,
    /// Bad flags: neither or both of GET and PIN (EINVAL).
    Invalid,
    /// No memory to fault a page in (ENOMEM).
    NoMemory,
    /// The slow path gave up on a page whose entry other CPUs kept changing
    /// for a second (EAGAIN; Linux would loop until a fatal signal).
    Busy,
}

impl From<GupError> for abi::Errno {
    /// The errno Linux answers for each refusal (the syscalls that pin:
    /// direct I/O, gup_test).
    fn from(e: GupError) -> abi::Errno {
        match e {
            GupError::Fault => abi::Errno::EFAULT,
            GupError::Invalid => abi::Errno::EINVAL,
            GupError::NoMemory => abi::Errno::ENOMEM,
            GupError::Busy => abi::Errno::EAGAIN,
        }
    }
}

/// A page GUP took: a reference or a pin, released when dropped
/// (put_page / unpin_user_page).
#[derive(Debug)]
pub enum Grabbed {
    /// FOLL_GET.
    Ref(PageRef),
    /// FOLL_PIN.
    Pin(PinnedPage),
}

impl Grabbed {
    /// The page.
    pub fn page(&self) -> &'static crate::mm::page::Page {
        match self {
            Grabbed::Ref(r) => r.page(),
            Grabbed::Pin(p) => p.page(),
        }
    }

    /// The page's physical address.
    pub fn phys(&self) -> x86_64::PhysAddr {
        self.page().phys()
    }
}

/// Releases what a FOLL_PIN call returned, per folio (Linux
/// unpin_user_pages_dirty_lock()): consecutive pins of one folio are one
/// batch ([`crate::mm::page::unpin_user_pages_dirty_lock`]), each folio is
/// marked dirty once if `make_dirty`. Dropping the vector instead unpins
/// page by page, with the same counts at the end. A FOLL_GET reference in
/// `grabbed` (a caller's mistake) is put on its own.
pub fn unpin_user_pages_dirty_lock(grabbed: Vec<Grabbed>, make_dirty: bool) {
    crate::mm::page::unpin_user_pages_dirty_lock(
        grabbed.into_iter().filter_map(|g| match g {
            Grabbed::Pin(p) => Some(p),
            Grabbed::Ref(r) => {
                drop(r);
                None
            }
        }),
        make_dirty,
    );
}

/// [`unpin_user_pages_dirty_lock`] without marking dirty (Linux
/// unpin_user_pages()).
pub fn unpin_user_pages(grabbed: Vec<Grabbed>) {
    unpin_user_pages_dirty_lock(grabbed, false);
}

/// The GUP negative controls (controls.md), set once at boot.
pub struct Controls {
    /// `gup.recheck=off`: no pte/pmd re-read after taking the reference.
    pub recheck: bool,
    /// `gup.pmd_recheck=off`: re-read the pte but not the pmd.
    pub pmd_recheck: bool,
    /// `gup.irqs=on`: walk with interrupts enabled.
    pub irqs_off: bool,
    /// `gup.head_recheck=off`: no re-check that the page is still in the
    /// folio GUP-fast took its reference on (bug H, before Jann Horn's 2021
    /// fix).
    pub head_recheck: bool,
    /// `unshare=off`: a read-only pin of a shared anonymous page pins it as
    /// it is (bug J, before v5.19's FAULT_FLAG_UNSHARE).
    pub unshare: bool,
    /// `fork.seqcount=off`: GUP-fast pins without looking at fork's
    /// `write_protect_seq` (bug E, before 57efa1fe5957).
    pub fork_seqcount: bool,
}

static RECHECK: AtomicBool = AtomicBool::new(true);
static PMD_RECHECK: AtomicBool = AtomicBool::new(true);
static IRQS_OFF: AtomicBool = AtomicBool::new(true);
static HEAD_RECHECK: AtomicBool = AtomicBool::new(true);
static UNSHARE: AtomicBool = AtomicBool::new(true);
static FORK_SEQCOUNT: AtomicBool = AtomicBool::new(true);

impl Controls {
    /// GUP's switches of a race configuration (one place for the boot and
    /// the main job, so a new switch cannot be forgotten in one of them).
    pub(crate) fn of(race: &crate::race::config::RaceConfig) -> Controls {
        Controls {
            recheck: race.gup_recheck,
            pmd_recheck: race.gup_pmd_recheck,
            irqs_off: !race.gup_irqs_on,
            head_recheck: race.gup_head_recheck,
            unshare: race.unshare,
            fork_seqcount: race.fork_seqcount,
        }
    }
}

/// Applies the boot options' switches (before any GUP runs).
pub fn set_controls(c: Controls) {
    RECHECK.store(c.recheck, Ordering::Relaxed);
    PMD_RECHECK.store(c.pmd_recheck, Ordering::Relaxed);
    IRQS_OFF.store(c.irqs_off, Ordering::Relaxed);
    HEAD_RECHECK.store(c.head_recheck, Ordering::Relaxed);
    UNSHARE.store(c.unshare, Ordering::Relaxed);
    FORK_SEQCOUNT.store(c.fork_seqcount, Ordering::Relaxed);
}

/// The switches in force.
pub fn controls() -> Controls {
    Controls {
        recheck: RECHECK.load(Ordering::Relaxed),
        pmd_recheck: PMD_RECHECK.load(Ordering::Relaxed),
        irqs_off: IRQS_OFF.load(Ordering::Relaxed),
        head_recheck: HEAD_RECHECK.load(Ordering::Relaxed),
        unshare: UNSHARE.load(Ordering::Relaxed),
        fork_seqcount: FORK_SEQCOUNT.load(Ordering::Relaxed),
    }
}

/// Whether GUP-fast checks fork's `write_protect_seq` around a pin
/// (`fork.seqcount=`).
#[inline(always)]
pub(crate) fn fork_seqcount() -> bool {
    FORK_SEQCOUNT.load(Ordering::Relaxed)
}

/// Whether a pin must not take `page` as it is mapped now but have it
/// unshared first (Linux gup_must_unshare()), for both paths: a pin without
/// WRITE, through a read-only entry (`writable` false), of an anonymous page
/// that is not exclusive — it may be COW-shared, and a later write by the
/// process would copy it away from the pin — or, for a long-term pin, of a
/// page-cache page (every mapping here is private, Linux's
/// is_cow_mapping(): a later write would COW it away from the pin too).
/// **The one decision point of `unshare=off`** (bug J: the pin then takes
/// the shared page, and is not coherent with the process's later writes).
#[inline(always)]
pub(crate) fn gup_must_unshare(flags: Foll, writable: bool, page: &crate::mm::page::Page) -> bool {
    use crate::mm::page::PageFlags;
    // The flags and the entry first, the page's flags only for a read-only
    // pin (Linux's order: a GET or a pin with WRITE reads no page flag; this
    // runs per page in GUP-fast).
    if !flags.contains(Foll::PIN) || flags.contains(Foll::WRITE) || writable {
        return false;
    }
    let shared = if page.has(PageFlags::ANON) {
        !page.has(PageFlags::ANON_EXCLUSIVE)
    } else {
        // Linux: R/O short-term pins of the page cache need not see later
        // writes through the page tables; long-term ones in COW mappings do.
        flags.contains(Foll::LONGTERM)
    };
    // Relaxed: a switch set once at boot (or by a test between runs).
    shared && UNSHARE.load(Ordering::Relaxed)
}

/// Checks a range and the flags the way every entry point does: exactly one
/// of GET and PIN, `nr > 0`, page-aligned start, no wrap, user half only.
/// Returns the range.
pub(crate) fn check_range(start: UserAddr, nr: usize, flags: Foll) -> Result<UserRange, GupError> {
    if flags.contains(Foll::GET) == flags.contains(Foll::PIN) || nr == 0 {
        return Err(GupError::Invalid);
    }
    if !start.is_aligned(PageSize::Size4K) {
        return Err(GupError::Invalid);
    }
    let len = (nr as u64).checked_mul(PAGE_SIZE).ok_or(GupError::Fault)?;
    UserRange::from_len(start, len).ok_or(GupError::Fault)
}
