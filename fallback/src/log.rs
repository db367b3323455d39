//! Transaction logs (read log, write set) and the per-thread pool that
//! recycles their buffers, so a transaction allocates nothing once its thread
//! has run one of the same size.
//!
//! Logs hold raw word addresses, not references: the pool outlives every
//! transaction, and a lifetime cannot be stored in it. The transactions that
//! own a log tie its addresses to their `'env` lifetime and empty the log
//! before it goes back to the pool (see the `SAFETY` comments at each
//! dereference in `norec.rs` and `serial.rs`).

use crate::entry_log::EntryLog;
use crate::sync::AtomicU64;

/// A logged word address.
pub(crate) type Addr = *const AtomicU64;

/// What the logs point at instead of a word that went away inside the
/// transaction (see [`Logs::forget`]): reads of it validate forever (it is
/// never written, and read entries log 0), writes of it land harmlessly.
#[cfg(not(loom))]
static READ_SINK: AtomicU64 = AtomicU64::new(0);
#[cfg(not(loom))]
static WRITE_SINK: AtomicU64 = AtomicU64::new(0);

/// Write sets up to this many entries are searched linearly (one cache line
/// of entries is 4 of them; 16 keeps the scan within 4 lines, where a scan
/// beats hashing). Above it, an open-addressing index is built.
const LINEAR_MAX: usize = 16;

/// Pooled buffers larger than this many entries are freed rather than kept,
/// so one huge transaction does not pin its memory for the thread's life.
const POOL_MAX_ENTRIES: usize = 1 << 16;

/// Fibonacci hashing multiplier (2^64 / golden ratio), Knuth TAOCP 6.4.
const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn hash(a: Addr) -> u64 {
    (a as usize as u64).wrapping_mul(FIB)
}

/// The filter bit of an address: its word index modulo 64. Consecutive
/// words get distinct bits, and on x86 the bit test takes the modulo for
/// free (a shift and a `bt`, where the multiplicative hash took five
/// instructions per lookup, four lookups per bank transfer); words 512
/// bytes apart share a bit, which costs a short scan.
#[inline]
fn filter_bit(a: Addr) -> u64 {
    1 << ((a as usize >> 3) & 63)
}

/// A set of `(address, value)` pairs with first-insert order kept: the redo
/// log of a software transaction, the undo log of a serial one.
///
/// A one-word Bloom filter answers most misses without a scan (one bit per
/// address); small sets are scanned linearly; large ones use an index.
#[derive(Default)]
pub(crate) struct WriteSet {
    /// Appends past `LINEAR_MAX` entries take the slow path, which indexes.
    entries: EntryLog<LINEAR_MAX>,
    /// Union of `filter_bit` of every entry.
    filter: u64,
    /// Open addressing over `entries` (slot = index + 1, 0 = empty); empty
    /// while `entries.len() <= LINEAR_MAX`; else its length is a power of
    /// two at least twice `entries.len()`.
    index: Vec<u32>,
    /// The innermost open savepoint's mark (0 when none is open): an
    /// overwrite of an entry below it saves the entry's value first, so that
    /// a rollback to the savepoint can restore it.
    protect: usize,
    /// What savepoints need to restore: `(index, value)` of redo entries
    /// overwritten (software), `(address, value)` of words overwritten in
    /// place (serial). Empty while no savepoint is open.
    saved: Vec<(usize, u64)>,
}

/// A mark in a [`WriteSet`]: what a rollback to it truncates and restores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    len: usize,
    saved: usize,
    protect: usize,
}

impl WriteSet {
    pub(crate) const fn new() -> Self {
        WriteSet {
            entries: EntryLog::new(),
            filter: 0,
            index: Vec::new(),
            protect: 0,
            saved: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    pub(crate) fn entries(&self) -> &[(Addr, u64)] {
        &self.entries
    }

    /// Position of `a` in `entries`.
    #[inline]
    fn find(&self, a: Addr) -> Option<usize> {
        if self.filter & filter_bit(a) == 0 {
            return None;
        }
        self.find_slow(a)
    }

    fn find_slow(&self, a: Addr) -> Option<usize> {
        if self.index.is_empty() {
            return self.entries.iter().position(|e| e.0 == a);
        }
        let mask = self.index.len() - 1;
        let mut slot = self.home(a);
        loop {
            match self.index[slot] {
                0 => return None,
                i if self.entries[i as usize - 1].0 == a => return Some(i as usize - 1),
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// Whether `a` may be in the set (its filter bit is set): `false` is
    /// certain, `true` needs a lookup.
    #[inline(always)]
    pub(crate) fn may_contain(&self, a: Addr) -> bool {
        self.filter & filter_bit(a) != 0
    }

    /// The value logged for `a`, if any.
    #[inline]
    pub(crate) fn get(&self, a: Addr) -> Option<u64> {
        self.find(a).map(|i| self.entries[i].1)
    }

    /// Whether `a` is in the set.
    #[inline]
    pub(crate) fn contains(&self, a: Addr) -> bool {
        self.find(a).is_some()
    }

    /// Sets the value of `a`, adding it at the end if absent.
    #[inline(always)]
    pub(crate) fn put(&mut self, a: Addr, v: u64) {
        match self.find(a) {
            Some(i) => {
                if i < self.protect {
                    self.save(i, self.entries[i].1);
                }
                self.entries[i].1 = v;
            }
            None => self.push_new(a, v),
        }
    }

    /// Position of `a`, if present (the serial undo log's check).
    #[inline]
    pub(crate) fn position(&self, a: Addr) -> Option<usize> {
        self.find(a)
    }

    /// Whether an entry at `i` predates the innermost open savepoint.
    #[inline]
    pub(crate) fn protected(&self, i: usize) -> bool {
        i < self.protect
    }

    /// Saves `(key, value)` for the innermost savepoint's rollback.
    #[cold]
    pub(crate) fn save(&mut self, key: usize, value: u64) {
        self.saved.push((key, value));
    }

    /// Opens a savepoint at the current end of the set.
    pub(crate) fn mark(&mut self) -> Mark {
        let m = Mark {
            len: self.entries.len(),
            saved: self.saved.len(),
            protect: self.protect,
        };
        self.protect = m.len;
        m
    }

    /// Closes the savepoint `m` keeping what was done since (it becomes part
    /// of the enclosing level).
    pub(crate) fn release(&mut self, m: Mark) {
        self.protect = m.protect;
        if self.protect == 0 {
            // No savepoint open any more: nothing will be restored.
            self.saved.clear();
        }
    }

    /// Closes the savepoint `m` undoing the set's changes since: the saved
    /// values after it, newest first, go to `restore` (with their keys),
    /// then the entries added since are removed and returned through
    /// `dropped` (newest first), for the serial undo log to apply.
    pub(crate) fn roll_back(
        &mut self,
        m: Mark,
        mut restore: impl FnMut(&mut Self, usize, u64),
        mut dropped: impl FnMut(Addr, u64),
    ) {
        let saved: Vec<(usize, u64)> = self.saved.drain(m.saved..).rev().collect();
        for (key, v) in saved {
            restore(self, key, v);
        }
        for &(a, v) in self.entries[m.len..].iter().rev() {
            dropped(a, v);
        }
        self.entries.truncate(m.len);
        self.filter = self.entries.iter().fold(0, |f, e| f | filter_bit(e.0));
        self.index.clear();
        if self.entries.len() > LINEAR_MAX {
            self.rebuild_index((2 * self.entries.len()).next_power_of_two());
        }
        self.release(m);
    }

    /// Points every entry of `a` at `sink` instead (the word goes away).
    /// Entries stay where they are, so savepoints' indices stay valid; the
    /// filter and index keep a stale bit or slot for `a`, which only costs a
    /// scan (lookups compare addresses).
    #[cfg(not(loom))]
    fn forget(&mut self, a: Addr, sink: Addr) {
        if let Some(i) = self.find(a) {
            self.entries[i].0 = sink;
        }
        // Serial savepoints save by address (software ones by index, never
        // an address's value).
        for e in &mut self.saved {
            if e.0 == a as usize {
                e.0 = sink as usize;
            }
        }
    }

    /// Sets the value of the entry at `i` (a savepoint's restore).
    pub(crate) fn set_at(&mut self, i: usize, v: u64) {
        self.entries[i].1 = v;
    }

    /// Adds `a`, known to be absent.
    #[inline(always)]
    pub(crate) fn push_new(&mut self, a: Addr, v: u64) {
        debug_assert!(!self.contains(a));
        self.filter |= filter_bit(a);
        // The one compare covers both a full buffer and an index to build
        // (the entries' `FAST_MAX` is `LINEAR_MAX`).
        if !self.entries.try_push((a, v)) {
            self.push_new_slow(a, v);
        }
    }

    #[cold]
    #[inline(never)]
    fn push_new_slow(&mut self, a: Addr, v: u64) {
        self.entries.push_slow((a, v));
        if self.entries.len() > LINEAR_MAX {
            self.index_new_entry();
        }
    }

    #[cold]
    fn index_new_entry(&mut self) {
        let n = self.entries.len();
        if self.index.len() < 2 * n {
            self.rebuild_index((2 * n).next_power_of_two());
        } else {
            self.index_insert(n - 1);
        }
    }

    fn rebuild_index(&mut self, len: usize) {
        assert!(
            self.entries.len() < u32::MAX as usize,
            "transaction write set exceeds u32::MAX words"
        );
        self.index.clear();
        self.index.resize(len, 0);
        for i in 0..self.entries.len() {
            self.index_insert(i);
        }
    }

    fn index_insert(&mut self, i: usize) {
        let mask = self.index.len() - 1;
        let mut slot = self.home(self.entries[i].0);
        while self.index[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        // Cannot truncate: `rebuild_index` bounds `entries.len()`.
        self.index[slot] = (i + 1) as u32;
    }

    #[inline]
    fn home(&self, a: Addr) -> usize {
        // The index length is a power of two >= 2 * (LINEAR_MAX + 1), so the
        // shift is in 1..64.
        let bits = self.index.len().trailing_zeros();
        (hash(a) >> (64 - bits)) as usize
    }

    /// Empties the set after a commit, when no savepoint can be open.
    #[inline]
    pub(crate) fn clear_committed(&mut self) {
        debug_assert!(self.protect == 0 && self.saved.is_empty());
        self.entries.clear();
        self.filter = 0;
        self.index.clear();
    }

    /// Empties the set, forgetting any savepoint (a restart or a rollback
    /// of the whole transaction).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.filter = 0;
        self.index.clear();
        self.protect = 0;
        self.saved.clear();
    }
}

/// The buffers of one transaction, recycled through the thread's pool.
///
/// Aligned to 128 bytes (two cache lines, as `crossbeam_utils::CachePadded`
/// on x86-64, whose adjacent-line prefetcher pairs lines): every
/// transaction writes its logs' cursors, and two threads' `Logs`, boxed
/// one after the other by the allocator, shared a line. At 2 threads the
/// bank ran at 0.51-0.59 of a pthread mutex in `cargo bench --bench tm`
/// with them unaligned, 0.79-0.84 aligned, paired, alternated; how much it
/// lost depended on where the allocator put them (the "slow mode" of
/// earlier measurements).
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Logs {
    /// Read log of a software transaction, in read order, duplicates
    /// allowed: `(word, value seen)` in a hybrid domain (NOrec validates by
    /// value), `(ownership record, version seen)` in a striped one; `(word,
    /// value)` for a serial transaction (what a `retry` waits on).
    pub(crate) reads: EntryLog<{ usize::MAX }>,
    /// Redo log (software) or undo log (serial).
    pub(crate) writes: WriteSet,
    /// The thread's last snapshot in a striped domain (kept across
    /// transactions: it is not an address of a word).
    pub(crate) clock_hint: crate::striped::ClockHint,
}

impl Logs {
    const EMPTY: Logs = Logs {
        reads: EntryLog::new(),
        writes: WriteSet::new(),
        clock_hint: crate::striped::ClockHint::EMPTY,
    };

    pub(crate) fn clear(&mut self) {
        self.reads.clear();
        self.writes.clear();
    }

    /// Forgets the word at `a`, which is going away while the transaction
    /// runs (a cell dropped inside a transaction that a nested transaction
    /// touched): no validation, write-back or undo touches it after this.
    #[cfg(not(loom))]
    pub(crate) fn forget(&mut self, a: Addr) {
        for r in self.reads.iter_mut() {
            if r.0 == a {
                *r = (&READ_SINK, 0);
            }
        }
        self.writes.forget(a, &WRITE_SINK);
    }

    /// After a commit (no savepoint open).
    #[inline]
    pub(crate) fn clear_committed(&mut self) {
        self.reads.clear();
        self.writes.clear_committed();
    }

    fn too_big(&self) -> bool {
        self.reads.capacity() > POOL_MAX_ENTRIES
            || self.writes.entries.capacity() > POOL_MAX_ENTRIES
    }
}

/// A transaction's buffers, boxed so that lending them out of the pool and
/// back moves one pointer, not ten words.
pub(crate) type LogBox = Box<Logs>;

#[cfg(not(loom))]
mod pool {
    use core::cell::Cell;
    use core::ptr;

    use super::{LogBox, Logs};

    /// What `SPARE` holds once the thread's locals are being torn down:
    /// buffers given back then are freed at once.
    const CLOSED: *mut Logs = ptr::without_provenance_mut(1);

    std::thread_local! {
        /// At most one set of spare buffers per thread (a thread runs one
        /// transaction at a time; nested ones just allocate): null when
        /// none is spare, `CLOSED` at teardown.
        ///
        /// A raw pointer rather than an `Option<Box>`: a thread-local
        /// without drop glue needs no lazy registration, so lending and
        /// returning the buffers is a load and a store each (an `Option`
        /// of a box cost 17 instructions per transaction, callgrind).
        /// `OWNER` frees them when the thread ends.
        static SPARE: Cell<*mut Logs> = const { Cell::new(ptr::null_mut()) };
        /// Frees the spare buffers when the thread's locals are torn down.
        static OWNER: Owner = const { Owner };
    }

    struct Owner;

    impl Drop for Owner {
        fn drop(&mut self) {
            let spare = SPARE.replace(CLOSED);
            if !spare.is_null() && spare != CLOSED {
                // SAFETY: a non-null, non-`CLOSED` spare came from
                // `Box::into_raw` in `give`, and `replace` took it out, so
                // nobody else frees it.
                drop(unsafe { Box::from_raw(spare) });
            }
        }
    }

    #[inline]
    pub(super) fn take() -> Option<LogBox> {
        let spare = SPARE.replace(ptr::null_mut());
        if spare.is_null() || spare == CLOSED {
            return take_none(spare);
        }
        // SAFETY: it came from `Box::into_raw` in `give`, and `replace`
        // took it out, so this is its one owner.
        Some(unsafe { Box::from_raw(spare) })
    }

    /// No spare: the thread's first transaction, a nested one, or teardown.
    #[cold]
    #[inline(never)]
    fn take_none(spare: *mut Logs) -> Option<LogBox> {
        if spare == CLOSED {
            SPARE.set(CLOSED);
        } else {
            // Have the owner registered, so the buffers given back later
            // are freed when the thread ends (a no-op once it is).
            let _ = OWNER.try_with(|_| ());
        }
        None
    }

    #[inline]
    pub(super) fn give(logs: LogBox) {
        let old = SPARE.replace(Box::into_raw(logs));
        if !old.is_null() {
            give_over(old);
        }
    }

    /// `SPARE` was not empty: it held a nested transaction's buffers (free
    /// those, keep the newer), or teardown has begun (free what was given).
    #[cold]
    #[inline(never)]
    fn give_over(old: *mut Logs) {
        let free = if old == CLOSED {
            SPARE.replace(CLOSED)
        } else {
            old
        };
        // SAFETY: `free` came from `Box::into_raw` in `give` and is no
        // longer in `SPARE`, so this is its one owner.
        drop(unsafe { Box::from_raw(free) });
    }
}

/// Under loom all model threads share one OS thread, so a thread-local pool
/// would mix them up; loom runs are tiny anyway.
#[cfg(loom)]
mod pool {
    use super::LogBox;

    pub(super) fn take() -> Option<LogBox> {
        None
    }

    pub(super) fn give(_: LogBox) {}
}

/// Buffers for a new transaction, from this thread's pool if it has some
/// (allocated on the thread's first transaction).
#[inline]
pub(crate) fn take() -> LogBox {
    match pool::take() {
        Some(logs) => logs,
        None => fresh(),
    }
}

#[cold]
fn fresh() -> LogBox {
    Box::new(Logs::EMPTY)
}

/// Returns a transaction's buffers to this thread's pool, emptied first, so
/// the pool never holds an address.
#[inline(always)]
pub(crate) fn give(mut logs: LogBox) {
    if logs.too_big() {
        return free(logs);
    }
    logs.clear();
    pool::give(logs);
}

/// Frees buffers too big to keep (out of line: the frees would keep the
/// transaction's drop from being inlined into `atomic`).
#[cold]
#[inline(never)]
fn free(logs: LogBox) {
    drop(logs);
}

// Loom atomics only work inside a loom model: these run in normal builds.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn small_set_put_get_overwrite() {
        let w = words(4);
        let mut s = WriteSet::new();
        assert!(s.is_empty());
        assert_eq!(s.get(&w[0]), None);
        s.put(&w[0], 1);
        s.put(&w[1], 2);
        s.put(&w[0], 3);
        assert_eq!(s.get(&w[0]), Some(3));
        assert_eq!(s.get(&w[1]), Some(2));
        assert_eq!(s.get(&w[2]), None);
        assert_eq!(s.entries().len(), 2);
        assert_eq!(s.entries()[0], (&w[0] as Addr, 3));
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.get(&w[0]), None);
    }

    #[test]
    fn large_set_uses_index_and_stays_exact() {
        let n = if cfg!(miri) { 100 } else { 5000 };
        let w = words(n + 10);
        let mut s = WriteSet::new();
        for (i, x) in w.iter().take(n).enumerate() {
            s.put(x, i as u64);
        }
        assert!(!s.index.is_empty());
        assert!(s.index.len() >= 2 * n && s.index.len().is_power_of_two());
        for (i, x) in w.iter().take(n).enumerate() {
            s.put(x, i as u64 * 10);
        }
        assert_eq!(s.entries().len(), n);
        for (i, x) in w.iter().enumerate() {
            let want = (i < n).then_some(i as u64 * 10);
            assert_eq!(s.get(x), want, "word {i}");
        }
        // Insertion order is kept (write-back and undo rely on it).
        for (i, e) in s.entries().iter().enumerate() {
            assert_eq!(e.0, &w[i] as Addr);
        }
        s.clear();
        assert!(s.index.is_empty());
        assert_eq!(s.get(&w[0]), None);
    }

    #[test]
    fn pool_recycles_capacity() {
        let w = words(8);
        let mut l = take();
        for x in &w {
            l.reads.push((x, 0));
            l.writes.put(x, 1);
        }
        let cap = l.reads.capacity();
        give(l);
        let l = take();
        assert!(l.reads.is_empty() && l.writes.is_empty());
        assert!(l.reads.capacity() >= cap);
        // Nested takes get fresh buffers.
        let l2 = take();
        assert_eq!(l2.reads.capacity(), 0);
        give(l2);
        give(l);
    }
}
