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

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::CachePadded;

use hytm_fallback::{AtomicU64, Globals, Restart, Savepoint, SerialTx, SoftTx};

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

#[cfg(test)]
mod const_new_tests {
    use super::*;

    #[test]
    fn const_constructors_store_what_new_stores() {
        macro_rules! same {
            ($($t:ty = $v:expr),*) => {$(
                assert_eq!(
                    TCell::<$t>::new_const($v).into_inner().to_bits(),
                    TCell::<$t>::new($v).into_inner().to_bits(),
                    stringify!($t)
                );
            )*};
        }
        same!(
            u8 = 200,
            u16 = 60_000,
            u32 = 7,
            u64 = u64::MAX,
            usize = 9,
            i8 = -3,
            i16 = -300,
            i32 = -70_000,
            i64 = i64::MIN,
            isize = -1,
            bool = true,
            char = 'é',
            f32 = -1.5,
            f64 = 2.25
        );
    }
}

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

// `const` constructors for the built-in word types, so that cells can be
// `static`s (see `TCell::new`).
macro_rules! const_new {
    ($($t:ty => |$v:ident| $bits:expr),* $(,)?) => {$(
        impl TCell<$t> {
            /// A new cell, in a `const` context: the same as
            /// [`TCell::new`], which cannot be a `const fn` on stable Rust
            /// (it calls the `Word` trait). Name the type:
            /// `TCell::<u64>::new_const(0)`.
            pub const fn new_const($v: $t) -> TCell<$t> {
                TCell {
                    word: AtomicU64::new($bits),
                    _value: PhantomData,
                }
            }
        }
    )*};
}

// The same bits as each type's `Word::to_bits`.
const_new!(
    u8 => |v| v as u64, u16 => |v| v as u64, u32 => |v| v as u64, u64 => |v| v,
    usize => |v| v as u64, i8 => |v| v as u64, i16 => |v| v as u64,
    i32 => |v| v as u64, i64 => |v| v as u64, isize => |v| v as u64,
    bool => |v| v as u64, char => |v| v as u32 as u64,
    f32 => |v| v.to_bits() as u64, f64 => |v| v.to_bits(),
);

impl<T: Word> TCell<T> {
    /// A new cell.
    ///
    /// For a `static`, the built-in word types have `const` constructors
    /// (`new` cannot be a `const fn` on stable Rust: it calls the `Word`
    /// trait); name the type, since each has its own:
    ///
    /// ```
    /// use hytm::TCell;
    /// static HITS: TCell<u64> = TCell::<u64>::new_const(0);
    /// static READY: TCell<bool> = TCell::<bool>::new_const(false);
    /// hytm::atomic(|tx| {
    ///     let h = tx.read(&HITS)?;
    ///     tx.write(&HITS, h + 1)?;
    ///     tx.write(&READY, true)
    /// });
    /// assert_eq!((HITS.load(), READY.load()), (1, true));
    /// let c = TCell::new(1.5f64);
    /// assert_eq!(c.load(), 1.5);
    /// ```
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
        // The last committed value (waiting while a commit to the word is
        // in flight); this thread's own serial transaction reads in place.
        T::from_bits(GLOBALS.load_committed(&self.word, in_serial_body))
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
        let this = std::mem::ManuallyDrop::new(self);
        this.leave_transaction();
        // Relaxed: `self` by value proves no other thread uses the cell.
        T::from_bits(this.word.load(Ordering::Relaxed))
    }

    /// The address of the cell's word (a `TVar`'s key in its log).
    #[inline]
    pub(crate) fn word_addr(&self) -> usize {
        std::ptr::from_ref(&self.word) as usize
    }

    /// Reads the word directly, for an owner with `&mut` access (no
    /// transaction of another thread can reach the cell).
    #[inline]
    pub(crate) fn load_exclusive(&mut self) -> T {
        // Relaxed: `&mut self` excludes every other thread.
        T::from_bits(self.word.load(Ordering::Relaxed))
    }

    /// The cell goes away: if this thread runs a software or serial
    /// transaction, make it forget the cell (a nested transaction may have
    /// logged it, and the outer one would write back to, or validate, a
    /// dead word).
    #[inline]
    pub(crate) fn leave_transaction(&self) {
        let current = CURRENT.with(Cell::get);
        if current != 0 {
            forget_cell(current, &self.word);
        }
    }
}

impl<T: Word> Drop for TCell<T> {
    #[inline]
    fn drop(&mut self) {
        self.leave_transaction();
    }
}

#[cold]
#[inline(never)]
fn forget_cell(current: usize, word: &AtomicU64) {
    match current_path::<'static>(current) {
        // SAFETY: the engine of the running outermost run; this thread is
        // inside its body, and no Tx method is running (a cell is being
        // dropped).
        Path::Software(soft) => unsafe { (*soft).tx.forget(word) },
        // SAFETY: as above.
        Path::Serial(serial) => unsafe { (*serial).tx.forget(word) },
        Path::Hardware { .. } => {}
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

/// A savepoint of the engine and of the `TVar` log (see `crate::tvar`).
struct TxSavepoint {
    engine: Savepoint,
    vars: usize,
}

/// A software or serial run's state: the engine, and what the body asked
/// of the dispatcher. It lives in the outermost run's frame; the outermost
/// body's `Tx` and every nested one reach it through the same raw pointer
/// (so no `&mut` to it outlives one call: a nested `atomic` uses it while
/// the outer body holds its own `&mut Tx`).
struct Engine<E> {
    tx: E,
    /// Rerun serially ([`Tx::become_irrevocable`], a nested
    /// [`atomic_irrevocable`], an elided lock taken in the body).
    want_serial: bool,
    /// The body declared irrevocable work: this run must never be rolled
    /// back, not even by injection.
    irrevocable: bool,
    /// [`Tx::retry`] was called: the restart is a wait for a change.
    retry: bool,
    /// [`Tx::set`] logged `TVar` values (software path): the commit takes
    /// the path that publishes them (`crate::tvar`).
    vars: bool,
}

impl<E> Engine<E> {
    #[inline(always)]
    fn new(tx: E, irrevocable: bool) -> Self {
        Engine {
            tx,
            want_serial: false,
            irrevocable,
            retry: false,
            vars: false,
        }
    }
}

type Soft<'env> = Engine<SoftTx<'static, 'env>>;
type Serial<'env> = Engine<SerialTx<'static, 'env>>;

/// A serial transaction's read, out of line: the serial path is the rare
/// one, and a cold call has LLVM test the other two paths first.
///
/// # Safety
///
/// `serial` is the live engine of the running serial transaction, not
/// otherwise borrowed (see `Engine`).
#[cold]
#[inline(never)]
unsafe fn serial_read<'env>(serial: *mut Serial<'env>, w: &'env AtomicU64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { (*serial).tx.read(w) }
}

/// A serial transaction's write, out of line (see `serial_read`).
///
/// # Safety
///
/// As `serial_read`.
#[cold]
#[inline(never)]
unsafe fn serial_write<'env>(serial: *mut Serial<'env>, w: &'env AtomicU64, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { (*serial).tx.write(w, v) }
}

/// The path a transaction runs on. The software engines are reached through
/// raw pointers (see [`Engine`]).
#[derive(Clone, Copy)]
#[repr(i8)]
enum Path<'env> {
    Hardware {
        rtm: Rtm,
        sw_seen: bool,
        wrote: bool,
    } = -1,
    Software(*mut Soft<'env>) = 0,
    Serial(*mut Serial<'env>) = 1,
}

/// Which path a [`Path`] is, for `Tx`'s accesses.
#[derive(Clone, Copy)]
enum Tag {
    Hardware,
    Software,
    Serial,
}

impl Path<'_> {
    /// The path, from the tag's sign and zero test alone: LLVM answers
    /// both from one compare of the tag byte with 0, `js` to the hardware
    /// path and `jne` to the serial one (the hardware path: 2
    /// instructions, the software path: 3). Matching on the `Path` itself
    /// tested one value after another: 3 and 5.
    #[inline(always)]
    fn tag(&self) -> Tag {
        // SAFETY: `Path` is `repr(i8)`: its first byte is the tag (the
        // primitive representation of an enum with fields), a plain read of
        // an initialized byte.
        let tag = unsafe { *(self as *const Self).cast::<i8>() };
        if tag < 0 {
            Tag::Hardware
        } else if tag == 0 {
            Tag::Software
        } else {
            Tag::Serial
        }
    }

    /// The engine of a software or serial path (null on the hardware path).
    #[inline(always)]
    fn engine(&self) -> *mut () {
        match *self {
            Path::Hardware { .. } => std::ptr::null_mut(),
            Path::Software(soft) => soft.cast(),
            Path::Serial(serial) => serial.cast(),
        }
    }
}

/// A running transaction: reads and writes [`TCell`]s. Given to the body of
/// [`atomic`]; the same body runs on every path.
///
/// Helpers that take a `&mut Tx` compose: they run inside their caller's
/// transaction, with its reads, writes and fate. The lifetime `'env` is
/// that of the cells the transaction touches, so spell it out in a helper's
/// signature:
///
/// ```
/// use hytm::{Restart, TCell, Tx, TxError};
///
/// /// Takes `amount` out of `account`: part of the caller's transaction.
/// fn debit<'env>(tx: &mut Tx<'env>, account: &'env TCell<i64>, amount: i64) -> Result<(), TxError<&'static str>> {
///     let balance = tx.read(account)?;
///     if balance < amount {
///         return Err(TxError::Cancel("insufficient funds"));
///     }
///     tx.write(account, balance - amount)?;
///     Ok(())
/// }
///
/// fn credit<'env>(tx: &mut Tx<'env>, account: &'env TCell<i64>, amount: i64) -> Result<(), Restart> {
///     tx.modify(account, |b| b + amount)?;
///     Ok(())
/// }
///
/// let (a, b) = (TCell::new(100), TCell::new(0));
/// let r = hytm::try_atomic(|tx| {
///     debit(tx, &a, 30)?;
///     credit(tx, &b, 30)?;
///     Ok(())
/// });
/// assert_eq!(r, Ok(()));
/// assert_eq!(hytm::try_atomic(|tx| debit(tx, &a, 500)), Err("insufficient funds"));
/// assert_eq!((a.load(), b.load()), (70, 30));
/// ```
pub struct Tx<'env> {
    path: Path<'env>,
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
        let bits = match self.path.tag() {
            // Relaxed: inside a hardware transaction the hardware orders and
            // isolates every access; this is a plain `mov`.
            Tag::Hardware => cell.word.load(Ordering::Relaxed),
            Tag::Software => {
                let soft = self.path.engine().cast::<Soft<'env>>();
                // The fast part inline, so that `?` tests only the rest's
                // outcome (see `SoftTx::read_fast`).
                // SAFETY: the engine lives in the outermost run's frame for
                // the whole body, and no other reference to it is live
                // during this call (see `Engine`).
                unsafe {
                    match (*soft).tx.read_fast(&cell.word) {
                        Some(v) => v,
                        None => (*soft).tx.read_rest(&cell.word)?,
                    }
                }
            }
            // SAFETY: as above.
            Tag::Serial => unsafe { serial_read(self.path.engine().cast(), &cell.word) },
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
        match self.path.tag() {
            Tag::Hardware => {
                if let Path::Hardware { wrote, .. } = &mut self.path {
                    *wrote = true;
                }
                // Relaxed: a plain `mov` inside the hardware transaction.
                cell.word.store(bits, Ordering::Relaxed);
            }
            Tag::Software => {
                let soft = self.path.engine().cast::<Soft<'env>>();
                // SAFETY: as in `read`.
                unsafe { (*soft).tx.write(&cell.word, bits) }
            }
            // SAFETY: as in `read`.
            Tag::Serial => unsafe { serial_write(self.path.engine().cast(), &cell.word, bits) },
        }
        Ok(())
    }

    /// Applies `f` to a cell's value; returns the new value.
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let c = hytm::TCell::new(20);
    /// assert_eq!(hytm::atomic(|tx| tx.modify(&c, |v| v * 2)), 40);
    /// assert_eq!(c.load(), 40);
    /// ```
    #[inline]
    pub fn modify<T: Word>(
        &mut self,
        cell: &'env TCell<T>,
        f: impl FnOnce(T) -> T,
    ) -> Result<T, Restart> {
        let v = f(self.read(cell)?);
        self.write(cell, v)?;
        Ok(v)
    }

    /// Writes a cell and returns its previous value.
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let c = hytm::TCell::new('a');
    /// assert_eq!(hytm::atomic(|tx| tx.replace(&c, 'b')), 'a');
    /// assert_eq!(c.load(), 'b');
    /// ```
    #[inline]
    pub fn replace<T: Word>(&mut self, cell: &'env TCell<T>, value: T) -> Result<T, Restart> {
        let old = self.read(cell)?;
        self.write(cell, value)?;
        Ok(old)
    }

    /// Exchanges the values of two cells.
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let (a, b) = (hytm::TCell::new(1), hytm::TCell::new(2));
    /// hytm::atomic(|tx| tx.swap(&a, &b));
    /// assert_eq!((a.load(), b.load()), (2, 1));
    /// ```
    #[inline]
    pub fn swap<T: Word>(&mut self, a: &'env TCell<T>, b: &'env TCell<T>) -> Result<(), Restart> {
        let (x, y) = (self.read(a)?, self.read(b)?);
        self.write(a, y)?;
        self.write(b, x)
    }

    /// Blocks until another transaction changes a cell this one has read,
    /// then reruns the transaction from the start (Haskell's `retry`):
    /// everything it wrote is rolled back first, and the thread parks
    /// meanwhile (no spinning). Return its result from the body:
    /// `return tx.retry();`.
    ///
    /// Called inside a nested `atomic`, it retries the outermost
    /// transaction; inside [`Tx::or_else`]'s first alternative, it runs the
    /// second instead. In a hardware transaction it aborts, and the
    /// transaction reruns in software, where it waits. A transaction that
    /// read nothing waits forever. In an irrevocable transaction the
    /// `TCell` writes roll back, but the irrevocable work done so far does
    /// not, and it runs again on the rerun.
    ///
    /// # Errors
    ///
    /// Always [`Restart`]: return it, and the runtime does the rest.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use hytm::TCell;
    ///
    /// let slot = Arc::new(TCell::new(0u64));
    /// let producer = {
    ///     let slot = Arc::clone(&slot);
    ///     std::thread::spawn(move || hytm::atomic(|tx| tx.write(&slot, 42)))
    /// };
    /// // Waits (parked) until the producer's commit fills the slot.
    /// let v = hytm::atomic(|tx| match tx.read(&slot)? {
    ///     0 => tx.retry(),
    ///     v => tx.write(&slot, 0).map(|()| v),
    /// });
    /// assert_eq!(v, 42);
    /// producer.join().unwrap();
    /// ```
    pub fn retry<T>(&mut self) -> Result<T, Restart> {
        match self.path {
            Path::Hardware { rtm, .. } => {
                // The software rerun waits; a hardware transaction cannot.
                rtm.abort::<{ code::CANCELLED }>();
            }
            // SAFETY: as in `read`.
            Path::Software(soft) => unsafe { (*soft).retry = true },
            // SAFETY: as in `read`: the engine is live and not otherwise borrowed.
            Path::Serial(serial) => unsafe { (*serial).retry = true },
        }
        Err(Restart)
    }

    /// Runs `first`; if it calls [`Tx::retry`], rolls back its writes and
    /// runs `second` instead (Haskell's `orElse`). If both retry, the whole
    /// transaction waits for a change to anything either of them read.
    ///
    /// # Errors
    ///
    /// [`Restart`] from the alternative that ran (a conflict, or a retry of
    /// both).
    ///
    /// ```
    /// use hytm::TCell;
    /// let (a, b) = (TCell::new(0u32), TCell::new(7u32));
    /// // Take from `a` if it has something, else from `b`.
    /// let took = hytm::atomic(|tx| {
    ///     tx.or_else(
    ///         |tx| match tx.read(&a)? {
    ///             0 => tx.retry(),
    ///             v => tx.write(&a, 0).map(|()| v),
    ///         },
    ///         |tx| match tx.read(&b)? {
    ///             0 => tx.retry(),
    ///             v => tx.write(&b, 0).map(|()| v),
    ///         },
    ///     )
    /// });
    /// assert_eq!((took, a.load(), b.load()), (7, 0, 0));
    /// ```
    pub fn or_else<R>(
        &mut self,
        first: impl FnOnce(&mut Tx<'env>) -> Result<R, Restart>,
        second: impl FnOnce(&mut Tx<'env>) -> Result<R, Restart>,
    ) -> Result<R, Restart> {
        // In hardware a retry aborts the whole transaction at once, and the
        // software rerun makes the choice.
        let Some(sp) = self.savepoint() else {
            return first(self);
        };
        let retried = match catch_unwind(AssertUnwindSafe(|| first(&mut *self))) {
            Ok(Ok(v)) => {
                self.release(sp);
                return Ok(v);
            }
            Ok(Err(Restart)) => self.take_retry(),
            // A nested `atomic` inside `first` retried.
            Err(payload) if payload.is::<RestartOutermost>() && self.take_retry() => true,
            Err(payload) => resume_unwind(payload),
        };
        if !retried {
            self.release(sp);
            return Err(Restart);
        }
        // What `first` read stays in the read set: if `second` retries too,
        // the transaction waits on both.
        self.roll_back_to(sp);
        second(self)
    }

    /// Opens a savepoint (software and serial paths; `None` in hardware),
    /// in the engine and in the `TVar` log.
    fn savepoint(&mut self) -> Option<TxSavepoint> {
        let engine = match self.path {
            Path::Hardware { .. } => return None,
            // SAFETY: as in `read`.
            Path::Software(soft) => unsafe { (*soft).tx.savepoint() },
            // SAFETY: as in `read`: the engine is live and not otherwise borrowed.
            Path::Serial(serial) => unsafe { (*serial).tx.savepoint() },
        };
        Some(TxSavepoint {
            engine,
            vars: crate::tvar::savepoint(),
        })
    }

    fn release(&mut self, sp: TxSavepoint) {
        crate::tvar::release(sp.vars);
        match self.path {
            Path::Hardware { .. } => {}
            // SAFETY: as in `read`.
            Path::Software(soft) => unsafe { (*soft).tx.release(sp.engine) },
            // SAFETY: as in `read`: the engine is live and not otherwise borrowed.
            Path::Serial(serial) => unsafe { (*serial).tx.release(sp.engine) },
        }
    }

    fn roll_back_to(&mut self, sp: TxSavepoint) {
        match self.path {
            Path::Hardware { .. } => {}
            // SAFETY: as in `read`.
            Path::Software(soft) => unsafe { (*soft).tx.rollback_to(sp.engine) },
            // SAFETY: as in `read`: the engine is live and not otherwise borrowed.
            Path::Serial(serial) => unsafe { (*serial).tx.rollback_to(sp.engine) },
        }
        // After the words are restored: the values set since the savepoint
        // are unreachable now, and freed.
        crate::tvar::rollback_to(sp.vars);
    }

    /// Whether `retry` was called (and clears that).
    fn take_retry(&mut self) -> bool {
        match self.path {
            Path::Hardware { .. } => false,
            // SAFETY: as in `read`.
            Path::Software(soft) => unsafe { std::mem::take(&mut (*soft).retry) },
            // SAFETY: as in `read`: the engine is live and not otherwise borrowed.
            Path::Serial(serial) => unsafe { std::mem::take(&mut (*serial).retry) },
        }
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
        match self.path {
            Path::Serial(serial) => {
                // SAFETY: as in `read`.
                unsafe { (*serial).irrevocable = true };
                Ok(())
            }
            Path::Hardware { rtm, .. } => {
                rtm.abort::<{ code::NEEDS_SERIAL }>();
                // Outside a transaction (cannot happen): a plain restart.
                Err(Restart)
            }
            Path::Software(soft) => {
                // SAFETY: as in `read`.
                unsafe { (*soft).want_serial = true };
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
        match self.path {
            // SAFETY: as in `read`.
            Path::Serial(serial) => unsafe { (*serial).irrevocable },
            _ => false,
        }
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

    /// `Tx::set` logged a `TVar` value: a software commit must publish it
    /// (the serial and hardware commits always look at the log).
    #[inline]
    pub(crate) fn note_vars(&mut self) {
        if let Path::Software(soft) = self.path {
            // SAFETY: as in `read`.
            unsafe { (*soft).vars = true };
        }
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
    /// check cost three times the instructions. Its bit [`STM_ONLY`] says
    /// that the site's transactions go straight to the software path.
    id: AtomicU32,
    /// On a cache line of its own: hardware attempts of the site
    /// read it, fallbacks write it, and neither should drag the site's
    /// other fields or neighbouring statics along.
    adaptive: CachePadded<AdaptiveWord>,
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
            adaptive: CachePadded::new(AdaptiveWord::new()),
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
            adaptive: CachePadded::new(AdaptiveWord::new()),
            policy: Some(policy),
        }
    }

    const fn unnamed() -> Site {
        Site {
            name: None,
            id: AtomicU32::new(UNREGISTERED),
            adaptive: CachePadded::new(AdaptiveWord::new()),
            policy: None,
        }
    }

    #[inline]
    fn id(&self) -> SiteId {
        // Relaxed: the id is a plain number; whoever stores it got it from
        // the registry under its lock, and every thread stores the same one.
        match self.id.load(Ordering::Relaxed) {
            UNREGISTERED => self.register(),
            id => SiteId(id & !STM_ONLY),
        }
    }

    /// [`id`](Self::id) on the hybrid path, where the site's `STM_ONLY`
    /// bit is never set (it is set only where no hardware path exists):
    /// no mask, so that the hybrid path's instructions stay as they were.
    #[inline]
    fn hybrid_id(&self) -> SiteId {
        // Relaxed: see `id`.
        match self.id.load(Ordering::Relaxed) {
            UNREGISTERED => self.register(),
            id => {
                debug_assert!(id & STM_ONLY == 0, "an STM-only site on the hybrid path");
                SiteId(id)
            }
        }
    }

    /// Registers the site's statistics row (unnamed sites share
    /// `SiteId::ATOMIC`), and decides once whether its transactions go
    /// straight to the software path. Called from a transaction, after the
    /// runtime is installed.
    #[cold]
    fn register(&self) -> SiteId {
        let id = match self.name {
            Some(name) => SiteId::named(SiteKind::Atomic, name),
            None => SiteId::ATOMIC,
        };
        assert!(id.0 < STM_ONLY >> 1, "too many transaction sites");
        // Straight to the software path: no hardware attempt can run in
        // the process (no RTM, no simulated aborts), no injected rollback
        // is configured, and the site's fallback is the STM. Both the
        // runtime and the policy are fixed from here on.
        let stm_only = crate::runtime::installed().is_some_and(|rt| {
            !rt.hardware_path
                && rt.rtm.is_none()
                && !rt.rollbacks
                && self
                    .policy
                    .as_ref()
                    .unwrap_or(rt.config.default_policy())
                    .fallback_kind()
                    == FallbackKind::Stm
        });
        if stm_only {
            // Before the route is published: its transactions do not note
            // themselves to the elided locks (see `Outermost::enter_noted`).
            crate::elide::note_software_transactions();
        }
        // Release: a thread that sees the route (Acquire in `run`) sees the
        // gate noted. Racing registrations store the same value.
        self.id.store(
            id.0 | if stm_only { STM_ONLY } else { 0 },
            Ordering::Release,
        );
        id
    }

    /// Runs `body` as one transaction at this site; see [`atomic`].
    pub fn atomic<'env, R>(&self, mut body: impl FnMut(&mut Tx<'env>) -> Result<R, Restart>) -> R {
        match self.run(RestartOnly(&mut body)) {
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
        mut body: impl FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>,
    ) -> Result<R, E> {
        self.run(Cancellable(&mut body))
    }

    /// Runs `body` irrevocably (serially) at this site; see
    /// [`atomic_irrevocable`].
    pub fn atomic_irrevocable<'env, R>(&self, mut body: impl FnMut(&mut Tx<'env>) -> R) -> R {
        let outer = CURRENT.with(Cell::get);
        if outer != 0 {
            return run_nested_irrevocable(outer, &mut body);
        }
        let rt = runtime();
        if let Some(rtm) = rt.rtm.filter(|rtm| rtm.test()) {
            // Irrevocable work cannot run speculatively: roll the enclosing
            // transaction back so it reruns on its fallback.
            rtm.abort::<{ code::NEEDS_SERIAL }>();
        }
        let mut sw = SoftwareRun {
            irrevocable: true,
            ..SoftwareRun::default()
        };
        let mut body = |tx: &mut Tx<'env>| Ok::<R, TxError<std::convert::Infallible>>(body(tx));
        let r = run_serial(rt, &mut sw, &mut Cancellable(&mut body));
        sw.count(self.id(), false);
        match r {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    fn run<'env, R, E>(&self, mut body: impl Body<'env, R, E>) -> Result<R, E> {
        let outer = CURRENT.with(Cell::get);
        if outer != 0 {
            // Inside a software or serial body: join it (flat nesting).
            return run_nested(outer, &mut body);
        }
        let rt = runtime();
        // Behind `hardware_path`, which the hybrid path tests anyway: its
        // instructions stay as they were (the HTM model's bank transfer,
        // 2121.7), at 3 more on the software path than testing the site
        // first.
        if !rt.hardware_path {
            // Acquire: pairs with `register`'s Release (a plain load on
            // x86), so the elided locks' gate is seen noted.
            let word = self.id.load(Ordering::Acquire);
            if word & STM_ONLY != 0 {
                // Decided when the site registered (see `register`): no
                // injection or policy check to make here (20 instructions
                // per transaction, callgrind).
                let mut sw = SoftwareRun::default();
                let run = run_software::<true, R, E>(rt, &mut sw, &mut body);
                sw.count_run(SiteId(word & !STM_ONLY), run.first_try, false);
                return run.result;
            }
        }
        let policy = self.policy.as_ref().unwrap_or(rt.config.default_policy());
        if rt.hardware_path && policy.uses_hardware() {
            if let Some(rtm) = rt.rtm {
                if rtm.test() {
                    // On hardware this is always `Ok`. Under the HTM model
                    // an abort inside the body may instead promote the
                    // enclosing elided section to its real locks: the
                    // transaction is over, and the body reruns below as an
                    // ordinary, outermost `atomic`.
                    #[cfg(hytm_model)]
                    let vars = crate::tvar::savepoint();
                    if let Ok(r) = rtm.catch_nested(|| run_nested_hardware(rtm, &mut body)) {
                        #[cfg(hytm_model)]
                        crate::tvar::release(vars);
                        return r;
                    }
                    // Promoted: the model wrote back what the transaction
                    // wrote before this `atomic` (its `TVar` values are
                    // published) and dropped this one's own writes.
                    #[cfg(hytm_model)]
                    {
                        crate::tvar::rollback_to(vars);
                        crate::tvar::commit();
                    }
                }
            }
            match self.try_hardware(rt, policy, &mut body) {
                Ok(r) => return r,
                Err(GaveUp::NeedsSerial) => {
                    let mut sw = SoftwareRun::default();
                    let r = run_serial(rt, &mut sw, &mut body);
                    sw.count(self.id(), policy.fallback_kind() != FallbackKind::Stm);
                    return r;
                }
                Err(_) => {}
            }
        } else if let Some(rtm) = rt.rtm.filter(|rtm| rtm.test()) {
            // Software-only site inside a hardware transaction: the
            // software path cannot run there; roll back, let it run outside.
            rtm.abort::<{ code::NEEDS_SERIAL }>();
        }
        // Every software-only `atomic` comes here: the serial escalation
        // above has its own tail, so this one tests the policy alone.
        let mut sw = SoftwareRun::default();
        let lock = policy.fallback_kind() != FallbackKind::Stm;
        let run = if lock {
            SoftwareEnd {
                result: run_serial(rt, &mut sw, &mut body),
                first_try: false,
            }
        } else {
            run_software::<false, R, E>(rt, &mut sw, &mut body)
        };
        sw.count_run(self.id(), run.first_try, lock);
        run.result
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
        body: &mut impl Body<'env, R, E>,
    ) -> Result<Result<R, E>, GaveUp> {
        let site = self.hybrid_id();
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
            let seq = commit_hardware(&tx, entered);
            (v, seq)
        };
        match attempt::run(rt, hw_policy, site, resource, wait, inside) {
            Ok((v, seq)) => {
                if seq & Globals::WAITING != 0 {
                    // Committed a write while a transaction waits in
                    // `retry`: wake it (a transaction could not).
                    GLOBALS.wake_waiters();
                }
                after_hardware_commit();
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
/// were in flight: add 2 to `seq`, so their reads revalidate. Returns the
/// new `seq` (0 if it did not move it): after the commit, its waiting bit
/// says whether to wake transactions blocked in `retry`.
#[inline(always)]
fn publish_hardware_writes(tx: &Tx<'_>) -> u64 {
    if let Path::Hardware {
        sw_seen: true,
        wrote: true,
        ..
    } = tx.path
    {
        let seq = GLOBALS.seq();
        // Relaxed load + store: inside the transaction the pair is atomic;
        // software readers see the new value and revalidate.
        let s = seq.load(Ordering::Relaxed) + 2;
        seq.store(s, Ordering::Relaxed);
        return s;
    }
    0
}

/// The end of a hardware run: publish the writes to software transactions
/// (see above), then commit (or roll back, for an injected rollback).
/// Returns what `publish_hardware_writes` did.
#[inline(always)]
fn commit_hardware(tx: &Tx<'_>, entered: Entered) -> u64 {
    let seq = publish_hardware_writes(tx);
    // SAFETY: attempt::begin returned `entered` inside a transaction and an
    // abort would have resumed there; we are still inside it.
    unsafe { entered.end() };
    seq
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
fn run_nested_hardware<'env, R, E>(rtm: Rtm, body: &mut impl Body<'env, R, E>) -> Result<R, E> {
    // The elided sections open now enclose this atomic: releasing one of
    // them inside the body aborts (see `elide::held::atomic_begins`).
    struct Sections(usize);
    impl Drop for Sections {
        fn drop(&mut self) {
            crate::elide::atomic_ends(self.0);
        }
    }
    let _sections = Sections(crate::elide::atomic_begins());
    let (tx, v) = run_body_in_hardware(rtm, subscribe_hybrid(rtm), body);
    if publish_hardware_writes(&tx) & Globals::WAITING != 0 {
        // The enclosing transaction's commit publishes this write: whoever
        // ends it wakes the waiters (thread-local, written inside the
        // transaction: an abort takes it back).
        WAKE_AFTER_COMMIT.with(|w| w.set(true));
    }
    Ok(v)
}

thread_local! {
    /// A nested hardware `atomic` wrote while a transaction waits in
    /// `retry`: the outermost commit must wake it.
    static WAKE_AFTER_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// After a hardware transaction committed (an `atomic`, or an elided
/// section's outermost release): wakes the transactions blocked in `retry`
/// if a nested `atomic` inside it wrote while they waited.
#[inline]
pub(crate) fn after_hardware_commit() {
    crate::tvar::commit();
    if WAKE_AFTER_COMMIT.with(|w| w.replace(false)) {
        GLOBALS.wake_waiters();
    }
}

/// Runs the body inside the hardware transaction the caller is in, and
/// returns its value with the `Tx` (which knows whether it wrote). A body
/// that unwinds, restarts or cancels never returns here: the transaction
/// rolls back and the software path gives the definitive answer.
#[inline(always)]
fn run_body_in_hardware<'env, R, E>(
    rtm: Rtm,
    sw_seen: bool,
    body: &mut impl Body<'env, R, E>,
) -> (Tx<'env>, R) {
    let mut tx = Tx {
        path: Path::Hardware {
            rtm,
            sw_seen,
            wrote: false,
        },
        _not_send: PhantomData,
    };
    let abort_on_unwind = AbortOnUnwind(rtm);
    let r = body.call(&mut tx);
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
    /// The software or serial run whose body this thread is running: the
    /// address of its `Engine` (bit 0 set for a serial one), 0 if none. A
    /// nested `atomic` joins it.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread is running the body of a serial transaction.
#[inline]
fn in_serial_body() -> bool {
    CURRENT.with(Cell::get) & 1 == 1
}

/// Marks this thread as running the body of the outermost software or
/// serial run whose engine is at `current` (see `CURRENT`) until dropped.
struct Outermost;

impl Outermost {
    #[inline(always)]
    fn enter(current: usize) -> Outermost {
        crate::elide::note_software_transactions();
        Self::enter_noted(current)
    }

    /// [`enter`](Self::enter) where the elided locks' gate is known to
    /// have noted software transactions already (a site on the software
    /// route: `Site::register` noted them before it published the route).
    #[inline(always)]
    fn enter_noted(current: usize) -> Outermost {
        CURRENT.with(|c| c.set(current));
        Outermost
    }
}

impl Drop for Outermost {
    #[inline(always)]
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(0));
    }
}

/// A transaction's body as the paths call it.
///
/// The software route's first attempt calls it through
/// [`call_first`](Body::call_first), every other path through
/// [`call`](Body::call). A body marked `#[inline(always)]` (see
/// [`atomic`]'s "Hot transactions") is then compiled twice: into the first
/// attempt, where the `Tx`'s path is known and its accesses test no tag,
/// and into `call`, which stays out of line for the other paths. An
/// unmarked body has several call sites and stays out of line unless it
/// is small.
///
/// The wrappers hold the body by reference and call it as itself: a
/// closure around the body would be the one function calling it, so the
/// body would be inlined there rather than into the first attempt.
trait Body<'env, R, E> {
    fn call_first(&mut self, tx: &mut Tx<'env>) -> Result<R, TxError<E>>;
    fn call(&mut self, tx: &mut Tx<'env>) -> Result<R, TxError<E>>;
}

/// `atomic`'s body, whose only error is a [`Restart`].
struct RestartOnly<'a, F>(&'a mut F);

impl<'env, R, F: FnMut(&mut Tx<'env>) -> Result<R, Restart>> Body<'env, R, std::convert::Infallible>
    for RestartOnly<'_, F>
{
    #[inline(always)]
    fn call_first(&mut self, tx: &mut Tx<'env>) -> Result<R, TxError<std::convert::Infallible>> {
        (*self.0)(tx).map_err(TxError::from)
    }

    #[inline]
    fn call(&mut self, tx: &mut Tx<'env>) -> Result<R, TxError<std::convert::Infallible>> {
        (*self.0)(tx).map_err(TxError::from)
    }
}

/// `try_atomic`'s body, and `atomic_irrevocable`'s once wrapped.
struct Cancellable<'a, F>(&'a mut F);

impl<'env, R, E, F: FnMut(&mut Tx<'env>) -> Result<R, TxError<E>>> Body<'env, R, E>
    for Cancellable<'_, F>
{
    #[inline(always)]
    fn call_first(&mut self, tx: &mut Tx<'env>) -> Result<R, TxError<E>> {
        (*self.0)(tx)
    }

    #[inline]
    fn call(&mut self, tx: &mut Tx<'env>) -> Result<R, TxError<E>> {
        (*self.0)(tx)
    }
}

/// The unwinding payload with which a nested `atomic` restarts the
/// outermost transaction (its own return type has no room for it).
struct RestartOutermost;

#[cold]
#[inline(never)]
fn restart_outermost() -> ! {
    resume_unwind(Box::new(RestartOutermost))
}

/// Runs the outermost body once, turning a restart that unwound from a
/// nested `atomic` into `Err(Restart)`; any other unwind goes on.
#[inline(always)]
fn call_body<'env, R, E>(
    body: &mut impl Body<'env, R, E>,
    tx: &mut Tx<'env>,
) -> Result<R, TxError<E>> {
    catching(|| body.call(tx))
}

/// [`call_body`] for the first attempt of a site on the software route:
/// [`Body::call_first`], with a catch of its own (its own closure type, so
/// its own instance of the catch), so that a body compiled into this call
/// stays in the caller's frame.
#[inline(always)]
fn call_body_first<'env, R, E>(
    body: &mut impl Body<'env, R, E>,
    tx: &mut Tx<'env>,
) -> Result<R, TxError<E>> {
    catching(|| body.call_first(tx))
}

/// Runs one call of the body, turning a restart that unwound from a nested
/// `atomic` into `Err(Restart)`.
#[inline(always)]
fn catching<R, E>(call: impl FnOnce() -> Result<R, TxError<E>>) -> Result<R, TxError<E>> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(r) => r,
        Err(payload) => nested_restart(payload),
    }
}

#[cold]
#[inline(never)]
fn nested_restart<R, E>(payload: Box<dyn std::any::Any + Send>) -> Result<R, TxError<E>> {
    if payload.is::<RestartOutermost>() {
        return Err(TxError::Restart(Restart));
    }
    // The body panicked: the transaction ends here, its `TVar` values with
    // it (the engine's writes are discarded or undone as it unwinds).
    crate::tvar::abort();
    resume_unwind(payload)
}

/// The path of the running outermost run whose engine `CURRENT` holds.
#[inline(always)]
fn current_path<'env>(current: usize) -> Path<'env> {
    // The caller's `'env` is not the outermost body's: the cells a nested
    // transaction logs must stay live until the outermost one ends (see
    // the nesting notes on `atomic`).
    if current & 1 == 0 {
        Path::Software(current as *mut Soft<'env>)
    } else {
        Path::Serial((current & !1) as *mut Serial<'env>)
    }
}

/// `atomic` or `try_atomic` inside a software or serial body: runs `body`
/// once as part of it. A cancel rolls back to a savepoint taken here; a
/// restart (or `retry`) restarts the outermost transaction.
#[inline(never)]
fn run_nested<'env, R, E>(current: usize, body: &mut impl Body<'env, R, E>) -> Result<R, E> {
    let mut tx = Tx {
        path: current_path(current),
        _not_send: PhantomData,
    };
    let sp = tx.savepoint();
    match body.call(&mut tx) {
        Ok(v) => {
            if let Some(sp) = sp {
                tx.release(sp);
            }
            Ok(v)
        }
        Err(TxError::Cancel(e)) => {
            if let Some(sp) = sp {
                tx.roll_back_to(sp);
            }
            Err(e)
        }
        Err(TxError::Restart(_)) => restart_outermost(),
    }
}

/// `atomic_irrevocable` inside a software or serial body: a serial one
/// becomes irrevocable here; a software one reruns serially.
#[inline(never)]
fn run_nested_irrevocable<'env, R>(current: usize, body: &mut impl FnMut(&mut Tx<'env>) -> R) -> R {
    let mut tx = Tx {
        path: current_path(current),
        _not_send: PhantomData,
    };
    if tx.become_irrevocable().is_err() {
        restart_outermost();
    }
    body(&mut tx)
}

/// Called by an elided lock before it acquires. Inside a software or serial
/// body it makes the transaction irrevocable first (a software one reruns
/// serially, before the lock is taken), so the section runs exactly once
/// and no conflicting commit runs beside it; it then returns `true`, and
/// the lock is taken for real. `false` outside such a body.
#[inline(always)]
pub(crate) fn before_lock() -> bool {
    let current = CURRENT.with(Cell::get);
    if current == 0 {
        return false;
    }
    make_irrevocable_for_lock(current);
    true
}

#[cold]
#[inline(never)]
fn make_irrevocable_for_lock(current: usize) {
    let mut tx = Tx {
        path: current_path::<'static>(current),
        _not_send: PhantomData,
    };
    if tx.become_irrevocable().is_err() {
        restart_outermost();
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

    /// Counts a run; `first_try` as `SoftwareEnd` says.
    #[inline]
    fn count_run(&self, site: SiteId, first_try: bool, lock_fallback: bool) {
        // One call into the statistics on the common path: with more,
        // LLVM stopped inlining their thread-local access.
        if first_try || self.first_try_commit {
            stats::count(site, Outcome::SoftwareCommit);
        } else {
            self.count_rest(site, lock_fallback);
        }
    }

    #[inline]
    fn count(&self, site: SiteId, lock_fallback: bool) {
        self.count_run(site, false, lock_fallback);
    }

    /// A run that restarted, rolled back, escalated or cancelled.
    #[cold]
    #[inline(never)]
    fn count_rest(&self, site: SiteId, lock_fallback: bool) {
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

/// How [`end_software_slow`] ended the attempt.
enum SlowEnd {
    Committed,
    /// An injected rollback: run the body again.
    RolledBack,
    /// The commit failed: restart.
    Failed,
}

/// The end of a software attempt that set `TVar`s or may be rolled back by
/// injection (out of line, so that the common commit stays as it was).
#[cold]
#[inline(never)]
fn end_software_slow(rt: &Runtime, sw: &mut SoftwareRun, engine: &mut Soft<'_>) -> SlowEnd {
    if sw.inject_rollback(rt) {
        // The redo log is dropped unpublished: not one write of this run
        // may be visible. Not a conflict: it does not count towards the
        // escalation to serial.
        engine.tx.discard();
        engine.vars = false;
        crate::tvar::abort();
        return SlowEnd::RolledBack;
    }
    if engine.tx.commit_last().is_err() {
        return SlowEnd::Failed;
    }
    crate::tvar::commit();
    engine.vars = false;
    sw.commits += 1;
    sw.first_try_commit = sw.restarts == 0 && sw.rollbacks == 0;
    SlowEnd::Committed
}

/// The software (STM) path, escalating to serial after repeated restarts.
///
/// `STM_ONLY`: the site is known to run nothing but this path (see
/// `Site::register`), so the runtime's hardware and injection flags are
/// known false.
fn run_software<'env, const STM_ONLY: bool, R, E>(
    rt: &Runtime,
    sw: &mut SoftwareRun,
    body: &mut impl Body<'env, R, E>,
) -> SoftwareEnd<R, E> {
    let hardware = !STM_ONLY && rt.rtm.is_some();
    let rollbacks = !STM_ONLY && rt.rollbacks;
    // Without a hardware path in this process nobody reads `sw_active`.
    let mut engine: Soft<'env> = Engine::new(SoftTx::begin_for(&GLOBALS, hardware), false);
    let e: *mut Soft<'env> = &mut engine;
    let mut tx = Tx {
        path: Path::Software(e),
        _not_send: PhantomData,
    };
    let scope = if STM_ONLY {
        Outermost::enter_noted(e as usize)
    } else {
        Outermost::enter(e as usize)
    };
    // The first attempt and its plain commit are here, the common case;
    // everything else (`TVar` values, injection, cancel, retry, restarts)
    // is in `software_attempts`, out of line, so that this frame stays
    // small (7 instructions fewer per transaction, 8 on the hash set,
    // callgrind).
    let first = match if STM_ONLY {
        call_body_first(body, &mut tx)
    } else {
        call_body(body, &mut tx)
    } {
        Ok(v) => {
            // SAFETY: the body has returned: no other reference to the
            // engine is live until the next call.
            let engine = unsafe { &mut *e };
            // One test (as many instructions as the injection test alone):
            // whether anything but a plain commit is to happen here.
            if engine.vars || rollbacks {
                Some(Ok(v))
            } else if engine.tx.commit_last().is_ok() {
                // The first attempt: no restart, no rollback yet; `sw` is
                // left alone (see `SoftwareEnd`).
                return SoftwareEnd {
                    result: Ok(v),
                    first_try: true,
                };
            } else {
                None
            }
        }
        Err(x) => Some(Err(x)),
    };
    let result = match software_attempts(rt, sw, body, e, first) {
        Some(r) => r,
        None => {
            // Release the software transaction (sw_active) before the
            // serial one takes its place.
            drop(scope);
            drop(engine);
            run_serial(rt, sw, body)
        }
    };
    SoftwareEnd {
        result,
        first_try: false,
    }
}

/// How a software run ended. `first_try`: its first attempt committed with
/// a plain commit, which is then all there is to count. Returned rather
/// than noted in `SoftwareRun`: the slow path has that one's address, so
/// LLVM stored the flag and loaded it back (3 instructions per
/// transaction, callgrind).
struct SoftwareEnd<R, E> {
    result: Result<R, E>,
    first_try: bool,
}

/// The rest of a software run after its first attempt: `first` is what the
/// body returned (`None`: it returned `Ok`, and the commit failed). Returns
/// the run's result, or `None` to escalate to the serial path.
///
/// The later attempts get a `Tx` of their own (a software `Tx` never
/// changes): the first attempt's then goes nowhere but into the body, so
/// that a body compiled into the first attempt (see `Body`) keeps its path
/// known across the engine's out-of-line calls (a marked bank transfer:
/// 14 instructions, callgrind).
#[inline(never)]
fn software_attempts<'env, R, E>(
    rt: &Runtime,
    sw: &mut SoftwareRun,
    body: &mut impl Body<'env, R, E>,
    e: *mut Soft<'env>,
    first: Option<Result<R, TxError<E>>>,
) -> Option<Result<R, E>> {
    let tx = &mut Tx {
        path: Path::Software(e),
        _not_send: PhantomData,
    };
    let mut attempt = first;
    loop {
        // SAFETY: the body has returned: no other reference to the engine
        // is live until the next call.
        let engine = unsafe { &mut *e };
        // Whether the attempt ends in a conflict (restart or escalate);
        // else it runs again as it is (an injected rollback, a `retry`).
        let conflict = match attempt {
            Some(Ok(v)) => {
                if engine.vars || rt.rollbacks {
                    match end_software_slow(rt, sw, engine) {
                        SlowEnd::Committed => return Some(Ok(v)),
                        SlowEnd::RolledBack => false,
                        SlowEnd::Failed => true,
                    }
                } else if engine.tx.commit_last().is_ok() {
                    sw.commits += 1;
                    sw.first_try_commit = sw.restarts == 0 && sw.rollbacks == 0;
                    return Some(Ok(v));
                } else {
                    true
                }
            }
            // The commit failed: restart.
            None => true,
            Some(Err(TxError::Cancel(e))) => {
                crate::tvar::abort();
                sw.cancelled = true;
                return Some(Err(e));
            }
            Some(Err(TxError::Restart(_))) if engine.retry => {
                // `Tx::retry`: not a conflict; park until a change.
                engine.retry = false;
                engine.vars = false;
                crate::tvar::abort();
                engine.tx.wait_for_change();
                false
            }
            Some(Err(TxError::Restart(_))) if engine.want_serial => {
                crate::tvar::abort();
                return None;
            }
            Some(Err(TxError::Restart(_))) => true,
        };
        if conflict {
            // The attempt restarts (or escalates): what it set is freed.
            engine.vars = false;
            crate::tvar::abort();
            sw.restarts += 1;
            if engine.tx.restarts() + 1 >= SERIAL_AFTER_RESTARTS {
                return None;
            }
            engine.tx.restart();
        }
        // The one call of the body in the rest of the run.
        attempt = Some(call_body(body, tx));
    }
}

/// The serial-irrevocable path: runs alone, with an undo log so that a panic
/// or a cancel leaves nothing behind.
fn run_serial<'env, R, E>(
    rt: &Runtime,
    sw: &mut SoftwareRun,
    body: &mut impl Body<'env, R, E>,
) -> Result<R, E> {
    loop {
        let mut engine: Serial<'env> = Engine::new(
            SerialTx::begin_for(&GLOBALS, rt.rtm.is_some()),
            sw.irrevocable,
        );
        let e: *mut Serial<'env> = &mut engine;
        let r = {
            let _scope = Outermost::enter(e as usize | 1);
            let mut tx = Tx {
                path: Path::Serial(e),
                _not_send: PhantomData,
            };
            call_body(body, &mut tx)
        };
        match r {
            // Dropping the serial transaction (at the end of this
            // iteration) applies its undo log.
            Ok(_) if !engine.irrevocable && sw.inject_rollback(rt) => crate::tvar::abort(),
            Ok(v) => {
                engine.tx.commit();
                crate::tvar::commit();
                // Counted on commit only, like software commits: a
                // cancelled execution counts on no path.
                sw.serial = true;
                return Ok(v);
            }
            // Dropping the serial transaction undoes its writes.
            Err(TxError::Cancel(e)) => {
                // The undo log is applied when `engine` drops, after this:
                // the words still hold the values freed here, but `seq` is
                // odd, so no other thread reads them.
                crate::tvar::abort();
                sw.cancelled = true;
                return Err(e);
            }
            // `Tx::retry`: undo, let others run, park until a change.
            Err(TxError::Restart(_)) if engine.retry => {
                crate::tvar::abort();
                engine.tx.wait_for_change();
            }
            // A serial run cannot conflict; a body that asks to restart
            // anyway (a user-level retry) gets a clean rerun.
            Err(TxError::Restart(_)) => crate::tvar::abort(),
        }
    }
}

static UNNAMED: Site = Site::unnamed();

/// `Site::id` before the site's first transaction registered its row (bit
/// `STM_ONLY` clear, so that one test of the bit reads a registered site's
/// route).
const UNREGISTERED: u32 = !STM_ONLY;

/// The bit of `Site::id` set when the site's transactions go straight to
/// the software path (see `Site::register`).
const STM_ONLY: u32 = 1 << 31;

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
/// # Nesting
///
/// Called inside another transaction (on any path: hardware, software,
/// serial), `atomic`, [`try_atomic`] and [`atomic_irrevocable`] join it
/// (flat nesting): the inner body's reads and writes are the outer
/// transaction's and commit with it, a restart (or [`Tx::retry`]) restarts
/// the outermost transaction, an inner [`TxError::Cancel`] rolls back only
/// the inner body's writes and returns its error to the outer body, and an
/// inner `atomic_irrevocable` makes the outer transaction irrevocable. So a
/// library function built on `try_atomic` composes:
///
/// ```
/// use hytm::{TCell, TxError};
///
/// fn transfer(from: &TCell<i64>, to: &TCell<i64>, n: i64) -> Result<(), &'static str> {
///     hytm::try_atomic(|tx| {
///         let a = tx.read(from)?;
///         if a < n {
///             return Err(TxError::Cancel("insufficient funds"));
///         }
///         tx.write(from, a - n)?;
///         let b = tx.read(to)?;
///         tx.write(to, b + n)?;
///         Ok(())
///     })
/// }
///
/// let (a, b, c) = (TCell::new(10), TCell::new(0), TCell::new(0));
/// // Both transfers or neither; the second one's cancel is the outer's.
/// let r = hytm::try_atomic(|tx| {
///     transfer(&a, &b, 10).map_err(TxError::Cancel)?;
///     transfer(&a, &c, 5).map_err(TxError::Cancel)?;
///     Ok(())
/// });
/// assert_eq!(r, Err("insufficient funds"));
/// assert_eq!((a.load(), b.load(), c.load()), (10, 0, 0));
/// // An inner cancel the outer body handles undoes only the inner writes.
/// hytm::atomic(|tx| {
///     tx.write(&c, 1)?;
///     if transfer(&a, &b, 50).is_err() {
///         transfer(&a, &b, 5).unwrap();
///     }
///     Ok(())
/// });
/// assert_eq!((a.load(), b.load(), c.load()), (5, 5, 1));
/// ```
///
/// A nested restart in a software transaction reaches the outermost one by
/// unwinding (the inner call has nothing to return): a build with
/// `panic = "abort"` aborts there. The cells a nested transaction touches
/// are logged until the outermost transaction ends; a cell dropped (or
/// consumed by [`TCell::into_inner`]) on this thread before then leaves the
/// transaction's logs. Do not free a cell a nested transaction used without
/// dropping it (`mem::forget` of its owner, then freeing the memory) before
/// the outermost transaction ends, and do not let another thread free it
/// meanwhile.
///
/// # Hot transactions
///
/// Where no hardware path runs (no RTM, or `HYTM_MODE=fallback`), at a
/// site whose fallback is the STM and with no injected rollbacks, a body
/// (of `atomic` or `try_atomic`) marked `#[inline(always)]` is compiled
/// into the software path's first attempt. There its accesses know they
/// are on the software path, and its captures need not be passed to it. A bank transfer then takes
/// about 329 instructions instead of 368, and a hash-set operation 193
/// instead of 215 (callgrind, see `docs/benchmarks.md`). The cost is code
/// size: the body is compiled twice, once there and once, out of line,
/// for every other path. Helper functions the body calls need the mark
/// too.
///
/// ```
/// use hytm::TCell;
///
/// let (a, b) = (TCell::new(10_i64), TCell::new(0_i64));
/// hytm::atomic(#[inline(always)] |tx| {
///     let x = tx.read(&a)?;
///     tx.write(&a, x - 1)?;
///     let y = tx.read(&b)?;
///     tx.write(&b, y + 1)
/// });
/// assert_eq!((a.load(), b.load()), (9, 1));
/// ```
///
/// # Panics
///
/// If the body panics (after rolling back its writes).
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
/// Its `TCell` writes still roll back if it panics. Nested in another
/// transaction, it makes that one irrevocable (a software transaction
/// reruns serially first).
///
/// A serial transaction (this one, and the fallback after repeated
/// restarts or at a [`FallbackKind::GlobalLock`] site) holds the protocol's
/// `seq` odd for its whole body: every other transaction, and
/// [`TCell::load`] on other threads, waits until it ends. So its body must
/// not wait for another thread that may itself be waiting for a
/// transaction: taking a user lock that such a thread holds deadlocks both.
/// ([`TCell::load`] on the serial transaction's own thread does not wait.)
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
/// writes back (in a striped process: while it locks its records) or a
/// serial transaction runs; `sw_active` counts software
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sites_adaptive_word_has_a_cache_line_of_its_own() {
        // Adaptive state lives on its own cache line. Statics sit next to
        // each other, so the word must not share its line with the site's
        // other fields nor with whatever precedes or follows the site.
        static SITES: [Site; 2] = [Site::new("a"), Site::new("b")];
        for site in &SITES {
            let word = &site.adaptive as *const _ as usize;
            let size = std::mem::size_of_val(&site.adaptive);
            assert_eq!(word % 64, 0, "the adaptive word does not start a line");
            assert!(
                size >= 64,
                "the adaptive word's line is shared ({size} bytes)"
            );
            for other in [
                &site.id as *const _ as usize,
                &site.name as *const _ as usize,
            ] {
                assert!(other < word || other >= word + size);
            }
        }
    }
}
