//! The striped protocol of a software-only domain: ownership records
//! striped over word addresses and a global version clock, after TL2 (Dice,
//! Shalev, Shavit, "Transactional Locking II", DISC 2006) and TinySTM
//! (Felber, Fetzer, Riegel, PPoPP 2008), with opacity by read-time
//! validation and snapshot extension.
//!
//! # Why a second protocol
//!
//! NOrec's one sequence lock is what lets a hardware transaction run beside
//! software ones while touching no metadata, but every software commit
//! takes that one line, and every software read after a commit revalidates
//! on it. Where no hardware transaction can ever run in the domain (no
//! usable RTM, or fallback mode), nothing needs that property, and commits
//! that touch disjoint words should not meet on one line. Here a commit
//! locks only the records of the words it writes and bumps the clock once;
//! readers check the record of the word they read and read the clock only
//! at begin and when they extend their snapshot.
//!
//! A domain is striped from the first transaction begun without hardware
//! ([`SoftTx::begin_without_hardware`], [`SerialTx::begin_without_hardware`]);
//! mixing with [`SoftTx::begin`] in the same domain is a bug (checked in
//! debug builds).
//!
//! # The words
//!
//! The clock is the domain's `seq` (see [`Globals`]): bit 0 is set while a
//! writer locks its records or a serial transaction runs (the clock is then
//! also the commit lock), bits 61..1 count writing commits, bit 62 is the
//! waiting bit. A version is a clock value with bit 62 cleared.
//!
//! An ownership record (one `AtomicU64` per stripe of 8-byte words; a
//! word's record is chosen by its address):
//!
//! | value | meaning |
//! | ----- | ------- |
//! | bit 63 clear | the version of the last commit that wrote a word of the stripe (or of the serial transaction writing one now) |
//! | bit 63 set ([`LOCKED`]) | a writer is writing back a word of the stripe; the rest is the version it will release |
//!
//! # The protocol
//!
//! | step | software transaction | serial transaction |
//! | ---- | -------------------- | ------------------ |
//! | begin | snapshot `rv` = the thread's last snapshot in the domain ([`ClockHint`]), else the clock, waiting while odd | take the clock odd (FIFO ticket, as in a hybrid domain) |
//! | read | record `o1`, word, fence, record `o2`: `o1 == o2 <= rv`, else wait for a locked record, or extend the snapshot, and read again; log `(record, o1)` | wait for a locked record; read in place |
//! | write | redo log | wait for a locked record; record := the version it will release; fence; in place, undo log |
//! | commit | read-only: at once. Else take the clock at its value `s` (`s -> s + 1`; while odd, wait a little, then the slow way); if `s` is past `rv`, validate the read log while holding it (if that fails, give it back at `s` and restart); lock every written record (`LOCKED \| s + 2`); clock := `s + 2`; fence; write back and release the records (`s + 2`), each right after its word unless two written words share one | clock := odd + 1 |
//!
//! A snapshot extension takes a new even clock and checks that every
//! logged record still holds its logged version; it is what keeps a long
//! reader going past unrelated commits, and what makes every read opaque:
//! a value is returned only when every earlier read is known current at
//! the snapshot.
//!
//! # Why commits hold the clock only to lock
//!
//! TL2 and TinySTM lock each written record with a CAS and then increment
//! the clock: three atomic read-modify-writes for a two-word transaction.
//! NOrec holds its one lock through the write-back: one, but commits then
//! follow each other one write-back at a time. Here a commit takes the
//! clock (one CAS), locks its records with plain stores (nobody else locks
//! while it holds the clock), gives the clock back, and only then writes
//! back and releases its records, so the next commit locks its own records
//! while this one writes. On the development machine (2 cores, no RTM,
//! `cargo bench --bench tm`), against a pthread mutex: per-record CAS 0.17
//! and 0.64 (bank, 1 and 2 threads), the clock held through the write-back
//! 0.23 and 0.49, this 0.20 and 0.61.
//!
//! A reader checks only the records of the words it reads, not the clock,
//! and revalidates only when one of those is newer than its snapshot: that
//! is what removes NOrec's shared line from the read path.
//!
//! [`SoftTx::begin_without_hardware`]: crate::SoftTx::begin_without_hardware
//! [`SoftTx::begin`]: crate::SoftTx::begin
//! [`SerialTx::begin_without_hardware`]: crate::SerialTx::begin_without_hardware
//! [`Globals`]: crate::Globals

use crate::globals::WAITING;
use crate::log::{Addr, Logs};
use crate::sync::{fence, AtomicU64, Backoff, Ordering};

/// Bit 63 of an ownership record: a writer is writing back a word of the
/// stripe (the rest is the version it will release).
pub(crate) const LOCKED: u64 = 1 << 63;

/// How many ownership records a domain has (a power of two): 64 Ki of them
/// (512 KiB, allocated at the domain's first striped transaction) keep
/// false conflicts rare for transactions of tens of words over working
/// sets of hundreds of thousands. Loom and Miri get a handful.
#[cfg(not(any(loom, miri)))]
const STRIPES: usize = 1 << 16;
#[cfg(miri)]
const STRIPES: usize = 1 << 8;
#[cfg(loom)]
const STRIPES: usize = 1 << 2;

/// The ownership records of a striped domain, as its transactions see
/// them (a plain array: one load fewer per access than through the box).
pub(crate) type Records = [AtomicU64; STRIPES];

/// The ownership records of a striped domain (owned by its `Globals`).
pub(crate) struct Stripes {
    records: Box<Records>,
    /// Unique in the process (never 0): names the domain in a
    /// [`ClockHint`].
    id: u64,
}

impl Stripes {
    pub(crate) fn new() -> Stripes {
        /// The next `id`: 64 bits do not wrap.
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let records: Box<[AtomicU64]> = (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        Stripes {
            records: records.try_into().expect("STRIPES records"),
            // Relaxed: only uniqueness matters.
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    #[inline(always)]
    pub(crate) fn records(&self) -> &Records {
        &self.records
    }
}

/// The last snapshot a thread's transaction held in a striped domain,
/// kept with the thread's pooled logs to be the next transaction's
/// snapshot there.
///
/// # Why
///
/// Any clock value this thread has observed is a valid snapshot for its
/// next transaction: the clock only grows, and a snapshot older than the
/// clock is that of a transaction that began earlier and has not read yet
/// (a record newer than it makes the read extend, as for any transaction).
/// Reading the clock at every begin instead costs a cache miss whenever
/// another core committed since: on 2 cores (no RTM, `cargo bench --bench
/// tm`), bank transfers went from 21 to 29.5 M/s and the hash set from
/// 49 to 58 M/s when begin stopped reading it (with the commit's clock
/// load dropped, see `SoftTx::commit_striped`).
///
/// A hint names its domain by [`Stripes::id`], never reused in the
/// process, so it is never applied to another domain (a later one at the
/// same address): a snapshot above a domain's clock would accept reads of
/// commits it must not see.
#[derive(Clone, Copy, Default)]
pub(crate) struct ClockHint {
    /// The domain's `Stripes::id`; 0: no hint.
    domain: u64,
    version: u64,
}

impl ClockHint {
    /// No hint.
    pub(crate) const EMPTY: ClockHint = ClockHint {
        domain: 0,
        version: 0,
    };

    /// A transaction of the domain of `stripes` begins with these logs:
    /// the hint's version if it was left by one of the same domain; else
    /// the hint now names this domain, and `None` (read the clock).
    #[inline(always)]
    pub(crate) fn begin(&mut self, stripes: &Stripes) -> Option<u64> {
        if self.domain == stripes.id {
            return Some(self.version);
        }
        self.domain = stripes.id;
        None
    }

    /// No hint: the logs serve a transaction of a hybrid domain, whose
    /// snapshot [`end`](Self::end) will store (a `seq`, not a version of
    /// any striped domain).
    #[inline(always)]
    pub(crate) fn forget(&mut self) {
        self.domain = 0;
    }

    /// The transaction [`begin`](Self::begin) (or [`forget`](Self::forget))
    /// was called for ends with `version` as its snapshot (a clock value of
    /// that domain it has observed).
    #[inline(always)]
    pub(crate) fn end(&mut self, version: u64) {
        self.version = version;
    }
}

/// The record of the word at `a`: consecutive words get consecutive
/// records.
#[inline(always)]
pub(crate) fn record(records: &Records, a: Addr) -> &AtomicU64 {
    &records[(a as usize >> 3) & (STRIPES - 1)]
}

/// Locks the records of the words a writer is about to write (it holds
/// the clock): each becomes `LOCKED | version`, waiting first for an
/// earlier writer still writing back a word of the stripe. Returns whether
/// two of the words share a record: their write-back must then be complete
/// before either is released ([`unlock`]); else each word's record can be
/// released as soon as the word is written ([`publish_and_unlock`]).
#[inline(always)]
pub(crate) fn lock(records: &Records, writes: &[(Addr, u64)], version: u64) -> bool {
    let locked = LOCKED | version;
    let mut shared = false;
    for &(a, _) in writes {
        let r = record(records, a);
        // Relaxed, and the Acquire fence after the loop: see there. A
        // locked record is waited for with Acquire below.
        let o = r.load(Ordering::Relaxed);
        if o & LOCKED != 0 {
            // Our own lock (only the holder of the clock at this version
            // locks with it): a second word of the stripe.
            if o == locked {
                shared = true;
            } else {
                wait_unlocked(r);
            }
        }
        // Relaxed: published by the clock's Release store (for committers
        // and extensions) and ordered before the word stores by the
        // caller's fence (for readers).
        r.store(locked, Ordering::Relaxed);
    }
    // Acquire fence: where a load above read an earlier writer's release of
    // a record, that writer's write-back happens before our lock, which
    // overwrites the release; a reader that acquires our release must see
    // that write-back too. One fence for the loop (no instruction on x86):
    // an Acquire load per record cost 7 instructions per transfer, as the
    // compiler reloaded what it had kept in registers.
    fence(Ordering::Acquire);
    shared
}

/// Releases what [`lock`] locked at `version`, after the whole write-back
/// (the path of commits whose written words share records). Each record
/// is released once, while it still holds our lock: once released, the
/// next writer may lock it, and a second release would overwrite that
/// writer's lock while it writes back.
///
/// Out of line: it is the rare path (words 512 KiB apart), and inlined it
/// cost the common commit 5 instructions (callgrind).
#[cold]
#[inline(never)]
pub(crate) fn unlock(records: &Records, writes: &[(Addr, u64)], version: u64) {
    let locked = LOCKED | version;
    for &(a, _) in writes {
        let r = record(records, a);
        // Relaxed: our own lock is the only value we can read here that
        // we act on (nobody else writes a record we hold).
        if r.load(Ordering::Relaxed) == locked {
            // Release: a reader that sees the version sees the write-back.
            r.store(version, Ordering::Release);
        }
    }
}

/// Writes back the redo log and releases each word's record right after
/// its word, in one pass: for a commit whose words all have records of
/// their own ([`lock`] returned false). One loop instead of two saves 22
/// instructions of a bank transfer (callgrind).
///
/// # Safety
///
/// Every address in `writes` points at a live word.
#[inline(always)]
pub(crate) unsafe fn publish_and_unlock(records: &Records, writes: &[(Addr, u64)], version: u64) {
    for &(a, v) in writes {
        // SAFETY: the caller guarantees `a` is live; only atomic access is
        // made.
        let w = unsafe { &*a };
        // Relaxed: published by the record's Release store just after.
        w.store(v, Ordering::Relaxed);
        // Release: a reader that sees the version sees the word (and the
        // record was this word's alone, so no other word of it is still
        // unwritten).
        record(records, a).store(version, Ordering::Release);
    }
}

/// A serial transaction (holding the clock) is about to write the word at
/// `a` in place: mark its record with the version the transaction will
/// release, once an earlier writer's write-back of the stripe is done.
#[inline(always)]
pub(crate) fn mark_for_serial(records: &Records, a: Addr, version: u64) {
    let r = record(records, a);
    // Acquire: as in `lock` (the serial transaction overwrites a release).
    if r.load(Ordering::Acquire) & LOCKED != 0 {
        wait_unlocked(r);
    }
    // Release: a reader that sees this newer version then sees the clock
    // odd, and waits for the serial transaction to end. (A plain store on
    // x86.)
    r.store(version, Ordering::Release);
    fence(Ordering::Release);
}

/// A serial transaction (holding the clock) reads the word at `a`: wait
/// for an earlier writer still writing back a word of the stripe.
#[inline(always)]
pub(crate) fn wait_for_serial_read(records: &Records, a: Addr) {
    let r = record(records, a);
    // Acquire: once unlocked, the write-back is visible.
    if r.load(Ordering::Acquire) & LOCKED != 0 {
        wait_unlocked(r);
    }
}

/// Waits for a record to be released (its writer is writing back: it
/// waits for nothing, so this ends).
#[cold]
#[inline(never)]
fn wait_unlocked(r: &AtomicU64) {
    let backoff = Backoff::new();
    // Acquire: once unlocked, the write-back is visible.
    while r.load(Ordering::Acquire) & LOCKED != 0 {
        backoff.snooze();
    }
}

/// The version of a clock value (the waiting bit cleared).
#[inline(always)]
pub(crate) fn version(clock: u64) -> u64 {
    clock & !WAITING
}

/// Reads a word and its record's version as one consistent pair: `None`
/// if the record moved under the read.
#[inline(always)]
pub(crate) fn read_pair(record: &AtomicU64, w: &AtomicU64) -> Option<(u64, u64)> {
    // Acquire: if `o1` is the version of a finished commit, its write-back
    // is visible to the word load (the clock's release, which the reader's
    // snapshot or extension acquired, came after it).
    let o1 = record.load(Ordering::Acquire);
    // Relaxed, then an Acquire fence before re-reading the record: if the
    // value came from a write-back, the writer's mark (made before its
    // Release fence) is visible to the re-read (seqlock reader).
    let v = w.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    // Relaxed: ordered after the word load by the fence.
    let o2 = record.load(Ordering::Relaxed);
    (o1 == o2).then_some((o1, v))
}

/// Whether every logged read is still current: each record holds the
/// version logged when the word was read.
#[inline]
pub(crate) fn validate(logs: &Logs) -> bool {
    logs.reads.iter().all(|&(record, seen)| {
        // SAFETY: `record` points into the domain's `Stripes`, which live
        // as long as the domain, and the transaction borrows the domain.
        unsafe { &*record }.load(Ordering::Acquire) == seen
    })
}
