//! Powering off through ACPI S5 (`end=poweroff`).
//!
//! Entering S5 is one write of SLP_TYPa | SLP_EN to PM1a_CNT (and SLP_TYPb
//! to PM1b_CNT if there is one): the registers are in the FADT, but the
//! SLP_TYP values are only in the DSDT's `\_S5` package, which is AML. So
//! [`find_s5`] loads the DSDT into the `acpi` crate's AML interpreter and
//! evaluates `\_S5`. It runs at boot when `end=poweroff` is asked, so a
//! machine where it cannot work says so at once (a usage error) rather than
//! at the end. Not supported: hardware-reduced ACPI (the sleep control
//! register), PM1 control blocks outside I/O space, and the `_PTS`/`_GTS`
//! methods Linux runs before the write (QEMU and most firmware do without).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::str::FromStr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use acpi::address::AddressSpace;
use acpi::aml::namespace::AmlName;
use acpi::aml::object::Object;
use acpi::aml::{AmlError, Interpreter};
use acpi::registers::FixedRegisters;
use acpi::sdt::Signature;
use acpi::sdt::fadt::Fadt;
use acpi::sdt::SdtHeader;
use acpi::{Handle, Handler};

use super::handler::DirectMap;
use super::tables;

/// What S5 needs: the PM1 control ports and the sleep types for S5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct S5 {
    /// PM1a_CNT's I/O port.
    pub(crate) pm1a: u16,
    /// PM1b_CNT's I/O port, if any.
    pub(crate) pm1b: Option<u16>,
    /// SLP_TYPa and SLP_TYPb from `\_S5`.
    pub(crate) slp_typ: (u8, u8),
}

fn io_port(gas: acpi::address::GenericAddress, what: &str) -> Result<u16, String> {
    match gas.address_space {
        AddressSpace::SystemIo if gas.address != 0 && gas.address <= 0xffff => Ok(gas.address as u16),
        space => Err(format!("{what} at {:#x} in {space:?} space is not supported (I/O ports only)", gas.address)),
    }
}

/// Reads PM1a/b_CNT from the FADT and evaluates the DSDT's `\_S5`.
pub(crate) fn find_s5(rsdp: Option<u64>) -> Result<S5, String> {
    let tables = tables::open(rsdp.ok_or("the firmware gave no RSDP")?)?;
    let fadt = tables::find::<Fadt>(&tables, 116)?.ok_or("no FADT")?;
    if { fadt.flags }.system_is_hw_reduced_acpi() {
        return Err(String::from("hardware-reduced ACPI (sleep control register) is not supported"));
    }
    let pm1a = io_port(fadt.pm1a_control_block().map_err(|e| format!("PM1a_CNT: {e:?}"))?, "PM1a_CNT")?;
    let pm1b = match fadt.pm1b_control_block().map_err(|e| format!("PM1b_CNT: {e:?}"))? {
        Some(gas) => Some(io_port(gas, "PM1b_CNT")?),
        None => None,
    };
    let dsdt = fadt.dsdt_address().map_err(|e| format!("no DSDT address ({e:?})"))? as u64;
    let len = tables::checked_header(dsdt, Signature::DSDT)? as usize;
    let registers = FixedRegisters::new(&fadt, DirectMap).map_err(|e| format!("PM1 registers: {e:?}"))?;
    // SAFETY: `checked_header` found a whole, checksummed DSDT of `len`
    // bytes at `dsdt`, all in the direct map.
    let mapping = unsafe { DirectMap.map_physical_region::<SdtHeader>(dsdt as usize, len) };
    let revision = mapping.revision;
    let header = size_of::<SdtHeader>();
    // SAFETY: as above: the `len - header` bytes after the header are the
    // table's AML, mapped and not written by anyone.
    let aml = unsafe { core::slice::from_raw_parts(mapping.virtual_start.as_ptr().cast::<u8>().add(header), len - header) };
    let interpreter = Interpreter::new(DirectMap, revision, Arc::new(registers), None);
    interpreter.load_table(aml).map_err(|e| format!("the DSDT's AML did not load ({e:?})"))?;
    let name = AmlName::from_str("\\_S5").map_err(|e| format!("{e:?}"))?;
    let s5 = interpreter.evaluate(name, Vec::new()).map_err(|e| match e {
        AmlError::ObjectDoesNotExist(_) => String::from("the DSDT has no \\_S5 object (S5 not offered)"),
        e => format!("\\_S5 could not be evaluated ({e:?})"),
    })?;
    let Object::Package(items) = &*s5 else { return Err(format!("\\_S5 is not a package ({:?})", s5.typ())) };
    let int = |i: usize| match items.get(i).map(|o| &**o) {
        Some(Object::Integer(v)) if *v <= 7 => Ok(*v as u8),
        other => Err(format!("\\_S5 element {i} is not a sleep type ({:?})", other.map(Object::typ))),
    };
    Ok(S5 { pm1a, pm1b, slp_typ: (int(0)?, int(1)?) })
}

/// Writes SLP_TYPx | SLP_EN to PM1a_CNT (and PM1b_CNT), keeping the other
/// bits. Returns if the machine did not power off.
pub(crate) fn enter_s5(s5: S5) {
    const SLP_EN: u16 = 1 << 13;
    let write = |port: u16, typ: u8| {
        let v = (DirectMap.read_io_u16(port) & !(0x7 << 10)) | (u16::from(typ) << 10) | SLP_EN;
        DirectMap.write_io_u16(port, v);
    };
    if let Some(b) = s5.pm1b {
        write(b, s5.slp_typ.1);
    }
    write(s5.pm1a, s5.slp_typ.0);
}

/// AML mutexes (reentrant, per CPU): the interpreter's `create_mutex`,
/// `acquire` and `release` for [`DirectMap`].
const MUTEXES: usize = 64;
static NEXT_MUTEX: AtomicU32 = AtomicU32::new(0);
static OWNER: [AtomicUsize; MUTEXES] = [const { AtomicUsize::new(usize::MAX) }; MUTEXES];
static DEPTH: [AtomicU32; MUTEXES] = [const { AtomicU32::new(0) }; MUTEXES];

pub(super) fn create_mutex() -> Handle {
    // Handles past the table share its last slot: still mutual exclusion,
    // only coarser.
    Handle(NEXT_MUTEX.fetch_add(1, Ordering::Relaxed).min(MUTEXES as u32 - 1))
}

pub(super) fn acquire(mutex: Handle, timeout_ms: u16) -> Result<(), AmlError> {
    let i = (mutex.0 as usize).min(MUTEXES - 1);
    let me = crate::smp::cpu_index();
    if OWNER[i].load(Ordering::Relaxed) == me {
        DEPTH[i].fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let deadline = (timeout_ms != 0xffff).then(|| crate::time::Deadline::after_ns(u64::from(timeout_ms) * 1_000_000));
    loop {
        // Acquire: pairs with the Release in `release`.
        if OWNER[i].compare_exchange(usize::MAX, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            DEPTH[i].store(1, Ordering::Relaxed);
            return Ok(());
        }
        if deadline.is_some_and(|d| d.expired()) {
            return Err(AmlError::MutexAcquireTimeout);
        }
        core::hint::spin_loop();
    }
}

pub(super) fn release(mutex: Handle) {
    let i = (mutex.0 as usize).min(MUTEXES - 1);
    if OWNER[i].load(Ordering::Relaxed) == crate::smp::cpu_index() && DEPTH[i].fetch_sub(1, Ordering::Relaxed) == 1 {
        // Release: what the holder did is visible to the next owner.
        OWNER[i].store(usize::MAX, Ordering::Release);
    }
}
