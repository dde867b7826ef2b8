//! Mapping a program into a new address space, and tearing it down again.
//!
//! A program becomes areas ([`crate::mm::vma`]) like any other memory: its
//! text (the executable, read-only segment) a private mapping of a
//! page-cache file holding the segment's pages ([`crate::mm::filemap`]),
//! shared by every process running the program until one writes a page (a
//! uprobe's breakpoint: the page is then COWed to an anonymous page for that
//! process only); the other segments areas of their pages with the
//! segment's protection (rodata R, data/bss RW), anonymous, filled at load
//! time by faulting their pages in and copying the file bytes through the
//! direct map; the main thread's stack an
//! area of `USER_STACK_SIZE` below `USER_STACK_TOP`, demand-zero, with the
//! page below left unmapped (a guard: an overflow faults and kills the
//! process). [`unload`] unmaps every area (pages freed after the flush) and
//! frees the page tables once no lockless walker can reach them (Linux:
//! exit_mmap(): unmap_vmas, free_pgtables, tlb_finish_mmu).

use crate::mm::addr_space::AddressSpace;
use crate::mm::fault::{self, Access, AccessKind};
use crate::tlb::Gather;
use crate::mm::layout::{USER_STACK_SIZE, USER_STACK_TOP};
use crate::mm::mmap::{self, map};
use crate::mm::vma::{Prot, VmFlags};
use crate::mm::page::PageRef;
use crate::mm::{PAGE_SIZE, frame_io, paging, pgtable, range};
use crate::mm::{PageSize, UserAddr, UserRange};
use abi::Errno;

use super::elf::Program;

/// What a loaded program needs to be unloaded (nothing beyond its areas now;
/// kept as a type so that `process` holds the image it loaded).
#[derive(Default)]
pub struct UserImage {
    pages: u64,
}


/// Maps `[start, end)` of `mm` as an area with `prot`, with `init` copied in
/// at `init_at` (the rest zero).
fn map_region(mm: &AddressSpace, start: u64, end: u64, prot: Prot, init: &[u8], init_at: u64) -> Result<u64, Errno> {
    let flags = map::PRIVATE | map::ANONYMOUS | map::FIXED_NOREPLACE;
    let at = mmap::mmap(mm, start, end - start, (Prot::READ | Prot::WRITE).bits(), flags).map_err(Errno::from)?;
    let region = UserRange::from_len(at, end - start).ok_or(Errno::ENOMEM)?;
    let init_end = init_at + init.len() as u64;
    let mut filled = 0;
    if !init.is_empty() {
        let vmas = mm.vmas.read();
        for page in region.pages(PageSize::Size4K) {
            let (lo, hi) = (page.as_u64().max(init_at), (page.as_u64() + PAGE_SIZE).min(init_end));
            if lo >= hi {
                continue;
            }
            fault::handle_locked(mm, &vmas, page, Access { kind: AccessKind::Write, user: false })
                .map_err(|_| Errno::ENOMEM)?;
            let t = paging::translate(mm.root(), x86_64::VirtAddr::new(lo)).ok_or(Errno::ENOMEM)?;
            let src = &init[(lo - init_at) as usize..(hi - init_at) as usize];
            // The page was just faulted in for writing under the mmap lock we
            // hold, so its mapping keeps it live while we take our reference.
            let page = PageRef::new_ref(crate::mm::page::page_of(t.phys));
            frame_io::write_bytes(&page, (lo & (PAGE_SIZE - 1)) as usize, src);
            filled += 1;
        }
    }
    if prot != Prot::READ | Prot::WRITE {
        mmap::mprotect(mm, start, end - start, prot.bits()).map_err(Errno::from)?;
    }
    Ok(filled)
}

/// The page-cache file of an executable, read-only segment: its pages as
/// they are mapped (`[start, end)` of `page_range()`), keyed by their
/// contents, so that every process running the program shares them.
fn text_file(seg: &super::elf::Segment<'_>) -> Option<crate::mm::filemap::FileId> {
    if !seg.exec || seg.write {
        return None;
    }
    let (start, end) = seg.page_range();
    let mut image = alloc::vec![0u8; (end - start) as usize];
    let at = (seg.vaddr - start) as usize;
    image[at..at + seg.data.len()].copy_from_slice(seg.data);
    // FNV-1a of the address and the bytes: the same program's text is one
    // file whichever process loads it.
    let mut key: u64 = 0xcbf2_9ce4_8422_2325 ^ start;
    for &b in &image {
        key = (key ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    crate::mm::filemap::create(key, &image)
}

/// Creates the page-cache files of every built-in program's text at boot,
/// so that the first spawn of a program allocates none (leak checks compare
/// frame counts across spawns).
pub(crate) fn prime_page_cache() {
    for (name, bytes) in super::programs::PROGRAMS {
        match super::elf::parse(bytes) {
            Ok(p) => {
                for seg in &p.segments {
                    if seg.exec && !seg.write && text_file(seg).is_none() {
                        log::error!("loader: no memory for {name}'s text in the page cache");
                    }
                }
            }
            Err(e) => log::error!("loader: built-in program {name}: bad ELF: {e}"),
        }
    }
}

/// Maps `program`'s segments and the main thread's stack into `mm` (a new,
/// empty address space). On failure everything mapped so far is undone.
pub(crate) fn load(mm: &AddressSpace, program: &Program<'_>) -> Result<UserImage, Errno> {
    let mut image = UserImage::default();
    let mut result = Ok(());
    for seg in &program.segments {
        let (start, end) = seg.page_range();
        let mut prot = Prot::READ;
        prot.set(Prot::WRITE, seg.write);
        prot.set(Prot::EXEC, seg.exec);
        let mapped = match text_file(seg) {
            Some(id) => mmap::mmap_file(mm, start, end - start, prot.bits(), crate::mm::vma::FileMap { id, pgoff: 0 })
                .map(|_| 0)
                .map_err(Errno::from),
            None if seg.exec && !seg.write => Err(Errno::ENOMEM),
            None => map_region(mm, start, end, prot, seg.data, seg.vaddr),
        };
        match mapped {
            Ok(n) => image.pages += n,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        let (start, end) = (USER_STACK_TOP - USER_STACK_SIZE, USER_STACK_TOP);
        result = map_region(mm, start, end, Prot::READ | Prot::WRITE, &[], 0).map(|_| ());
        let (start, end) = (UserAddr::from_const(start), UserAddr::from_const(end));
        mm.vmas.write().modify_range(start, end, |v| v.flags.insert(VmFlags::STACK));
    }
    match result {
        Ok(()) => Ok(image),
        Err(e) => {
            unload(mm, Some(image));
            Err(e)
        }
    }
}

/// Removes every user mapping of `mm`: pages are freed after the flush, page
/// tables after the flush and the `ptfree` synchronisation. No thread of the
/// process may run in user mode any more (lazy kernel threads may still have
/// `mm` loaded: they never touch user addresses).
pub fn unload(mm: &AddressSpace, image: Option<UserImage>) {
    let _ = image;
    let mut vmas = mm.vmas.write();
    let mut batch = Gather::new(mm.tlb());
    let spans: alloc::vec::Vec<UserRange> = vmas.iter().map(|v| v.range()).collect();
    for r in spans {
        if range::zap(mm, r, &mut batch).is_err() {
            log::error!("loader: zapping {r} of address space {} failed", mm.id);
        }
        vmas.remove_range(r.start(), r.end());
    }
    pgtable::free_user_tables(mm, &mut batch);
    batch.finish();
}

/// The frame mapped at user address `va` in `mm`, if any (for tests).
pub fn translate(mm: &AddressSpace, va: UserAddr) -> Option<x86_64::PhysAddr> {
    paging::translate(mm.root(), va.into()).map(|t| t.phys)
}
