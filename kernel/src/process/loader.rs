//! Mapping a program into a new address space, and tearing it down again.
//!
//! **This is the one file that touches user page tables for processes**, so
//! the memory-management work can replace it wholesale with VMAs and demand
//! paging: [`map_region`] becomes "create a VMA (and maybe populate it)",
//! [`unload`] becomes "unmap every VMA". The rest of `process` only calls
//! [`load`] and [`unload`].
//!
//! For now every page is mapped at load time: a fresh zeroed frame per page,
//! filled with the segment's file bytes, mapped with `paging::map` and the
//! segment's protection (text R-X, rodata R, data/bss RW-NX). The user stack is
//! `USER_STACK_SIZE` at `USER_STACK_TOP`, with the page below left unmapped (a
//! guard: an overflow faults and kills the process). [`UserImage`] owns the
//! frames; [`unload`] clears the user half of the root, flushes the TLB of
//! every CPU that has the address space loaded, and only then frees the
//! frames and the page tables (Linux: the order of unmap_vmas + free_pgtables +
//! tlb_finish_mmu).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::elf::Program;
use crate::mm::addr_space::AddressSpace;
use crate::mm::layout::{USER_STACK_SIZE, USER_STACK_TOP};
use crate::mm::paging::{self, Level, PageTable, PteFlags, RawEntry};
use crate::mm::{PAGE_SIZE, frame, phys_to_virt};
use abi::Errno;

/// The frames mapped for a process (data pages only; page tables are found by
/// walking the root at teardown).
#[derive(Default)]
pub struct UserImage {
    frames: Vec<PhysFrame<Size4KiB>>,
}

impl UserImage {
    /// Frames mapped (for reports and tests).
    pub fn frames(&self) -> usize {
        self.frames.len()
    }
}

/// Protection of a region.
#[derive(Clone, Copy, Debug)]
pub struct Prot {
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

/// Maps `[start, end)` (page-aligned) into `mm` with `prot`, each page a fresh
/// zeroed frame, with `init` copied in starting at address `init_at`.
fn map_region(
    mm: &AddressSpace,
    image: &mut UserImage,
    start: u64,
    end: u64,
    prot: Prot,
    init: &[u8],
    init_at: u64,
) -> Result<(), Errno> {
    debug_assert!(start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE));
    let mut flags = PteFlags::PRESENT | PteFlags::USER;
    if prot.write {
        flags |= PteFlags::WRITABLE;
    }
    if !prot.exec {
        flags |= PteFlags::NO_EXECUTE;
    }
    let init_end = init_at + init.len() as u64;
    for page in (start..end).step_by(PAGE_SIZE as usize) {
        let frame = frame::alloc_zeroed(0).ok_or(Errno::ENOMEM)?;
        // Bytes of `init` that fall in this page.
        let (lo, hi) = (page.max(init_at), (page + PAGE_SIZE).min(init_end));
        if lo < hi {
            let src = &init[(lo - init_at) as usize..(hi - init_at) as usize];
            // SAFETY: the frame was just allocated to us and is reached through
            // the direct map; the copy stays inside it (lo..hi is within page).
            unsafe {
                let dst = phys_to_virt(frame.start_address()).as_mut_ptr::<u8>().add((lo - page) as usize);
                core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
            }
        }
        // SAFETY: `mm` is a new address space no thread runs in yet (or the
        // caller's own, below its user-half lock in the future VMA version);
        // `page` is a user address no one relies on being unmapped; the
        // frame is ours.
        let mapped = unsafe { paging::map(mm.root(), VirtAddr::new(page), frame.start_address(), Level::Pt, flags) };
        if let Err(e) = mapped {
            // SAFETY: the frame is not mapped anywhere.
            unsafe { frame::free(frame, 0) };
            log::warn!("loader: mapping {page:#x}: {e:?}");
            return Err(Errno::ENOMEM);
        }
        image.frames.push(frame);
    }
    Ok(())
}

/// Maps `program`'s segments and the main thread's stack into `mm` (a new,
/// empty address space). On failure everything mapped so far is undone.
pub fn load(mm: &AddressSpace, program: &Program<'_>) -> Result<UserImage, Errno> {
    let mut image = UserImage::default();
    let mut result = Ok(());
    for seg in &program.segments {
        let (start, end) = seg.page_range();
        result = map_region(mm, &mut image, start, end, Prot { write: seg.write, exec: seg.exec }, seg.data, seg.vaddr);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        let stack = Prot { write: true, exec: false };
        result = map_region(mm, &mut image, USER_STACK_TOP - USER_STACK_SIZE, USER_STACK_TOP, stack, &[], 0);
    }
    match result {
        Ok(()) => Ok(image),
        Err(e) => {
            unload(mm, Some(image));
            Err(e)
        }
    }
}

/// Removes every user mapping of `mm` and frees the page tables and `image`'s
/// frames, after flushing the TLB of every CPU that has `mm` loaded. No thread
/// of the process may run in user mode any more (lazy kernel threads may
/// still have `mm` loaded: they never touch user addresses).
pub fn unload(mm: &AddressSpace, image: Option<UserImage>) {
    // SAFETY: the root is a page table; its user half is ours to change.
    let root = unsafe { PageTable::at(mm.root()) };
    let mut tables = Vec::new();
    for i in 0..256 {
        let e = root.entry(i).load(Ordering::Relaxed);
        if e.is_present() {
            collect_tables(e.addr(), Level::Pdpt, &mut tables);
            // Release: a CPU walking after its flush sees the entry gone.
            root.entry(i).store(RawEntry::EMPTY, Ordering::Release);
        }
    }
    if let Err(e) = flush_everywhere(mm) {
        log::error!("loader: TLB flush for address space {} failed ({e}); leaking its frames", mm.id);
        return;
    }
    for table in tables {
        // SAFETY: unreachable from the root now, flushed from every TLB.
        unsafe { frame::free(PhysFrame::containing_address(table), 0) };
    }
    for f in image.map(|i| i.frames).unwrap_or_default() {
        // SAFETY: as above: unmapped and flushed; the image owned the frame.
        unsafe { frame::free(f, 0) };
    }
}

/// Collects the table at `table` (of `level`) and every table below it.
fn collect_tables(table: PhysAddr, level: Level, out: &mut Vec<PhysAddr>) {
    if let Some(next) = level.next() {
        // SAFETY: a present non-leaf entry of a user page table points at a
        // table (the loader maps 4 KiB pages only).
        let t = unsafe { PageTable::at(table) };
        for i in 0..512 {
            let e = t.entry(i).load(Ordering::Relaxed);
            if e.is_present() && !e.is_huge() {
                collect_tables(e.addr(), next, out);
            }
        }
    }
    out.push(table);
}

/// Flushes every TLB that may hold `mm`'s user entries.
fn flush_everywhere(mm: &AddressSpace) -> Result<(), crate::smp::call::CallTimeout> {
    let mut cpus = mm.cpus();
    let me = crate::smp::cpu_index();
    x86_64::instructions::interrupts::without_interrupts(|| {
        if cpus.contains(me) {
            x86_64::instructions::tlb::flush_all();
        }
    });
    cpus.remove(me);
    if cpus.is_empty() {
        return Ok(());
    }
    crate::smp::call::call_and_wait(cpus, x86_64::instructions::tlb::flush_all)
}

/// The frame mapped at user address `va` in `mm`, if any (for tests).
pub fn translate(mm: &AddressSpace, va: u64) -> Option<PhysAddr> {
    paging::translate(mm.root(), VirtAddr::try_new(va).ok()?).map(|t| t.phys)
}
