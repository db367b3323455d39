//! Hybrid transactional memory: [`TCell`], [`Tx`] and [`atomic`], the
//! dispatcher that runs one closure as an RTM transaction, as a NOrec
//! software transaction, or serially, by the policy.
//!
//! The hybrid protocol (docs/design.md, Hybrid NOrec with a software-activity
//! counter): a hardware transaction reads `sw_active` right after `xbegin`;
//! if it is non-zero it also reads `seq` and aborts (`0xfe`) if `seq` is odd;
//! it then reads and writes the cells directly, and if `sw_active` was
//! non-zero and it wrote, it adds 2 to `seq` before `xend`. With no software
//! transaction in flight, a hardware transaction touches no shared metadata
//! but the `sw_active` line it only reads. The software side lives in the
//! `hytm-fallback` crate.

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use hytm_fallback::{AtomicU64, Globals, Restart, SerialTx, SoftTx};

use crate::attempt::{self, AdaptiveWord, Entered, GaveUp, Resource};
use crate::policy::{FallbackKind, Policy};
use crate::rtm::{code, Rtm};
use crate::runtime::{runtime, Runtime};
use crate::stats::{self, Execution, Outcome, SiteId, SiteKind};

/// The one transactional domain: every `TCell` and every path shares it.
static GLOBALS: Globals = Globals::new();

/// Software restarts after which a transaction runs serially. NOrec restarts
/// only when another transaction committed a conflicting write, so a few in
/// a row mean real contention; 8 bounds the wasted work near what one
/// serial run costs the other threads.
const SERIAL_AFTER_RESTARTS: u32 = 8;

/// A value that fits in one 64-bit word, so a [`TCell`] can store it
/// atomically.
///
/// `from_bits` only ever receives what `to_bits` produced for the same type.
///
/// ```
/// use hytm::Word;
/// #[derive(Clone, Copy, PartialEq, Debug)]
/// struct Pair(u32, u32);
/// impl Word for Pair {
///     fn to_bits(self) -> u64 { (u64::from(self.0) << 32) | u64::from(self.1) }
///     fn from_bits(bits: u64) -> Self { Pair((bits >> 32) as u32, bits as u32) }
/// }
/// let c = hytm::TCell::new(Pair(1, 2));
/// assert_eq!(c.load(), Pair(1, 2));
/// ```
pub trait Word: Copy {
    /// The value as a bit pattern.
    fn to_bits(self) -> u64;
    /// The value back from a bit pattern made by [`Word::to_bits`].
    fn from_bits(bits: u64) -> Self;
}

macro_rules! int_word {
    ($($t:ty),*) => {$(
        impl Word for $t {
            #[inline]
            fn to_bits(self) -> u64 {
                self as u64
            }
            #[inline]
            fn from_bits(bits: u64) -> Self {
                bits as $t
            }
        }
    )*};
}

int_word!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl Word for bool {
    #[inline]
    fn to_bits(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        bits != 0
    }
}

impl Word for f64 {
    #[inline]
    fn to_bits(self) -> u64 {
        f64::to_bits(self)
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        f64::from_bits(bits)
    }
}

impl Word for f32 {
    #[inline]
    fn to_bits(self) -> u64 {
        u64::from(f32::to_bits(self))
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
}

impl Word for char {
    #[inline]
    fn to_bits(self) -> u64 {
        u64::from(u32::from(self))
    }
    #[inline]
    fn from_bits(bits: u64) -> Self {
        // Only bits made by to_bits reach here, so this never falls back.
        char::from_u32(bits as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// A transactional cell holding one word-sized value.
///
/// Read and write it inside [`atomic`]; outside, [`TCell::load`] reads it
/// without a transaction. Storage is an `AtomicU64`, so software readers
/// never race in the Rust memory model, and a hardware transaction accesses
/// it with plain loads and stores.
///
/// ```
/// let balance = hytm::TCell::new(100i64);
/// hytm::atomic(|tx| {
///     let b = tx.read(&balance)?;
///     tx.write(&balance, b - 30)
/// });
/// assert_eq!(balance.load(), 70);
/// ```
pub struct TCell<T: Word> {
    word: AtomicU64,
    _value: PhantomData<T>,
}

impl<T: Word> TCell<T> {
    /// A new cell.
    pub fn new(value: T) -> TCell<T> {
        TCell {
            word: AtomicU64::new(value.to_bits()),
            _value: PhantomData,
        }
    }

    /// Reads the value outside any transaction. Each call sees one
    /// committed value of this cell (it waits out a software write-back or
    /// a serial transaction, whose writes may still be undone), but two
    /// calls may straddle a commit: read several cells consistently inside
    /// [`atomic`].
    ///
    /// ```
    /// let c = hytm::TCell::new('x');
    /// assert_eq!(c.load(), 'x');
    /// ```
    #[inline]
    pub fn load(&self) -> T {
        #[cfg(hytm_model)]
        if hytm_fallback::model::test() {
            // Inside a model transaction the load is transactional, hence
            // consistent; waiting for an even `seq` there could wait on a
            // serial transaction that the model lock keeps from finishing.
            return T::from_bits(self.word.load(Ordering::Relaxed));
        }
        let seq = GLOBALS.seq();
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            // Acquire: the writes of every commit up to `before` are
            // visible to the load below (seqlock reader).
            let before = seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                // Relaxed, then an Acquire fence before re-reading `seq`:
                // if a writer's store reached us, so did its odd `seq`.
                let bits = self.word.load(Ordering::Relaxed);
                std::sync::atomic::fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == before {
                    return T::from_bits(bits);
                }
            }
            backoff.snooze();
        }
    }

    /// A mutable reference proves no transaction uses the cell: sets it
    /// directly.
    ///
    /// ```
    /// let mut c = hytm::TCell::new(1u8);
    /// c.set_mut(2);
    /// assert_eq!(c.into_inner(), 2);
    /// ```
    pub fn set_mut(&mut self, value: T) {
        *self.word.get_mut() = value.to_bits();
    }

    /// Consumes the cell and returns the value.
    pub fn into_inner(self) -> T {
        T::from_bits(self.word.into_inner())
    }
}

impl<T: Word + Default> Default for TCell<T> {
    fn default() -> TCell<T> {
        TCell::new(T::default())
    }
}

impl<T: Word> From<T> for TCell<T> {
    fn from(value: T) -> TCell<T> {
        TCell::new(value)
    }
}

impl<T: Word + fmt::Debug> fmt::Debug for TCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TCell").field(&self.load()).finish()
    }
}

/// Why a transaction body stopped early.
///
/// `Restart` comes from [`Tx::read`] and [`Tx::write`] (through `?`) when a
/// software transaction saw a conflict; the runtime reruns the body.
/// `Cancel` is the body's own error: everything the transaction wrote is
/// rolled back and [`try_atomic`] returns the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError<E> {
    /// Rerun the transaction.
    Restart(Restart),
    /// Roll back and return this error.
    Cancel(E),
}

impl<E> From<Restart> for TxError<E> {
    fn from(r: Restart) -> TxError<E> {
        TxError::Restart(r)
    }
}

impl<E: fmt::Display> fmt::Display for TxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Restart(_) => f.write_str("transaction must restart"),
            TxError::Cancel(e) => write!(f, "transaction cancelled: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TxError<E> {}

/// The path a transaction runs on.
// The engines sit in `UnsafeCell` (used only through the safe `get_mut` and
// `into_inner`) because it hides their niches: the tag is then a plain byte,
// checked in 2 instructions on every read and write, instead of a niche
// decoded from a `bool` inside `SerialTx` in 10. That only pays because the
// engines' constructors are inlined and build the value in place: when
// rustc moved a finished engine into the enum, LLVM copied it through a
// misaligned temporary, and the store-forwarding stalls made the transfer
// 28% slower (the first try with `#[repr(u8)]`).
enum Path<'env> {
    Hardware {
        rtm: Rtm,
        sw_seen: bool,
        wrote: bool,
    },
    Software(UnsafeCell<SoftTx<'static, 'env>>),
    Serial(UnsafeCell<SerialTx<'static, 'env>>),
}

/// A running transaction: reads and writes [`TCell`]s. Given to the body of
/// [`atomic`]; the same body runs on every path.
pub struct Tx<'env> {
    path: Path<'env>,
    want_serial: bool,
    /// The body declared irrevocable work ([`Tx::become_irrevocable`] or
    /// [`atomic_irrevocable`]): this run must never be rolled back, not even
    /// by injection.
    irrevocable: bool,
    /// A transaction belongs to the thread that runs it.
    _not_send: PhantomData<*mut ()>,
}

impl<'env> Tx<'env> {
    /// Reads a cell.
    ///
    /// # Errors
    ///
    /// [`Restart`] on the software path when the read would be inconsistent
    /// with earlier ones; return it (with `?`) and the body reruns.
    #[inline(always)]
    pub fn read<T: Word>(&mut self, cell: &'env TCell<T>) -> Result<T, Restart> {
        let bits = match &mut self.path {
            // Relaxed: inside a hardware transaction the hardware orders and
            // isolates every access; this is a plain `mov`.
            Path::Hardware { .. } => cell.word.load(Ordering::Relaxed),
            Path::Software(soft) => soft.get_mut().read(&cell.word)?,
            Path::Serial(serial) => serial.get_mut().read(&cell.word),
        };
        Ok(T::from_bits(bits))
    }

    /// Writes a cell (visible to others only when the transaction commits).
    ///
    /// # Errors
    ///
    /// Never fails today; it returns `Result` so bodies can use `?`
    /// uniformly and the software path may validate here later.
    #[inline(always)]
    pub fn write<T: Word>(&mut self, cell: &'env TCell<T>, value: T) -> Result<(), Restart> {
        let bits = value.to_bits();
        match &mut self.path {
            Path::Hardware { wrote, .. } => {
                *wrote = true;
                // Relaxed: a plain `mov` inside the hardware transaction.
                cell.word.store(bits, Ordering::Relaxed);
            }
            Path::Software(soft) => soft.get_mut().write(&cell.word, bits),
            Path::Serial(serial) => serial.get_mut().write(&cell.word, bits),
        }
        Ok(())
    }

    /// Makes the rest of this transaction irrevocable: from here on it runs
    /// alone (serial mode) and is never rolled back by a conflict, so it may
    /// do work that cannot be undone.
    ///
    /// # Errors
    ///
    /// [`Restart`] when the transaction is not serial yet: return it and the
    /// body reruns serially, where this returns `Ok`.
    ///
    /// ```
    /// let log = hytm::TCell::new(0u32);
    /// hytm::atomic(|tx| {
    ///     tx.become_irrevocable()?;
    ///     assert!(tx.is_irrevocable());
    ///     tx.write(&log, 1)
    /// });
    /// assert_eq!(log.load(), 1);
    /// ```
    pub fn become_irrevocable(&mut self) -> Result<(), Restart> {
        match &self.path {
            Path::Serial(_) => {
                self.irrevocable = true;
                Ok(())
            }
            Path::Hardware { rtm, .. } => {
                rtm.abort::<{ code::NEEDS_SERIAL }>();
                // Outside a transaction (cannot happen) fall through to a
                // software-style restart.
                self.want_serial = true;
                Err(Restart)
            }
            Path::Software(_) => {
                self.want_serial = true;
                Err(Restart)
            }
        }
    }

    /// Whether this run is irrevocable: inside [`atomic_irrevocable`], or
    /// after [`Tx::become_irrevocable`] returned `Ok`. Such a run is never
    /// rolled back, by a conflict or by injection, so it may do work that
    /// cannot be undone. (A serial run of a
    /// [`FallbackKind::GlobalLock`] site that declared nothing is not
    /// irrevocable: it keeps an undo log, and a cancel, a panic or an injected
    /// rollback undoes it.)
    pub fn is_irrevocable(&self) -> bool {
        self.irrevocable
    }

    /// Whether this run is serial: alone, writing in place with an undo log
    /// (a global-lock fallback, the escalation after repeated software
    /// restarts, or irrevocable work).
    ///
    /// ```
    /// let c = hytm::TCell::new(0);
    /// hytm::atomic_irrevocable(|tx| {
    ///     assert!(tx.is_serial() && tx.is_irrevocable() && !tx.is_hardware());
    ///     tx.write(&c, 1).unwrap();
    /// });
    /// assert_eq!(c.load(), 1);
    /// ```
    pub fn is_serial(&self) -> bool {
        matches!(self.path, Path::Serial(_))
    }

    /// Whether this run is a hardware transaction.
    pub fn is_hardware(&self) -> bool {
        matches!(self.path, Path::Hardware { .. })
    }
}

/// A named transaction site: its own row in [`crate::stats`], its own
/// adaptive state and optionally its own policy.
///
/// ```
/// static TRANSFER: hytm::Site = hytm::Site::new("transfer");
/// let (a, b) = (hytm::TCell::new(10), hytm::TCell::new(0));
/// TRANSFER.atomic(|tx| {
///     let x = tx.read(&a)?;
///     tx.write(&a, x - 5)?;
///     let y = tx.read(&b)?;
///     tx.write(&b, y + 5)
/// });
/// assert_eq!((a.load(), b.load()), (5, 5));
/// ```
pub struct Site {
    name: Option<&'static str>,
    /// The statistics row, once registered (`UNREGISTERED` before): one
    /// relaxed load on every transaction, where a `OnceLock` and the name
    /// check cost three times the instructions.
    id: AtomicU32,
    adaptive: AdaptiveWord,
    policy: Option<Policy>,
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Site")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// A named site using the global policy.
    pub const fn new(name: &'static str) -> Site {
        Site {
            name: Some(name),
            id: AtomicU32::new(UNREGISTERED),
            adaptive: AdaptiveWord::new(),
            policy: None,
        }
    }

    /// A named site with its own policy (e.g. a different fallback kind).
    ///
    /// ```
    /// use hytm::{FallbackKind, Policy, Site};
    /// let site = Site::with_policy("audit", Policy::default().fallback(FallbackKind::GlobalLock));
    /// let c = hytm::TCell::new(1);
    /// assert_eq!(site.atomic(|tx| tx.read(&c)), 1);
    /// ```
    pub const fn with_policy(name: &'static str, policy: Policy) -> Site {
        Site {
            name: Some(name),
            id: AtomicU32::new(UNREGISTERED),
            adaptive: AdaptiveWord::new(),
            policy: Some(policy),
        }
    }

    const fn unnamed() -> Site {
        Site {
            name: None,
            id: AtomicU32::new(SiteId::ATOMIC.0),
            adaptive: AdaptiveWord::new(),
            policy: None,
        }
    }

    #[inline]
    fn id(&self) -> SiteId {
        // Relaxed: the id is a plain number; whoever stores it got it from
        // the registry under its lock, and every thread stores the same one.
        match self.id.load(Ordering::Relaxed) {
            UNREGISTERED => self.register(),
            id => SiteId(id),
        }
    }

    #[cold]
    fn register(&self) -> SiteId {
        // Unnamed sites start registered, as `SiteId::ATOMIC`.
        let id = match self.name {
            Some(name) => SiteId::named(SiteKind::Atomic, name),
            None => SiteId::ATOMIC,
        };
        // Relaxed: see `id`; racing registrations store the same value.
        self.id.store(id.0, Ordering::Relaxed);
        id
    }

    /// Runs `body` as one transaction at this site; see [`atomic`].
    pub fn atomic<'env, R>(&self, mut body: impl FnMut(&mut Tx<'env>) -> Result<R, Restart>) -> R {
        match self.run(|tx| body(tx).map_err(TxError::<std::convert::Infallible>::from)) {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// Runs `body` as one transaction at this site; see [`try_atomic`].
    ///
    /// # Errors
    ///
    /// The body's [`TxError::Cancel`] error, after rolling back.
    pub fn try_atomic<'env, R, E>(
        &self,
        body: impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
    ) -> Result<R, E> {
        self.run(body)
    }

    /// Runs `body` irrevocably (serially) at this site; see
    /// [`atomic_irrevocable`].
    pub fn atomic_irrevocable<'env, R>(&self, mut body: impl FnMut(&mut Tx<'env>) -> R) -> R {
        let rt = runtime();
        if let Some(rtm) = rt.rtm.filter(|rtm| rtm.test()) {
            // Irrevocable work cannot run speculatively: roll the enclosing
            // transaction back so it reruns on its fallback.
            rtm.abort::<{ code::NEEDS_SERIAL }>();
        }
        let _scope = SoftwareScope::enter();
        let mut sw = SoftwareRun {
            irrevocable: true,
            ..SoftwareRun::default()
        };
        let r = run_serial(rt, &mut sw, &mut |tx: &mut Tx<'env>| {
            Ok::<R, TxError<std::convert::Infallible>>(body(tx))
        });
        sw.count(self.id(), false);
        match r {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    fn run<'env, R, E>(
        &self,
        mut body: impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
    ) -> Result<R, E> {
        let rt = runtime();
        let policy = self.policy.as_ref().unwrap_or(rt.config.default_policy());
        let mut serial_first = false;
        if rt.hardware_path && policy.uses_hardware() {
            if let Some(rtm) = rt.rtm {
                if rtm.test() && SoftwareScope::active() {
                    // In an elided section inside a software body: roll the
                    // section back; rerun under its lock, this call then
                    // reports the nesting.
                    rtm.abort::<{ code::NEEDS_SERIAL }>();
                }
                // (Tested again: under the HTM model that abort promotes
                // the section and returns.)
                if rtm.test() {
                    // On hardware this is always `Ok`. Under the HTM model
                    // an abort inside the body may instead promote the
                    // enclosing elided section to its real locks: the
                    // transaction is over, and the body reruns below as an
                    // ordinary, outermost `atomic`.
                    if let Ok(r) = rtm.catch_nested(|| run_nested_hardware(rtm, &mut body)) {
                        return r;
                    }
                }
            }
            SoftwareScope::check_not_nested();
            match self.try_hardware(rt, policy, &mut body) {
                Ok(r) => return r,
                Err(why) => serial_first = why == GaveUp::NeedsSerial,
            }
        } else if let Some(rtm) = rt.rtm.filter(|rtm| rtm.test()) {
            // Software-only site inside a hardware transaction: the
            // software path cannot run there; roll back, let it run outside.
            rtm.abort::<{ code::NEEDS_SERIAL }>();
        }
        let _scope = SoftwareScope::enter();
        let mut sw = SoftwareRun::default();
        let lock = policy.fallback_kind() != FallbackKind::Stm;
        let r = if lock || serial_first {
            run_serial(rt, &mut sw, &mut body)
        } else {
            run_software(rt, &mut sw, &mut body)
        };
        sw.count(self.id(), lock);
        r
    }

    /// The hardware attempts; `Err` with the reason when the policy gave up
    /// (the caller takes the software path).
    // Out of line, like the elided locks' hardware entry: keeps `run`
    // small for the software path.
    #[inline(never)]
    fn try_hardware<'env, R, E>(
        &self,
        rt: &Runtime,
        policy: &Policy,
        body: &mut impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
    ) -> Result<Result<R, E>, GaveUp> {
        let site = self.id();
        if policy.is_adaptive() && !self.adaptive.should_try_hardware() {
            let exec = Execution {
                skipped: true,
                ..Execution::default()
            };
            exec.commit_to(site);
            return Err(GaveUp::Skipped);
        }
        let retry_only = policy.fallback_kind() == FallbackKind::RetryOnly;
        let boosted;
        let hw_policy = if retry_only {
            boosted = policy.max_attempts(policy.attempt_budget().saturating_mul(16).min(1000));
            &boosted
        } else {
            policy
        };
        // A conflict while a software transaction writes back (or a serial
        // one runs) is waited out like a busy subscription.
        let resource = || match software_committing() {
            true => Resource::Held,
            false => Resource::Free,
        };
        let wait = |status| attempt::wait_out(status, software_committing);
        // The whole body runs inside the attempt: an abort anywhere in it
        // comes back to the attempt loop with its status.
        let inside = |entered: Entered| {
            let sw_seen = subscribe_hybrid(entered.rtm);
            let (tx, v) = run_body_in_hardware(entered.rtm, sw_seen, body);
            commit_hardware(&tx, entered);
            v
        };
        match attempt::run(rt, hw_policy, site, resource, wait, inside) {
            Ok(v) => {
                stats::count(site, Outcome::HardwareCommit);
                self.adaptive.record(true);
                Ok(Ok(v))
            }
            Err((exec, why)) => {
                exec.commit_to(site);
                if why == GaveUp::Budget {
                    self.adaptive.record(false);
                }
                Err(why)
            }
        }
    }
}

/// Whether a software writer is writing back or a serial transaction runs
/// (`seq` odd): what a hardware transaction that meets it waits out.
pub(crate) fn software_committing() -> bool {
    // Relaxed: only a hint of when to retry; the transaction's own
    // subscription decides.
    GLOBALS.seq().load(Ordering::Relaxed) & 1 == 1
}

/// Subscribes a hardware transaction to the software side. Returns whether
/// software transactions were in flight (then the transaction must bump
/// `seq` if it writes).
#[inline(always)]
fn subscribe_hybrid(rtm: Rtm) -> bool {
    // Acquire (a plain `mov` on x86, like Relaxed): inside the transaction
    // these loads put the lines in the read set, and any later software
    // begin or commit writes them and aborts us; Acquire states the edge
    // to the software side's SeqCst announce and Release write-back, so
    // that the HTM model and Miri see it too.
    if GLOBALS.sw_active().load(Ordering::Acquire) == 0 {
        return false;
    }
    if GLOBALS.seq().load(Ordering::Acquire) & 1 == 1 {
        rtm.abort::<{ code::SW_COMMITTING }>();
    }
    true
}

/// Inside a hardware transaction that wrote while software transactions
/// were in flight: add 2 to `seq`, so their reads revalidate.
#[inline(always)]
fn publish_hardware_writes(tx: &Tx<'_>) {
    if let Path::Hardware {
        sw_seen: true,
        wrote: true,
        ..
    } = tx.path
    {
        let seq = GLOBALS.seq();
        // Relaxed load + store: inside the transaction the pair is atomic;
        // software readers see the new value and revalidate.
        seq.store(seq.load(Ordering::Relaxed) + 2, Ordering::Relaxed);
    }
}

/// The end of a hardware run: publish the writes to software transactions
/// (see above), then commit (or roll back, for an injected rollback).
#[inline(always)]
fn commit_hardware(tx: &Tx<'_>, entered: Entered) {
    publish_hardware_writes(tx);
    // SAFETY: attempt::begin returned `entered` inside a transaction and an
    // abort would have resumed there; we are still inside it.
    unsafe { entered.end() };
}

/// Aborts the hardware transaction if the body unwinds: a panicking
/// transaction must never commit. The software path then reruns the body,
/// where the panic happens for real and leaves no writes.
struct AbortOnUnwind(Rtm);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        self.0.abort::<{ code::PANIC }>();
    }
}

/// `atomic` inside a hardware transaction (an elided section or another
/// hardware `atomic`): nest flat, subscribing the enclosing transaction.
#[cold]
fn run_nested_hardware<'env, R, E>(
    rtm: Rtm,
    body: &mut impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
) -> Result<R, E> {
    let (tx, v) = run_body_in_hardware(rtm, subscribe_hybrid(rtm), body);
    publish_hardware_writes(&tx);
    Ok(v)
}

/// Runs the body inside the hardware transaction the caller is in, and
/// returns its value with the `Tx` (which knows whether it wrote). A body
/// that unwinds, restarts or cancels never returns here: the transaction
/// rolls back and the software path gives the definitive answer.
#[inline(always)]
fn run_body_in_hardware<'env, R, E>(
    rtm: Rtm,
    sw_seen: bool,
    body: &mut impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
) -> (Tx<'env>, R) {
    let mut tx = Tx {
        path: Path::Hardware {
            rtm,
            sw_seen,
            wrote: false,
        },
        want_serial: false,
        irrevocable: false,
        _not_send: PhantomData,
    };
    let abort_on_unwind = AbortOnUnwind(rtm);
    let r = body(&mut tx);
    std::mem::forget(abort_on_unwind);
    match r {
        Ok(v) => (tx, v),
        Err(_) => {
            rtm.abort::<{ code::CANCELLED }>();
            unreachable!("xabort returned inside a transaction")
        }
    }
}

thread_local! {
    /// Set while this thread runs a software or serial transaction body.
    static IN_SOFTWARE: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running a software or serial body. Nested `atomic`
/// there would be a separate transaction (or wait forever for our own serial
/// run), so entering twice panics with a clear message.
struct SoftwareScope;

impl SoftwareScope {
    #[inline]
    fn enter() -> SoftwareScope {
        if IN_SOFTWARE.with(|f| f.replace(true)) {
            Self::nested();
        }
        SoftwareScope
    }

    #[inline]
    fn active() -> bool {
        IN_SOFTWARE.with(Cell::get)
    }

    #[inline]
    fn check_not_nested() {
        if IN_SOFTWARE.with(Cell::get) {
            Self::nested();
        }
    }

    #[cold]
    fn nested() -> ! {
        panic!("hytm: atomic() called inside the body of a software or serial transaction; nested transactions are only supported in hardware")
    }
}

impl Drop for SoftwareScope {
    #[inline]
    fn drop(&mut self) {
        IN_SOFTWARE.with(|f| f.set(false));
    }
}

/// What the software paths did, counted once at the end.
#[derive(Default)]
struct SoftwareRun {
    /// The STM path committed on its first try: nothing else to count
    /// (the common case, decided where the commit happens, so that counting
    /// it reads one flag).
    first_try_commit: bool,
    commits: u32,
    restarts: u32,
    serial: bool,
    rollbacks: u32,
    /// The body cancelled: counted as a cancel, on no commit path.
    cancelled: bool,
    /// `atomic_irrevocable`: its serial runs start irrevocable, so they are
    /// never rolled back.
    irrevocable: bool,
}

impl SoftwareRun {
    /// Whether to roll this run back at its end (injected rollback): at most
    /// once per execution, so that it always finishes.
    #[inline]
    fn inject_rollback(&mut self, rt: &Runtime) -> bool {
        if self.rollbacks > 0 || !attempt::roll_software_rollback(rt) {
            return false;
        }
        self.rollbacks += 1;
        true
    }

    #[inline]
    fn count(&self, site: SiteId, lock_fallback: bool) {
        if self.first_try_commit {
            stats::count(site, Outcome::SoftwareCommit);
        } else {
            // A global-lock fallback is counted as the lock, not as a serial
            // escalation, so each execution is counted once.
            let exec = Execution {
                stm_commits: self.commits,
                stm_restarts: self.restarts,
                rollbacks: self.rollbacks,
                serial: self.serial && !lock_fallback,
                fallback_lock: lock_fallback && self.serial,
                ..Execution::default()
            };
            exec.commit_to(site);
            if self.cancelled {
                stats::count(site, Outcome::Cancelled);
            }
        }
    }
}

/// The NOrec path, escalating to serial after repeated restarts.
fn run_software<'env, R, E>(
    rt: &Runtime,
    sw: &mut SoftwareRun,
    body: &mut impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
) -> Result<R, E> {
    // Without a hardware path in this process nobody reads `sw_active`.
    let mut tx = Tx {
        path: Path::Software(UnsafeCell::new(SoftTx::begin_for(
            &GLOBALS,
            rt.rtm.is_some(),
        ))),
        want_serial: false,
        irrevocable: false,
        _not_send: PhantomData,
    };
    loop {
        let r = body(&mut tx);
        let Path::Software(soft) = &mut tx.path else {
            unreachable!("the software loop only holds software transactions")
        };
        let soft = soft.get_mut();
        match r {
            Ok(v) => {
                if sw.inject_rollback(rt) {
                    // The redo log is dropped unpublished: not one write of
                    // this run may be visible. Not a conflict: it does not
                    // count towards the escalation to serial.
                    soft.discard();
                    continue;
                }
                if soft.commit().is_ok() {
                    sw.commits += 1;
                    sw.first_try_commit = sw.restarts == 0 && sw.rollbacks == 0;
                    return Ok(v);
                }
            }
            Err(TxError::Cancel(e)) => {
                sw.cancelled = true;
                return Err(e);
            }
            Err(TxError::Restart(_)) if tx.want_serial => break,
            Err(TxError::Restart(_)) => {}
        }
        sw.restarts += 1;
        if soft.restarts() + 1 >= SERIAL_AFTER_RESTARTS {
            break;
        }
        soft.restart();
    }
    // Release the software transaction (sw_active) before the serial one
    // takes its place.
    drop(tx);
    run_serial(rt, sw, body)
}

/// The serial-irrevocable path: runs alone, with an undo log so that a panic
/// or a cancel leaves nothing behind.
fn run_serial<'env, R, E>(
    rt: &Runtime,
    sw: &mut SoftwareRun,
    body: &mut impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
) -> Result<R, E> {
    let irrevocable = sw.irrevocable;
    let begin = || Tx {
        path: Path::Serial(UnsafeCell::new(SerialTx::begin_for(
            &GLOBALS,
            rt.rtm.is_some(),
        ))),
        want_serial: false,
        irrevocable,
        _not_send: PhantomData,
    };
    let mut tx = begin();
    loop {
        match body(&mut tx) {
            Ok(_) if !tx.irrevocable && sw.inject_rollback(rt) => {
                // Dropping the serial transaction applies its undo log.
                drop(tx);
                tx = begin();
            }
            Ok(v) => {
                if let Path::Serial(serial) = tx.path {
                    serial.into_inner().commit();
                }
                // Counted on commit only, like software commits: a
                // cancelled execution counts on no path.
                sw.serial = true;
                return Ok(v);
            }
            // Dropping the serial transaction undoes its writes.
            Err(TxError::Cancel(e)) => {
                sw.cancelled = true;
                return Err(e);
            }
            // A serial run cannot conflict; a body that asks to restart
            // anyway (a user-level retry) gets a clean rerun.
            Err(TxError::Restart(_)) => {
                drop(tx);
                tx = begin();
            }
        }
    }
}

static UNNAMED: Site = Site::unnamed();

/// `Site::id` before the site's first transaction registered its row.
const UNREGISTERED: u32 = u32::MAX;

/// Runs `body` as one atomic transaction over [`TCell`]s.
///
/// Where RTM is usable the body runs as a hardware transaction under the
/// [`Policy`]; when hardware gives up it runs on the fallback the policy
/// names (by default the NOrec STM, then serially after repeated restarts).
/// The same closure runs on every path, possibly several times: keep side
/// effects other than `TCell` writes out of it (or use
/// [`Tx::become_irrevocable`]).
///
/// Guarantees: opacity (a running body never observes a state no serial
/// order produces), panic atomicity (a body that panics leaves none of its
/// writes; the panic propagates), and progress (some transaction always
/// commits; serial mode is FIFO).
///
/// # Panics
///
/// If the body panics (after rolling back its writes), and if called inside
/// the body of a software transaction (nesting is supported in hardware
/// only).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use hytm::TCell;
///
/// let accounts: Arc<Vec<TCell<i64>>> = Arc::new((0..8).map(|_| TCell::new(100)).collect());
/// let threads: Vec<_> = (0..2)
///     .map(|t| {
///         let acc = Arc::clone(&accounts);
///         std::thread::spawn(move || {
///             for i in 0..1000 {
///                 let (from, to) = ((t + i) % 8, (t + 3 * i + 1) % 8);
///                 hytm::atomic(|tx| {
///                     let a = tx.read(&acc[from])?;
///                     tx.write(&acc[from], a - 1)?;
///                     let b = tx.read(&acc[to])?;
///                     tx.write(&acc[to], b + 1)
///                 });
///             }
///         })
///     })
///     .collect();
/// for t in threads {
///     t.join().unwrap();
/// }
/// let total = hytm::atomic(|tx| {
///     let mut sum = 0;
///     for a in accounts.iter() {
///         sum += tx.read(a)?;
///     }
///     Ok(sum)
/// });
/// assert_eq!(total, 800);
/// ```
pub fn atomic<'env, R>(body: impl FnMut(&mut Tx<'env>) -> Result<R, Restart>) -> R {
    UNNAMED.atomic(body)
}

/// Like [`atomic`], for bodies that can fail: a [`TxError::Cancel`] rolls
/// back every write of the transaction and is returned as `Err`.
///
/// # Errors
///
/// The body's cancel error.
///
/// # Examples
///
/// ```
/// use hytm::{TCell, TxError};
/// let balance = TCell::new(10);
/// let r = hytm::try_atomic(|tx| {
///     let b = tx.read(&balance)?;
///     tx.write(&balance, b - 50)?;
///     if b - 50 < 0 {
///         return Err(TxError::Cancel("insufficient funds"));
///     }
///     Ok(())
/// });
/// assert_eq!(r, Err("insufficient funds"));
/// assert_eq!(balance.load(), 10); // the write was rolled back
/// ```
pub fn try_atomic<'env, R, E>(
    body: impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
) -> Result<R, E> {
    UNNAMED.try_atomic(body)
}

/// Runs `body` once, irrevocably: serially, with no other transaction
/// committing meanwhile, so it may do work that cannot be undone (I/O).
/// Its `TCell` writes still roll back if it panics.
///
/// ```
/// let counter = hytm::TCell::new(0u64);
/// let seen = hytm::atomic_irrevocable(|tx| {
///     let v = tx.read(&counter).unwrap(); // reads never fail when serial
///     println!("counter was {v}");
///     tx.write(&counter, v + 1).unwrap();
///     v
/// });
/// assert_eq!((seen, counter.load()), (0, 1));
/// ```
pub fn atomic_irrevocable<'env, R>(body: impl FnMut(&mut Tx<'env>) -> R) -> R {
    UNNAMED.atomic_irrevocable(body)
}

/// A snapshot of the hybrid protocol's shared words, for tests and
/// diagnostics: `(seq, sw_active)`. `seq` is odd while a software writer
/// writes back or a serial transaction runs; `sw_active` counts software
/// and serial transactions in flight (it stays 0 where no hardware path
/// exists, since nobody would read it).
///
/// ```
/// let (seq, sw_active) = hytm::protocol_words();
/// assert_eq!(seq % 2, 0);
/// assert_eq!(sw_active, 0);
/// ```
pub fn protocol_words() -> (u64, u64) {
    // SeqCst: a diagnostic snapshot; ordering against anything else is
    // not promised.
    (
        GLOBALS.seq().load(Ordering::SeqCst),
        GLOBALS.sw_active().load(Ordering::SeqCst),
    )
}
