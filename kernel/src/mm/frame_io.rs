//! Frame contents: the one way the kernel reads, compares, hashes, fills and
//! copies the bytes of a frame that other agents may write at the same time
//! (Asterinas's `VmReader`/`VmWriter` are the model: untyped memory is
//! reached only through them, never as a `&[u8]`).
//!
//! Why not a slice: a user page can be written while the kernel reads it by
//! user threads running on other CPUs (through their own TLB entries, stale
//! ones included under a negative control) and by the DMA agent (a device
//! writing behind the CPU's back). A `&[u8]` or `&mut [u8]` over such memory
//! promises Rust that nothing changes it, which is false: the compiler may
//! read a byte twice and see two values, or keep a value it assumed stable.
//! Here every access is a word-granular (8-byte) atomic access through the
//! direct map, so a concurrent write is a defined race: a reader sees, for
//! each word, either the old or the new value (a "torn" page snapshot, as a
//! racy `memcmp` in Linux sees), never undefined behaviour.
//!
//! Why `Relaxed` is enough: this module only moves data. The ordering of a
//! copy or a comparison against the protocol comes from the callers' own
//! synchronisation, never from these accesses:
//! * KSM compares and hashes (`same_contents`, `checksum`) after
//!   `write_protect_page` cleared and flushed the pte (the TLB-flush IPI and
//!   its acknowledgement order every CPU's earlier writes before the
//!   comparison), and refuses the merge on any difference a racing writer
//!   causes; the checksum is only a hint that the merge re-checks.
//! * The fault and fork copies run under the page-table lock, with the
//!   source mapped read-only everywhere (a DMA pin writing it is the
//!   fork-vs-pin case that fork's early copy handles); the copy is published
//!   by the Release store of the new pte.
//! * The DMA agent's words are published to the submitter by the
//!   completion's Release/Acquire pair (`dma::completion`).
//! * A folio's contents are published to lockless walkers by the Release
//!   store of the pte that maps it (and the folio's refcount, `page.rs`).
//!
//! Writes need evidence that the frame may be written: a [`PageRef`] (a
//! reference on a data folio: never a page table, a stack or the heap, whose
//! frames have no references) or an [`OwnedFrames`] the kernel allocated for
//! itself. Reads take a [`Page`]: any frame of RAM may be read, since the
//! direct map covers all of it for the kernel's life and an atomic read of a
//! frame that is being freed or reused only yields stale data (callers hold a
//! reference or a lock when the data must be meaningful).
//!
//! The device side ([`DevicePage`]) models a bus-master device, which is
//! given physical addresses only: it checks that the frame is pinned (the DMA
//! contract: the submitter holds FOLL_PIN pins until the transfer completed)
//! and reports a use after free and touches nothing otherwise.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::PhysAddr;
use x86_64::structures::paging::PhysFrame;

use super::page::{self, Page, PageRef};
use super::{PAGE_SIZE, frame, phys_to_virt};

/// Words in a 4 KiB page.
pub const PAGE_WORDS: usize = (PAGE_SIZE / 8) as usize;

/// The word of RAM at `pa` (8-byte aligned), through the direct map.
fn word_at(pa: PhysAddr) -> &'static AtomicU64 {
    assert!(pa.is_aligned(8u64), "frame word at unaligned {pa:#x}");
    assert!(page::exists(pa.as_u64() / PAGE_SIZE), "frame word at {pa:#x} outside physical memory");
    // SAFETY: `pa` is 8-aligned and inside RAM (checked above); the direct
    // map covers all RAM for the kernel's life, so the address is valid for
    // `'static`. `AtomicU64` has `u64`'s size and alignment and every bit
    // pattern is valid. Every kernel access to frame contents that may race
    // goes through this module's atomics; user threads and the device write
    // from outside the Rust abstract machine, like another process.
    unsafe { &*phys_to_virt(pa).as_ptr::<AtomicU64>() }
}

/// The words of the 4 KiB frame `p` describes.
fn words(p: &Page) -> &'static [AtomicU64; PAGE_WORDS] {
    // SAFETY: a `Page` exists only for a frame of physical memory, so its
    // 4 KiB (page-aligned) lie in the direct map for the kernel's life; as
    // in `word_at`, atomics of `u64` layout over any bit pattern are valid.
    unsafe { &*phys_to_virt(p.phys()).as_ptr::<[AtomicU64; PAGE_WORDS]>() }
}

/// Word `i` (0..512) of the 4 KiB frame `p` describes.
fn word(p: &Page, i: usize) -> &'static AtomicU64 {
    assert!(i < PAGE_WORDS, "word {i} past the end of a page");
    &words(p)[i]
}

/// The metadata of page `index` of `r`'s folio (panics past its end).
fn folio_page(r: &PageRef, index: usize) -> &'static Page {
    let head = r.page().folio();
    assert!(index < 1usize << head.order(), "page {index} past the end of an order-{} folio", head.order());
    page::page(head.pfn() + index as u64)
}

/// Reads the word at byte `offset` (8-aligned, inside the page) of `p`.
pub fn read_word(p: &Page, offset: usize) -> u64 {
    assert!(offset.is_multiple_of(8), "unaligned word offset {offset:#x}");
    word(p, offset / 8).load(Ordering::Relaxed)
}

/// Copies `dst.len()` bytes of `p` from byte `offset` into a kernel buffer
/// (word by word; each word is one atomic read).
pub fn read_bytes(p: &Page, offset: usize, dst: &mut [u8]) {
    assert!(offset + dst.len() <= PAGE_SIZE as usize, "read of {} bytes at {offset:#x} past the page", dst.len());
    let mut pos = offset;
    let mut out = 0;
    while out < dst.len() {
        let w = word(p, pos / 8).load(Ordering::Relaxed).to_le_bytes();
        let skip = pos % 8;
        let n = (8 - skip).min(dst.len() - out);
        dst[out..out + n].copy_from_slice(&w[skip..skip + n]);
        out += n;
        pos += n;
    }
}

/// Whether two 4 KiB pages hold the same bytes (Linux pages_identical()).
/// Racing writers can make the answer stale either way; callers that act on
/// "same" have stopped writers first (KSM: the pte is write-protected and
/// flushed) or re-check.
pub fn same_contents(a: &Page, b: &Page) -> bool {
    // Eight words per test: one branch per 64 bytes, as a vectorised memcmp.
    let (a, b) = (words(a), words(b));
    a.chunks_exact(8).zip(b.chunks_exact(8)).all(|(x, y)| {
        x.iter().zip(y).fold(0, |d, (x, y)| d | (x.load(Ordering::Relaxed) ^ y.load(Ordering::Relaxed))) == 0
    })
}

/// A 64-bit hash of a 4 KiB page's contents (Linux calc_checksum(), xxhash
/// there). Four lanes, as xxhash's, each taking every fourth word with an
/// xor and a multiply by an odd constant (a bijection of the lane, so a
/// change of any one word always changes the hash), then the lanes folded
/// with rotations and a final avalanche: three instructions a word where
/// the single-lane multiply-and-rotate took six and a half. Under TCG the
/// loads dominate, so the gain is small (bench=ksm bench.breakdown=on,
/// interleaved runs: median 1.17-1.20 -> 1.04-1.05 us a page).
pub fn checksum(p: &Page) -> u64 {
    const P: u64 = 0x9e37_79b1_85eb_ca87; // xxhash's PRIME64_1, odd
    let mut h = [0xcbf2_9ce4_8422_2325u64, 0x8422_2325_cbf2_9ce4, 0x27d4_eb2f_1656_67c5, 0x1656_67c5_27d4_eb2f];
    for c in words(p).chunks_exact(4) {
        for (h, w) in h.iter_mut().zip(c) {
            *h = (*h ^ w.load(Ordering::Relaxed)).wrapping_mul(P);
        }
    }
    let mut x = h[0].rotate_left(1) ^ h[1].rotate_left(7) ^ h[2].rotate_left(12) ^ h[3].rotate_left(18);
    // Avalanche (xxhash's final mix) so low bits depend on every lane's high bits.
    x ^= x >> 33;
    x = x.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    x ^= x >> 29;
    x = x.wrapping_mul(0x1656_67b1_9e37_79f9);
    x ^ (x >> 32)
}

/// Writes the word at byte `offset` (8-aligned, inside the page) of the page
/// `dst` references.
pub fn write_word(dst: &PageRef, offset: usize, v: u64) {
    assert!(offset.is_multiple_of(8), "unaligned word offset {offset:#x}");
    word(dst.page(), offset / 8).store(v, Ordering::Relaxed);
}

/// Copies a kernel buffer into the page `dst` references, at byte `offset`.
/// Partial words at either end are read, merged and written back (a
/// concurrent writer of the other bytes of such a word may be undone, as
/// with any byte-granular copy on a machine that writes words).
pub fn write_bytes(dst: &PageRef, offset: usize, src: &[u8]) {
    assert!(offset + src.len() <= PAGE_SIZE as usize, "write of {} bytes at {offset:#x} past the page", src.len());
    let p = dst.page();
    let mut pos = offset;
    let mut done = 0;
    while done < src.len() {
        let w = word(p, pos / 8);
        let skip = pos % 8;
        let n = (8 - skip).min(src.len() - done);
        let v = if n == 8 {
            u64::from_le_bytes(src[done..done + 8].try_into().expect("8 bytes"))
        } else {
            let mut b = w.load(Ordering::Relaxed).to_le_bytes();
            b[skip..skip + n].copy_from_slice(&src[done..done + n]);
            u64::from_le_bytes(b)
        };
        w.store(v, Ordering::Relaxed);
        done += n;
        pos += n;
    }
}

/// Fills the page `dst` references with the word `v`.
pub fn fill(dst: &PageRef, v: u64) {
    fill_words(dst.page(), v);
}

/// Stores `v` into every word of the 4 KiB frame `p`, eight stores a loop
/// iteration: under TCG a loop iteration is a translated block executed
/// once more, and a string instruction (`rep stosq`) one per word.
#[inline]
fn fill_words(p: &Page, v: u64) {
    let (chunks, rest) = words(p).as_chunks::<8>();
    debug_assert!(rest.is_empty());
    for c in chunks {
        for w in c {
            w.store(v, Ordering::Relaxed);
        }
    }
}

/// Zeroes the page `dst` references.
pub fn zero(dst: &PageRef) {
    fill(dst, 0)
}

/// Copies the 4 KiB page `src` into the page `dst` references (Linux
/// copy_user_highpage()).
pub fn copy_page_from(dst: &PageRef, src: &Page) {
    copy_words(dst.page(), src);
}

/// Copies the 4 KiB page `src` into page `index` of `dst`'s folio (collapse
/// fills a huge folio this way, Linux __collapse_huge_page_copy()).
pub fn copy_page_into(dst: &PageRef, index: usize, src: &Page) {
    copy_words(folio_page(dst, index), src);
}

/// Zeroes page `index` of `dst`'s folio (collapse's none ptes).
pub fn zero_page_in(dst: &PageRef, index: usize) {
    fill_words(folio_page(dst, index), 0);
}

/// Copies `src`'s whole folio into `dst`'s folio, which must have the same
/// order (Linux folio_copy()).
pub fn copy_folio_from(dst: &PageRef, src: &Page) {
    let (d, s) = (dst.page().folio(), src.folio());
    assert_eq!(d.order(), s.order(), "folio copy between orders {} and {}", s.order(), d.order());
    for i in 0..1u64 << d.order() {
        copy_words(page::page(d.pfn() + i), page::page(s.pfn() + i));
    }
}

/// Word-by-word copy of one 4 KiB page (the destination checked by callers).
fn copy_words(dst: &Page, src: &Page) {
    // Eight words a loop iteration, as `fill_words`.
    let (d, s) = (words(dst).as_chunks::<8>().0, words(src).as_chunks::<8>().0);
    for (d, s) in d.iter().zip(s) {
        for (d, s) in d.iter().zip(s) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// A device was given a frame that is not pinned (the DMA contract broken):
/// reported as a use after free; the device does not touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPinned(pub PhysAddr);

/// A bus-master device's access to one pinned 4 KiB frame.
pub struct DevicePage {
    page: &'static Page,
}

impl DevicePage {
    /// The frame holding physical address `pa`, if it is pinned (checked;
    /// otherwise a use after free is reported). The check and the accesses
    /// are not one step: as with a real device, the submitter's duty is to
    /// keep its pins until the transfer completed (`dma::DmaEngine::submit`);
    /// the check catches a breach of that duty made before the access.
    pub fn pinned(pa: PhysAddr) -> Result<DevicePage, NotPinned> {
        let pfn = pa.as_u64() / PAGE_SIZE;
        if page::exists(pfn) && page::page(pfn).dma_pins() > 0 {
            return Ok(DevicePage { page: page::page(pfn) });
        }
        page::report_uaf(format_args!("device access to {pa:#x}, a frame with no pin"));
        Err(NotPinned(pa))
    }

    /// The device reads the word at byte `offset` (8-aligned) of the frame.
    pub fn read_word(&self, offset: usize) -> u64 {
        read_word(self.page, offset)
    }

    /// The device writes the word at byte `offset` (8-aligned) of the frame.
    pub fn write_word(&self, offset: usize, v: u64) {
        assert!(offset.is_multiple_of(8), "unaligned word offset {offset:#x}");
        word(self.page, offset / 8).store(v, Ordering::Relaxed);
    }
}

/// Frames the kernel allocated for its own use (a device's medium, test
/// scratch), freed when dropped. Their contents are reached only through
/// these methods.
pub struct OwnedFrames {
    frame: PhysFrame,
    order: usize,
}

impl OwnedFrames {
    /// Allocates 2^order zeroed frames; `None` without memory.
    pub fn alloc_zeroed(order: usize) -> Option<OwnedFrames> {
        frame::alloc_zeroed(order).map(|frame| OwnedFrames { frame, order })
    }

    /// Bytes owned.
    pub fn len(&self) -> u64 {
        PAGE_SIZE << self.order
    }

    /// Physical address of the first frame.
    pub(crate) fn phys(&self) -> PhysAddr {
        self.frame.start_address()
    }

    fn word(&self, offset: u64) -> &'static AtomicU64 {
        assert!(offset < self.len(), "offset {offset:#x} past {} owned bytes", self.len());
        word_at(self.phys() + offset)
    }

    /// Reads the word at byte `offset` (8-aligned).
    pub fn read_word(&self, offset: u64) -> u64 {
        self.word(offset).load(Ordering::Relaxed)
    }

    /// Writes the word at byte `offset` (8-aligned).
    pub fn write_word(&self, offset: u64, v: u64) {
        self.word(offset).store(v, Ordering::Relaxed)
    }
}

impl Drop for OwnedFrames {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc_zeroed` with this order, owned by this
        // value alone (nothing else has its address but through `phys`, which
        // gives no access right).
        unsafe { frame::free(self.frame, self.order) };
    }
}

/// Fills `2^order` free frames at `pa` with the poison byte (the free path).
///
/// Word stores eight a loop iteration ([`fill_words`]): the free path runs
/// for every freed folio; one word store a loop iteration cost ksmd a third
/// of its merge rate under TCG (bench=ksm), and the string instruction
/// (`write_bytes`, `rep stosq`) is one translated-block execution per word
/// there. The only writer that can race with it is a stale one (a TLB entry
/// or a DMA the protocol failed to stop), whose write the quarantine's
/// check then reports; no correct path reads or writes a free frame.
///
/// # Safety
/// The frames are free and the caller's: no owner reads or writes them any
/// more.
pub(super) unsafe fn poison(pa: PhysAddr, order: usize, byte: u8) {
    let first = pa.as_u64() >> 12;
    assert!(page::exists(first + (1 << order) - 1), "poison of {pa:#x} past physical memory");
    for pfn in first..first + (1 << order) {
        fill_words(page::page(pfn), u64::from_ne_bytes([byte; 8]));
    }
}

/// The byte offset of the first 8-byte word of the 4 KiB frame `p` that is
/// not `v`, if any (the quarantine's check of a freed page table, whose
/// entries hold [`super::paging::POISON_ENTRY`]).
pub(super) fn first_word_not(p: &Page, v: u64) -> Option<usize> {
    words(p).iter().position(|w| w.load(Ordering::Relaxed) != v).map(|i| i * 8)
}

/// The byte offset of the first byte of the 4 KiB frame `p` that is not
/// `byte`, if any (the quarantine's check of a freed frame).
pub(super) fn first_byte_not(p: &Page, byte: u8) -> Option<usize> {
    let v = u64::from_ne_bytes([byte; 8]);
    words(p).iter().enumerate().find_map(|(i, w)| {
        let w = w.load(Ordering::Relaxed);
        (w != v).then(|| i * 8 + w.to_ne_bytes().iter().position(|&b| b != byte).expect("a differing byte"))
    })
}
