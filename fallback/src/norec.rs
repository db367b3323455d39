//! The NOrec software transaction engine (Dalessandro, Spear, Scott, "NOrec:
//! streamlining STM by abolishing ownership records", PPoPP 2010), in its
//! hybrid form: safe beside hardware transactions that follow the protocol
//! of [`Globals`].
//!
//! Reads are invisible and validated by value against a read log; writes go
//! to a redo log; a writer commits by taking the sequence lock `seq` (even to
//! odd), writing back, and releasing it (odd + 1). Any commit, software,
//! serial or hardware, moves `seq`, and a reader that sees `seq` move
//! revalidates its whole read log before it returns another value: that is
//! what makes every transaction opaque.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use crate::log::{self, Addr, LogBox};
use crate::striped::{self, version, Records};
use crate::sync::{fence, AtomicU64, Backoff, Ordering};
use crate::Globals;

/// How many times [`SoftTx::commit`] may lose the `seq` race (and revalidate
/// successfully) before it gives up with [`Restart`]. Each loss means another
/// transaction committed, so the system progresses; the bound only makes the
/// starvation of *this* thread visible to the caller, who counts restarts and
/// escalates to [`SerialTx`](crate::SerialTx). 64 rounds with exponential
/// spinning is far above what a two-party race needs.
const COMMIT_ROUNDS: u32 = 64;

/// CAS tries of a striped commit's fast way to the clock, each at the value
/// the previous one returned, before it takes the slow way (which is
/// bounded by `COMMIT_ROUNDS` and escalates).
const TAKE_CLOCK_TRIES: u32 = 4;

/// How many loads a striped commit that finds the clock held by another
/// commit spends waiting for it on the fast way (each after a `pause`),
/// before it takes the slow way. A commit holds the clock only to lock its
/// records (a few stores); a serial transaction holds it far longer, and
/// the slow way waits for that one. Under loom: two, so that the models
/// reach both outcomes.
#[cfg(not(loom))]
const CLOCK_WAIT_SPINS: u32 = 64;
#[cfg(loom)]
const CLOCK_WAIT_SPINS: u32 = 2;

/// How many times one revalidation may see `seq` move under it (a commit
/// landed while it checked the read log) before it gives up with
/// [`Restart`]. Same reasoning as [`COMMIT_ROUNDS`]: progress is global, this
/// bound makes a starving reader visible. Waiting while `seq` is odd is not
/// counted: that is waiting for one committer, which finishes.
const VALIDATE_ROUNDS: u32 = 64;

/// Write-back entries handled by a loop of known bound before the general
/// loop (see `SoftTx::write_back`).
const SHORT_WRITE_BACK: usize = 4;

/// The snapshot of a doomed transaction: a read returned `Err(Restart)`, so
/// its view is inconsistent, and even if the body swallowed the error it
/// must not commit. `seq` never reaches this value (2^62 commits), so every
/// later read and the commit revalidate, and revalidation refuses it.
const DOOMED: u64 = u64::MAX - 1;

/// A savepoint of a [`SoftTx`]: [`SoftTx::rollback_to`] undoes the writes
/// made since, [`SoftTx::release`] keeps them. Savepoints nest (close them
/// innermost first); reads are kept either way.
#[derive(Debug)]
#[must_use = "a savepoint must be released or rolled back"]
pub struct Savepoint(pub(crate) crate::log::Mark);

/// The transaction must start again: a software transaction saw a state it
/// cannot build on (a word it read changed, or it lost the commit race too
/// often). Nothing it wrote is visible.
///
/// In `hytm`, `Tx::read` and `Tx::write` return it, the transaction body
/// passes it on with `?`, and the runtime reruns the body (on the serial
/// path after repeated restarts). Code that drives `hytm-fallback`'s
/// engines directly calls `SoftTx::restart` and runs the body again, or
/// escalates to `SerialTx` after repeated restarts.
///
/// # Examples
///
/// It is an error type with a fixed message:
///
/// ```
/// # use hytm_fallback::Restart;
/// let e: Box<dyn std::error::Error> = Box::new(Restart);
/// assert_eq!(e.to_string(), "software transaction conflict: restart the transaction");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Restart;

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("software transaction conflict: restart the transaction")
    }
}

impl std::error::Error for Restart {}

/// One software (NOrec) transaction on one thread, across its restarts.
///
/// `'g` is the borrow of the domain's [`Globals`]; `'env` is the lifetime of
/// the words it may read and write, which must outlive the transaction since
/// the redo log holds them until commit.
///
/// A `SoftTx` counts in `sw_active` from [`begin`](SoftTx::begin) until it is
/// dropped, restarts included. After [`commit`](SoftTx::commit) returns
/// `Ok`, the same value is a fresh transaction that starts at the commit
/// point; after `Err(Restart)` (from `read` or `commit`) call
/// [`restart`](SoftTx::restart) before running the body again.
///
/// It is neither `Send` nor `Sync`: it belongs to the thread that began it.
///
/// # Examples
///
/// A transfer between two words, retried until it commits:
///
/// ```
/// use hytm_fallback::{Globals, Restart, SoftTx};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// static G: Globals = Globals::new();
/// static A: AtomicU64 = AtomicU64::new(100);
/// static B: AtomicU64 = AtomicU64::new(0);
///
/// fn transfer(n: u64) {
///     let mut tx = SoftTx::begin(&G);
///     loop {
///         let r: Result<(), Restart> = (|| {
///             let a = tx.read(&A)?;
///             let b = tx.read(&B)?;
///             tx.write(&A, a - n);
///             tx.write(&B, b + n);
///             tx.commit()
///         })();
///         match r {
///             Ok(()) => return,
///             Err(Restart) => tx.restart(),
///         }
///     }
/// }
///
/// let ts: Vec<_> = (0..4).map(|_| std::thread::spawn(|| transfer(10))).collect();
/// for t in ts {
///     t.join().unwrap();
/// }
/// assert_eq!(A.load(Ordering::Relaxed), 60);
/// assert_eq!(B.load(Ordering::Relaxed), 40);
/// ```
pub struct SoftTx<'g, 'env> {
    g: &'g Globals,
    /// The even `seq` value at which every logged read is known consistent.
    snapshot: u64,
    /// Number of `restart` calls.
    restarts: u32,
    /// Whether this transaction counts itself in `sw_active` (false only
    /// for [`SoftTx::begin_without_hardware`]).
    announced: bool,
    /// The domain's ownership records when it is software-only: the
    /// transaction then follows the striped protocol (`striped.rs`), with
    /// `snapshot` as its read version; `None`: NOrec.
    stripes: Option<&'g Records>,
    /// A read failed: the attempt must restart, and `commit` refuses it
    /// (NOrec also parks `snapshot` at `DOOMED`; striped, at 0).
    doomed: bool,
    /// Read log and redo log; every address in them came from a
    /// `&'env AtomicU64`.
    logs: ManuallyDrop<LogBox>,
    _env: PhantomData<&'env AtomicU64>,
}

impl<'g, 'env> SoftTx<'g, 'env> {
    /// Starts a software transaction: increments `sw_active` (which aborts
    /// every hardware transaction in flight and makes later ones count their
    /// commits in `seq`), then snapshots `seq`, waiting while it is odd.
    ///
    /// Its log buffers come from this thread's pool: no allocation once the
    /// thread has run a transaction of the same size.
    ///
    /// Do not call it on a thread that holds a [`SerialTx`](crate::SerialTx)
    /// of the same domain: it would wait for that thread forever.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::Ordering;
    ///
    /// let g = Globals::new();
    /// let tx = SoftTx::begin(&g);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 1);
    /// assert!(tx.is_read_only());
    /// ```
    #[inline]
    #[must_use]
    pub fn begin(g: &'g Globals) -> Self {
        Self::begin_for(g, true)
    }

    /// Starts a software transaction of a software-only domain: one in
    /// which no hardware transaction can ever run (the process has no
    /// usable RTM, or runs in fallback mode). It does not announce itself
    /// in `sw_active` (nobody would read it), and it follows the striped
    /// protocol: ownership records striped over the words and a global
    /// version clock (TL2-style), so that commits to disjoint words do not
    /// all meet on one cache line. The domain allocates its records at its
    /// first such transaction.
    ///
    /// Mixing it with [`begin`](Self::begin) (or hardware transactions) in
    /// the same domain is a bug: the two protocols do not see each other.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(1);
    /// let mut tx = SoftTx::begin_without_hardware(&g);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// let v = tx.read(&x).unwrap();
    /// tx.write(&x, v + 1);
    /// tx.commit().unwrap();
    /// drop(tx);
    /// assert_eq!(x.load(Ordering::Relaxed), 2);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// ```
    #[inline]
    #[must_use]
    pub fn begin_without_hardware(g: &'g Globals) -> Self {
        Self::begin_for(g, false)
    }

    /// [`begin`](Self::begin) when `hardware` is true, else
    /// [`begin_without_hardware`](Self::begin_without_hardware): for a
    /// dispatcher that knows at run time whether hardware transactions
    /// exist. One constructor, so the transaction is built in place.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::Ordering;
    ///
    /// let g = Globals::new();
    /// let tx = SoftTx::begin_for(&g, true);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 1);
    /// drop(tx);
    /// let _tx = SoftTx::begin_for(&g, false);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// ```
    #[inline]
    #[must_use]
    pub fn begin_for(g: &'g Globals, hardware: bool) -> Self {
        // The checks and the records' allocation come before the logs are
        // taken: a panic in them must not leak the logs.
        let stripes = if hardware {
            debug_assert!(
                g.stripes().is_none(),
                "a hybrid transaction in a software-only (striped) domain"
            );
            None
        } else {
            Some(g.stripes_or_init())
        };
        let mut logs = ManuallyDrop::new(log::take());
        let (stripes, snapshot) = match stripes {
            None => {
                // The hint names no striped domain while a hybrid
                // transaction has these logs: its end leaves its snapshot
                // (a `seq`, not a version) there.
                logs.clock_hint.forget();
                g.announce_software();
                (None, even_seq(g))
            }
            Some(stripes) => {
                // The thread's last snapshot here, if it has one: reading the
                // clock instead costs a miss whenever another core committed
                // (see `striped::ClockHint`).
                let snapshot = match logs.clock_hint.begin(stripes) {
                    Some(hint) => hint,
                    None => version(even_seq(g)),
                };
                (Some(stripes.records()), snapshot)
            }
        };
        // Every field is computed before the value is built, so that the
        // caller's `Tx` gets it in place (building it first and then setting
        // `snapshot` made LLVM assemble it on the stack and copy it over at
        // odd offsets, which stalls store forwarding).
        SoftTx {
            g,
            snapshot,
            restarts: 0,
            announced: hardware,
            stripes,
            doomed: false,
            logs,
            _env: PhantomData,
        }
    }

    /// Reads a word: from the redo log if this transaction wrote it, else
    /// from memory, checked consistent with every earlier read.
    ///
    /// # Errors
    ///
    /// [`Restart`] if a word read earlier has changed since (a commit made
    /// the read set inconsistent), or if commits kept landing while it
    /// revalidated. The value is never returned in that case: the
    /// transaction never sees an inconsistent state (opacity).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(7);
    /// let mut tx = SoftTx::begin(&g);
    /// assert_eq!(tx.read(&x), Ok(7));
    /// tx.write(&x, 8);
    /// assert_eq!(tx.read(&x), Ok(8)); // read-your-writes
    /// ```
    #[inline(always)]
    pub fn read(&mut self, w: &'env AtomicU64) -> Result<u64, Restart> {
        match self.read_fast(w) {
            Some(v) => Ok(v),
            None => self.read_rest(w),
        }
    }

    /// The common case of [`read`](Self::read), inline: the word is not in
    /// the redo log (its filter bit is clear) and reads consistent at the
    /// snapshot. `None` when the rest of the read must run:
    /// [`read_rest`](Self::read_rest), which does the whole read (this one
    /// changed nothing then).
    ///
    /// `read` is the two in a row. A caller that returns the error with `?`
    /// can test the out-of-line part's outcome alone, as `hytm`'s `Tx` does:
    /// with one `Result` for both, LLVM built it on the fast path too and
    /// tested it there (4 instructions per read, callgrind).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, Restart, SoftTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// fn read<'env>(tx: &mut SoftTx<'_, 'env>, w: &'env AtomicU64) -> Result<u64, Restart> {
    ///     Ok(match tx.read_fast(w) {
    ///         Some(v) => v,
    ///         None => tx.read_rest(w)?,
    ///     })
    /// }
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(7);
    /// let mut tx = SoftTx::begin(&g);
    /// assert_eq!(tx.read_fast(&x), Some(7));
    /// tx.write(&x, 8);
    /// assert_eq!(tx.read_fast(&x), None); // written: the rest looks it up
    /// assert_eq!(read(&mut tx, &x), Ok(8));
    /// ```
    #[inline(always)]
    pub fn read_fast(&mut self, w: &'env AtomicU64) -> Option<u64> {
        let a: Addr = w;
        if self.logs.writes.may_contain(a) {
            return None;
        }
        if let Some(stripes) = self.stripes {
            let record = striped::record(stripes, w);
            let (o, v) = striped::read_pair(record, w)?;
            if o > self.snapshot {
                return None;
            }
            self.logs.reads.push((record, o));
            return Some(v);
        }
        let v = self.seqlock_read(w)?;
        self.logs.reads.push((a, v));
        Some(v)
    }

    /// NOrec's read of a word: its value, if `seq` is still the snapshot
    /// after the load (the seqlock reader).
    #[inline(always)]
    fn seqlock_read(&self, w: &AtomicU64) -> Option<u64> {
        // Relaxed: the Acquire fence below orders it before the `seq`
        // re-check.
        let v = w.load(Ordering::Relaxed);
        // Acquire fence: if `v` came from a writer's store (made after that
        // writer's Release fence), the writer's odd `seq` is visible to the
        // re-check below, so a torn snapshot is always noticed.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the data load by the fence above.
        (self.g.seq().load(Ordering::Relaxed) == self.snapshot).then_some(v)
    }

    /// A whole [`read`](Self::read), out of line: after
    /// [`read_fast`](Self::read_fast) gave `None` (the word may be in the
    /// redo log, or did not read consistent at the snapshot).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(7);
    /// let mut tx = SoftTx::begin(&g);
    /// tx.write(&x, 8);
    /// assert_eq!(tx.read_rest(&x), Ok(8));
    /// ```
    #[cold]
    #[inline(never)]
    pub fn read_rest(&mut self, w: &'env AtomicU64) -> Result<u64, Restart> {
        if self.doomed {
            return Err(Restart);
        }
        if let Some(v) = self.logs.writes.get(w) {
            return Ok(v);
        }
        if let Some(stripes) = self.stripes {
            return self.read_striped_slow(stripes, w);
        }
        let v = match self.seqlock_read(w) {
            Some(v) => v,
            None => self.read_slow(w)?,
        };
        self.logs.reads.push((w, v));
        Ok(v)
    }

    /// `seq` moved since the snapshot: revalidate, then read again at the new
    /// snapshot (NOrec's read loop).
    #[cold]
    #[inline(never)]
    fn read_slow(&mut self, w: &'env AtomicU64) -> Result<u64, Restart> {
        // Bounded like `revalidate`: commits that keep landing between the
        // load and the check would otherwise starve this reader unseen.
        for _ in 0..VALIDATE_ROUNDS {
            if let Err(r) = self.revalidate() {
                // Remembered: a body that swallows this error can neither
                // read on nor commit.
                self.doom();
                return Err(r);
            }
            if let Some(v) = self.seqlock_read(w) {
                return Ok(v);
            }
        }
        self.doom();
        Err(Restart)
    }

    /// The record moved under the read, or is newer than the snapshot:
    /// read again, extending the snapshot first if needed (bounded like
    /// `read_slow`).
    #[cold]
    #[inline(never)]
    fn read_striped_slow(
        &mut self,
        stripes: &'g Records,
        w: &'env AtomicU64,
    ) -> Result<u64, Restart> {
        let record = striped::record(stripes, w);
        let backoff = Backoff::new();
        for _ in 0..VALIDATE_ROUNDS {
            if self.doomed {
                return Err(Restart);
            }
            match striped::read_pair(record, w) {
                Some((o, v)) if o <= self.snapshot => {
                    self.logs.reads.push((record, o));
                    return Ok(v);
                }
                // A writer is writing it back: wait for its release.
                Some((o, _)) if o & striped::LOCKED != 0 => backoff.snooze(),
                // Newer than the snapshot (a commit since, or a serial
                // transaction now): extend, which waits for the clock to be
                // even.
                Some(_) => self.extend()?,
                // A writer marked it while we read: read again.
                None => backoff.spin(),
            }
        }
        self.doom();
        Err(Restart)
    }

    /// Moves a striped snapshot to the clock now, if every logged read is
    /// still current (its record holds the version it had).
    fn extend(&mut self) -> Result<(), Restart> {
        // Taken before the records are checked: a commit at or below it
        // locked its records before it moved the clock, so the checks see
        // its lock or its new version.
        let s = version(even_seq(self.g));
        if striped::validate(&self.logs) {
            self.snapshot = s;
            Ok(())
        } else {
            self.doom();
            Err(Restart)
        }
    }

    /// A read failed: remember it (see `doomed`).
    #[cold]
    fn doom(&mut self) {
        self.doomed = true;
        self.snapshot = if self.stripes.is_some() { 0 } else { DOOMED };
    }

    /// Writes a word into the redo log (overwriting an earlier write of the
    /// same word). Nothing reaches memory before [`commit`](Self::commit).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    /// let mut tx = SoftTx::begin(&g);
    /// tx.write(&x, 1);
    /// tx.write(&x, 2);
    /// assert_eq!(x.load(Ordering::Relaxed), 0); // buffered
    /// tx.commit().unwrap();
    /// assert_eq!(x.load(Ordering::Relaxed), 2);
    /// ```
    #[inline]
    pub fn write(&mut self, w: &'env AtomicU64, v: u64) {
        self.logs.writes.put(w, v);
    }

    /// Commits: a read-only transaction at once (its reads were consistent
    /// at its snapshot); a writer takes `seq` (CAS snapshot to snapshot + 1,
    /// revalidating and retrying if another commit got in first), writes its
    /// redo log back, and releases `seq` at snapshot + 2.
    ///
    /// After `Ok`, the logs are empty and the transaction continues as a new
    /// one that starts at the commit point.
    ///
    /// # Errors
    ///
    /// [`Restart`] if a word read has changed since it was read, or if the
    /// commit lost the `seq` race too many times in a row (the caller's
    /// restart count then decides when to escalate to
    /// [`SerialTx`](crate::SerialTx)). Nothing was written.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, Restart, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    ///
    /// let mut t1 = SoftTx::begin(&g);
    /// let v = t1.read(&x).unwrap();
    /// t1.write(&x, v + 1);
    ///
    /// let mut t2 = SoftTx::begin(&g);
    /// t2.write(&x, 10);
    /// t2.commit().unwrap(); // x changed under t1
    ///
    /// assert_eq!(t1.commit(), Err(Restart));
    /// t1.restart();
    /// let v = t1.read(&x).unwrap();
    /// t1.write(&x, v + 1);
    /// t1.commit().unwrap();
    /// assert_eq!(x.load(Ordering::Relaxed), 11);
    /// ```
    #[inline(always)]
    pub fn commit(&mut self) -> Result<(), Restart> {
        self.commit_then::<false>()
    }

    /// Commits, as [`commit`](Self::commit), a transaction that ends here:
    /// after `Ok` its logs are not emptied (the drop empties them, which it
    /// does anyway), so it cannot go on as a new one. Until
    /// [`restart`](Self::restart), a read of a word it wrote and a commit
    /// return [`Restart`]; drop it instead.
    ///
    /// This saves emptying the logs twice (6 instructions per writing
    /// transaction, callgrind).
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, Restart, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    /// let mut tx = SoftTx::begin(&g);
    /// tx.write(&x, 1);
    /// tx.commit_last().unwrap();
    /// assert_eq!(x.load(Ordering::Relaxed), 1);
    /// // Over: its own writes are not read back, and it commits nothing more.
    /// assert_eq!(tx.read(&x), Err(Restart));
    /// assert_eq!(tx.commit(), Err(Restart));
    /// ```
    #[inline(always)]
    pub fn commit_last(&mut self) -> Result<(), Restart> {
        self.commit_then::<true>()
    }

    /// `commit`, or with `LAST` `commit_last`.
    #[inline(always)]
    fn commit_then<const LAST: bool>(&mut self) -> Result<(), Restart> {
        if self.logs.writes.is_empty() {
            if self.doomed {
                return Err(Restart);
            }
            if LAST {
                self.doomed = true;
            } else {
                self.logs.reads.clear();
            }
            return Ok(());
        }
        if let Some(stripes) = self.stripes {
            return self.commit_striped::<LAST>(stripes);
        }
        // A doomed NOrec snapshot is parked where the CAS fails, but one
        // over after `commit_last` keeps its own.
        if self.doomed {
            return Err(Restart);
        }
        let s = self.snapshot;
        // On failure `lock_slow` revalidates at `seq` as it is now.
        let won = !self.g.serial_pending() && self.g.try_take_seq(s).is_ok();
        if !won {
            self.lock_slow()?;
        }
        self.write_back::<LAST>();
        Ok(())
    }

    /// After a commit: empty the logs for the next transaction, or (`LAST`)
    /// mark this one over. Over, it is doomed, so the write set left in
    /// place is never read: `read_rest` and a writer's commit test `doomed`
    /// first. Its snapshot stays: a striped one is the thread's next clock
    /// hint, and a read at it is still consistent.
    #[inline(always)]
    fn committed<const LAST: bool>(&mut self) {
        if LAST {
            self.doomed = true;
        } else {
            self.logs.clear_committed();
        }
    }

    /// Takes `seq` after the fast CAS failed (or a serial transaction was
    /// queued): revalidate at the current `seq`, retry, up to `COMMIT_ROUNDS`
    /// (each with a bounded wait for queued serial transactions).
    #[cold]
    #[inline(never)]
    fn lock_slow(&mut self) -> Result<(), Restart> {
        let backoff = Backoff::new();
        for _ in 0..COMMIT_ROUNDS {
            self.g.let_queued_serial_go_first();
            // Relaxed: only a hint whether to revalidate; `revalidate` takes
            // its own Acquire snapshot, and the CAS decides.
            if self.g.seq().load(Ordering::Relaxed) != self.snapshot {
                self.revalidate()?;
            }
            if self.g.try_take_seq(self.snapshot).is_ok() {
                return Ok(());
            }
            backoff.spin();
        }
        Err(Restart)
    }

    /// The striped commit: take the clock (odd) at a value at which the
    /// reads are valid, mark the written records with the new version,
    /// write back, release the clock at that version.
    #[inline(always)]
    fn commit_striped<const LAST: bool>(&mut self, stripes: &'g Records) -> Result<(), Restart> {
        if self.doomed {
            return Err(Restart);
        }
        let s = match self.take_clock()? {
            Some(s) => s,
            None => self.lock_clock_slow()?,
        };
        let v = version(s + 2);
        let writes = self.logs.writes.entries();
        let shared = striped::lock(stripes, writes, v);
        // Release: the next committer (or extension) sees our locks. The
        // clock is free again: the next commit can lock its own records
        // while we write back.
        self.g.seq().store(s + 2, Ordering::Release);
        // Release fence: orders the locks before the word stores (seqlock
        // writer; see `striped::read_pair`).
        fence(Ordering::Release);
        if shared {
            self.publish_redo_log();
            striped::unlock(stripes, self.logs.writes.entries(), v);
        } else {
            // SAFETY: as in `publish_redo_log`.
            unsafe { striped::publish_and_unlock(stripes, self.logs.writes.entries(), v) };
        }
        self.snapshot = v;
        self.committed::<LAST>();
        if s & crate::globals::WAITING != 0 {
            self.g.wake_waiters();
        }
        Ok(())
    }

    /// The striped commit's way to the clock: take it wherever it is, and
    /// if it moved since the snapshot, validate the read log while holding
    /// it (no commit can come between). Returns the even clock value taken;
    /// `None` if a serial transaction is queued or the clock stays held
    /// (the caller takes the slow way); `Err`, the clock given back, if the
    /// validation failed.
    ///
    /// The CAS is tried again at once with the value a failed one returns.
    /// The fast way used to expect the clock at the snapshot: at 2 threads
    /// another commit had mostly come between, and the slow way then
    /// loaded the clock, validated and tried again, while the other core
    /// took the line back. Bank at 2 threads, paired with TinySTM in one
    /// process: 28.2-29.4 M/s against 22.3-22.8 (0.95-1.04 of TinySTM,
    /// against 0.73-0.82); at 1 thread within noise.
    #[inline(always)]
    fn take_clock(&mut self) -> Result<Option<u64>, Restart> {
        if self.g.serial_pending() {
            return Ok(None);
        }
        // Relaxed: only a guess for the CAS. Loaded first, so that no CAS
        // is tried while another commit holds the clock: it would take the
        // line from that committer, whose release then misses too.
        let mut s = self.g.seq().load(Ordering::Relaxed);
        let mut tries = TAKE_CLOCK_TRIES;
        loop {
            if s & 1 == 1 {
                match self.wait_clock_released() {
                    Some(now) => s = now,
                    None => return Ok(None),
                }
            }
            match self.g.try_take_seq(s) {
                Ok(()) => break,
                // Bounded: the slow way escalates a commit that keeps
                // losing to the serial path.
                Err(_) if tries == 0 => return Ok(None),
                Err(now) => s = now,
            }
            tries -= 1;
        }
        if s != self.snapshot {
            self.validate_holding_clock(s)?;
        }
        Ok(Some(s))
    }

    /// The clock is held: wait a little for its release on the fast way.
    /// Returns the even clock value seen; `None` (take the slow way) if it
    /// stays held, or if a serial transaction has queued meanwhile (the
    /// slow way lets it go first).
    ///
    /// Another commit holds the clock only while it locks its records. At
    /// 2 threads 15-21% of the bank's commits found it held, and the slow
    /// way (revalidation, an exponential backoff after a lost CAS) cost
    /// them more than the wait: bank transfers went from a median 0.98 of
    /// TinySTM's throughput to 1.03 (paired runs in one process; see
    /// `docs/benchmarks.md`).
    #[cold]
    #[inline(never)]
    fn wait_clock_released(&self) -> Option<u64> {
        for _ in 0..CLOCK_WAIT_SPINS {
            crate::sync::spin_hint();
            // Relaxed: only a guess for the CAS, as in `take_clock`.
            let s = self.g.seq().load(Ordering::Relaxed);
            if s & 1 == 0 {
                return (!self.g.serial_pending()).then_some(s);
            }
        }
        None
    }

    /// The clock moved between the snapshot and `s`, at which this commit
    /// now holds it: validate the read log there (no commit can come
    /// between), or give the clock back unchanged and restart.
    #[cold]
    #[inline(never)]
    fn validate_holding_clock(&mut self, s: u64) -> Result<(), Restart> {
        // Only the waiting bit may differ: nothing committed since.
        if version(s) == self.snapshot || striped::validate(&self.logs) {
            self.snapshot = version(s);
            return Ok(());
        }
        // Release: nothing was written; the clock is as it was.
        self.g.seq().store(s, Ordering::Release);
        self.doom();
        Err(Restart)
    }

    /// Takes the clock after the fast way could not (a serial transaction
    /// queued or running, or another commit holding the clock): validate
    /// at the clock now, CAS, up to `COMMIT_ROUNDS` (as NOrec's
    /// `lock_slow`). Returns the even clock value taken.
    #[cold]
    #[inline(never)]
    fn lock_clock_slow(&mut self) -> Result<u64, Restart> {
        let backoff = Backoff::new();
        for _ in 0..COMMIT_ROUNDS {
            self.g.let_queued_serial_go_first();
            let s = even_seq(self.g);
            if version(s) != self.snapshot {
                if !striped::validate(&self.logs) {
                    self.doom();
                    return Err(Restart);
                }
                self.snapshot = version(s);
            }
            if self.g.try_take_seq(s).is_ok() {
                return Ok(s);
            }
            backoff.spin();
        }
        Err(Restart)
    }

    /// Stores the redo log into the words.
    #[inline(always)]
    fn publish_redo_log(&self) {
        let entries = self.logs.writes.entries();
        // The first few entries in a loop of known bound: LLVM unrolls it
        // with an exit per entry. The general loop alone costs more for the
        // one to four writes of a typical transaction: it is unrolled by 8
        // behind a remainder preamble (11 more instructions per bank
        // transfer, callgrind).
        let (head, tail) = entries.split_at(entries.len().min(SHORT_WRITE_BACK));
        // SAFETY: every address was logged by `write` from a
        // `&'env AtomicU64`; we are inside `&self` of a
        // `SoftTx<'_, 'env>`, so `'env` is still live.
        unsafe {
            publish(head);
            publish(tail);
        }
    }

    /// We hold `seq` (odd = snapshot + 1): publish the redo log, release.
    #[inline]
    fn write_back<const LAST: bool>(&mut self) {
        // Release fence: orders our odd `seq` before every data store below,
        // so a reader whose (Acquire-fenced) load sees one of them also sees
        // `seq` odd or later, and rejects its snapshot.
        fence(Ordering::Release);
        self.publish_redo_log();
        let s = self.snapshot + 2;
        // Release: publishes the write-back to whoever Acquire-loads `seq`.
        self.g.seq().store(s, Ordering::Release);
        self.snapshot = s;
        self.committed::<LAST>();
        if s & crate::globals::WAITING != 0 {
            self.g.wake_waiters();
        }
    }

    /// Validates the read log by value at a fresh even `seq`, and moves the
    /// snapshot there.
    ///
    /// Returns `Err(Restart)` if a logged word has another value now, or if
    /// `seq` moved under the check `VALIDATE_ROUNDS` times.
    #[cold]
    #[inline(never)]
    fn revalidate(&mut self) -> Result<(), Restart> {
        if self.doomed {
            return Err(Restart);
        }
        let backoff = Backoff::new();
        for _ in 0..VALIDATE_ROUNDS {
            let s = even_seq(self.g);
            for &(a, v) in self.logs.reads.iter() {
                // SAFETY: `a` was logged by `read` from a `&'env AtomicU64`,
                // and `'env` outlives `self`; only atomic access is made.
                let w = unsafe { &*a };
                // Relaxed: the Acquire fence below orders these before the
                // `seq` re-check (seqlock reader).
                if w.load(Ordering::Relaxed) != v {
                    return Err(Restart);
                }
            }
            // Acquire fence: as in `read`.
            fence(Ordering::Acquire);
            // Relaxed: ordered after the data loads by the fence.
            if self.g.seq().load(Ordering::Relaxed) == s {
                self.snapshot = s;
                return Ok(());
            }
            backoff.spin();
        }
        Err(Restart)
    }

    /// Like [`restart`](Self::restart), but not counted as a restart: for
    /// an attempt given up by choice (an injected rollback), not by a
    /// conflict.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    /// let mut tx = SoftTx::begin(&g);
    /// tx.write(&x, 5);
    /// tx.discard();
    /// assert!(tx.is_read_only());
    /// assert_eq!(tx.restarts(), 0);
    /// tx.commit().unwrap();
    /// assert_eq!(x.load(Ordering::Relaxed), 0);
    /// ```
    pub fn discard(&mut self) {
        self.logs.clear();
        self.fresh_snapshot();
    }

    /// A new attempt's snapshot (waiting while `seq` is odd).
    fn fresh_snapshot(&mut self) {
        let s = even_seq(self.g);
        self.snapshot = if self.stripes.is_some() {
            version(s)
        } else {
            s
        };
        self.doomed = false;
    }

    /// Forgets this attempt (both logs) and takes a fresh snapshot, waiting
    /// while `seq` is odd. The transaction stays counted in `sw_active`.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    /// let mut tx = SoftTx::begin(&g);
    /// tx.write(&x, 5);
    /// tx.restart();
    /// assert!(tx.is_read_only());
    /// assert_eq!(tx.restarts(), 1);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 1);
    /// tx.commit().unwrap();
    /// assert_eq!(x.load(Ordering::Relaxed), 0);
    /// ```
    pub fn restart(&mut self) {
        self.discard();
        self.restarts = self.restarts.saturating_add(1);
    }

    /// Opens a savepoint: a later [`rollback_to`](Self::rollback_to) undoes
    /// the writes made after it (an inner transaction of a flat-nested one
    /// that cancels), [`release`](Self::release) keeps them. The read log
    /// is kept either way: what the inner part read still has to be
    /// consistent when the whole transaction commits.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    /// let mut tx = SoftTx::begin(&g);
    /// tx.write(&x, 1);
    /// let sp = tx.savepoint();
    /// tx.write(&x, 2);
    /// tx.write(&y, 2);
    /// tx.rollback_to(sp);
    /// assert_eq!((tx.read(&x), tx.read(&y)), (Ok(1), Ok(0)));
    /// tx.commit().unwrap();
    /// assert_eq!((x.load(Ordering::Relaxed), y.load(Ordering::Relaxed)), (1, 0));
    /// ```
    pub fn savepoint(&mut self) -> Savepoint {
        Savepoint(self.logs.writes.mark())
    }

    /// Undoes the writes made since `sp` (and closes it).
    pub fn rollback_to(&mut self, sp: Savepoint) {
        self.logs
            .writes
            .roll_back(sp.0, |set, i, v| set.set_at(i, v), |_, _| {});
    }

    /// Closes `sp`, keeping the writes made since.
    pub fn release(&mut self, sp: Savepoint) {
        self.logs.writes.release(sp.0);
    }

    /// Forgets `w`, a word that goes away while this transaction runs:
    /// nothing logged about it is validated, written back or kept. For a
    /// word that only this transaction can reach (its owner drops it), so
    /// what the transaction did to it does not matter to anyone.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let keep = AtomicU64::new(0);
    /// let mut tx = SoftTx::begin(&g);
    /// {
    ///     let scratch = AtomicU64::new(1);
    ///     // (A transaction's words must outlive it; `forget` is the way out
    ///     // for one that does not, here by a raw detour.)
    ///     // SAFETY: the reference is used only inside this block, while
    ///     // `scratch` lives; `forget` drops it from the transaction's logs
    ///     // before the word goes away.
    ///     let scratch: &AtomicU64 = unsafe { &*(&scratch as *const AtomicU64) };
    ///     tx.write(scratch, 2);
    ///     tx.forget(scratch);
    /// }
    /// tx.write(&keep, 1);
    /// tx.commit().unwrap();
    /// assert_eq!(keep.load(Ordering::Relaxed), 1);
    /// ```
    #[cfg(not(loom))]
    pub fn forget(&mut self, w: &AtomicU64) {
        self.logs.forget(w);
    }

    /// Whether a read of this attempt failed: it must restart, and
    /// [`commit`](Self::commit) refuses it.
    ///
    /// ```
    /// use hytm_fallback::{Globals, Restart, SoftTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// let g = Globals::new();
    /// let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    /// let mut tx = SoftTx::begin(&g);
    /// tx.read(&x).unwrap();
    /// let mut other = SoftTx::begin(&g);
    /// other.write(&x, 1);
    /// other.commit().unwrap();
    /// // `x` changed under us: the read of `y` fails, and swallowing that
    /// // error does not let the transaction commit.
    /// assert_eq!(tx.read(&y), Err(Restart));
    /// assert!(tx.is_doomed());
    /// assert_eq!(tx.commit(), Err(Restart));
    /// ```
    #[must_use]
    pub fn is_doomed(&self) -> bool {
        self.doomed
    }

    /// Rolls this attempt back and blocks (parked, not spinning) until a
    /// word it read has another value than it read, then takes a fresh
    /// snapshot: the wait of a transaction that called `retry`. It returns
    /// at once if a read already changed (or the attempt is doomed). Not
    /// counted as a restart.
    ///
    /// Waiting keeps the transaction counted in `sw_active` (hardware
    /// writers then move `seq`, which is what wakes the waiter), and sets
    /// the waiting bit of `seq` so that every committer wakes it.
    pub fn wait_for_change(&mut self) {
        let reads = core::mem::take(&mut self.logs.reads);
        self.logs.clear();
        if !self.doomed {
            // SAFETY: the addresses came from `&'env AtomicU64`s (words, or
            // in a striped domain their records, which live as long as the
            // domain), and `'env` outlives `self`.
            unsafe { self.g.wait_for_change(&reads) };
        }
        self.logs.reads = reads;
        self.logs.reads.clear();
        self.fresh_snapshot();
    }

    /// Whether this attempt has written nothing (its commit is then free).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    /// let mut tx = SoftTx::begin(&g);
    /// tx.read(&x).unwrap();
    /// assert!(tx.is_read_only());
    /// tx.write(&x, 1);
    /// assert!(!tx.is_read_only());
    /// ```
    #[inline]
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.logs.writes.is_empty()
    }

    /// How many times [`restart`](Self::restart) was called: the count a
    /// dispatcher uses to decide when to escalate to
    /// [`SerialTx`](crate::SerialTx).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    ///
    /// let g = Globals::new();
    /// let mut tx = SoftTx::begin(&g);
    /// assert_eq!(tx.restarts(), 0);
    /// tx.restart();
    /// assert_eq!(tx.restarts(), 1);
    /// ```
    #[inline]
    #[must_use]
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The domain this transaction runs in.
    #[inline]
    #[must_use]
    pub fn globals(&self) -> &'g Globals {
        self.g
    }
}

/// Stores logged values into their words.
///
/// # Safety
///
/// Every address in `entries` must point to a live `AtomicU64` (as those of
/// a redo log do while its `SoftTx<'_, 'env>` lives: they came from
/// `&'env AtomicU64`).
#[inline(always)]
unsafe fn publish(entries: &[(Addr, u64)]) {
    for &(a, v) in entries {
        // SAFETY: the caller guarantees `a` is live; only atomic access is
        // made.
        let w = unsafe { &*a };
        // Relaxed: published by the Release store of `seq` after it.
        w.store(v, Ordering::Relaxed);
    }
}

impl Drop for SoftTx<'_, '_> {
    /// Leaves `sw_active` (exactly once: `Drop` runs once) and returns the
    /// log buffers to the thread's pool. Uncommitted writes were only in the
    /// redo log, so a transaction dropped by a panic leaves nothing behind.
    // Inline: it ends every `atomic` (a call of its own cost 9
    // instructions per transaction, callgrind).
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing touches `self.logs` after
        // this line, so taking the box out of its `ManuallyDrop` is sound.
        let mut logs = unsafe { ManuallyDrop::take(&mut self.logs) };
        // A doomed striped transaction parks its snapshot at 0: stale,
        // so still a valid hint. A hybrid one's names no domain (`begin`
        // forgot it), so no test here.
        logs.clock_hint.end(self.snapshot);
        log::give(logs);
        if self.announced {
            self.g.withdraw_software();
        }
    }
}

/// Loads `seq`, waiting while it is odd (a writer writes back or a serial
/// transaction runs).
#[inline]
fn even_seq(g: &Globals) -> u64 {
    // SeqCst (an Acquire load everywhere that matters): Acquire so the
    // data of every commit up to the value read is visible to our later
    // loads; SeqCst so that in `begin` it pairs with the SeqCst
    // increment of `sw_active` (Dekker). It costs a plain load on x86.
    let s = g.seq().load(Ordering::SeqCst);
    if s & 1 == 0 {
        return s;
    }
    wait_even(g)
}

#[cold]
#[inline(never)]
fn wait_even(g: &Globals) -> u64 {
    let backoff = Backoff::new();
    loop {
        backoff.snooze();
        // SeqCst: as in `even_seq`.
        let s = g.seq().load(Ordering::SeqCst);
        if s & 1 == 0 {
            return s;
        }
    }
}

impl fmt::Debug for SoftTx<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftTx")
            .field("snapshot", &self.snapshot)
            .field("reads", &self.logs.reads.len())
            .field("writes", &self.logs.writes.entries().len())
            .field("restarts", &self.restarts)
            .field("striped", &self.stripes.is_some())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_writer_does_not_wait_without_bound_for_queued_serial_transactions() {
        // A serial ticket taken and never served: to a software writer it
        // looks like an endless stream of serial transactions (serial
        // pending, `seq` even and free). Its commit must go ahead after a
        // bounded wait, not wait for the queue to drain.
        static G: Globals = Globals::new();
        static X: AtomicU64 = AtomicU64::new(0);
        let _ticket = G.serial_ticket();
        assert!(G.serial_pending());
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = SoftTx::begin(&G);
            tx.write(&X, 1);
            done_tx.send(tx.commit()).unwrap();
        });
        let r = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the commit waited for the serial queue without bound");
        assert_eq!(r, Ok(()));
        assert_eq!(X.load(Ordering::Relaxed), 1);
    }
}
