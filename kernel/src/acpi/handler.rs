//! The `acpi` crate's view of the machine: physical memory through the direct
//! map, port I/O, PCI configuration mechanism #1, and the TSC clock.
//!
//! Invariant: a table is only handed to the crate after [`readable`] confirmed
//! that all its bytes are in the direct map, so "mapping" is address arithmetic
//! and unmapping does nothing. Firmware tables lie in RAM or ACPI-reserved
//! memory, both below the end of the direct map (which covers at least 4 GiB).

use core::ptr::NonNull;

use acpi::{Handler, PciAddress, PhysicalMapping};
use x86_64::instructions::port::Port;
use x86_64::{PhysAddr, VirtAddr};

use crate::mm::{self, PAGE_SIZE, layout, paging};
use crate::time::Deadline;

/// Whether `len` bytes at physical `phys` are mapped in the direct map.
pub(crate) fn readable(phys: u64, len: u64) -> bool {
    let Some(end) = phys.checked_add(len.max(1)) else { return false };
    if end > layout::DIRECT_MAP_MAX || mm::phys_offset() == 0 {
        return false;
    }
    let root = paging::active_root();
    let mut page = phys & !(PAGE_SIZE - 1);
    while page < end {
        if paging::translate(root, mm::phys_to_virt(PhysAddr::new(page))).is_none() {
            return false;
        }
        page += PAGE_SIZE;
    }
    true
}

/// The direct map, as an `acpi::Handler`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectMap;

impl DirectMap {
    fn virt(address: usize, size: u64) -> Option<VirtAddr> {
        readable(address as u64, size).then(|| mm::phys_to_virt(PhysAddr::new(address as u64)))
    }

    fn read<T: Copy>(address: usize, all_ones: T) -> T {
        match Self::virt(address, size_of::<T>() as u64) {
            // SAFETY: the bytes are mapped (checked); firmware asked for this
            // access (AML operation region), so it is a register or RAM it owns.
            Some(v) => unsafe { core::ptr::read_volatile(v.as_ptr::<T>()) },
            None => {
                log::warn!("acpi: read of unmapped physical address {address:#x}");
                all_ones
            }
        }
    }

    fn write<T: Copy>(address: usize, value: T) {
        match Self::virt(address, size_of::<T>() as u64) {
            // SAFETY: as in `read`; the direct map is writable.
            Some(v) => unsafe { core::ptr::write_volatile(v.as_mut_ptr::<T>(), value) },
            None => log::warn!("acpi: write to unmapped physical address {address:#x} dropped"),
        }
    }

    /// Selects a PCI configuration register through ports 0xcf8/0xcfc and
    /// returns the data port for `offset`, or `None` for segments and offsets
    /// mechanism #1 cannot reach.
    fn pci_select(address: PciAddress, offset: u16) -> Option<u16> {
        if address.segment() != 0 || offset >= 256 {
            log::warn!("acpi: PCI config {address} offset {offset:#x} is beyond configuration mechanism #1");
            return None;
        }
        let select = 0x8000_0000
            | u32::from(address.bus()) << 16
            | u32::from(address.device()) << 11
            | u32::from(address.function()) << 8
            | u32::from(offset & 0xfc);
        // SAFETY: 0xcf8 is the PCI configuration address port on every PC chipset;
        // selecting a register has no effect until the data port is accessed.
        unsafe { Port::<u32>::new(0xcf8).write(select) };
        Some(0xcfc + (offset & 3))
    }
}

impl Handler for DirectMap {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        assert!(
            readable(physical_address as u64, size as u64),
            "acpi: table at {physical_address:#x} (+{size:#x}) is not in the direct map (callers check first)"
        );
        let virt = mm::phys_to_virt(PhysAddr::new(physical_address as u64));
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(virt.as_mut_ptr::<T>()).expect("direct-map address is null"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // Direct-map views are permanent; there is nothing to undo.
    }

    fn read_u8(&self, address: usize) -> u8 {
        Self::read(address, u8::MAX)
    }
    fn read_u16(&self, address: usize) -> u16 {
        Self::read(address, u16::MAX)
    }
    fn read_u32(&self, address: usize) -> u32 {
        Self::read(address, u32::MAX)
    }
    fn read_u64(&self, address: usize) -> u64 {
        Self::read(address, u64::MAX)
    }

    fn write_u8(&self, address: usize, value: u8) {
        Self::write(address, value)
    }
    fn write_u16(&self, address: usize, value: u16) {
        Self::write(address, value)
    }
    fn write_u32(&self, address: usize, value: u32) {
        Self::write(address, value)
    }
    fn write_u64(&self, address: usize, value: u64) {
        Self::write(address, value)
    }

    fn read_io_u8(&self, port: u16) -> u8 {
        // SAFETY: firmware tables name this port for this access.
        unsafe { Port::new(port).read() }
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        // SAFETY: as in `read_io_u8`.
        unsafe { Port::new(port).read() }
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        // SAFETY: as in `read_io_u8`.
        unsafe { Port::new(port).read() }
    }

    fn write_io_u8(&self, port: u16, value: u8) {
        // SAFETY: as in `read_io_u8`.
        unsafe { Port::new(port).write(value) }
    }
    fn write_io_u16(&self, port: u16, value: u16) {
        // SAFETY: as in `read_io_u8`.
        unsafe { Port::new(port).write(value) }
    }
    fn write_io_u32(&self, port: u16, value: u32) {
        // SAFETY: as in `read_io_u8`.
        unsafe { Port::new(port).write(value) }
    }

    fn read_pci_u8(&self, address: PciAddress, offset: u16) -> u8 {
        // SAFETY: `pci_select` chose the data port of the selected register.
        Self::pci_select(address, offset).map_or(u8::MAX, |p| unsafe { Port::new(p).read() })
    }
    fn read_pci_u16(&self, address: PciAddress, offset: u16) -> u16 {
        // SAFETY: as in `read_pci_u8`.
        Self::pci_select(address, offset).map_or(u16::MAX, |p| unsafe { Port::new(p).read() })
    }
    fn read_pci_u32(&self, address: PciAddress, offset: u16) -> u32 {
        // SAFETY: as in `read_pci_u8`.
        Self::pci_select(address, offset).map_or(u32::MAX, |p| unsafe { Port::new(p).read() })
    }

    fn write_pci_u8(&self, address: PciAddress, offset: u16, value: u8) {
        if let Some(p) = Self::pci_select(address, offset) {
            // SAFETY: as in `read_pci_u8`.
            unsafe { Port::new(p).write(value) }
        }
    }
    fn write_pci_u16(&self, address: PciAddress, offset: u16, value: u16) {
        if let Some(p) = Self::pci_select(address, offset) {
            // SAFETY: as in `read_pci_u8`.
            unsafe { Port::new(p).write(value) }
        }
    }
    fn write_pci_u32(&self, address: PciAddress, offset: u16, value: u32) {
        if let Some(p) = Self::pci_select(address, offset) {
            // SAFETY: as in `read_pci_u8`.
            unsafe { Port::new(p).write(value) }
        }
    }

    fn nanos_since_boot(&self) -> u64 {
        crate::time::now_ns()
    }

    fn stall(&self, microseconds: u64) {
        let deadline = Deadline::after_ns(microseconds.saturating_mul(1000));
        while !deadline.expired() {
            core::hint::spin_loop();
        }
    }

    fn sleep(&self, milliseconds: u64) {
        // No scheduler yet: sleeping is stalling.
        self.stall(milliseconds.saturating_mul(1000));
    }

    fn create_mutex(&self) -> acpi::Handle {
        super::poweroff::create_mutex()
    }

    fn acquire(&self, mutex: acpi::Handle, timeout: u16) -> Result<(), acpi::aml::AmlError> {
        super::poweroff::acquire(mutex, timeout)
    }

    fn release(&self, mutex: acpi::Handle) {
        super::poweroff::release(mutex)
    }
}
