//! A page cache for read-only files (Linux mm/filemap.c, reduced to what
//! program text needs): a file is a sequence of pages filled once, shared by
//! every private mapping of it, never written, never evicted.
//!
//! A private file mapping (`vma::FileMap`) maps these pages read-only; a
//! write (or a forced write, FOLL_FORCE) copies the page into a new
//! anonymous page for that mapping only (Linux do_cow_fault() /
//! wp_page_copy()), which is how a program's text page becomes the
//! anonymous page that uprobes writes its breakpoint into. Zapping such an
//! anonymous page makes the next fault map the page-cache original again.
//!
//! Invariants: a page-cache page is not anonymous (no `ANON` flag) and holds
//! one reference owned by its file for ever, so it is never freed, and its
//! contents never change after [`create`] (nobody maps it writable; GUP
//! with FOLL_WRITE or FOLL_FORCE copies it first).

use alloc::vec::Vec;

use super::frame_io;
use super::page::{self, Page, PageRef};
use super::PAGE_SIZE;
use crate::sync::SpinLock;

/// A file: its index in [`FILES`].
pub(crate) type FileId = u32;

struct File {
    /// Who asked for it (`key` of [`create`]): the same contents are cached
    /// once.
    key: u64,
    pages: Vec<PageRef>,
}

/// Every file ever created (files live for ever: program text).
static FILES: SpinLock<Vec<File>> = SpinLock::new("page cache", Vec::new());

/// The file of `key`, created from `contents` (padded with zeroes to whole
/// pages) if no file has that key yet. `None` when out of memory.
pub fn create(key: u64, contents: &[u8]) -> Option<FileId> {
    if let Some(i) = FILES.lock().iter().position(|f| f.key == key) {
        return Some(i as FileId);
    }
    let n = contents.len().div_ceil(PAGE_SIZE as usize).max(1);
    let mut pages = Vec::with_capacity(n);
    for i in 0..n {
        let p = page::alloc_folio(0, true)?;
        let from = i * PAGE_SIZE as usize;
        let to = contents.len().min(from + PAGE_SIZE as usize);
        if from < to {
            frame_io::write_bytes(&p, 0, &contents[from..to]);
        }
        pages.push(p);
    }
    let mut files = FILES.lock();
    if let Some(i) = files.iter().position(|f| f.key == key) {
        return Some(i as FileId); // raced: ours are freed
    }
    files.push(File { key, pages });
    Some((files.len() - 1) as FileId)
}

/// Page `index` of file `id` (Linux find_get_page() without the reference:
/// the file's own reference keeps it for ever).
pub fn find_get_page(id: FileId, index: u64) -> Option<&'static Page> {
    FILES.lock().get(id as usize)?.pages.get(index as usize).map(PageRef::page)
}

/// Pages of file `id`.
pub(crate) fn pages(id: FileId) -> u64 {
    FILES.lock().get(id as usize).map_or(0, |f| f.pages.len() as u64)
}
