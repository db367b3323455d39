//! The serial-irrevocable mode: one transaction at a time holds `seq` odd and
//! works directly on memory. It is the last resort after repeated software
//! restarts, and the mode for work that cannot be undone.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use crate::log::{self, Addr, LogBox};
use crate::striped::{self, Records};
use crate::sync::{fence, AtomicU64, Backoff, Ordering};
use crate::Globals;

/// A serial-irrevocable transaction: while it lives, `seq` is odd, so no
/// other software, serial or hardware transaction commits, and it reads and
/// writes memory directly. It cannot fail or restart.
///
/// Serial transactions queue in FIFO order (a ticket lock in [`Globals`]),
/// and software writers let a queued one take `seq` first, so it starts
/// after at most the write-backs already under way and the serial
/// transactions ahead of it.
///
/// If it is dropped without [`commit`](SerialTx::commit) (a panic, or an
/// early drop), its writes are undone from the undo log, in reverse order,
/// before `seq` is released: a panicking serial transaction leaves no
/// partial writes. (Effects outside the transactional words, such as I/O,
/// are of course not undone.)
///
/// It is neither `Send` nor `Sync`. Do not begin a [`SoftTx`](crate::SoftTx)
/// or a second `SerialTx` of the same domain on the thread that holds one:
/// they would wait for it forever.
///
/// # Examples
///
/// ```
/// use hytm_fallback::{Globals, SerialTx};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// static G: Globals = Globals::new();
/// static X: AtomicU64 = AtomicU64::new(0);
///
/// let ts: Vec<_> = (0..4)
///     .map(|_| {
///         std::thread::spawn(|| {
///             let mut tx = SerialTx::begin(&G);
///             let x = tx.read(&X);
///             tx.write(&X, x + 1);
///             tx.commit();
///         })
///     })
///     .collect();
/// for t in ts {
///     t.join().unwrap();
/// }
/// assert_eq!(X.load(Ordering::Relaxed), 4);
/// assert_eq!(G.seq().load(Ordering::Relaxed), 8); // 4 serial commits
/// ```
pub struct SerialTx<'g, 'env> {
    g: &'g Globals,
    /// The odd `seq` value we installed.
    odd: u64,
    /// Our serial ticket, released on drop.
    ticket: u64,
    committed: bool,
    /// Whether this transaction counts itself in `sw_active`.
    announced: bool,
    /// The domain's ownership records when it is software-only: the
    /// transaction then marks the record of every word it writes with the
    /// version it will release, before the write; see `striped.rs`.
    stripes: Option<&'g Records>,
    /// Undo log in `logs.writes`: first value of every word written, from a
    /// `&'env AtomicU64`.
    logs: ManuallyDrop<LogBox>,
    _env: PhantomData<&'env AtomicU64>,
}

impl<'g, 'env> SerialTx<'g, 'env> {
    /// Starts a serial transaction: increments `sw_active`, waits for its
    /// serial ticket, then makes `seq` odd by a CAS from an even value
    /// (waiting while another writer holds it). From then on no other
    /// transaction of the domain commits until this one ends.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::Ordering;
    ///
    /// let g = Globals::new();
    /// let tx = SerialTx::begin(&g);
    /// assert_eq!(g.seq().load(Ordering::Relaxed), 1);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 1);
    /// drop(tx);
    /// assert_eq!(g.seq().load(Ordering::Relaxed), 2);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// ```
    #[must_use]
    pub fn begin(g: &'g Globals) -> Self {
        Self::begin_for(g, true)
    }

    /// Starts a serial transaction of a software-only domain: it does not
    /// announce itself in `sw_active`, and it follows the striped protocol;
    /// see [`SoftTx::begin_without_hardware`](crate::SoftTx::begin_without_hardware).
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::Ordering;
    ///
    /// let g = Globals::new();
    /// let tx = SerialTx::begin_without_hardware(&g);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// tx.commit();
    /// assert_eq!(g.seq().load(Ordering::Relaxed), 2);
    /// ```
    #[must_use]
    pub fn begin_without_hardware(g: &'g Globals) -> Self {
        Self::begin_for(g, false)
    }

    /// [`begin`](Self::begin) when `hardware` is true, else
    /// [`begin_without_hardware`](Self::begin_without_hardware): one
    /// constructor for a dispatcher that decides at run time, so that the
    /// transaction is built in place.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::Ordering;
    ///
    /// let g = Globals::new();
    /// let tx = SerialTx::begin_for(&g, true);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 1);
    /// drop(tx);
    /// assert_eq!(g.sw_active().load(Ordering::Relaxed), 0);
    /// ```
    #[inline]
    #[must_use]
    pub fn begin_for(g: &'g Globals, hardware: bool) -> Self {
        let stripes = if hardware {
            g.announce_software();
            None
        } else {
            Some(g.stripes_or_init().records())
        };
        Self::start(g, hardware, stripes)
    }

    // Inline, with the waiting out of line: the value is then built in
    // place in the caller's `Tx` instead of being copied there.
    #[inline]
    fn start(g: &'g Globals, announced: bool, stripes: Option<&'g Records>) -> Self {
        let ticket = g.serial_ticket();
        if g.serial_serving() != ticket {
            wait_for_turn(g, ticket);
        }
        let odd = lock_seq(g);
        // Release fence: orders the odd `seq` before our direct data stores,
        // so a software reader whose load sees one of them also sees `seq`
        // odd or later, and rejects its snapshot.
        fence(Ordering::Release);
        SerialTx {
            g,
            odd,
            ticket,
            committed: false,
            announced,
            stripes,
            logs: ManuallyDrop::new(log::take()),
            _env: PhantomData,
        }
    }

    /// Reads a word directly.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::AtomicU64;
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(3);
    /// let mut tx = SerialTx::begin(&g);
    /// assert_eq!(tx.read(&x), 3);
    /// ```
    #[inline]
    pub fn read(&mut self, w: &'env AtomicU64) -> u64 {
        if let Some(stripes) = self.stripes {
            striped::wait_for_serial_read(stripes, w);
        }
        // Relaxed: nobody else stores while we hold `seq` odd, and our
        // Acquire CAS made all earlier commits visible.
        let v = w.load(Ordering::Relaxed);
        // Logged for `wait_for_change` (a blocking retry waits on what the
        // transaction read).
        self.logs.reads.push((w, v));
        v
    }

    /// Writes a word directly, saving its old value in the undo log the
    /// first time this transaction writes it.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(3);
    /// let mut tx = SerialTx::begin(&g);
    /// tx.write(&x, 4);
    /// assert_eq!(x.load(Ordering::Relaxed), 4); // direct
    /// drop(tx); // not committed: undone
    /// assert_eq!(x.load(Ordering::Relaxed), 3);
    /// ```
    #[inline]
    pub fn write(&mut self, w: &'env AtomicU64, v: u64) {
        let a: Addr = w;
        if let Some(stripes) = self.stripes {
            // Holding the clock odd, nobody else writes: readers that see
            // the in-place write see this newer version and wait for the
            // clock.
            striped::mark_for_serial(stripes, a, striped::version(self.odd + 1));
        }
        match self.logs.writes.position(a) {
            None => {
                // Relaxed: as in `read`.
                let old = w.load(Ordering::Relaxed);
                self.logs.writes.push_new(a, old);
            }
            Some(i) if self.logs.writes.protected(i) => {
                // Written before the innermost savepoint: keep its value
                // there for a rollback to it. Relaxed: as in `read`.
                let now = w.load(Ordering::Relaxed);
                self.logs.writes.save(a as usize, now);
            }
            Some(_) => {}
        }
        // Relaxed: published by the Release store of `seq` when we end; a
        // reader that sees it early is caught by the Release fence in `begin`.
        w.store(v, Ordering::Relaxed);
    }

    /// Commits: releases `seq` at odd + 1 (even, a new value, so every
    /// software reader revalidates) and leaves `sw_active`. The writes are
    /// already in memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let x = AtomicU64::new(0);
    /// let mut tx = SerialTx::begin(&g);
    /// tx.write(&x, 9);
    /// tx.commit();
    /// assert_eq!(x.load(Ordering::Relaxed), 9);
    /// assert_eq!(g.seq().load(Ordering::Relaxed), 2);
    /// ```
    pub fn commit(mut self) {
        self.committed = true;
        // `Drop` releases.
    }

    /// Opens a savepoint: [`rollback_to`](Self::rollback_to) restores every
    /// word written after it to its value at the savepoint,
    /// [`release`](Self::release) keeps the writes.
    ///
    /// ```
    /// use hytm_fallback::{Globals, SerialTx};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let g = Globals::new();
    /// let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    /// let mut tx = SerialTx::begin(&g);
    /// tx.write(&x, 1);
    /// let sp = tx.savepoint();
    /// tx.write(&x, 2);
    /// tx.write(&y, 2);
    /// tx.rollback_to(sp);
    /// assert_eq!((tx.read(&x), tx.read(&y)), (1, 0));
    /// tx.commit();
    /// assert_eq!(x.load(Ordering::Relaxed), 1);
    /// ```
    pub fn savepoint(&mut self) -> crate::norec::Savepoint {
        crate::norec::Savepoint(self.logs.writes.mark())
    }

    /// Restores the words written since `sp` (and closes it).
    pub fn rollback_to(&mut self, sp: crate::norec::Savepoint) {
        let restore = |_: &mut crate::log::WriteSet, a: usize, v: u64| {
            // SAFETY: `a` was saved by `write` from a `&'env AtomicU64`,
            // and `'env` outlives `self`; only atomic access is made.
            let w = unsafe { &*(a as Addr) };
            // Relaxed: as in `write`.
            w.store(v, Ordering::Relaxed);
        };
        let dropped = |a: Addr, old: u64| {
            // SAFETY: as above, from the undo log.
            let w = unsafe { &*a };
            // Relaxed: as in `write`.
            w.store(old, Ordering::Relaxed);
        };
        self.logs.writes.roll_back(sp.0, restore, dropped);
    }

    /// Closes `sp`, keeping the writes made since.
    pub fn release(&mut self, sp: crate::norec::Savepoint) {
        self.logs.writes.release(sp.0);
    }

    /// Rolls the transaction back, ends it (so others run), and blocks,
    /// parked, until a word it read has another value than it read: the
    /// wait of a serial transaction that called `retry`. Begin a new one
    /// afterwards.
    pub fn wait_for_change(mut self) {
        let reads = core::mem::take(&mut self.logs.reads);
        let (g, announced) = (self.g, self.announced);
        drop(self);
        if announced {
            // Counted while waiting, so that hardware writers move `seq`.
            g.announce_software();
        }
        // SAFETY: the addresses came from `&'env AtomicU64`s, still live
        // (`'env` outlives this call).
        unsafe { g.wait_for_change(&reads) };
        if announced {
            g.withdraw_software();
        }
    }

    /// Forgets `w`, a word that goes away while this transaction runs: the
    /// undo log no longer restores it (nor a savepoint). See
    /// [`SoftTx::forget`](crate::SoftTx::forget).
    #[cfg(not(loom))]
    pub fn forget(&mut self, w: &AtomicU64) {
        self.logs.forget(w);
    }

    /// Restores every written word to its first value, newest first.
    #[cold]
    fn roll_back(&mut self) {
        for &(a, old) in self.logs.writes.entries().iter().rev() {
            // SAFETY: `a` was logged by `write` from a `&'env AtomicU64`, and
            // a `SerialTx<'_, 'env>` (being dropped now) never outlives
            // `'env`; only atomic access is made.
            let w = unsafe { &*a };
            // Relaxed: published by the Release store of `seq` in `drop`.
            w.store(old, Ordering::Relaxed);
        }
    }
}

/// Waits until the serial queue serves `ticket`.
#[cold]
#[inline(never)]
fn wait_for_turn(g: &Globals, ticket: u64) {
    let backoff = Backoff::new();
    while g.serial_serving() != ticket {
        backoff.snooze();
    }
}

/// Takes `seq` (even to odd) for a serial transaction; returns the odd value.
#[inline]
fn lock_seq(g: &Globals) -> u64 {
    // Relaxed: only a guess for the CAS, which decides.
    let s = g.seq().load(Ordering::Relaxed);
    if s & 1 == 0 && g.try_take_seq(s).is_ok() {
        return s + 1;
    }
    lock_seq_slow(g)
}

#[cold]
#[inline(never)]
fn lock_seq_slow(g: &Globals) -> u64 {
    let backoff = Backoff::new();
    loop {
        // Relaxed: as in `lock_seq`.
        let s = g.seq().load(Ordering::Relaxed);
        if s & 1 == 1 {
            backoff.snooze();
            continue;
        }
        if g.try_take_seq(s).is_ok() {
            return s + 1;
        }
        backoff.spin();
    }
}

impl Drop for SerialTx<'_, '_> {
    /// Undoes the writes unless committed, then releases `seq` (odd + 1,
    /// never back to the old value, so a reader that glimpsed an undone
    /// write still revalidates), the serial ticket, and `sw_active`.
    fn drop(&mut self) {
        if !self.committed {
            self.roll_back();
        }
        // SAFETY: `drop` runs once and nothing touches `self.logs` after
        // this line, so taking the box out of its `ManuallyDrop` is sound.
        let logs = unsafe { ManuallyDrop::take(&mut self.logs) };
        log::give(logs);
        // Release: publishes our writes (or the undo) to every Acquire load
        // of `seq`.
        self.g.seq().store(self.odd + 1, Ordering::Release);
        self.g.serial_done(self.ticket);
        if self.announced {
            self.g.withdraw_software();
        }
        if self.odd & crate::globals::WAITING != 0 {
            self.g.wake_waiters();
        }
    }
}

impl fmt::Debug for SerialTx<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialTx")
            .field("seq", &self.odd)
            .field("ticket", &self.ticket)
            .field("writes", &self.logs.writes.entries().len())
            .finish()
    }
}
