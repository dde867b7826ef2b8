//! GUP-fast: the lockless walk, split as Linux splits it (gup_fast() ->
//! gup_fast_pgd_range() -> gup_fast_pud_range() -> gup_fast_pmd_range() ->
//! gup_fast_pmd_leaf() or gup_fast_pte_range(); x86 folds the p4d level).
//! Each level reads its entry once and passes the value down; the grab, the
//! re-read and the back-off are one function,
//! [`grab_then_recheck`], used by both leaf kinds.
//!
//! Why it is safe, with every defence in place:
//! * page tables cannot be freed under the walk: it runs with interrupts off,
//!   and a table is freed only after an IPI every CPU must answer
//!   (`ptfree=ipi`) or a grace period, which an interrupts-off section holds
//!   back (`ptfree=rcu`);
//! * a page cannot be freed under the walk either: the reference is taken
//!   with add-unless-zero, which fails on a free folio;
//! * a writer that cleared the entry and then checks the page's references
//!   sees this reference, or this walk sees the cleared entry on its re-read
//!   (a Dekker pair: the writer's exchange, fence(SeqCst), then load of the
//!   refcount against our SeqCst refcount RMW, then SeqCst load of the
//!   entry; no fence on our side, see [`grab_then_recheck`]);
//! * with `tlb=ipi`, the writer's flush cannot complete while this walk has
//!   interrupts off, so "clear, flush, check" also orders it (the 2016
//!   argument, which is all that protects a walk without the re-read).
//!
//! Pins also check fork's `write_protect_seq` around the walk.

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

use super::slow;
use super::{Foll, GupError, Grabbed, check_range, controls};
use crate::mm::addr_space::AddressSpace;
use crate::mm::page::{self, Page, PageRef, PinnedPage};
use crate::mm::paging::{Entry, Level, PageTable, PteFlags, RawEntry};
use crate::mm::pgtable;
use crate::mm::{PAGE_SIZE, UserAddr};
use crate::race::overlap;
use crate::race::widen::{self, Point};
use crate::stamps::{self, Step};

/// The pages a walk read, for overlap counting (the first few suffice: the
/// race scenarios pin a page or two per call).
#[derive(Default)]
struct Seen {
    pfns: [u64; 8],
    n: usize,
}

impl Seen {
    fn push(&mut self, pfn: u64) {
        if self.n < self.pfns.len() {
            self.pfns[self.n] = pfn;
            self.n += 1;
        }
    }
}

/// Proof that this CPU runs with interrupts disabled (Linux
/// local_irq_save()/local_irq_restore() around gup_fast()). GUP-fast takes it
/// as a parameter so that the lockless walk cannot be called without it.
///
/// Under the negative control `gup.irqs=on` the guard given to GUP-fast is
/// made by [`IrqsOff::for_gup_fast`] without disabling interrupts: the one
/// decision point of that switch.
pub struct IrqsOff {
    restore: bool,
    _cpu_bound: PhantomData<*const ()>,
}

impl IrqsOff {
    /// Disables interrupts until the guard is dropped.
    pub(crate) fn new() -> IrqsOff {
        let restore = crate::arch::cpu::interrupts_enabled();
        crate::arch::cpu::disable_interrupts();
        IrqsOff { restore, _cpu_bound: PhantomData }
    }

    /// The guard GUP-fast's entry point uses: [`IrqsOff::new`], unless the
    /// negative control `gup.irqs=on` is set.
    pub(crate) fn for_gup_fast() -> IrqsOff {
        if controls().irqs_off {
            IrqsOff::new()
        } else {
            IrqsOff { restore: false, _cpu_bound: PhantomData }
        }
    }
}

impl Default for IrqsOff {
    fn default() -> Self {
        IrqsOff::new()
    }
}

impl Drop for IrqsOff {
    fn drop(&mut self) {
        if self.restore {
            crate::arch::cpu::enable_interrupts();
        }
    }
}

/// GUP-fast bail-outs because an entry changed between the read and the
/// re-read (controls.md `gup_bailouts`).
static BAILOUTS: AtomicU64 = AtomicU64::new(0);
/// Pages GUP-fast left to the slow path.
static SLOW_FALLS: AtomicU64 = AtomicU64::new(0);

/// Grabs GUP-fast retried because the page had been split off the folio it
/// took the reference on (Linux try_get_folio()'s `goto retry`).
static HEAD_RETRIES: AtomicU64 = AtomicU64::new(0);

/// Grabs retried on the page's new folio after a split, so far.
pub fn head_retries() -> u64 {
    HEAD_RETRIES.load(Ordering::Relaxed)
}

/// Bail-outs after a changed entry so far.
pub(crate) fn bailouts() -> u64 {
    BAILOUTS.load(Ordering::Relaxed)
}

/// Pages handed to the slow path so far.
pub fn slow_falls() -> u64 {
    SLOW_FALLS.load(Ordering::Relaxed)
}

fn table(pa: x86_64::PhysAddr) -> &'static PageTable {
    // `pa` is the root or came from a present non-leaf entry read during
    // this walk and passed `pgtable::lockless_table_ok` (see
    // pgtable::table_lockless for why a freed one is no memory-safety issue).
    pgtable::table_lockless(pa)
}

/// Reads an entry once, reporting a walk into a freed (poisoned) table.
#[inline(always)]
fn read_once(e: &Entry) -> Option<RawEntry> {
    // Acquire: the table or page it points to was initialised before the
    // entry was published (Release in the fault paths).
    let v = e.load(Ordering::Acquire);
    if v.is_poison() {
        page::report_uaf(format_args!("GUP-fast read a freed page table (entry at {:p})", e));
        return None;
    }
    Some(v)
}

/// GUP-fast's reference on the folio it found for `page` (Linux
/// try_get_folio()): add-unless-zero on `folio`, the folio `page` belonged
/// to when the walker looked ([`Page::folio`], page_folio()), then **the
/// head re-check**: `page` may have been split off `folio` in between (a
/// split freezes, rewrites and unfreezes the folio while this walk has only
/// read the entry), and the references must be on `page`'s folio as it is
/// now, so on a mismatch they go back and the grab is retried on the new
/// folio. Returns the folio the references are on, `None` if it was free
/// or frozen.
///
/// **The one decision point of `gup.head_recheck=off`** (bug H, Jann
/// Horn's 2021 fix "mm/gup: fix try_grab_compound_head() race with
/// split_huge_page()"): without the re-check the references stay on the
/// old head, now an unrelated small folio, while the caller returns
/// `page`, which is then released on its own folio.
#[inline(always)]
fn try_get_folio(page: &'static Page, mut folio: &'static Page, n: usize, head_recheck: bool) -> Option<&'static Page> {
    loop {
        if !page::folio_ref_try_add(folio, n as i32) {
            return None;
        }
        if !head_recheck {
            return Some(folio);
        }
        // The Acquire of the add above orders this read after it: a split
        // unfreezes the old head last, so a reference that got onto it
        // after the split sees the page as its own folio here.
        let now = page.folio();
        if core::ptr::eq(now, folio) {
            return Some(folio);
        }
        HEAD_RETRIES.fetch_add(1, Ordering::Relaxed);
        page::folio_put_refs(folio, n as i32);
        folio = now;
    }
}

/// Takes `n` references or pins on `folio`, the folio the walker found for
/// `page` (Linux try_grab_folio_fast(): try_get_folio(), then the pin
/// accounting), and hands out one value per page from `page` on.
#[inline(always)]
fn try_grab_folio_fast(page: &'static Page, folio: &'static Page, n: usize, w: &mut Walk<'_>) -> bool {
    let t = stamps::start();
    let Some(folio) = try_get_folio(page, folio, n, w.c.head_recheck) else { return false };
    stamps::end(Step::GupGrab, t);
    let t = stamps::start();
    if w.flags.contains(Foll::PIN) {
        page::folio_add_pins(folio, n as i32);
        stamps::end(Step::GupPinAcct, t);
        adopt_into(w.out, PinnedPage::adopt_run(page, n).map(Grabbed::Pin));
    } else {
        adopt_into(w.out, PageRef::adopt_run(page, n).map(Grabbed::Ref));
    }
    true
}

/// Appends a run of grabbed pages to `out`: a 4 KiB page by one push, a
/// huge page's run by one `extend` (one reservation, then plain writes).
/// `extend` for a single item cost about 30 ns more per 4 KiB page under
/// TCG (its reservation path; bench=gup get slope 137-138 against 102-111
/// ns/page with the push).
#[inline(always)]
fn adopt_into(out: &mut Vec<Grabbed>, run: impl ExactSizeIterator<Item = Grabbed>) {
    if run.len() == 1 {
        run.for_each(|g| out.push(g));
    } else {
        out.extend(run);
    }
}

/// Whether a read-only pin must leave this page to the slow path, which
/// unshares it first (Linux gup_must_unshare()): a pin without WRITE of a
/// read-only mapping of an anonymous page that is not exclusive.
#[inline(always)]
fn must_unshare(flags: Foll, entry: RawEntry, page: &Page) -> bool {
    super::gup_must_unshare(flags, entry.flags().contains(PteFlags::WRITABLE), page)
}

/// Whether a leaf entry allows the access (present, user, writable if asked).
#[inline(always)]
fn permitted(e: RawEntry, flags: Foll) -> bool {
    let f = e.flags();
    f.contains(PteFlags::PRESENT | PteFlags::USER) && (!flags.contains(Foll::WRITE) || f.contains(PteFlags::WRITABLE))
}

/// What one lockless walk carries down the levels.
struct Walk<'o> {
    flags: Foll,
    /// The switches, fixed at boot, read once per walk.
    c: super::Controls,
    out: &'o mut Vec<Grabbed>,
    seen: &'o mut Seen,
    /// The address space's id, for the widening points (`race::steer`).
    mm_id: u64,
}

/// The end of the range covered by the entry of `level` holding `addr`,
/// capped at `end` (Linux pgd_addr_end() and friends).
fn addr_end(level: Level, addr: UserAddr, end: UserAddr) -> UserAddr {
    addr.block_end(level.entry_size(), end)
}

/// The lockless walk over `[start, end)` of `mm`; grabs pages into `out` from
/// `start` on and stops at the first page it cannot take. Returns the count.
fn walk(
    mm: &AddressSpace,
    start: UserAddr,
    end: UserAddr,
    flags: Foll,
    out: &mut Vec<Grabbed>,
    seen: &mut Seen,
    _irqs: &IrqsOff,
) -> usize {
    let first = out.len();
    let mut w = Walk { flags, c: controls(), out, seen, mm_id: mm.id };
    gup_fast_pgd_range(mm.root(), start, end, &mut w);
    w.out.len() - first
}

/// The top level (Linux gup_fast_pgd_range(); x86's p4d is folded into it,
/// so there is no gup_fast_p4d_range). Each level reads its entry once and
/// hands the value down; a level returns false at the first page it cannot
/// take, which ends the walk.
fn gup_fast_pgd_range(root: x86_64::PhysAddr, mut addr: UserAddr, end: UserAddr, w: &mut Walk<'_>) -> bool {
    let pgd_table = table(root);
    while addr < end {
        let next = addr_end(Level::Pml4, addr, end);
        let Some(pgd) = read_once(pgd_table.entry(Level::Pml4.index(addr.as_u64()))) else { return false };
        if !pgd.is_present() || pgd.is_huge() || !pgtable::lockless_table_ok(pgd.addr()) {
            return false;
        }
        if !gup_fast_pud_range(pgd, addr, next, w) {
            return false;
        }
        addr = next;
    }
    true
}

/// The pud level (Linux gup_fast_pud_range()): the table `pgd` points to.
/// 1 GiB leaves are not used for user memory here: one ends the walk.
fn gup_fast_pud_range(pgd: RawEntry, mut addr: UserAddr, end: UserAddr, w: &mut Walk<'_>) -> bool {
    let pud_table = table(pgd.addr());
    while addr < end {
        let next = addr_end(Level::Pdpt, addr, end);
        let Some(pud) = read_once(pud_table.entry(Level::Pdpt.index(addr.as_u64()))) else { return false };
        if !pud.is_present() || pud.is_huge() || !pgtable::lockless_table_ok(pud.addr()) {
            return false;
        }
        if !gup_fast_pmd_range(pud, addr, next, w) {
            return false;
        }
        addr = next;
    }
    true
}

/// The pmd level (Linux gup_fast_pmd_range()): a huge leaf goes to
/// [`gup_fast_pmd_leaf`], a table to [`gup_fast_pte_range`]; both get the
/// entry's pointer too, for their re-read.
fn gup_fast_pmd_range(pud: RawEntry, mut addr: UserAddr, end: UserAddr, w: &mut Walk<'_>) -> bool {
    let pmd_table = table(pud.addr());
    while addr < end {
        let next = addr_end(Level::Pd, addr, end);
        let pmdp = pmd_table.entry(Level::Pd.index(addr.as_u64()));
        let Some(pmd) = read_once(pmdp) else { return false };
        if !pmd.is_present() {
            return false;
        }
        let done = if pmd.is_huge() {
            gup_fast_pmd_leaf(pmd, pmdp, addr, next, w)
        } else {
            gup_fast_pte_range(pmd, pmdp, addr, next, w)
        };
        if !done {
            return false;
        }
        addr = next;
    }
    true
}

/// A 2 MiB leaf (Linux gup_fast_pmd_leaf()): one grab for every page of
/// `[addr, end)`, then the pmd re-read.
#[inline(always)]
fn gup_fast_pmd_leaf(pmd: RawEntry, pmdp: &Entry, addr: UserAddr, end: UserAddr, w: &mut Walk<'_>) -> bool {
    let t = stamps::start();
    if !permitted(pmd, w.flags) {
        return false;
    }
    let pfn = pmd.addr().as_u64() / PAGE_SIZE;
    // The whole run must exist (garbage from a reused table need not).
    let Some(sub) = pgtable::lockless_leaf_page(pfn + Level::Pt.index(addr.as_u64()) as u64) else { return false };
    if pgtable::lockless_leaf_page(pfn + 511).is_none() {
        return false;
    }
    let n = ((end - addr) / PAGE_SIZE) as usize;
    // page_folio(): the folio is looked up before the reference is taken.
    let folio = sub.folio();
    w.seen.push(folio.pfn());
    widen::at_walk(Point::GupPreRef, folio.pfn(), folio.pfn(), w.mm_id, addr.as_u64());
    stamps::end(Step::GupWalk, t);
    let recheck = w.c.recheck;
    // `gup.recheck=off` skips the re-read (`gup.pmd_recheck` concerns the
    // pmd above a pte table, not a leaf).
    // SeqCst: our half of the Dekker pair (see grab_then_recheck).
    grab_then_recheck(sub, folio, n, pmd, w, || !recheck || pmdp.load(Ordering::SeqCst) == pmd)
}

/// The ptes of one table (Linux gup_fast_pte_range()): per page, the
/// permission check, then the grab and the re-read of pmd and pte.
#[inline(always)]
fn gup_fast_pte_range(pmd: RawEntry, pmdp: &Entry, mut addr: UserAddr, end: UserAddr, w: &mut Walk<'_>) -> bool {
    if !pgtable::lockless_table_ok(pmd.addr()) {
        return false;
    }
    let pt = table(pmd.addr());
    // The pte table's frame too: a collapse's writer window is keyed by
    // the table it detaches (the 2 MiB range, not one page).
    let table_pfn = pmd.addr().as_u64() / PAGE_SIZE;
    w.seen.push(table_pfn);
    // The walker holds a pointer into the table from here on: only the
    // table sync (an IPI this interrupts-off walk holds back) or a grace
    // period keeps the table from being freed under it (bug G).
    widen::at_walk(Point::GupPrePte, table_pfn, table_pfn, w.mm_id, addr.as_u64());
    let (recheck, pmd_recheck) = (w.c.recheck, w.c.pmd_recheck);
    while addr < end {
        let t = stamps::start();
        let ptep = pt.entry(Level::Pt.index(addr.as_u64()));
        let Some(pte) = read_once(ptep) else { return false };
        if !permitted(pte, w.flags) {
            return false;
        }
        let Some(p) = pgtable::lockless_leaf_page(pte.addr().as_u64() / PAGE_SIZE) else { return false };
        w.seen.push(p.pfn());
        // page_folio(): the folio is looked up before the reference is
        // taken (bug H's window is between the two).
        let folio = p.folio();
        widen::at_walk(Point::GupPreRef, p.pfn(), table_pfn, w.mm_id, addr.as_u64());
        stamps::end(Step::GupWalk, t);
        // The re-read (Linux: pmd and pte unchanged); `gup.recheck=off`
        // skips both, `gup.pmd_recheck=off` the pmd only.
        let unchanged = || {
            !recheck
                // SeqCst: our half of the Dekker pair (see grab_then_recheck).
                || (!(pmd_recheck && pmdp.load(Ordering::SeqCst) != pmd) && ptep.load(Ordering::SeqCst) == pte)
        };
        if !grab_then_recheck(p, folio, 1, pte, w, unchanged) {
            return false;
        }
        addr += PAGE_SIZE;
    }
    true
}

/// Takes `n` references or pins on `folio` (the folio found for `page`),
/// then checks that the entries it was found through did not change, then
/// the unshare rule (Linux: try_grab_folio_fast(), the pte/pmd re-read,
/// gup_must_unshare()).
/// Backs out the grab and returns false if any step fails. `entry` is the
/// leaf as read; `unchanged` re-reads what the caller's switches ask for.
#[inline(always)]
fn grab_then_recheck(
    page: &'static Page,
    folio: &'static Page,
    n: usize,
    entry: RawEntry,
    w: &mut Walk<'_>,
    unchanged: impl FnOnce() -> bool,
) -> bool {
    let at = w.out.len();
    if !try_grab_folio_fast(page, folio, n, w) {
        return false;
    }
    let t = stamps::start();
    // No fence here (Linux: smp_mb__after_atomic(), a compiler barrier on
    // x86). The Dekker pair with a writer that clears the entry, issues a
    // fence(SeqCst), then loads the reference count (KSM's
    // write_protect_page, khugepaged's collapse; fork's pin check has the
    // same shape on `write_protect_seq`, see `fast_into`) holds because our
    // side's two accesses are SeqCst: the add-unless-zero's successful
    // compare-exchange ([`page::folio_ref_try_add`]) and the re-reads in
    // `unchanged` (C++20 [atomics.order] p4, which Rust adopts: if both
    // missed each other, the writer's count load is coherence-ordered
    // before our RMW, so its fence precedes our RMW in S (4.3); our re-read
    // is coherence-ordered before its exchange, so the re-read precedes its
    // fence in S (4.2); our RMW precedes our re-read in S (both SeqCst,
    // sequenced): a cycle in S). On x86 the SeqCst compare-exchange is the
    // LOCK CMPXCHG it was and a SeqCst load is a plain MOV, so the walk
    // pays no fence (the fence(SeqCst) that stood here compiled to a LOCK OR
    // on the stack: about 8 ns per page under TCG).
    if !unchanged() {
        BAILOUTS.fetch_add(1, Ordering::Relaxed);
        w.out.truncate(at);
        return false;
    }
    if must_unshare(w.flags, entry, page) {
        w.out.truncate(at);
        return false;
    }
    stamps::end(Step::GupRecheck, t);
    true
}

/// GUP-fast only: grabs what the lockless walk can from `start` on (Linux
/// get_user_pages_fast_only()); the count may be short, even zero.
pub fn get_user_pages_fast_only(start: UserAddr, nr: usize, flags: Foll) -> Result<Vec<Grabbed>, GupError> {
    let end = check_range(start, nr, flags)?.end();
    let mm = crate::mm::fault::current_mm().ok_or(GupError::Fault)?;
    let mut out = Vec::with_capacity(nr);
    fast_into(&mm, start, end, flags, &mut out);
    Ok(out)
}

fn fast_into(mm: &AddressSpace, start: UserAddr, end: UserAddr, flags: Foll, out: &mut Vec<Grabbed>) -> usize {
    // Fork write-protects ptes under this sequence; a pin that overlaps it
    // goes to the slow path, which waits for fork on the mmap lock. **The
    // one decision point of `fork.seqcount=off`** (bug E: no sequence, and a
    // pin may land on a page fork is sharing with the child).
    let seq = if flags.contains(Foll::PIN) && super::fork_seqcount() {
        match mm.write_protect_seq_begin() {
            Some(s) => Some(s),
            None => return 0,
        }
    } else {
        None
    };
    let first = out.len();
    let mut seen = Seen::default();
    // Stamps only while a scenario counts overlaps: off the hot path otherwise.
    let stamp = || if overlap::enabled() { crate::arch::tsc::rdtsc() } else { 0 };
    let (n, t0, t1) = {
        let irqs = IrqsOff::for_gup_fast();
        let t0 = stamp();
        let n = walk(mm, start, end, flags, out, &mut seen, &irqs);
        (n, t0, stamp())
    };
    overlap::walk_done(t0, t1, &seen.pfns[..seen.n]);
    if let Some(seq) = seq {
        // No fence (Linux has none here either: try_grab_folio_fast()'s
        // smp_mb__after_atomic() is a compiler barrier on x86). A Dekker
        // pair with fork, which bumps the sequence (SeqCst RMW), issues
        // fence(SeqCst), then loads each page's pin state
        // (maybe_dma_pinned). Our pins are SeqCst RMWs (the reference in
        // page::folio_ref_try_add, the bias or pincount in
        // page::folio_add_pins) and write_protect_seq_changed is a SeqCst
        // load (C++20 [atomics.order] p4): if fork's load missed our last
        // pin RMW, fork's fence precedes that RMW in S (4.3); if our load
        // missed fork's bump, it precedes the bump in S (4.1), which
        // precedes fork's fence; the RMW precedes our load in S (both
        // SeqCst, sequenced): a cycle. So fork sees the pin (and copies
        // the page for the child) or we see the odd sequence (and leave
        // the pages to the slow path).
        if mm.write_protect_seq_changed(seq) {
            out.truncate(first);
            return 0;
        }
    }
    n
}

/// Grabs `nr` pages from `start` in the current address space: GUP-fast
/// first, the slow path for the rest (Linux get_user_pages_fast() /
/// pin_user_pages_fast()). All or nothing: on an error every page already
/// taken is released.
pub fn get_user_pages_fast(start: UserAddr, nr: usize, flags: Foll) -> Result<Vec<Grabbed>, GupError> {
    let end = check_range(start, nr, flags)?.end();
    let mm = crate::mm::fault::current_mm().ok_or(GupError::Fault)?;
    let mut out = Vec::with_capacity(nr);
    let done = fast_into(&mm, start, end, flags, &mut out);
    if done < nr {
        SLOW_FALLS.fetch_add((nr - done) as u64, Ordering::Relaxed);
        slow::slow_into(&mm, start + done as u64 * PAGE_SIZE, nr - done, flags, &mut out)?;
    }
    Ok(out)
}
