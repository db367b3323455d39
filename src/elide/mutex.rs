//! `ElidedMutex`: a mutex whose critical sections run as RTM transactions.

use std::fmt;

use lock_api::RawMutex as _;

use super::{acquire, release, try_acquire, Elision, GuardState, Held, Line};
use crate::policy::Policy;
use crate::stats::{SiteId, SiteKind};

/// The raw elided mutex: parking_lot's raw mutex as the real lock, plus the
/// elision state. [`ElidedMutex`] pairs it with the data.
///
/// `lock` and `try_lock` first try a hardware transaction subscribed to the
/// real lock's word; their guard state says which way they got in.
///
/// Layout: the elision state (site, policy, adaptive words) on one 64-byte
/// line, the real lock word on the next, and the data after both, so 128
/// bytes precede the data: a section's writes to the data, a fallback's
/// write of the adaptive word and the lock word each abort only the
/// sections that really use them.
#[repr(C)] // the field order is the layout: see `elision`
pub struct RawElidedMutex {
    /// Site, policy and adaptive state, on a line of their own (see
    /// [`Line`]). First: the fallback path hands the elision state out of
    /// line, and at offset 0 its address is the lock's (one instruction
    /// less per section than at offset 64, measured).
    elision: Line<Elision>,
    /// The real lock, on the next line.
    pub(super) lock: Line<parking_lot::RawMutex>,
}

impl RawElidedMutex {
    /// Retakes the real lock after a condition-variable wait under the HTM
    /// model (under the lock's isolation, like every real acquisition there).
    #[cfg(hytm_model)]
    pub(super) fn relock_for_model(&self) -> <parking_lot::RawMutex as lock_api::RawMutex>::Guard {
        super::model::lock_real(
            crate::runtime::runtime(),
            self.key(),
            || self.lock.is_locked(),
            || self.lock.lock(),
            || self.lock.try_lock(),
        )
    }

    pub(super) fn key(&self) -> Held {
        Held::new(self, true)
    }

    /// The HTM model's promotion of a section of this lock: takes the real
    /// lock, free because nobody acquires it while a section is isolated.
    ///
    /// # Safety
    ///
    /// `key` is [`RawElidedMutex::key`] of a lock that is still alive.
    unsafe fn take_for_model(key: usize) -> Box<dyn std::any::Any> {
        // SAFETY: the caller passes the key of a live lock, whose address
        // is the key without its access bit.
        let raw = unsafe { &*((key & !Held::MODE) as *const RawElidedMutex) };
        match raw.lock.try_lock() {
            Some(g) => Box::new(g),
            None => unreachable!("hytm model: an isolated section's lock was taken"),
        }
    }
}

impl fmt::Debug for RawElidedMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawElidedMutex")
            .field("locked", &self.lock.is_locked())
            .field("elision", &self.elision)
            .finish()
    }
}

// SAFETY: mutual exclusion holds on both paths. A transactional section
// reads the real lock word right after `xbegin` and aborts if it is held, so
// it commits only if no real holder existed during it, and any real
// acquisition (a write of the word it read) aborts it; two transactional
// sections that touch the same data conflict and one aborts. Acquire and
// release semantics: the real lock provides them; a committed RTM
// transaction is ordered like a locked instruction on x86.
unsafe impl lock_api::RawMutex for RawElidedMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawElidedMutex = RawElidedMutex::with_policy(None);

    type Guard = GuardState<<parking_lot::RawMutex as lock_api::RawMutex>::Guard>;

    #[inline]
    fn lock(&self) -> Self::Guard {
        acquire(
            &self.elision,
            self.key(),
            || self.lock.is_locked(),
            || false,
            || self.lock.lock(),
            || self.lock.try_lock(),
            RawElidedMutex::take_for_model,
        )
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        try_acquire(
            &self.elision,
            self.key(),
            || self.lock.is_locked(),
            || false,
            || self.lock.try_lock(),
            RawElidedMutex::take_for_model,
        )
    }

    #[inline]
    unsafe fn unlock(&self, guard: Self::Guard) {
        release(&self.elision, self.key(), guard, |g| {
            // SAFETY: the guard state came from this lock's real `lock` or
            // `try_lock` (Entry::Locked), as the caller guarantees.
            unsafe { self.lock.unlock(g) }
        })
    }

    /// The real lock's state, or, inside this thread's transaction, whether
    /// that transaction holds the lock.
    #[inline]
    fn is_locked(&self) -> bool {
        self.lock.is_locked() || super::held_here(self.key(), false)
    }
}

// SAFETY: as for `RawMutex`: a fair unlock of a transactional section is
// its commit (nobody waits on a lock held transactionally); of a real one,
// parking_lot's fair unlock. `bump` yields only a real lock.
unsafe impl lock_api::RawMutexFair for RawElidedMutex {
    #[inline]
    unsafe fn unlock_fair(&self, guard: Self::Guard) {
        release(&self.elision, self.key(), guard, |g| {
            // SAFETY: the guard state came from this lock's real `lock` or
            // `try_lock`, as the caller guarantees.
            unsafe { self.lock.unlock_fair(g) }
        })
    }

    #[inline]
    unsafe fn bump(&self, guard: &mut Self::Guard) {
        super::bump(self.key(), guard, |g| {
            // SAFETY: `g` is this lock's real guard state (the caller holds
            // the lock).
            unsafe { self.lock.bump(g) }
        })
    }
}

// SAFETY: a timed acquisition is a transaction if one can start now (as
// `try_lock`, but waiting out a busy lock word within the policy's bounds),
// else parking_lot's timed acquisition of the real lock.
unsafe impl lock_api::RawMutexTimed for RawElidedMutex {
    type Duration = std::time::Duration;
    type Instant = std::time::Instant;

    fn try_lock_for(&self, timeout: Self::Duration) -> Option<Self::Guard> {
        match std::time::Instant::now().checked_add(timeout) {
            Some(deadline) => self.try_lock_until(deadline),
            None => Some(lock_api::RawMutex::lock(self)),
        }
    }

    fn try_lock_until(&self, deadline: Self::Instant) -> Option<Self::Guard> {
        super::acquire_until(
            &self.elision,
            self.key(),
            || self.lock.is_locked(),
            || false,
            || self.lock.try_lock(),
            || self.lock.try_lock_until(deadline),
            || std::time::Instant::now() >= deadline,
            RawElidedMutex::take_for_model,
        )
    }
}

/// A mutual-exclusion lock whose critical sections run as hardware
/// transactions where RTM is usable, and under parking_lot's mutex otherwise.
///
/// Two sections that touch different data run in parallel in hardware, even
/// though they take the same lock; sections that conflict, overflow the
/// transactional footprint or do I/O fall back to the real lock by the
/// [`Policy`]. In fallback mode (or without RTM) it is parking_lot's mutex,
/// plus one predictable branch.
///
/// The API is `std::sync::Mutex`'s without poisoning: `lock` returns the
/// guard directly. Guards are `!Send`.
///
/// # Panics
///
/// A section that panics inside a transaction is rolled back and rerun under
/// the real lock, where the panic happens for real; unwinding then releases
/// the lock. Nothing of the transactional run is visible.
///
/// # Inside `atomic`
///
/// Taken inside a hardware transaction (an `atomic` body on RTM), a section
/// nests flat: it commits or aborts with the transaction. Taken inside a
/// software or serial transaction's body, it first makes that transaction
/// irrevocable ([`Tx::become_irrevocable`]: a software one reruns serially
/// before the lock is taken), then takes the real lock: the section runs
/// exactly once, and no conflicting commit runs beside it. Its effects are
/// not undone if the transaction later cancels. A serial transaction holds
/// `seq` odd while it runs (see [`atomic_irrevocable`]), so do not make it
/// wait for a thread that holds this lock and waits for a transaction.
///
/// ```
/// use hytm::{ElidedMutex, TCell};
/// let log = ElidedMutex::new(Vec::new());
/// let n = TCell::new(0u32);
/// hytm::atomic(|tx| {
///     let v = tx.read(&n)?;
///     log.lock().push(v); // runs once: the transaction is irrevocable now
///     tx.write(&n, v + 1)
/// });
/// assert_eq!(*log.lock(), vec![0]);
/// assert_eq!(n.load(), 1);
/// ```
///
/// [`Tx::become_irrevocable`]: crate::Tx::become_irrevocable
/// [`atomic_irrevocable`]: crate::atomic_irrevocable
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use hytm::ElidedMutex;
///
/// let counter = Arc::new(ElidedMutex::new(0u64));
/// let handles: Vec<_> = (0..2)
///     .map(|_| {
///         let c = Arc::clone(&counter);
///         std::thread::spawn(move || {
///             for _ in 0..1000 {
///                 *c.lock() += 1;
///             }
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*counter.lock(), 2000);
/// ```
#[repr(transparent)] // `lock_arc` casts `Arc<Self>` to `Arc<Inner>`
pub struct ElidedMutex<T: ?Sized> {
    inner: lock_api::Mutex<RawElidedMutex, T>,
}

/// `ElidedMutex` is `lock_api::Mutex<RawElidedMutex, T>` with hytm's
/// constructors: it dereferences to it, so every `lock_api::Mutex` method
/// (`try_lock_for`, `try_lock_until`, `data_ptr`, `force_unlock`, ...) and
/// every guard function (`MutexGuard::map`, `unlock_fair`, `bump`,
/// `unlocked`) is there.
///
/// ```
/// use std::time::Duration;
/// let m = hytm::ElidedMutex::new(vec![1, 2]);
/// let g = m.try_lock_for(Duration::from_millis(10)).expect("free");
/// let first = hytm::ElidedMutexGuard::map(g, |v| &mut v[0]);
/// assert_eq!(*first, 1);
/// ```
impl<T: ?Sized> std::ops::Deref for ElidedMutex<T> {
    type Target = lock_api::Mutex<RawElidedMutex, T>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<T: ?Sized> ElidedMutex<T> {
    /// Locks through an `Arc`, returning a guard that owns a clone of it
    /// (`lock_api`'s `lock_arc`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let m = Arc::new(hytm::ElidedMutex::new(0));
    /// let mut g = m.lock_arc();
    /// *g += 1;
    /// drop(g);
    /// assert_eq!(*m.lock(), 1);
    /// ```
    pub fn lock_arc(self: &std::sync::Arc<Self>) -> lock_api::ArcMutexGuard<RawElidedMutex, T> {
        Self::as_inner_arc(self).lock_arc()
    }

    /// [`ElidedMutex::lock_arc`] without waiting: `None` if it is held.
    pub fn try_lock_arc(
        self: &std::sync::Arc<Self>,
    ) -> Option<lock_api::ArcMutexGuard<RawElidedMutex, T>> {
        Self::as_inner_arc(self).try_lock_arc()
    }

    fn as_inner_arc(
        this: &std::sync::Arc<Self>,
    ) -> std::sync::Arc<lock_api::Mutex<RawElidedMutex, T>> {
        let raw = std::sync::Arc::into_raw(std::sync::Arc::clone(this));
        // SAFETY: `ElidedMutex` is `repr(transparent)` over the lock_api
        // mutex, so the pointee has the same layout and metadata, and the
        // `Arc` allocation is the same one (its count was just raised).
        unsafe { std::sync::Arc::from_raw(raw as *const lock_api::Mutex<RawElidedMutex, T>) }
    }
}

/// The guard of an [`ElidedMutex`]: dropping it commits the transaction or
/// releases the real lock, whichever the section entered by.
///
/// Guards are `!Send`: a transaction (and a parking_lot lock) belongs to
/// the thread that entered it.
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<hytm::ElidedMutexGuard<'static, u8>>();
/// ```
pub type ElidedMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawElidedMutex, T>;

impl<T> ElidedMutex<T> {
    /// A new unlocked mutex using the global policy.
    ///
    /// ```
    /// static M: hytm::ElidedMutex<Vec<u32>> = hytm::ElidedMutex::new(Vec::new());
    /// M.lock().push(1);
    /// assert_eq!(M.lock().len(), 1);
    /// ```
    pub const fn new(value: T) -> ElidedMutex<T> {
        ElidedMutex {
            inner: lock_api::Mutex::new(value),
        }
    }

    /// A new unlocked mutex with its own policy.
    ///
    /// ```
    /// use hytm::{ElidedMutex, Policy};
    /// let m = ElidedMutex::with_policy(0, Policy::default().max_attempts(2).adaptive(false));
    /// *m.lock() += 1;
    /// assert_eq!(m.into_inner(), 1);
    /// ```
    pub fn with_policy(value: T, policy: Policy) -> ElidedMutex<T> {
        ElidedMutex::from_raw(RawElidedMutex::with_policy(Some(policy)), value)
    }

    /// Gives the mutex its own row in [`crate::stats`] (unnamed mutexes
    /// share one). Mutexes given the same name share a row.
    ///
    /// The row counts what the hardware path did: attempts, commits, aborts,
    /// and the acquisitions that fell back to the lock after trying. Where
    /// there is no hardware path (no RTM, or fallback mode) and no
    /// injection, an elided mutex counts nothing at all: its sections are
    /// parking_lot's lock plus one predictable branch, and the row stays
    /// absent.
    ///
    /// ```
    /// let m = hytm::ElidedMutex::new(0).named("accounts");
    /// *m.lock() += 1;
    /// let report = hytm::stats::snapshot();
    /// if hytm::mode() == hytm::Mode::Fallback && std::env::var("HYTM_INJECT").unwrap_or_default().is_empty() {
    ///     assert!(report.site("accounts").is_none()); // nothing is counted
    /// }
    /// ```
    pub fn named(self, name: &str) -> ElidedMutex<T> {
        let (mut raw, value) = self.inner.into_inner_with_raw();
        raw.elision.name(SiteKind::Mutex, name);
        ElidedMutex::from_raw(raw, value)
    }

    /// Consumes the mutex and returns the data.
    ///
    /// ```
    /// let m = hytm::ElidedMutex::new(String::from("x"));
    /// assert_eq!(m.into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }

    fn from_raw(raw: RawElidedMutex, value: T) -> ElidedMutex<T> {
        ElidedMutex {
            inner: lock_api::Mutex::from_raw(raw, value),
        }
    }
}

impl<T: ?Sized> ElidedMutex<T> {
    /// Acquires the mutex: as a transaction if the policy allows, else the
    /// real lock, blocking until it is free.
    ///
    /// Inside a transaction (an enclosing elided section or `atomic`), the
    /// section nests flat. Locking a mutex the current thread already holds
    /// deadlocks, as with std's and parking_lot's.
    ///
    /// ```
    /// let m = hytm::ElidedMutex::new(1);
    /// *m.lock() += 1;
    /// assert_eq!(*m.lock(), 2);
    /// ```
    #[inline]
    pub fn lock(&self) -> ElidedMutexGuard<'_, T> {
        self.inner.lock()
    }

    /// Acquires the mutex if that needs no waiting: `None` if it is held,
    /// including by the current thread or transaction.
    ///
    /// ```
    /// let m = hytm::ElidedMutex::new(0);
    /// let g = m.lock();
    /// assert!(m.try_lock().is_none());
    /// drop(g);
    /// assert!(m.try_lock().is_some());
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Option<ElidedMutexGuard<'_, T>> {
        self.inner.try_lock()
    }

    /// A mutable reference to the data, without locking: the `&mut self`
    /// proves nothing else can hold the lock.
    ///
    /// ```
    /// let mut m = hytm::ElidedMutex::new(0);
    /// *m.get_mut() = 5;
    /// assert_eq!(*m.lock(), 5);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether the real lock is held now (a transactional section does not
    /// hold it). A momentary snapshot.
    ///
    /// ```
    /// let m = hytm::ElidedMutex::new(());
    /// assert!(!m.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl RawElidedMutex {
    const fn with_policy(policy: Option<Policy>) -> RawElidedMutex {
        RawElidedMutex {
            lock: Line(<parking_lot::RawMutex as lock_api::RawMutex>::INIT),
            elision: Line(Elision {
                policy,
                ..Elision::new(SiteId::MUTEX)
            }),
        }
    }
}

impl<T: Default> Default for ElidedMutex<T> {
    fn default() -> ElidedMutex<T> {
        ElidedMutex::new(T::default())
    }
}

impl<T> From<T> for ElidedMutex<T> {
    fn from(value: T) -> ElidedMutex<T> {
        ElidedMutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ElidedMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ElidedMutex");
        // Peek through the real lock only: formatting is I/O-adjacent and
        // would only abort a transaction.
        // SAFETY: the raw lock is only used through its own API here.
        let raw = unsafe { self.inner.raw() };
        // Inside this thread's own transactional section the real lock is
        // free (the section elided it), and a `&T` would sit beside the
        // section's `&mut T`.
        let real = if super::debug_must_not_peek(raw.key()) {
            None
        } else {
            raw.lock.try_lock()
        };
        match real {
            Some(g) => {
                // SAFETY: we hold the real lock, so no section (real or
                // transactional: those subscribe to the word) touches the data.
                d.field("data", &unsafe { &*self.inner.data_ptr() });
                // SAFETY: `g` came from this real lock's try_lock.
                unsafe { raw.lock.unlock(g) };
            }
            None => {
                d.field("data", &format_args!("<locked>"));
            }
        }
        d.finish_non_exhaustive()
    }
}
