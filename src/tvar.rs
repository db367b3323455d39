//! [`TVar`]: a transactional variable holding any `Send + Sync` value, as
//! one word (a pointer to an immutable, boxed value) that transactions
//! replace as a whole.
//!
//! # Reclamation
//!
//! A value replaced by a committed transaction may still be being cloned by
//! a transaction on another thread that read the old pointer. It is freed
//! through `crossbeam-epoch`: the committing thread hands it to
//! `defer_unchecked` after its commit, and every reader pins the epoch
//! before it reads the pointer word and holds the guard while it clones.
//! Readers pin on the software and serial paths, and on the hardware path
//! under the HTM model (which does not protect plain memory). A real RTM
//! reader does not pin: the pointer word is in its read set, so the commit
//! that replaces it aborts the reader before the value can be freed, and
//! pinning would write the epoch's shared per-thread line inside the
//! transaction.
//!
//! # Values that are never published
//!
//! Each thread keeps a log of what its running transaction did to `TVar`s:
//! the values it allocated (`set`) and the committed values it replaced.
//! The transaction runtime (`src/tx.rs`) calls [`commit`] when the
//! transaction commits (replaced values are deferred), [`abort`] when an
//! attempt is given up for any reason (restart, cancel, retry, injected
//! rollback, panic, hardware abort under the model: the values it
//! allocated are freed at once, nobody else ever saw them), and
//! [`savepoint`], [`release`] and [`rollback_to`] around nested
//! transactions and `or_else`. On real RTM an abort also rolls the log and
//! the allocator back, so nothing is left to free there. A value set twice
//! in one transaction (with no savepoint in between) is freed at the second
//! `set` (at commit instead if a reference to a value is held on the
//! thread then: a `get_with` closure that runs a nested transaction).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;

use crossbeam_epoch as epoch;

use crate::tx::{TCell, Tx};
use crate::Restart;

/// A transactional variable holding a value of any `Send + Sync` type.
///
/// Internally one transactional word (itself boxed, so that a `TVar` moves
/// freely), holding a pointer to an immutable boxed value. A
/// transaction reads it with [`Tx::get`] (a clone of the current value) and
/// replaces it with [`Tx::set`]; outside transactions, [`TVar::load`]
/// clones the committed value. Replaced values are freed once no
/// transaction can still read them (epoch-based reclamation), and values
/// set by a transaction that does not commit are freed at once.
///
/// Keep the values cheap to clone (an `Arc` for large ones): every
/// [`Tx::get`] clones.
///
/// ```
/// use hytm::TVar;
///
/// let name = TVar::new(String::from("ada"));
/// let len = hytm::atomic(|tx| {
///     let mut s = tx.get(&name)?;
///     s.push_str(" lovelace");
///     let len = s.len();
///     tx.set(&name, s)?;
///     Ok(len)
/// });
/// assert_eq!(len, 12);
/// assert_eq!(name.load(), "ada lovelace");
/// ```
pub struct TVar<T: Send + Sync + 'static> {
    /// The current value: a pointer from `Box::into_raw` (null only after
    /// `into_inner`). Boxed, so that the word keeps its address when the
    /// variable moves: a transaction on this thread may have logged it,
    /// and dropping a moved variable must find it in the logs.
    cell: Box<TCell<*const T>>,
    /// A `TVar` owns its value.
    _owns: PhantomData<T>,
}

// SAFETY: the values a TVar owns are `Send + Sync`; the pointer word is an
// atomic word shared through the transaction protocol, and the pointed-to
// values are immutable once published (every access is a shared borrow to
// clone, or the free of an unreachable value, which may happen on any
// thread: `T: Send`).
unsafe impl<T: Send + Sync + 'static> Send for TVar<T> {}
// SAFETY: as above: shared access only clones `T` (`T: Sync`).
unsafe impl<T: Send + Sync + 'static> Sync for TVar<T> {}

impl<T: Send + Sync + 'static> TVar<T> {
    /// A new variable holding `value`.
    ///
    /// ```
    /// let v = hytm::TVar::new(vec![1u32, 2, 3]);
    /// assert_eq!(v.load(), [1, 2, 3]);
    /// ```
    pub fn new(value: T) -> TVar<T> {
        TVar {
            cell: Box::new(TCell::new(Box::into_raw(Box::new(value)).cast_const())),
            _owns: PhantomData,
        }
    }

    /// Clones the committed value, outside any transaction (inside one,
    /// use [`Tx::get`]: `load` sees only committed values and does not
    /// join the transaction). Each call sees one committed value, like
    /// [`TCell::load`].
    ///
    /// ```
    /// let v = hytm::TVar::new(String::from("x"));
    /// hytm::atomic(|tx| tx.set(&v, String::from("y")));
    /// assert_eq!(v.load(), "y");
    /// ```
    pub fn load(&self) -> T
    where
        T: Clone,
    {
        // Pinned before the pointer is read, held while cloning: a value
        // replaced meanwhile is not freed under us.
        let _guard = epoch::pin();
        // `clone` is the user's code and may run a transaction that sets
        // this variable (inside a serial transaction `p` may be our own).
        let _borrow = Borrow::new();
        let p = self.cell.load();
        // SAFETY: `p` is a committed value (or this thread's own serial
        // transaction's), allocated by `Box::into_raw`; it is freed only by
        // a deferred destructor registered after the commit that replaced
        // it, which cannot run while we are pinned, or by `Drop`, which
        // needs `&mut self`.
        unsafe { (*p).clone() }
    }

    /// A mutable reference proves no transaction can reach the variable:
    /// replaces the value directly (the old one is dropped at once).
    ///
    /// ```
    /// let mut v = hytm::TVar::new(1u8);
    /// v.set_mut(2);
    /// assert_eq!(v.into_inner(), 2);
    /// ```
    pub fn set_mut(&mut self, value: T) {
        let new = Box::into_raw(Box::new(value)).cast_const();
        let old = self.take_current();
        self.cell.set_mut(new);
        // SAFETY: `old` was the current value, owned by this variable, and
        // `&mut self` proves no transaction or reader holds it.
        drop(unsafe { Box::from_raw(old.cast_mut()) });
    }

    /// Consumes the variable and returns its value.
    ///
    /// ```
    /// let v = hytm::TVar::new(String::from("owned"));
    /// assert_eq!(v.into_inner(), "owned");
    /// ```
    pub fn into_inner(mut self) -> T {
        let p = self.take_current();
        // The value now belongs to us: leave a null behind for `Drop`.
        self.cell.set_mut(std::ptr::null());
        // SAFETY: `p` was the committed value, owned by this variable, and
        // nothing else can reach it (`self` by value).
        *unsafe { Box::from_raw(p.cast_mut()) }
    }

    /// The committed value, for an owner with `&mut self`: the variable
    /// leaves the log of a transaction running on this thread (a nested one
    /// may have set it), whose values for it are freed.
    fn take_current(&mut self) -> *const T {
        let word = self.cell.word_addr();
        let committed = forget_var(word);
        // The engine forgets the word too: a serial transaction would undo
        // its write to it, a software one write it back.
        self.cell.leave_transaction();
        if let Some(committed) = committed {
            return committed.cast::<T>();
        }
        // Not set by a running transaction: the word holds the committed
        // value.
        self.cell.load_exclusive()
    }
}

impl<T: Send + Sync + 'static> Drop for TVar<T> {
    fn drop(&mut self) {
        let p = self.take_current();
        if !p.is_null() {
            // SAFETY: the committed value, owned by this variable; `&mut
            // self` proves no reader holds it.
            drop(unsafe { Box::from_raw(p.cast_mut()) });
        }
        // The `TCell` then leaves the engine's logs (its own `Drop`).
    }
}

impl<T: Send + Sync + Default + 'static> Default for TVar<T> {
    /// ```
    /// let v: hytm::TVar<String> = Default::default();
    /// assert_eq!(v.load(), "");
    /// ```
    fn default() -> TVar<T> {
        TVar::new(T::default())
    }
}

impl<T: Send + Sync + 'static> From<T> for TVar<T> {
    /// ```
    /// let v = hytm::TVar::from(vec![7u32]);
    /// assert_eq!(v.load(), [7]);
    /// ```
    fn from(value: T) -> TVar<T> {
        TVar::new(value)
    }
}

impl<T: Send + Sync + Clone + fmt::Debug + 'static> fmt::Debug for TVar<T> {
    /// ```
    /// let v = hytm::TVar::new(String::from("hi"));
    /// assert_eq!(format!("{v:?}"), "TVar(\"hi\")");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TVar").field(&self.load()).finish()
    }
}

impl<'env> Tx<'env> {
    /// Reads a [`TVar`]: a clone of its value in this transaction.
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let v = hytm::TVar::new(vec![1u32, 2]);
    /// let sum: u32 = hytm::atomic(|tx| Ok(tx.get(&v)?.iter().sum()));
    /// assert_eq!(sum, 3);
    /// ```
    #[inline]
    pub fn get<T: Clone + Send + Sync + 'static>(
        &mut self,
        var: &'env TVar<T>,
    ) -> Result<T, Restart> {
        self.get_with(var, T::clone)
    }

    /// Reads a [`TVar`] by reference: runs `f` on its value in this
    /// transaction and returns what `f` returns, without cloning the value
    /// (the borrowing form of [`Tx::get`]: the reference lives only as long
    /// as the call).
    ///
    /// `f` may run more than once in all (the transaction may rerun):
    /// compute from the value, do nothing irrevocable. It sees a value
    /// consistent with everything the transaction read before (opacity).
    ///
    /// # Errors
    ///
    /// As [`Tx::read`].
    ///
    /// ```
    /// let v = hytm::TVar::new(String::from("a long text, read in place"));
    /// let words = hytm::atomic(|tx| tx.get_with(&v, |s| s.split(' ').count()));
    /// assert_eq!(words, 6);
    /// ```
    #[inline]
    pub fn get_with<T: Send + Sync + 'static, R>(
        &mut self,
        var: &'env TVar<T>,
        f: impl FnOnce(&T) -> R,
    ) -> Result<R, Restart> {
        // Pinned before the pointer word is read and held while `f` runs
        // (see the module docs; not on real RTM, where the read set
        // protects the value and pinning would write a shared line).
        let _guard = (!self.is_hardware() || cfg!(hytm_model)).then(epoch::pin);
        let p = self.read(&var.cell)?;
        // `f` is the caller's code: if it runs a nested transaction that
        // replaces this variable, a value of ours must not be freed at
        // once while `f` holds it.
        let _borrow = Borrow::new();
        // SAFETY: `p` came from a consistent read of the pointer word: a
        // committed value, or one this transaction allocated. A committed
        // value is freed only by a destructor deferred after the commit
        // that replaced it, which cannot run while we are pinned (on real
        // RTM that commit aborts us before it can be freed); our own values
        // live until this transaction ends (which cannot happen inside `f`:
        // an abort there unwinds out of this frame first) or replaces them,
        // and a replacement while `_borrow` lives defers the free to the
        // commit (see `retire`). The reference does not outlive `f`.
        Ok(f(unsafe { &*p }))
    }

    /// Replaces a [`TVar`]'s value (visible to others when the transaction
    /// commits; the old value is then freed once no reader can hold it).
    /// If the transaction does not commit, `value` is dropped.
    ///
    /// # Errors
    ///
    /// As [`Tx::read`] (the old pointer is read to retire it).
    ///
    /// ```
    /// let v = hytm::TVar::new(String::from("old"));
    /// hytm::atomic(|tx| tx.set(&v, String::from("new")));
    /// assert_eq!(v.load(), "new");
    /// ```
    pub fn set<T: Send + Sync + 'static>(
        &mut self,
        var: &'env TVar<T>,
        value: T,
    ) -> Result<(), Restart> {
        let word = var.cell.word_addr();
        let old = self.read(&var.cell)?;
        let new = Box::into_raw(Box::new(value));
        // Logged before the write: under the HTM model the write may abort
        // (unwinding), and the abort hook then frees `new`.
        self.note_vars();
        push(Entry {
            word,
            ptr: new.cast(),
            drop: drop_box::<T>,
            kind: Kind::Alloc,
        });
        self.write(&var.cell, new.cast_const())?;
        if let Some(free_now) = retire(word, old.cast_mut().cast(), drop_box::<T>) {
            // SAFETY: `free_now` is a value this transaction allocated after
            // its innermost savepoint and has just replaced: nobody else
            // ever saw it, and no rollback can bring it back.
            unsafe { drop_box::<T>(free_now) };
        }
        Ok(())
    }
}

/// Frees a value boxed as `T`.
///
/// # Safety
///
/// `p` came from `Box::<T>::into_raw` and is not used afterwards.
unsafe fn drop_box<T>(p: *mut ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(p.cast::<T>()) });
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Allocated by this transaction and written to `word`: freed if the
    /// transaction (or the savepoint scope it belongs to) does not commit.
    Alloc,
    /// A committed value this transaction replaced: deferred at commit.
    Retire,
    /// A value this transaction allocated before a savepoint and replaced
    /// after it, or replaced while a reference to a value was held on this
    /// thread: freed at commit (never published); its `Alloc` entry frees
    /// it instead if the transaction, or the scope that allocated it, is
    /// undone.
    RetireOwn,
    /// Nothing any more (freed early, or its variable was dropped).
    Dead,
}

struct Entry {
    /// The address of the variable's pointer word.
    word: usize,
    ptr: *mut (),
    drop: unsafe fn(*mut ()),
    kind: Kind,
}

/// This thread's running transaction's `TVar` log.
struct Log {
    entries: Vec<Entry>,
    /// Where the innermost open savepoint's entries start.
    floor: usize,
}

/// A reference to a `TVar` value is held on this thread (while it lives).
struct Borrow;

impl Borrow {
    #[inline]
    fn new() -> Borrow {
        BORROWS.with(|b| b.set(b.get() + 1));
        Borrow
    }
}

impl Drop for Borrow {
    #[inline]
    fn drop(&mut self) {
        BORROWS.with(|b| b.set(b.get() - 1));
    }
}

thread_local! {
    /// How many references to `TVar` values this thread holds now (in
    /// `get_with`, `get` and `load`, while the caller's code runs on them).
    static BORROWS: Cell<usize> = const { Cell::new(0) };
    /// Whether `LOG` may hold entries: the one thing the runtime's hooks
    /// read on every transaction (no destructor, so a plain TLS load).
    static PENDING: Cell<bool> = const { Cell::new(false) };
    static LOG: RefCell<Log> = const {
        RefCell::new(Log {
            entries: Vec::new(),
            floor: 0,
        })
    };
}

#[inline]
fn push(e: Entry) {
    PENDING.with(|p| p.set(true));
    LOG.with(|l| l.borrow_mut().entries.push(e));
}

/// Logs that `old` was replaced in `word`; returns it if it is to be freed
/// at once (this transaction allocated it after its innermost savepoint).
fn retire(word: usize, old: *mut (), drop: unsafe fn(*mut ())) -> Option<*mut ()> {
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        let floor = l.floor;
        let own = l
            .entries
            .iter()
            .rposition(|e| e.kind == Kind::Alloc && e.ptr == old && e.word == word);
        let kind = match own {
            // Not while a reference to a value may be held on this thread
            // (`get_with`, or a clone in `get`): then it is freed at commit,
            // as below, or by the abort that frees its `Alloc` entry.
            Some(i) if i >= floor && BORROWS.with(Cell::get) == 0 => {
                l.entries[i].kind = Kind::Dead;
                return Some(old);
            }
            Some(_) => Kind::RetireOwn,
            None => Kind::Retire,
        };
        l.entries.push(Entry {
            word,
            ptr: old,
            drop,
            kind,
        });
        None
    })
}

/// A variable goes away while this thread's transaction may have set it:
/// frees what the transaction allocated for it, forgets its entries, and
/// returns the committed value if the transaction replaced it (else the
/// word itself holds the committed value).
fn forget_var(word: usize) -> Option<*mut ()> {
    if !PENDING.with(Cell::get) {
        return None;
    }
    let mut free = Vec::new();
    let committed = LOG.with(|l| {
        let mut committed = None;
        for e in l.borrow_mut().entries.iter_mut().filter(|e| e.word == word) {
            match e.kind {
                Kind::Alloc => free.push((e.ptr, e.drop)),
                Kind::Retire => committed = Some(e.ptr),
                Kind::RetireOwn | Kind::Dead => {}
            }
            e.kind = Kind::Dead;
        }
        committed
    });
    for (p, drop) in free {
        // SAFETY: allocated by the running transaction and never published;
        // its entry is dead now, so nothing frees it again.
        unsafe { drop(p) };
    }
    committed
}

/// Takes the log's entries out (so that destructors run with it free).
fn take() -> Vec<Entry> {
    PENDING.with(|p| p.set(false));
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        l.floor = 0;
        std::mem::take(&mut l.entries)
    })
}

/// Gives an emptied buffer back, to keep its capacity.
fn give(mut entries: Vec<Entry>) {
    entries.clear();
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        if l.entries.capacity() == 0 {
            l.entries = entries;
        }
    });
}

/// The running transaction committed: its replaced values are deferred
/// until no reader can hold them; its own replaced values are freed.
#[inline(always)]
pub(crate) fn commit() {
    if PENDING.with(Cell::get) {
        commit_slow();
    }
}

#[cold]
#[inline(never)]
fn commit_slow() {
    let mut entries = take();
    let guard = epoch::pin();
    for e in entries.drain(..) {
        let (p, drop) = (e.ptr, e.drop);
        match e.kind {
            Kind::Retire => {
                // SAFETY: `p` was the committed value that this transaction
                // replaced, now unreachable from its word; every reader that
                // could still hold it pinned before reading it, so the
                // destructor runs only after they unpinned. `T: Send`, so it
                // may run on another thread.
                unsafe { guard.defer_unchecked(move || drop(p)) };
            }
            // SAFETY: allocated by this transaction and replaced by it:
            // never published.
            Kind::RetireOwn => unsafe { drop(p) },
            Kind::Alloc | Kind::Dead => {}
        }
    }
    give(entries);
}

/// The running transaction's attempt is given up (restart, cancel, retry,
/// injected rollback, panic, abort): the values it allocated are freed.
#[inline(always)]
pub(crate) fn abort() {
    if PENDING.with(Cell::get) {
        abort_slow();
    }
}

#[cold]
#[inline(never)]
fn abort_slow() {
    let mut entries = take();
    free_allocs(&mut entries);
    give(entries);
}

fn free_allocs(entries: &mut Vec<Entry>) {
    for e in entries.drain(..) {
        if e.kind == Kind::Alloc {
            // SAFETY: allocated by the attempt being given up and never
            // published (its writes are discarded or undone).
            unsafe { (e.drop)(e.ptr) };
        }
    }
}

/// Opens a savepoint scope; returns what [`release`] or [`rollback_to`]
/// need to close it.
#[inline]
pub(crate) fn savepoint() -> usize {
    if !PENDING.with(Cell::get) {
        // Empty log: floor and length are 0 and stay so until a push.
        return 0;
    }
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        let prev = l.floor;
        l.floor = l.entries.len();
        prev
    })
}

/// Closes a savepoint scope, keeping what it did.
#[inline]
pub(crate) fn release(prev: usize) {
    if PENDING.with(Cell::get) {
        LOG.with(|l| l.borrow_mut().floor = prev);
    }
}

/// Closes a savepoint scope, undoing what it did: frees what it allocated.
#[inline]
pub(crate) fn rollback_to(prev: usize) {
    if !PENDING.with(Cell::get) {
        return;
    }
    let mut undone = LOG.with(|l| {
        let mut l = l.borrow_mut();
        let floor = l.floor;
        l.floor = prev;
        l.entries.split_off(floor)
    });
    free_allocs(&mut undone);
}

#[cfg(test)]
mod tests {
    //! The frees that happen at once (abort, cancel, savepoint rollback,
    //! a value set twice, a panic, dropping the variable), single-threaded
    //! and with no epoch flushing, so that Miri checks them too for use
    //! after free and double free. The deferred frees of committed
    //! replacements are checked by `tests/tvar.rs`.

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::TVar;
    use crate::TxError;

    struct Counted(&'static AtomicUsize, Box<u32>);

    impl Clone for Counted {
        fn clone(&self) -> Counted {
            Counted(self.0, self.1.clone())
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    // Under Miri's default Stacked Borrows, crossbeam-epoch 0.9 itself
    // fails (a retag in its `internal.rs`), and the deferred value left in
    // its global queue is reported as a leak: the CI's plain Miri step
    // skips this test, and a second step runs it (with `TMap`'s) under
    // `MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks"`.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn values_that_are_never_published_are_freed_at_once() {
        // The software path, where each body here runs once (on the
        // hardware path, under the HTM model, an aborted attempt reruns).
        static STM: crate::Site =
            crate::Site::with_policy("tvar unit", crate::Policy::DEFAULT.hardware(false));
        static DROPPED: AtomicUsize = AtomicUsize::new(0);
        let dropped = || DROPPED.load(Ordering::SeqCst);
        let v = TVar::new(Counted(&DROPPED, Box::new(0)));

        // A cancel frees both values it set (the first at the second set).
        let r: Result<(), ()> = STM.try_atomic(|tx| {
            tx.set(&v, Counted(&DROPPED, Box::new(1)))?;
            tx.set(&v, Counted(&DROPPED, Box::new(2)))?;
            Err(TxError::Cancel(()))
        });
        assert_eq!((r, dropped()), (Err(()), 2));

        // A nested cancel frees what the inner transaction set, at once.
        STM.atomic(|tx| {
            tx.set(&v, Counted(&DROPPED, Box::new(3)))?;
            let before = dropped();
            let inner: Result<(), ()> = crate::try_atomic(|tx| {
                tx.set(&v, Counted(&DROPPED, Box::new(4)))?;
                Err(TxError::Cancel(()))
            });
            assert_eq!((inner, dropped()), (Err(()), before + 1));
            assert_eq!(*tx.get(&v)?.1, 3);
            Ok(())
        });
        // (The replaced value 0 is deferred: not dropped yet, or later.)
        assert_eq!(*v.load().1, 3);

        // A panic frees what the body set.
        let before = dropped();
        let r = catch_unwind(AssertUnwindSafe(|| {
            STM.atomic(|tx| {
                tx.set(&v, Counted(&DROPPED, Box::new(5)))?;
                if *tx.get(&v)?.1 == 5 {
                    panic!("in the body");
                }
                Ok(())
            })
        }));
        assert!(r.is_err());
        // The value set, and the clone `get` made, are gone.
        assert_eq!(dropped(), before + 2);
        assert_eq!(*v.load().1, 3);

        // Dropping the variable frees its value at once.
        let before = dropped();
        drop(v);
        assert_eq!(dropped(), before + 1);
    }

    // A clone (the user's code) that runs a nested transaction setting the
    // very variable being cloned: the value under the clone was allocated
    // by the running transaction, and where the nested transaction opens no
    // `TVar` savepoint (a nested hardware transaction on real RTM)
    // replacing it used to free it at once, under the clone; it is freed at
    // commit now. The software and serial paths and the HTM model open a
    // savepoint around a nested transaction, which already kept it: this
    // test can fail only on an RTM machine (checked by reverting the fix:
    // it still passes on the model).
    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_clone_that_sets_its_own_variable_does_not_free_the_value_under_it() {
        static VAR: std::sync::OnceLock<TVar<Evil>> = std::sync::OnceLock::new();
        struct Evil(Vec<u64>);
        impl Clone for Evil {
            fn clone(&self) -> Evil {
                if self.0[0] == 1 {
                    let var = VAR.get().expect("set");
                    crate::atomic(|tx| tx.set(var, Evil(vec![2; 64])));
                }
                // Reads `self` after the nested transaction replaced it.
                Evil(self.0.clone())
            }
        }
        let var = VAR.get_or_init(|| TVar::new(Evil(vec![0; 64])));
        let seen = crate::atomic(|tx| {
            tx.set(var, Evil(vec![1; 64]))?;
            Ok(tx.get(var)?.0)
        });
        assert_eq!(seen, vec![1; 64]);
        assert_eq!(var.load().0, vec![2; 64]);
    }
}
