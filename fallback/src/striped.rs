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
//! serial transaction runs, bits 61..1 count commits (+2 per writing
//! commit), bit 62 is the waiting bit. A version is a clock value with bit
//! 62 cleared.
//!
//! An ownership record (one `AtomicU64` per stripe of 8-byte words; a
//! word's record is chosen by its address):
//!
//! | value | meaning |
//! | ----- | ------- |
//! | bit 63 clear | unlocked: the version of the last commit that wrote a word of the stripe |
//! | bit 63 set   | locked: the rest is the owner, a committing transaction (the address of its logs) or [`SERIAL`] |
//!
//! # The protocol
//!
//! | step | software transaction | serial transaction |
//! | ---- | -------------------- | ------------------ |
//! | begin | snapshot `rv` = the clock, waiting while odd | take the clock odd (as in a hybrid domain) |
//! | read | record `o1`, word, fence, record `o2`: `o1 == o2 <= rv` (unlocked, not newer), else extend or wait; log `(record, o1)` | wait while the record is locked by a committer; read in place |
//! | write | redo log | lock the record (`SERIAL`), write in place, undo log |
//! | commit | lock the write set's records; clock CAS `s -> s + 2` (refused while odd); validate the read log unless `s == rv`; write back; release the records at `s + 2` | release its records at the new clock, then the clock |
//!
//! A snapshot extension takes a new even clock and checks every logged
//! record still holds its logged version; it is what keeps a long reader
//! going past unrelated commits, and what makes every read opaque: a value
//! is returned only when every earlier read is known current at the
//! snapshot.
//!
//! A committer that finds a record locked spins briefly and then gives up
//! (restart, nothing written): a committer holds records only for its
//! write-back, so no lock order is needed and none is waited on without
//! bound. One that finds the clock odd (a serial transaction took it after
//! the committer locked) releases its records and restarts, so that the
//! serial transaction, which waits on records locked by committers that
//! already passed the clock, never waits on one that cannot finish.
//!
//! [`SoftTx::begin_without_hardware`]: crate::SoftTx::begin_without_hardware
//! [`SoftTx::begin`]: crate::SoftTx::begin
//! [`SerialTx::begin_without_hardware`]: crate::SerialTx::begin_without_hardware
//! [`Globals`]: crate::Globals

use crate::globals::WAITING;
use crate::log::{Addr, Logs};
use crate::sync::{fence, AtomicU64, Backoff, Ordering};
use crate::Restart;

/// Bit 63 of an ownership record: locked (the rest names the owner).
pub(crate) const LOCKED: u64 = 1 << 63;

/// The owner of the records a serial transaction locks (there is at most
/// one at a time; addresses of logs are even, so it names no committer).
pub(crate) const SERIAL: u64 = LOCKED | 1;

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

/// How long a committer waits for a record another committer holds (its
/// write-back) before it gives up and restarts.
const LOCK_SPINS: u32 = 64;

/// The ownership records of a striped domain.
pub(crate) struct Stripes {
    records: Box<[AtomicU64; STRIPES]>,
}

impl Stripes {
    pub(crate) fn new() -> Stripes {
        let records: Box<[AtomicU64]> = (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        Stripes {
            records: records.try_into().ok().expect("STRIPES records"),
        }
    }

    /// The record of the word at `a`: consecutive words get consecutive
    /// records.
    #[inline(always)]
    pub(crate) fn of(&self, a: Addr) -> &AtomicU64 {
        &self.records[(a as usize >> 3) & (STRIPES - 1)]
    }
}

/// The version of a clock value (the waiting bit cleared).
#[inline(always)]
pub(crate) fn version(clock: u64) -> u64 {
    clock & !WAITING
}

/// Reads a word and its record's version as one consistent pair: `None`
/// while the record is locked or moved under the read.
#[inline(always)]
pub(crate) fn read_pair(record: &AtomicU64, w: &AtomicU64) -> Option<(u64, u64)> {
    // Acquire: if `o1` is a committer's release, its write-back is visible
    // to the word load.
    let o1 = record.load(Ordering::Acquire);
    // Relaxed, then an Acquire fence before re-reading the record: if the
    // value came from a write-back, the writer's lock (made before its
    // Release fence) is visible to the re-read (seqlock reader).
    let v = w.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    // Relaxed: ordered after the word load by the fence.
    let o2 = record.load(Ordering::Relaxed);
    (o1 == o2 && o1 & LOCKED == 0).then_some((o1, v))
}

/// The owner tag of the transaction whose logs are at `logs`.
#[inline(always)]
pub(crate) fn owner(logs: &Logs) -> u64 {
    LOCKED | core::ptr::from_ref(logs) as usize as u64
}

/// Locks the records of a committer's write set. On `Err` it holds none.
#[inline]
pub(crate) fn lock_write_set(stripes: &Stripes, logs: &mut Logs, me: u64) -> Result<(), Restart> {
    let Logs { writes, locks, .. } = logs;
    for &(a, _) in writes.entries() {
        let record = stripes.of(a);
        // Relaxed: a guess for the CAS, which decides.
        let o = record.load(Ordering::Relaxed);
        if o == me {
            continue; // another word of a stripe we hold
        }
        // Acquire on success: the previous owner's write-back (made before
        // its Release of the record) happens before ours.
        let got = o & LOCKED == 0
            && record
                .compare_exchange(o, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        match got {
            true => locks.push((record, o)),
            false => match lock_contended(record, me) {
                Some(old) => locks.push((record, old)),
                None => {
                    release(locks, None);
                    return Err(Restart);
                }
            },
        }
    }
    Ok(())
}

/// A record another committer holds: wait (bounded) for its release, then
/// take it. `None` if it stayed locked, or a serial transaction holds it.
#[cold]
#[inline(never)]
fn lock_contended(record: &AtomicU64, me: u64) -> Option<u64> {
    let backoff = Backoff::new();
    for _ in 0..LOCK_SPINS {
        // Relaxed: a guess for the CAS.
        let o = record.load(Ordering::Relaxed);
        if o == SERIAL {
            return None;
        }
        if o & LOCKED == 0
            // Acquire / Relaxed: as in `lock_write_set`.
            && record
                .compare_exchange(o, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(o);
        }
        backoff.spin();
    }
    None
}

/// Releases held records: at `version` after a write-back, else (`None`) at
/// the versions they had (nothing was written).
#[inline]
pub(crate) fn release(locks: &mut Vec<(Addr, u64)>, version: Option<u64>) {
    for &(record, old) in locks.iter() {
        // SAFETY: `record` points into the domain's `Stripes`, which live
        // as long as the domain, and the transaction borrows the domain.
        let record = unsafe { &*record };
        // Release: publishes the write-back (or nothing) to readers that
        // Acquire the record.
        record.store(version.unwrap_or(old), Ordering::Release);
    }
    locks.clear();
}

/// Validates a read log against the records now: each must still hold the
/// logged version, or be held by `me` (a committer) with that version
/// before it locked.
#[inline]
pub(crate) fn validate(logs: &Logs, me: u64) -> bool {
    logs.reads.iter().all(|&(record, seen)| {
        // SAFETY: as in `release`: the record lives as long as the domain.
        let now = unsafe { &*record }.load(Ordering::Acquire);
        now == seen
            || (now == me
                && logs
                    .locks
                    .iter()
                    .any(|&(held, before)| held == record && before == seen))
    })
}

/// A serial transaction is about to write the word at `a`: lock its record
/// (waiting for a committer that holds it to finish its write-back), once.
#[inline]
pub(crate) fn lock_for_serial(stripes: &Stripes, logs: &mut Logs, a: Addr) {
    let record = stripes.of(a);
    // Relaxed: a guess for the CAS.
    let o = record.load(Ordering::Relaxed);
    if o == SERIAL {
        return;
    }
    // Acquire: as in `lock_write_set`.
    if o & LOCKED == 0
        && record
            .compare_exchange(o, SERIAL, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        logs.locks.push((record, o));
        // Release fence: orders the lock before the in-place store that
        // follows, for readers (as a committer's fence before write-back).
        fence(Ordering::Release);
        return;
    }
    let old = lock_for_serial_slow(record);
    logs.locks.push((record, old));
    fence(Ordering::Release);
}

#[cold]
#[inline(never)]
fn lock_for_serial_slow(record: &AtomicU64) -> u64 {
    let backoff = Backoff::new();
    loop {
        // Relaxed: a guess for the CAS.
        let o = record.load(Ordering::Relaxed);
        // A committer holds it: one that passed the clock before the serial
        // transaction took it (it writes back and releases), or one that
        // has not (it finds the clock odd and releases).
        if o & LOCKED == 0
            // Acquire / Relaxed: as in `lock_write_set`.
            && record
                .compare_exchange(o, SERIAL, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return o;
        }
        backoff.snooze();
    }
}

/// A serial transaction reads the word at `a`: wait while a committer
/// holds its record (see `lock_for_serial_slow`).
#[inline]
pub(crate) fn wait_for_serial_read(stripes: &Stripes, a: Addr) {
    let record = stripes.of(a);
    // Acquire: a committer's write-back is visible once its release is.
    let o = record.load(Ordering::Acquire);
    if o & LOCKED != 0 && o != SERIAL {
        wait_unlocked(record);
    }
}

#[cold]
#[inline(never)]
fn wait_unlocked(record: &AtomicU64) {
    let backoff = Backoff::new();
    loop {
        // Acquire: as in `wait_for_serial_read`.
        let o = record.load(Ordering::Acquire);
        if o & LOCKED == 0 || o == SERIAL {
            return;
        }
        backoff.snooze();
    }
}
