//! `uprobe(op, pid, addr)`: a tool process installs, removes and counts
//! breakpoints in a process (see `abi::uprobe` for the ops and errors).

use abi::Errno;
use abi::uprobe as u;

use super::SysResult;

/// `uprobe(op, pid, addr)`.
pub(crate) fn uprobe(op: u64, pid: u64, addr: u64) -> SysResult {
    let op = op as usize;
    if !matches!(op, u::REGISTER | u::UNREGISTER | u::HITS) {
        return Err(Errno::EINVAL);
    }
    // A process that is ending (or a zombie) has no memory to probe.
    let process = crate::process::get(pid).filter(|p| !p.is_exiting()).ok_or(Errno::ESRCH)?;
    let mm = &process.mm;
    // Beyond the user half there is no area to probe and no probe.
    let Some(addr) = crate::mm::UserAddr::new(addr) else {
        let e = if op == u::REGISTER { crate::uprobes::UprobeError::NotMapped } else { crate::uprobes::UprobeError::NoProbe };
        return Err(Errno::from(e));
    };
    let r = match op {
        u::REGISTER => crate::uprobes::uprobe_register(mm, addr).map(|()| 0),
        u::UNREGISTER => crate::uprobes::uprobe_unregister(mm, addr).map(|()| 0),
        _ => crate::uprobes::hits(mm, addr).map(|n| n as usize),
    };
    r.map_err(Errno::from)
}
