//! `ElidedRwLock`: a reader-writer lock whose sections run as RTM
//! transactions.

use std::fmt;

use lock_api::{RawRwLock as _, RawRwLockUpgrade as _};

use super::{
    acquire, acquire_until, change_mode, release, settle, try_acquire, Elision, Entry, GuardState,
    Held, Line,
};
use crate::policy::Policy;
use crate::stats::{SiteId, SiteKind};

/// The raw elided reader-writer lock: parking_lot's raw rwlock as the real
/// lock, plus the elision state. [`ElidedRwLock`] pairs it with the data.
///
/// A transactional reader subscribes to "held for writing", a transactional
/// writer to "held at all"; any change of the real lock's word aborts them.
///
/// Layout: the elision state (site, policy, adaptive words) on one 64-byte
/// line, the real lock word on the next, and the data after both, so 128
/// bytes precede the data: a section's writes to the data, a fallback's
/// write of the adaptive word and the lock word each abort only the
/// sections that really use them.
#[repr(C)] // the field order is the layout: see `elision`
pub struct RawElidedRwLock {
    /// Site, policy and adaptive state, on a line of their own (see
    /// [`Line`]). First: the fallback path hands the elision state out of
    /// line, and at offset 0 its address is the lock's (one instruction
    /// less per section than at offset 64, measured).
    elision: Line<Elision>,
    /// The real lock, on the next line.
    lock: Line<parking_lot::RawRwLock>,
}

impl RawElidedRwLock {
    const fn with_policy(policy: Option<Policy>) -> RawElidedRwLock {
        RawElidedRwLock {
            lock: Line(<parking_lot::RawRwLock as lock_api::RawRwLock>::INIT),
            elision: Line(Elision {
                policy,
                ..Elision::new(SiteId::RWLOCK)
            }),
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
        let raw = unsafe { &*((key & !Held::MODE) as *const RawElidedRwLock) };
        let taken: Option<Box<dyn std::any::Any>> = if key & Held::UPGRADABLE != 0 {
            raw.lock
                .try_lock_upgradable()
                .map(|g| Box::new(g) as Box<dyn std::any::Any>)
        } else if key & Held::EXCLUSIVE != 0 {
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
            || self.lock.is_locked(),
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
            || self.lock.is_locked(),
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
            || false,
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
            || false,
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

    /// The real lock's state, or, inside this thread's transaction, whether
    /// that transaction holds the lock (other threads' transactional
    /// sections hold nothing that can be seen).
    #[inline]
    fn is_locked(&self) -> bool {
        self.lock.is_locked() || super::held_here(Held::new(self, false), false)
    }

    #[inline]
    fn is_locked_exclusive(&self) -> bool {
        self.lock.is_locked_exclusive() || super::held_here(Held::new(self, false), true)
    }
}

// SAFETY: fair unlocks of transactional sections are their commits; of
// real ones, parking_lot's. `bump_*` yields only a real lock.
unsafe impl lock_api::RawRwLockFair for RawElidedRwLock {
    #[inline]
    unsafe fn unlock_shared_fair(&self, guard: Self::SharedGuard) {
        release(&self.elision, Held::new(self, false), guard, |g| {
            // SAFETY: the state came from this lock's real shared lock.
            unsafe { self.lock.unlock_shared_fair(g) }
        })
    }

    #[inline]
    unsafe fn unlock_exclusive_fair(&self, guard: Self::ExclusiveGuard) {
        release(&self.elision, Held::new(self, true), guard, |g| {
            // SAFETY: the state came from this lock's real exclusive lock.
            unsafe { self.lock.unlock_exclusive_fair(g) }
        })
    }

    #[inline]
    unsafe fn bump_shared(&self, guard: &mut Self::SharedGuard) {
        super::bump(Held::new(self, false), guard, |g| {
            // SAFETY: the caller holds the lock shared; `g` is its state.
            unsafe { self.lock.bump_shared(g) }
        })
    }

    #[inline]
    unsafe fn bump_exclusive(&self, guard: &mut Self::ExclusiveGuard) {
        super::bump(Held::new(self, true), guard, |g| {
            // SAFETY: the caller holds the lock exclusively; `g` is its state.
            unsafe { self.lock.bump_exclusive(g) }
        })
    }
}

// SAFETY: inside a transaction a write section becomes a read section by
// changing its key in the held set (its subscription, "not held at all",
// already covers a reader's); under the real lock, parking_lot downgrades.
unsafe impl lock_api::RawRwLockDowngrade for RawElidedRwLock {
    #[inline]
    unsafe fn downgrade(&self, guard: Self::ExclusiveGuard) -> Self::SharedGuard {
        change_mode(guard, Held::new(self, true), Held::new(self, false), |g| {
            // SAFETY: the caller holds the lock exclusively; `g` is its state.
            unsafe { self.lock.downgrade(g) }
        })
    }
}

// SAFETY: timed acquisitions are transactions when one can start now,
// else parking_lot's timed acquisitions of the real lock.
unsafe impl lock_api::RawRwLockTimed for RawElidedRwLock {
    type Duration = std::time::Duration;
    type Instant = std::time::Instant;

    fn try_lock_shared_for(&self, timeout: Self::Duration) -> Option<Self::SharedGuard> {
        match std::time::Instant::now().checked_add(timeout) {
            Some(deadline) => self.try_lock_shared_until(deadline),
            None => Some(lock_api::RawRwLock::lock_shared(self)),
        }
    }

    fn try_lock_shared_until(&self, deadline: Self::Instant) -> Option<Self::SharedGuard> {
        acquire_until(
            &self.elision,
            Held::new(self, false),
            || self.lock.is_locked_exclusive(),
            || self.lock.is_locked(),
            || self.lock.try_lock_shared(),
            || self.lock.try_lock_shared_until(deadline),
            || std::time::Instant::now() >= deadline,
            RawElidedRwLock::take_for_model,
        )
    }

    fn try_lock_exclusive_for(&self, timeout: Self::Duration) -> Option<Self::ExclusiveGuard> {
        match std::time::Instant::now().checked_add(timeout) {
            Some(deadline) => self.try_lock_exclusive_until(deadline),
            None => Some(lock_api::RawRwLock::lock_exclusive(self)),
        }
    }

    fn try_lock_exclusive_until(&self, deadline: Self::Instant) -> Option<Self::ExclusiveGuard> {
        acquire_until(
            &self.elision,
            Held::new(self, true),
            || self.lock.is_locked(),
            || false,
            || self.lock.try_lock_exclusive(),
            || self.lock.try_lock_exclusive_until(deadline),
            || std::time::Instant::now() >= deadline,
            RawElidedRwLock::take_for_model,
        )
    }
}

// SAFETY: an upgradable read inside a transaction is a read that may later
// write, so it subscribes like a write (the lock word free of every real
// holder, readers included) and upgrading it inside the transaction only
// changes its key; it excludes writers and other upgradable reads of the
// same transaction through the held set. Under the real lock, parking_lot's
// upgradable lock does it all.
unsafe impl lock_api::RawRwLockUpgrade for RawElidedRwLock {
    type UpgradableGuard =
        GuardState<<parking_lot::RawRwLock as lock_api::RawRwLockUpgrade>::UpgradableGuard>;

    #[inline]
    fn lock_upgradable(&self) -> Self::UpgradableGuard {
        acquire(
            &self.elision,
            Held::upgradable(self),
            || self.lock.is_locked(),
            || false,
            || self.lock.lock_upgradable(),
            || self.lock.try_lock_upgradable(),
            RawElidedRwLock::take_for_model,
        )
    }

    #[inline]
    fn try_lock_upgradable(&self) -> Option<Self::UpgradableGuard> {
        try_acquire(
            &self.elision,
            Held::upgradable(self),
            || self.lock.is_locked(),
            || false,
            || self.lock.try_lock_upgradable(),
            RawElidedRwLock::take_for_model,
        )
    }

    #[inline]
    unsafe fn unlock_upgradable(&self, guard: Self::UpgradableGuard) {
        release(&self.elision, Held::upgradable(self), guard, |g| {
            // SAFETY: the state came from this lock's real upgradable lock.
            unsafe { self.lock.unlock_upgradable(g) }
        })
    }

    #[inline]
    unsafe fn upgrade(&self, guard: Self::UpgradableGuard) -> Self::ExclusiveGuard {
        change_mode(guard, Held::upgradable(self), Held::new(self, true), |g| {
            // SAFETY: the caller holds the upgradable lock; `g` is its state.
            unsafe { self.lock.upgrade(g) }
        })
    }

    #[inline]
    unsafe fn try_upgrade(
        &self,
        mut guard: Self::UpgradableGuard,
    ) -> Result<Self::ExclusiveGuard, Self::UpgradableGuard> {
        settle(&mut guard, Held::upgradable(self));
        if guard.is_transactional() {
            // SAFETY: forwarded; the caller holds the upgradable lock.
            return Ok(unsafe { lock_api::RawRwLockUpgrade::upgrade(self, guard) });
        }
        match guard.entry {
            // SAFETY: the caller holds the upgradable lock; `g` is its state.
            Entry::Locked(g) => match unsafe { self.lock.try_upgrade(g) } {
                Ok(e) => Ok(GuardState::locked(e)),
                Err(u) => Err(GuardState::locked(u)),
            },
            Entry::Transaction(_) => unreachable!("handled above"),
        }
    }
}

// SAFETY: as for `RawRwLockFair`.
unsafe impl lock_api::RawRwLockUpgradeFair for RawElidedRwLock {
    #[inline]
    unsafe fn unlock_upgradable_fair(&self, guard: Self::UpgradableGuard) {
        release(&self.elision, Held::upgradable(self), guard, |g| {
            // SAFETY: the state came from this lock's real upgradable lock.
            unsafe { self.lock.unlock_upgradable_fair(g) }
        })
    }

    #[inline]
    unsafe fn bump_upgradable(&self, guard: &mut Self::UpgradableGuard) {
        super::bump(Held::upgradable(self), guard, |g| {
            // SAFETY: the caller holds the upgradable lock; `g` is its state.
            unsafe { self.lock.bump_upgradable(g) }
        })
    }
}

// SAFETY: mode changes inside a transaction change the key (see
// `RawRwLockDowngrade`); under the real lock, parking_lot's.
unsafe impl lock_api::RawRwLockUpgradeDowngrade for RawElidedRwLock {
    #[inline]
    unsafe fn downgrade_upgradable(&self, guard: Self::UpgradableGuard) -> Self::SharedGuard {
        change_mode(guard, Held::upgradable(self), Held::new(self, false), |g| {
            // SAFETY: the caller holds the upgradable lock; `g` is its state.
            unsafe { self.lock.downgrade_upgradable(g) }
        })
    }

    #[inline]
    unsafe fn downgrade_to_upgradable(&self, guard: Self::ExclusiveGuard) -> Self::UpgradableGuard {
        change_mode(guard, Held::new(self, true), Held::upgradable(self), |g| {
            // SAFETY: the caller holds the lock exclusively; `g` is its state.
            unsafe { self.lock.downgrade_to_upgradable(g) }
        })
    }
}

// SAFETY: as for `RawRwLockTimed`.
unsafe impl lock_api::RawRwLockUpgradeTimed for RawElidedRwLock {
    fn try_lock_upgradable_for(&self, timeout: Self::Duration) -> Option<Self::UpgradableGuard> {
        match std::time::Instant::now().checked_add(timeout) {
            Some(deadline) => self.try_lock_upgradable_until(deadline),
            None => Some(lock_api::RawRwLockUpgrade::lock_upgradable(self)),
        }
    }

    unsafe fn try_upgrade_for(
        &self,
        guard: Self::UpgradableGuard,
        timeout: Self::Duration,
    ) -> Result<Self::ExclusiveGuard, Self::UpgradableGuard> {
        match std::time::Instant::now().checked_add(timeout) {
            // SAFETY: forwarded; the caller holds the upgradable lock.
            Some(deadline) => unsafe { self.try_upgrade_until(guard, deadline) },
            // SAFETY: as above.
            None => Ok(unsafe { self.upgrade(guard) }),
        }
    }

    unsafe fn try_upgrade_until(
        &self,
        mut guard: Self::UpgradableGuard,
        deadline: Self::Instant,
    ) -> Result<Self::ExclusiveGuard, Self::UpgradableGuard> {
        settle(&mut guard, Held::upgradable(self));
        if guard.is_transactional() {
            // SAFETY: forwarded; the caller holds the upgradable lock.
            return Ok(unsafe { self.upgrade(guard) });
        }
        match guard.entry {
            // SAFETY: the caller holds the upgradable lock; `g` is its state.
            Entry::Locked(g) => match unsafe { self.lock.try_upgrade_until(g, deadline) } {
                Ok(e) => Ok(GuardState::locked(e)),
                Err(u) => Err(GuardState::locked(u)),
            },
            Entry::Transaction(_) => unreachable!("handled above"),
        }
    }

    fn try_lock_upgradable_until(&self, deadline: Self::Instant) -> Option<Self::UpgradableGuard> {
        acquire_until(
            &self.elision,
            Held::upgradable(self),
            || self.lock.is_locked(),
            || false,
            || self.lock.try_lock_upgradable(),
            || self.lock.try_lock_upgradable_until(deadline),
            || std::time::Instant::now() >= deadline,
            RawElidedRwLock::take_for_model,
        )
    }
}

/// A reader-writer lock whose sections run as hardware transactions where
/// RTM is usable, and under parking_lot's rwlock otherwise.
///
/// Transactional writers that touch different data run in parallel, like
/// readers. The API is `std::sync::RwLock`'s without poisoning; guards are
/// `!Send`. See [`crate::ElidedMutex`] for panics and fallback.
///
/// Inside `atomic`, as for [`crate::ElidedMutex`]: in a hardware
/// transaction a section (read or write) nests flat; in a software or
/// serial transaction's body it first makes the transaction irrevocable,
/// then takes the real lock, so it runs exactly once.
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
/// Writer preference (a writer parked on the real lock keeps new readers
/// out) holds among real holders: a read section that runs as a
/// transaction cannot see a parked writer, and goes ahead. (parking_lot's
/// `test_read_with_waiting_writer` checks exactly that preference; it is the
/// one of its 69 unit tests that a transactional read does not pass.)
#[repr(transparent)] // the `*_arc` methods cast `Arc<Self>` to `Arc<Inner>`
pub struct ElidedRwLock<T: ?Sized> {
    inner: lock_api::RwLock<RawElidedRwLock, T>,
}

/// `ElidedRwLock` is `lock_api::RwLock<RawElidedRwLock, T>` with hytm's
/// constructors: it dereferences to it, so every `lock_api::RwLock` method
/// is there: upgradable reads, timed acquisitions, `data_ptr`, and the
/// guards' `downgrade`, `upgrade`, `map`, `unlock_fair`, `bump`.
///
/// ```
/// use hytm::ElidedRwLock;
/// use hytm::lock_api::{RwLockUpgradableReadGuard, RwLockWriteGuard};
/// let lock = ElidedRwLock::new(vec![1]);
/// let r = lock.upgradable_read();
/// if r.len() == 1 {
///     let mut w = RwLockUpgradableReadGuard::upgrade(r);
///     w.push(2);
///     let r = RwLockWriteGuard::downgrade(w);
///     assert_eq!(*r, [1, 2]);
/// }
/// ```
impl<T: ?Sized> std::ops::Deref for ElidedRwLock<T> {
    type Target = lock_api::RwLock<RawElidedRwLock, T>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<T: ?Sized> ElidedRwLock<T> {
    /// Locks shared through an `Arc` (`lock_api`'s `read_arc`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let l = Arc::new(hytm::ElidedRwLock::new(3));
    /// assert_eq!(*l.read_arc(), 3);
    /// ```
    pub fn read_arc(
        self: &std::sync::Arc<Self>,
    ) -> lock_api::ArcRwLockReadGuard<RawElidedRwLock, T> {
        Self::as_inner_arc(self).read_arc()
    }

    /// Locks exclusively through an `Arc` (`lock_api`'s `write_arc`).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let l = Arc::new(hytm::ElidedRwLock::new(3));
    /// *l.write_arc() += 1;
    /// assert_eq!(*l.read(), 4);
    /// ```
    pub fn write_arc(
        self: &std::sync::Arc<Self>,
    ) -> lock_api::ArcRwLockWriteGuard<RawElidedRwLock, T> {
        Self::as_inner_arc(self).write_arc()
    }

    fn as_inner_arc(
        this: &std::sync::Arc<Self>,
    ) -> std::sync::Arc<lock_api::RwLock<RawElidedRwLock, T>> {
        let raw = std::sync::Arc::into_raw(std::sync::Arc::clone(this));
        // SAFETY: `ElidedRwLock` is `repr(transparent)` over the lock_api
        // rwlock: same layout and metadata, same allocation (its count was
        // just raised).
        unsafe { std::sync::Arc::from_raw(raw as *const lock_api::RwLock<RawElidedRwLock, T>) }
    }
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
        // As for `ElidedMutex`: not inside this thread's own write section.
        let real = if super::debug_must_not_peek(Held::new(raw, false)) {
            None
        } else {
            raw.lock.try_lock_shared()
        };
        match real {
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
