//! The growable array under the read log and the write set: `(address,
//! value)` entries appended at a raw cursor.
//!
//! A `Vec::push` loads the length, compares it with the capacity, loads the
//! buffer, scales the index and stores the length back (10 instructions);
//! an append here compares the cursor with a limit, stores the entry and
//! bumps the cursor (7), and a transaction appends once per access. The
//! limit can also stop short of the capacity, which lets the write set fold
//! its "time to build an index" test into the same compare.

use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};

use crate::log::Addr;

/// One logged word (or record) and a value.
pub(crate) type Entry = (Addr, u64);

/// Entries in append order. `FAST_MAX`: appends past this many entries take
/// the slow path (`usize::MAX`: only a full buffer does).
pub(crate) struct EntryLog<const FAST_MAX: usize> {
    /// The next free slot.
    cur: *mut Entry,
    /// Where [`try_push`](Self::try_push) stops: the end of the buffer, or
    /// `FAST_MAX` entries into it if that is sooner. It moves only when the
    /// buffer does, so emptying the log is one store.
    limit: *mut Entry,
    /// The buffer: `capacity` entries, the first `len()` of them written
    /// (dangling while `capacity` is 0). Allocated by a `Vec` and given back
    /// to one in `drop`.
    start: *mut Entry,
    capacity: usize,
}

impl<const FAST_MAX: usize> EntryLog<FAST_MAX> {
    pub(crate) const fn new() -> Self {
        let dangling = NonNull::dangling().as_ptr();
        EntryLog {
            cur: dangling,
            limit: dangling,
            start: dangling,
            capacity: 0,
        }
    }

    /// Appends `e` unless the limit is reached; `false`: nothing was
    /// appended, take the slow path.
    #[inline(always)]
    pub(crate) fn try_push(&mut self, e: Entry) -> bool {
        if self.cur >= self.limit {
            return false;
        }
        // SAFETY: `cur < limit <= start + capacity`, so `cur` is a slot of
        // the buffer, and one past it is at most its end.
        unsafe {
            self.cur.write(e);
            self.cur = self.cur.add(1);
        }
        true
    }

    /// Appends `e`, growing the buffer if it is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, e: Entry) {
        if !self.try_push(e) {
            self.push_slow(e);
        }
    }

    /// Appends `e` past the limit: grows the buffer if it is full.
    #[cold]
    #[inline(never)]
    pub(crate) fn push_slow(&mut self, e: Entry) {
        let len = self.len();
        if len == self.capacity {
            let mut grown = ManuallyDrop::new(Vec::<Entry>::with_capacity((2 * len).max(8)));
            // SAFETY: `start..start + len` are written entries; the new
            // buffer has room for more than `len`, and the two do not
            // overlap (the old buffer is still alive here).
            unsafe { ptr::copy_nonoverlapping(self.start, grown.as_mut_ptr(), len) };
            self.free();
            self.start = grown.as_mut_ptr();
            self.capacity = grown.capacity();
            // SAFETY: at most the capacity past the start.
            self.limit = unsafe { self.start.add(FAST_MAX.min(self.capacity)) };
        }
        // SAFETY: `len < capacity` now.
        unsafe { self.start.add(len).write(e) };
        self.set_len(len + 1);
    }

    /// Sets the length to `len` (at most the capacity, all of it written).
    #[inline]
    fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity);
        // SAFETY: `len` is within the buffer (0 for the dangling one).
        self.cur = unsafe { self.start.add(len) };
    }

    /// Gives the buffer back to the allocator (through the `Vec` that
    /// allocated it).
    fn free(&mut self) {
        if self.capacity != 0 {
            // SAFETY: `start` and `capacity` came from a `Vec<Entry>` (see
            // `push_slow`) that was not dropped; length 0: entries need no
            // drop.
            drop(unsafe { Vec::from_raw_parts(self.start, 0, self.capacity) });
        }
    }

    /// The number of entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        // SAFETY: `cur` is within the buffer, at or after its start.
        unsafe { self.cur.offset_from(self.start) as usize }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.cur == self.start
    }

    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keeps the first `len` entries (no-op if there are fewer).
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.set_len(len);
        }
    }

    #[inline]
    pub(crate) fn clear(&mut self) {
        self.set_len(0);
    }
}

impl<const FAST_MAX: usize> Drop for EntryLog<FAST_MAX> {
    fn drop(&mut self) {
        self.free();
    }
}

impl<const FAST_MAX: usize> Default for EntryLog<FAST_MAX> {
    fn default() -> Self {
        Self::new()
    }
}

/// The entries as a slice, as `Vec` gives them.
impl<const FAST_MAX: usize> core::ops::Deref for EntryLog<FAST_MAX> {
    type Target = [Entry];

    #[inline]
    fn deref(&self) -> &[Entry] {
        // SAFETY: `start..cur` are written entries of the buffer, which
        // `&self` keeps alive and unchanged.
        unsafe { core::slice::from_raw_parts(self.start, self.len()) }
    }
}

impl<const FAST_MAX: usize> core::ops::DerefMut for EntryLog<FAST_MAX> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Entry] {
        // SAFETY: as in `deref`, and `&mut self` makes it exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.start, self.len()) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::AtomicU64;

    fn addr(w: &AtomicU64) -> Addr {
        w
    }

    #[test]
    fn pushes_grow_and_keep_order() {
        let w: Vec<AtomicU64> = (0..100).map(AtomicU64::new).collect();
        let mut log = EntryLog::<{ usize::MAX }>::new();
        assert!(log.is_empty());
        for (i, x) in w.iter().enumerate() {
            log.push((addr(x), i as u64));
        }
        assert_eq!(log.len(), 100);
        assert!(log.capacity() >= 100);
        for (i, e) in log.iter().enumerate() {
            assert_eq!(*e, (addr(&w[i]), i as u64));
        }
        log.truncate(10);
        assert_eq!(log.len(), 10);
        log.push((addr(&w[0]), 7));
        assert_eq!(log[10], (addr(&w[0]), 7));
        log[10].1 = 8;
        assert_eq!(log[10].1, 8);
        let cap = log.capacity();
        log.clear();
        assert!(log.is_empty());
        assert_eq!(log.capacity(), cap, "clearing keeps the buffer");
    }

    #[test]
    fn the_fast_path_stops_at_fast_max() {
        let w: Vec<AtomicU64> = (0..8).map(AtomicU64::new).collect();
        let mut log = EntryLog::<3>::new();
        // Empty: the first append grows the buffer on the slow path.
        assert!(!log.try_push((addr(&w[0]), 0)));
        log.push_slow((addr(&w[0]), 0));
        assert!(log.capacity() >= 8);
        assert!(log.try_push((addr(&w[1]), 1)));
        assert!(log.try_push((addr(&w[2]), 2)));
        // Three entries: every further append is slow, though there is room.
        assert!(!log.try_push((addr(&w[3]), 3)));
        log.push_slow((addr(&w[3]), 3));
        assert!(!log.try_push((addr(&w[4]), 4)));
        assert_eq!(log.len(), 4);
        // Back under the limit: fast again.
        log.truncate(1);
        assert!(log.try_push((addr(&w[5]), 5)));
        assert_eq!(log.last(), Some(&(addr(&w[5]), 5)));
    }
}
