//! Sets of CPUs (by dense CPU index), plain and atomic.
//!
//! [`CpuSet`] is a value (targets of a call); [`AtomicCpuSet`] is shared state
//! (the CPUs an address space is live on, the CPUs that still owe an
//! acknowledgement), updated with single-bit atomic operations.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// The most CPUs the kernel supports.
pub const MAX_CPUS: usize = 256;
const WORDS: usize = MAX_CPUS / 64;

/// A set of CPU indices.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSet([u64; WORDS]);

impl CpuSet {
    /// The empty set.
    pub(crate) const EMPTY: CpuSet = CpuSet([0; WORDS]);

    /// A set holding only `cpu`.
    pub fn single(cpu: usize) -> Self {
        let mut s = Self::EMPTY;
        s.insert(cpu);
        s
    }

    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: usize) {
        self.0[cpu / 64] |= 1 << (cpu % 64);
    }

    /// Removes `cpu`.
    pub(crate) fn remove(&mut self, cpu: usize) {
        self.0[cpu / 64] &= !(1 << (cpu % 64));
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Number of CPUs in the set.
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The CPUs in the set, in increasing order (a bit scan per member, not
    /// a test of every possible CPU: senders iterate their targets on the
    /// IPI path).
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| Bits(w).map(move |b| i * 64 + b))
    }

    /// The lowest CPU in the set.
    pub(crate) fn first(&self) -> Option<usize> {
        self.0.iter().enumerate().find(|&(_, &w)| w != 0).map(|(i, &w)| i * 64 + w.trailing_zeros() as usize)
    }

    /// The intersection.
    pub(crate) fn and(&self, other: &CpuSet) -> CpuSet {
        CpuSet(core::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    /// The CPUs of `self` that are not in `other`.
    pub(crate) fn minus(&self, other: &CpuSet) -> CpuSet {
        CpuSet(core::array::from_fn(|i| self.0[i] & !other.0[i]))
    }
}

/// The set bits of a word, lowest first.
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for c in self.iter() {
            write!(f, "{}cpu{c}", if first { "" } else { "," })?;
            first = false;
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// A CPU set shared between CPUs.
pub(crate) struct AtomicCpuSet([AtomicU64; WORDS]);

impl AtomicCpuSet {
    /// An empty set.
    pub(crate) const fn new() -> Self {
        AtomicCpuSet([const { AtomicU64::new(0) }; WORDS])
    }

    /// Adds `cpu` with `order`.
    pub(crate) fn insert(&self, cpu: usize, order: Ordering) {
        self.0[cpu / 64].fetch_or(1 << (cpu % 64), order);
    }

    /// Removes `cpu` with `order`.
    pub(crate) fn remove(&self, cpu: usize, order: Ordering) {
        self.0[cpu / 64].fetch_and(!(1 << (cpu % 64)), order);
    }

    /// Whether `cpu` is in the set.
    pub(crate) fn contains(&self, cpu: usize, order: Ordering) -> bool {
        self.0[cpu / 64].load(order) & (1 << (cpu % 64)) != 0
    }

    /// A snapshot (each word read with `order`; not atomic as a whole).
    pub(crate) fn load(&self, order: Ordering) -> CpuSet {
        CpuSet(core::array::from_fn(|i| self.0[i].load(order)))
    }

    /// Replaces the contents (each word stored with `order`).
    pub(crate) fn store(&self, set: CpuSet, order: Ordering) {
        for (w, v) in self.0.iter().zip(set.0) {
            w.store(v, order);
        }
    }
}

impl Default for AtomicCpuSet {
    fn default() -> Self {
        Self::new()
    }
}
