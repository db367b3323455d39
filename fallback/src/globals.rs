//! The shared metadata of the hybrid protocol: one [`Globals`] per
//! transactional domain (in hytm, one `static`).

use core::fmt;

use crossbeam_utils::CachePadded;

use crate::striped::Stripes;
use crate::sync::{AtomicU64, Backoff, Ordering};

/// The waiting bit of `seq` (bit 62): set while a transaction waits in
/// `Globals::wait_for_change`. Every committer that took `seq` with the
/// bit set wakes the waiters after it releases `seq`; committers never
/// touch the bit, waiters set and clear it (only while `seq` is even).
pub(crate) const WAITING: u64 = 1 << 62;

/// The longest a waiter sleeps before it rechecks on its own: a backstop
/// only (every commit whose `seq` carries the waiting bit wakes the
/// waiters: software and serial committers at once, hardware ones after
/// `xend`), against a waker this crate cannot see.
const BACKSTOP: std::time::Duration = std::time::Duration::from_millis(100);

/// The shared words of one transactional domain: the NOrec sequence lock
/// `seq`, the software-activity counter `sw_active`, and the ticket lock
/// that queues serial-irrevocable transactions.
///
/// Every transaction of a domain (hardware, [`SoftTx`], [`SerialTx`]) must use
/// the same `Globals`. Each word sits in its own [`CachePadded`] slot: `seq`
/// is read by every software read, `sw_active` is written by every software
/// begin and end, and neither should drag the other's cache line along.
///
/// # The words
///
/// `seq` (the NOrec sequence lock):
///
/// | bits   | meaning |
/// | ------ | ------- |
/// | 0      | 1: a software writer is writing back its redo log, or a serial transaction runs. Nobody else commits; software readers wait; hardware transactions that see it abort (`0xfe`). |
/// | 61..1  | commit counter: +1 per software writer commit (CAS `s -> s+1`, write back, store `s+2`), per serial transaction (CAS `s -> s+1`, run, store `s+2`), and per hardware transaction that wrote while `sw_active != 0` (it adds 2 inside the transaction). |
/// | 62     | waiting ([`Globals::WAITING`]): a transaction is blocked in `retry` ([`SoftTx::wait_for_change`](crate::SoftTx::wait_for_change), [`SerialTx::wait_for_change`](crate::SerialTx::wait_for_change)). Set and cleared by waiters only, while `seq` is even; carried along by every commit, whose committer then wakes the waiters after releasing `seq`. |
///
/// In a software-only (striped) domain `seq` is also the version clock of
/// the ownership records (see [`Globals::is_striped`]): bit 0 is set while
/// a writer locks its records (not through its write-back) or a serial
/// transaction runs, and the counter moves by one per writing commit.
///
/// Invariants: only the thread that made `seq` odd makes it even again;
/// the commit counter never decreases (2^61 commits to wrap), and `seq`
/// changes only by commits and by the waiting bit; while it is odd the only
/// stores to transactional words are the holder's; every state change of a
/// transactional word made while `sw_active != 0` moves `seq`.
///
/// `sw_active` (software activity):
///
/// | bits   | meaning |
/// | ------ | ------- |
/// | 63..0  | number of live [`SoftTx`] plus [`SerialTx`] (serial ones count from the start of `begin`, while they queue). |
///
/// Invariants: a transaction increments it before it takes its first `seq`
/// snapshot (SeqCst, see [`SoftTx::begin`]) and decrements it exactly once,
/// in `Drop`. While it is 0, hardware transactions touch no metadata but
/// this word; the increment writes the cache line every running hardware
/// transaction has read, which aborts them all.
///
/// The serial ticket lock (`serial_next`, `serial_serving`, one line): a
/// serial transaction takes ticket `t = serial_next++` and waits for
/// `serial_serving == t`, so serial transactions run in FIFO order. While
/// `serial_next != serial_serving` a serial transaction is queued or running,
/// and software writers hold back from the `seq` CAS, so the queued one wins
/// `seq` after at most the one writer already writing back.
///
/// # Examples
///
/// ```
/// use hytm_fallback::{Globals, SoftTx};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// static G: Globals = Globals::new();
/// static X: AtomicU64 = AtomicU64::new(1);
///
/// let mut tx = SoftTx::begin(&G);
/// assert_eq!(G.sw_active().load(Ordering::Relaxed), 1);
/// let x = tx.read(&X).unwrap();
/// tx.write(&X, x + 1);
/// tx.commit().unwrap();
/// drop(tx);
/// assert_eq!(X.load(Ordering::Relaxed), 2);
/// assert_eq!(G.seq().load(Ordering::Relaxed), 2); // one writer commit
/// assert_eq!(G.sw_active().load(Ordering::Relaxed), 0);
/// ```
///
/// [`SoftTx`]: crate::SoftTx
/// [`SoftTx::begin`]: crate::SoftTx::begin
/// [`SerialTx`]: crate::SerialTx
pub struct Globals {
    seq: CachePadded<AtomicU64>,
    sw_active: CachePadded<AtomicU64>,
    serial: CachePadded<Tickets>,
    /// Transactions blocked in `retry`: their number, and where they sleep.
    parked: CachePadded<(std::sync::Mutex<u64>, std::sync::Condvar)>,
    /// The ownership records of a software-only domain (see `striped.rs`),
    /// allocated by its first transaction begun without hardware.
    stripes: std::sync::OnceLock<Stripes>,
}

/// The serial ticket lock; both words share a line, as in any ticket lock.
struct Tickets {
    next: AtomicU64,
    serving: AtomicU64,
}

impl Globals {
    /// Creates the metadata of a fresh domain: `seq` 0 (even, no commits),
    /// `sw_active` 0.
    ///
    /// It is `const`, so a domain can be a `static`. (Under `cfg(loom)` it
    /// is not, because loom's atomics cannot be built in const context.)
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::Globals;
    ///
    /// static G: Globals = Globals::new();
    /// assert_eq!(G.seq().load(std::sync::atomic::Ordering::Relaxed), 0);
    /// ```
    #[cfg(not(loom))]
    #[must_use]
    pub const fn new() -> Self {
        Globals {
            seq: CachePadded::new(AtomicU64::new(0)),
            sw_active: CachePadded::new(AtomicU64::new(0)),
            serial: CachePadded::new(Tickets {
                next: AtomicU64::new(0),
                serving: AtomicU64::new(0),
            }),
            parked: CachePadded::new((std::sync::Mutex::new(0), std::sync::Condvar::new())),
            stripes: std::sync::OnceLock::new(),
        }
    }

    /// Creates the metadata of a fresh domain (loom build: not `const`).
    #[cfg(loom)]
    #[must_use]
    pub fn new() -> Self {
        Globals {
            seq: CachePadded::new(AtomicU64::new(0)),
            sw_active: CachePadded::new(AtomicU64::new(0)),
            serial: CachePadded::new(Tickets {
                next: AtomicU64::new(0),
                serving: AtomicU64::new(0),
            }),
            parked: CachePadded::new((std::sync::Mutex::new(0), std::sync::Condvar::new())),
            stripes: std::sync::OnceLock::new(),
        }
    }

    /// The NOrec sequence lock: odd while a software writer writes back or a
    /// serial transaction runs. See the table in the [type docs](Globals).
    ///
    /// The hardware path reads it right after `xbegin` when `sw_active` is
    /// non-zero (abort if odd) and adds 2 to it before `xend` if it wrote.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::Ordering;
    ///
    /// let g = Globals::new();
    /// let tx = SerialTx::begin(&g);
    /// assert_eq!(g.seq().load(Ordering::Relaxed) % 2, 1); // held
    /// tx.commit();
    /// assert_eq!(g.seq().load(Ordering::Relaxed), 2);
    /// ```
    #[inline]
    #[must_use]
    pub fn seq(&self) -> &AtomicU64 {
        &self.seq
    }

    /// The number of software and serial transactions in flight. The
    /// hardware path reads it right after `xbegin`; 0 means it need not
    /// touch `seq` at all.
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
    /// drop(tx);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// ```
    #[inline]
    #[must_use]
    pub fn sw_active(&self) -> &AtomicU64 {
        &self.sw_active
    }

    /// Counts a software or serial transaction in `sw_active`, before it
    /// reads `seq` or any word.
    ///
    /// SeqCst: this store is followed by loads of other locations (the
    /// `seq` snapshot, then the words): a Dekker pattern against hardware
    /// transactions, which read `sw_active` first. Only a SeqCst RMW (a full
    /// barrier, `lock xadd` on x86) keeps the increment from being ordered
    /// after those loads; with it, any hardware transaction that can still
    /// commit without moving `seq` committed before the snapshot. The
    /// increment also aborts the hardware transactions in flight, and later
    /// ones then watch `seq`.
    #[inline]
    pub(crate) fn announce_software(&self) {
        self.sw_active.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends what [`announce_software`](Self::announce_software) began.
    ///
    /// Release: a hardware transaction that then reads 0 skips `seq`; the
    /// leaving transaction's writes (already published through `seq`) are
    /// ordered before.
    #[inline]
    pub(crate) fn withdraw_software(&self) {
        self.sw_active.fetch_sub(1, Ordering::Release);
    }

    /// The ownership records, if the domain is software-only.
    #[inline]
    pub(crate) fn stripes(&self) -> Option<&Stripes> {
        self.stripes.get()
    }

    /// The ownership records, allocated at the first call: the domain is
    /// software-only from then on.
    #[inline]
    pub(crate) fn stripes_or_init(&self) -> &Stripes {
        self.stripes.get_or_init(Stripes::new)
    }

    /// Whether this domain is software-only: a transaction was begun in it
    /// without hardware ([`SoftTx::begin_without_hardware`]), so its
    /// software transactions follow the striped protocol (ownership
    /// records and a version clock) rather than NOrec.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    ///
    /// let g = Globals::new();
    /// assert!(!g.is_striped());
    /// drop(SoftTx::begin_without_hardware(&g));
    /// assert!(g.is_striped());
    /// ```
    ///
    /// [`SoftTx::begin_without_hardware`]: crate::SoftTx::begin_without_hardware
    #[must_use]
    pub fn is_striped(&self) -> bool {
        self.stripes.get().is_some()
    }

    /// Reads a word outside any transaction: its last committed value, never
    /// a value a running write-back or serial transaction may still undo or
    /// complete. Waits while a commit to it is in flight (in a hybrid
    /// domain, while `seq` is odd); `own_serial` says whether the calling
    /// thread itself runs the serial transaction (it then reads in place,
    /// since waiting would be for itself). Asked only when that matters.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SoftTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(1);
    /// let mut tx = SoftTx::begin_without_hardware(&g);
    /// tx.write(&x, 2);
    /// assert_eq!(g.load_committed(&x, || false), 1);
    /// tx.commit().unwrap();
    /// assert_eq!(g.load_committed(&x, || false), 2);
    /// ```
    pub fn load_committed(&self, w: &AtomicU64, own_serial: impl Fn() -> bool) -> u64 {
        let backoff = Backoff::new();
        loop {
            if let Some(stripes) = self.stripes() {
                // The clock first (seqlock order): a version no newer than
                // an even clock read before the word belongs to a finished
                // commit; anything that writes the word after this load
                // marks or locks its record first, which the pair check
                // below sees. (Read after the word, a clock could come from
                // after a serial transaction rolled back what we read.)
                // Acquire: the write-backs up to `clock` are visible.
                let clock = self.seq.load(Ordering::Acquire);
                if clock & 1 == 1 {
                    if own_serial() {
                        // Our own serial transaction: nobody else writes,
                        // our writes are in place. Relaxed: only this
                        // thread writes the word now.
                        return w.load(Ordering::Relaxed);
                    }
                } else {
                    let record = crate::striped::record(stripes.records(), w);
                    if let Some((o, v)) = crate::striped::read_pair(record, w) {
                        if o & crate::striped::LOCKED == 0 && o <= crate::striped::version(clock) {
                            return v;
                        }
                    }
                }
            } else {
                // Acquire: the writes of every commit up to `before` are
                // visible to the load below (seqlock reader).
                let before = self.seq.load(Ordering::Acquire);
                if before & 1 == 1 && own_serial() {
                    // This thread's own serial transaction holds `seq` odd:
                    // nobody else writes now, and our own writes are in
                    // place: the value is current.
                    // Relaxed: as above.
                    return w.load(Ordering::Relaxed);
                }
                if before & 1 == 0 {
                    // Relaxed, then an Acquire fence before re-reading
                    // `seq`: if a writer's store reached us, so did its odd
                    // `seq`.
                    let v = w.load(Ordering::Relaxed);
                    crate::sync::fence(Ordering::Acquire);
                    if self.seq.load(Ordering::Relaxed) == before {
                        return v;
                    }
                }
            }
            backoff.snooze();
        }
    }

    /// Takes `seq` odd from the even value `s` (one CAS, `s -> s + 1`):
    /// the commit lock of NOrec, the striped clock, and the serial
    /// transaction's lock are all this one step. `Err` with the value
    /// found if `seq` was not `s`.
    ///
    /// Acquire on success: the taker takes over from the last release of
    /// `seq`, so every earlier commit's writes happen before what it reads
    /// and writes next. Relaxed on failure: the value found is only a guess
    /// for the caller's next try (every caller reads `seq` again, validates,
    /// or tries at that value, before it relies on anything).
    #[inline(always)]
    pub(crate) fn try_take_seq(&self, s: u64) -> Result<(), u64> {
        self.seq
            .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            .map(drop)
    }

    /// Whether a serial transaction is queued or running: software writers
    /// then hold back from the commit CAS so the serial one gets `seq`.
    #[inline]
    pub(crate) fn serial_pending(&self) -> bool {
        // Relaxed: a progress hint only; safety never depends on it (a stale
        // answer costs one lost race or one needless wait, nothing more).
        self.serial.next.load(Ordering::Relaxed) != self.serial.serving.load(Ordering::Relaxed)
    }

    /// Before a software writer competes for `seq`: queued serial
    /// transactions go first, but the wait is bounded, since a stream of
    /// them would starve the writer. After it the writer competes; if it
    /// keeps losing, its caller sees `Restart` and escalates to the (FIFO)
    /// serial queue itself.
    pub(crate) fn let_queued_serial_go_first(&self) {
        let waiting = Backoff::new();
        while self.serial_pending() && !waiting.is_completed() {
            waiting.snooze();
        }
    }

    /// Takes the next serial ticket.
    pub(crate) fn serial_ticket(&self) -> u64 {
        // Relaxed: the ticket is only an order; what the previous holder
        // wrote is published through `serial_serving` (Release/Acquire)
        // and through `seq`.
        self.serial.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The ticket now allowed to run.
    pub(crate) fn serial_serving(&self) -> u64 {
        // Acquire: pairs with the Release in `serial_done`, so the previous
        // serial transaction happened before ours.
        self.serial.serving.load(Ordering::Acquire)
    }

    /// Lets the next serial ticket run; called by the holder of `ticket`.
    pub(crate) fn serial_done(&self, ticket: u64) {
        // Release: orders the whole serial transaction (and its `seq`
        // release) before the next holder's Acquire of this word.
        self.serial
            .serving
            .store(ticket.wrapping_add(1), Ordering::Release);
    }
}

impl Globals {
    /// The waiting bit of `seq`: set while a transaction is blocked in a
    /// `retry`. A committer whose `seq` value has it calls
    /// [`wake_waiters`](Self::wake_waiters) after its commit (a hardware
    /// transaction, after `xend`).
    pub const WAITING: u64 = WAITING;

    /// Wakes every transaction blocked in a `wait_for_change` (of
    /// [`SoftTx`](crate::SoftTx) or [`SerialTx`](crate::SerialTx)): called by a
    /// committer whose `seq` carried the waiting bit, after it released
    /// `seq`.
    #[cold]
    #[inline(never)]
    pub fn wake_waiters(&self) {
        // Taking the lock orders this wake after a waiter's check of `seq`
        // under it, or the waiter's check after our release of `seq`.
        let _g = self.parked.0.lock().unwrap_or_else(|e| e.into_inner());
        self.parked.1.notify_all();
    }

    /// Blocks until a word of `reads` holds another value than logged
    /// there. The caller is counted in `sw_active` (where hardware exists)
    /// for the whole wait, so hardware writers move `seq`.
    ///
    /// # Safety
    ///
    /// Every address in `reads` must point to a live word for the call.
    pub(crate) unsafe fn wait_for_change(&self, reads: &[(crate::log::Addr, u64)]) {
        let (lock, cv) = &*self.parked;
        let mut waiters = lock.lock().unwrap_or_else(|e| e.into_inner());
        *waiters += 1;
        if *waiters == 1 {
            self.set_waiting(true);
        }
        loop {
            // SeqCst: as in `even_seq`; read under the lock, so a commit
            // after it wakes us (it takes the lock to notify).
            let s = self.seq.load(Ordering::SeqCst);
            if s & 1 == 0 {
                // SAFETY: the caller keeps the words live.
                let changed = reads
                    .iter()
                    .any(|&(a, v)| unsafe { &*a }.load(Ordering::Relaxed) != v);
                crate::sync::fence(Ordering::Acquire);
                if changed {
                    break;
                }
                if self.seq.load(Ordering::Relaxed) != s {
                    continue;
                }
            }
            // Sleep until a commit moves `seq` (an odd `seq` was taken with
            // the waiting bit set, so its release wakes us too).
            while self.seq.load(Ordering::SeqCst) == s {
                let (g, timeout) = cv
                    .wait_timeout(waiters, BACKSTOP)
                    .unwrap_or_else(|e| e.into_inner());
                waiters = g;
                if timeout.timed_out() {
                    break;
                }
            }
        }
        *waiters -= 1;
        if *waiters == 0 {
            self.set_waiting(false);
        }
    }

    /// Sets or clears the waiting bit of `seq`, waiting for an even `seq`.
    fn set_waiting(&self, on: bool) {
        let backoff = Backoff::new();
        loop {
            // Relaxed: a guess for the CAS.
            let s = self.seq.load(Ordering::Relaxed);
            let want = if on { s | WAITING } else { s & !WAITING };
            if s & 1 == 1 {
                backoff.snooze();
                continue;
            }
            // SeqCst: the bit must be in `seq` before the waiter checks its
            // reads, so that every later commit sees it.
            if s == want
                || self
                    .seq
                    .compare_exchange(s, want, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            backoff.spin();
        }
    }
}

impl Default for Globals {
    /// Same as [`Globals::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Globals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a diagnostic snapshot, not synchronisation.
        let r = Ordering::Relaxed;
        f.debug_struct("Globals")
            .field("seq", &self.seq.load(r))
            .field("sw_active", &self.sw_active.load(r))
            .field("serial_next", &self.serial.next.load(r))
            .field("serial_serving", &self.serial.serving.load(r))
            .finish_non_exhaustive()
    }
}
