//! `ElidedRwLock`: a reader-writer lock whose sections run as RTM
//! transactions.

use std::fmt;

use lock_api::RawRwLock as _;

use super::{acquire, release, try_acquire, Elision, GuardState, Held};
use crate::policy::Policy;
use crate::stats::{SiteId, SiteKind};

/// The raw elided reader-writer lock: parking_lot's raw rwlock as the real
/// lock, plus the elision state. [`ElidedRwLock`] pairs it with the data.
///
/// A transactional reader subscribes to "held for writing", a transactional
/// writer to "held at all"; any change of the real lock's word aborts them.
pub struct RawElidedRwLock {
    lock: parking_lot::RawRwLock,
    elision: Elision,
}

impl RawElidedRwLock {
    const fn with_policy(policy: Option<Policy>) -> RawElidedRwLock {
        RawElidedRwLock {
            lock: <parking_lot::RawRwLock as lock_api::RawRwLock>::INIT,
            elision: Elision {
                policy,
                ..Elision::new(SiteId::RWLOCK)
            },
        }
    }
}

impl RawElidedRwLock {
    /// The HTM model's promotion of a section of this lock: takes the real
    /// lock, shared or exclusive as the key says (see
    /// `RawElidedMutex::take_for_model`).
    ///
    /// # Safety
    ///
    /// `key` is the `Held` key of a section of a lock that is still alive.
    unsafe fn take_for_model(key: usize) -> Box<dyn std::any::Any> {
        // SAFETY: the caller passes the key of a live lock, whose address
        // is the key without its access bit.
        let raw = unsafe { &*((key & !1) as *const RawElidedRwLock) };
        let taken: Option<Box<dyn std::any::Any>> = if key & 1 == 1 {
            raw.lock
                .try_lock_exclusive()
                .map(|g| Box::new(g) as Box<dyn std::any::Any>)
        } else {
            raw.lock
                .try_lock_shared()
                .map(|g| Box::new(g) as Box<dyn std::any::Any>)
        };
        match taken {
            Some(g) => g,
            None => unreachable!("hytm model: an isolated section's lock was taken"),
        }
    }
}

impl fmt::Debug for RawElidedRwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawElidedRwLock")
            .field("locked", &self.lock.is_locked())
            .field("elision", &self.elision)
            .finish()
    }
}

// SAFETY: as for `RawElidedMutex`: a transactional section commits only if
// no conflicting real holder existed during it (it read the lock word right
// after `xbegin`, and any real acquisition writes that word), so readers
// exclude writers and writers exclude everyone on every mix of paths.
unsafe impl lock_api::RawRwLock for RawElidedRwLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawElidedRwLock = RawElidedRwLock::with_policy(None);

    type SharedGuard = GuardState<<parking_lot::RawRwLock as lock_api::RawRwLock>::SharedGuard>;
    type ExclusiveGuard =
        GuardState<<parking_lot::RawRwLock as lock_api::RawRwLock>::ExclusiveGuard>;

    #[inline]
    fn lock_shared(&self) -> Self::SharedGuard {
        acquire(
            &self.elision,
            Held::new(self, false),
            || self.lock.is_locked_exclusive(),
            || self.lock.lock_shared(),
            || self.lock.try_lock_shared(),
            RawElidedRwLock::take_for_model,
        )
    }

    #[inline]
    fn try_lock_shared(&self) -> Option<Self::SharedGuard> {
        try_acquire(
            &self.elision,
            Held::new(self, false),
            || self.lock.is_locked_exclusive(),
            || self.lock.try_lock_shared(),
            RawElidedRwLock::take_for_model,
        )
    }

    #[inline]
    unsafe fn unlock_shared(&self, guard: Self::SharedGuard) {
        release(&self.elision, Held::new(self, false), guard, |g| {
            // SAFETY: the state came from this lock's real shared lock.
            unsafe { self.lock.unlock_shared(g) }
        })
    }

    #[inline]
    fn lock_exclusive(&self) -> Self::ExclusiveGuard {
        acquire(
            &self.elision,
            Held::new(self, true),
            || self.lock.is_locked(),
            || self.lock.lock_exclusive(),
            || self.lock.try_lock_exclusive(),
            RawElidedRwLock::take_for_model,
        )
    }

    #[inline]
    fn try_lock_exclusive(&self) -> Option<Self::ExclusiveGuard> {
        try_acquire(
            &self.elision,
            Held::new(self, true),
            || self.lock.is_locked(),
            || self.lock.try_lock_exclusive(),
            RawElidedRwLock::take_for_model,
        )
    }

    #[inline]
    unsafe fn unlock_exclusive(&self, guard: Self::ExclusiveGuard) {
        release(&self.elision, Held::new(self, true), guard, |g| {
            // SAFETY: the state came from this lock's real exclusive lock.
            unsafe { self.lock.unlock_exclusive(g) }
        })
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        self.lock.is_locked_exclusive()
    }
}

/// A reader-writer lock whose sections run as hardware transactions where
/// RTM is usable, and under parking_lot's rwlock otherwise.
///
/// Transactional writers that touch different data run in parallel, like
/// readers. The API is `std::sync::RwLock`'s without poisoning; guards are
/// `!Send`. See [`crate::ElidedMutex`] for panics and fallback.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use hytm::ElidedRwLock;
///
/// let table = Arc::new(ElidedRwLock::new(vec![0u32; 8]));
/// let writer = {
///     let t = Arc::clone(&table);
///     std::thread::spawn(move || {
///         for i in 0..100 {
///             t.write()[i % 8] += 1;
///         }
///     })
/// };
/// for _ in 0..100 {
///     let sum: u32 = table.read().iter().sum();
///     assert!(sum <= 100);
/// }
/// writer.join().unwrap();
/// assert_eq!(table.read().iter().sum::<u32>(), 100);
/// ```
pub struct ElidedRwLock<T: ?Sized> {
    inner: lock_api::RwLock<RawElidedRwLock, T>,
}

/// Shared guard of an [`ElidedRwLock`]; `!Send`, like the write guard.
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<hytm::ElidedRwLockReadGuard<'static, u8>>();
/// ```
pub type ElidedRwLockReadGuard<'a, T> = lock_api::RwLockReadGuard<'a, RawElidedRwLock, T>;
/// Exclusive guard of an [`ElidedRwLock`].
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<hytm::ElidedRwLockWriteGuard<'static, u8>>();
/// ```
pub type ElidedRwLockWriteGuard<'a, T> = lock_api::RwLockWriteGuard<'a, RawElidedRwLock, T>;

impl<T> ElidedRwLock<T> {
    /// A new unlocked rwlock using the global policy.
    ///
    /// ```
    /// static CONFIG: hytm::ElidedRwLock<u32> = hytm::ElidedRwLock::new(7);
    /// assert_eq!(*CONFIG.read(), 7);
    /// ```
    pub const fn new(value: T) -> ElidedRwLock<T> {
        ElidedRwLock {
            inner: lock_api::RwLock::new(value),
        }
    }

    /// A new unlocked rwlock with its own policy.
    ///
    /// ```
    /// let l = hytm::ElidedRwLock::with_policy(1, hytm::Policy::default().max_attempts(3));
    /// *l.write() += 1;
    /// assert_eq!(l.into_inner(), 2);
    /// ```
    pub fn with_policy(value: T, policy: Policy) -> ElidedRwLock<T> {
        ElidedRwLock::from_raw(RawElidedRwLock::with_policy(Some(policy)), value)
    }

    /// Gives the rwlock its own row in [`crate::stats`].
    ///
    /// As for [`ElidedMutex::named`](crate::ElidedMutex::named): the row
    /// counts the hardware path, and where there is none (no RTM, or
    /// fallback mode) and no injection, nothing is counted and the row
    /// stays absent.
    ///
    /// ```
    /// let l = hytm::ElidedRwLock::new(0).named("routes");
    /// assert_eq!(*l.read(), 0);
    /// ```
    pub fn named(self, name: &str) -> ElidedRwLock<T> {
        let (mut raw, value) = self.inner.into_inner_with_raw();
        raw.elision.name(SiteKind::RwLock, name);
        ElidedRwLock::from_raw(raw, value)
    }

    /// Consumes the lock and returns the data.
    ///
    /// ```
    /// assert_eq!(hytm::ElidedRwLock::new(3).into_inner(), 3);
    /// ```
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }

    fn from_raw(raw: RawElidedRwLock, value: T) -> ElidedRwLock<T> {
        ElidedRwLock {
            inner: lock_api::RwLock::from_raw(raw, value),
        }
    }
}

impl<T: ?Sized> ElidedRwLock<T> {
    /// Shared access: as a transaction if the policy allows, else the real
    /// lock, blocking while a writer holds it.
    ///
    /// ```
    /// let l = hytm::ElidedRwLock::new(5);
    /// let (a, b) = (l.read(), l.read());
    /// assert_eq!(*a + *b, 10);
    /// ```
    #[inline]
    pub fn read(&self) -> ElidedRwLockReadGuard<'_, T> {
        self.inner.read()
    }

    /// Exclusive access: as a transaction if the policy allows, else the
    /// real lock, blocking while anyone holds it.
    ///
    /// ```
    /// let l = hytm::ElidedRwLock::new(5);
    /// *l.write() = 6;
    /// assert_eq!(*l.read(), 6);
    /// ```
    #[inline]
    pub fn write(&self) -> ElidedRwLockWriteGuard<'_, T> {
        self.inner.write()
    }

    /// Shared access if that needs no waiting.
    ///
    /// ```
    /// let l = hytm::ElidedRwLock::new(0);
    /// let w = l.write();
    /// assert!(l.try_read().is_none());
    /// drop(w);
    /// assert!(l.try_read().is_some());
    /// ```
    #[inline]
    pub fn try_read(&self) -> Option<ElidedRwLockReadGuard<'_, T>> {
        self.inner.try_read()
    }

    /// Exclusive access if that needs no waiting.
    ///
    /// ```
    /// let l = hytm::ElidedRwLock::new(0);
    /// let r = l.read();
    /// assert!(l.try_write().is_none());
    /// drop(r);
    /// assert!(l.try_write().is_some());
    /// ```
    #[inline]
    pub fn try_write(&self) -> Option<ElidedRwLockWriteGuard<'_, T>> {
        self.inner.try_write()
    }

    /// A mutable reference to the data, without locking.
    ///
    /// ```
    /// let mut l = hytm::ElidedRwLock::new(0);
    /// *l.get_mut() = 1;
    /// assert_eq!(*l.read(), 1);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// Whether the real lock is held now, in either mode.
    ///
    /// ```
    /// assert!(!hytm::ElidedRwLock::new(()).is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T: Default> Default for ElidedRwLock<T> {
    fn default() -> ElidedRwLock<T> {
        ElidedRwLock::new(T::default())
    }
}

impl<T> From<T> for ElidedRwLock<T> {
    fn from(value: T) -> ElidedRwLock<T> {
        ElidedRwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ElidedRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ElidedRwLock");
        // SAFETY: the raw lock is only used through its own API here.
        let raw = unsafe { self.inner.raw() };
        match raw.lock.try_lock_shared() {
            Some(g) => {
                // SAFETY: we hold the real lock shared: no writer, real or
                // transactional (they subscribe to the word), runs.
                d.field("data", &unsafe { &*self.inner.data_ptr() });
                // SAFETY: `g` came from this real lock's try_lock_shared.
                unsafe { raw.lock.unlock_shared(g) };
            }
            None => {
                d.field("data", &format_args!("<locked>"));
            }
        }
        d.finish_non_exhaustive()
    }
}
