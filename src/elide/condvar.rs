//! `ElidedCondvar`: a condition variable for `ElidedMutex`.

use super::{settle, Entry, RawElidedMutex};
use crate::rtm::code;

/// The raw condition variable behind [`ElidedCondvar`]: parking_lot's, on
/// the elided mutex's real lock.
///
/// Waiting cannot happen inside a transaction, and neither can waking a
/// thread (a system call): a wait or a notify inside a transactional
/// section aborts it with [`code::NEEDS_LOCK`], and the section reruns
/// under the real lock, where they happen for real. Under the HTM model the
/// abort promotes the section to its real lock and the call goes on there.
pub struct RawElidedCondvar {
    inner: parking_lot::RawCondvar,
    /// Under the HTM model, waiters sleep on this gate rather than on the
    /// mutex's real lock, and retake the real lock through the model: a
    /// re-acquisition inside parking_lot's wait would bypass the isolation
    /// that keeps real holders from overlapping isolated sections.
    #[cfg(hytm_model)]
    gate: parking_lot::RawMutex,
}

/// Leaves the transaction before an operation that cannot run inside one.
fn leave_transaction() {
    if let Some(rtm) = crate::runtime::runtime().rtm {
        if rtm.test() {
            // Hardware: never returns (the section reruns under the real
            // lock). Model: promotes the section and returns.
            rtm.abort::<{ code::NEEDS_LOCK }>();
        }
    }
}

// SAFETY: `wait` holds the real lock when it calls parking_lot's wait (a
// transactional section is first made to hold it, above), which releases
// and retakes it atomically with respect to notifications; under the model
// the gate gives the same atomicity for notifiers that change the waited
// condition under the mutex. Notifications never happen inside a
// transaction. No spurious wakeups are added to parking_lot's (none).
unsafe impl lock_api::RawCondvar for RawElidedCondvar {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawElidedCondvar {
        inner: <parking_lot::RawCondvar as lock_api::RawCondvar>::INIT,
        #[cfg(hytm_model)]
        gate: <parking_lot::RawMutex as lock_api::RawMutex>::INIT,
    };

    type RawMutex = RawElidedMutex;

    unsafe fn wait(
        &self,
        mutex: &RawElidedMutex,
        guard: &mut <RawElidedMutex as lock_api::RawMutex>::Guard,
    ) {
        // SAFETY: forwarded; the caller holds `mutex` with `guard`.
        unsafe { self.wait_until(mutex, guard, None) };
    }

    fn notify_one(&self) -> bool {
        leave_transaction();
        #[cfg(hytm_model)]
        let _gate = GateGuard::take(&self.gate);
        <parking_lot::RawCondvar as lock_api::RawCondvar>::notify_one(&self.inner)
    }

    fn notify_all(&self) -> usize {
        leave_transaction();
        #[cfg(hytm_model)]
        let _gate = GateGuard::take(&self.gate);
        <parking_lot::RawCondvar as lock_api::RawCondvar>::notify_all(&self.inner)
    }
}

impl RawElidedCondvar {
    /// Waits (until `deadline`, if any); `true` if it timed out.
    ///
    /// # Safety
    ///
    /// As `lock_api::RawCondvar::wait`: the caller holds `mutex` with
    /// `guard`.
    unsafe fn wait_until(
        &self,
        mutex: &RawElidedMutex,
        guard: &mut <RawElidedMutex as lock_api::RawMutex>::Guard,
        deadline: Option<&std::time::Instant>,
    ) -> bool {
        if guard.is_transactional() {
            leave_transaction();
            settle(guard, mutex.key());
        }
        let Entry::Locked(g) = &mut guard.entry else {
            unreachable!("a transactional section waited without leaving its transaction")
        };
        #[cfg(not(hytm_model))]
        {
            // SAFETY: the caller holds `mutex`; `g` is its real lock's state.
            unsafe { park(&self.inner, &mutex.lock, g, deadline) }
        }
        #[cfg(hytm_model)]
        {
            use lock_api::RawMutex as _;
            let mut gate = self.gate.lock();
            // SAFETY: the gate is taken before the real lock is let go, so a
            // notifier that took the real lock to change the condition
            // notifies after we sleep. `g` is the real lock's state (a
            // marker); a fresh one replaces it when we retake the lock.
            unsafe { mutex.lock.unlock(std::ptr::read(g)) };
            // SAFETY: we hold the gate, with `gate` its state.
            let timed_out = unsafe { park(&self.inner, &self.gate, &mut gate, deadline) };
            // SAFETY: `gate` is the state of our hold.
            unsafe { self.gate.unlock(gate) };
            let fresh = mutex.relock_for_model();
            // SAFETY: `g` was read out above; this puts a live state back.
            unsafe { std::ptr::write(g, fresh) };
            timed_out
        }
    }
}

/// parking_lot's wait on `lock`, until `deadline` if any; `true` if it
/// timed out.
///
/// # Safety
///
/// The caller holds `lock`, with `g` its state.
unsafe fn park(
    cv: &parking_lot::RawCondvar,
    lock: &parking_lot::RawMutex,
    g: &mut <parking_lot::RawMutex as lock_api::RawMutex>::Guard,
    deadline: Option<&std::time::Instant>,
) -> bool {
    match deadline {
        // SAFETY: forwarded from the caller.
        Some(d) => unsafe { lock_api::RawCondvarTimed::wait_until(cv, lock, g, d) },
        None => {
            // SAFETY: forwarded from the caller.
            unsafe { lock_api::RawCondvar::wait(cv, lock, g) };
            false
        }
    }
}

// SAFETY: as for `RawCondvar`, with parking_lot's timed wait.
unsafe impl lock_api::RawCondvarTimed for RawElidedCondvar {
    fn checked_duration_to_instant(timeout: &std::time::Duration) -> Option<std::time::Instant> {
        std::time::Instant::now().checked_add(*timeout)
    }

    unsafe fn wait_until(
        &self,
        mutex: &RawElidedMutex,
        guard: &mut <RawElidedMutex as lock_api::RawMutex>::Guard,
        timeout: &std::time::Instant,
    ) -> bool {
        // SAFETY: forwarded; the caller holds `mutex` with `guard`.
        unsafe { RawElidedCondvar::wait_until(self, mutex, guard, Some(timeout)) }
    }
}

#[cfg(hytm_model)]
struct GateGuard<'a>(
    &'a parking_lot::RawMutex,
    Option<<parking_lot::RawMutex as lock_api::RawMutex>::Guard>,
);

#[cfg(hytm_model)]
impl<'a> GateGuard<'a> {
    fn take(gate: &'a parking_lot::RawMutex) -> Self {
        use lock_api::RawMutex as _;
        GateGuard(gate, Some(gate.lock()))
    }
}

#[cfg(hytm_model)]
impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        use lock_api::RawMutex as _;
        if let Some(g) = self.1.take() {
            // SAFETY: taken in `take` by this thread.
            unsafe { self.0.unlock(g) };
        }
    }
}

/// A condition variable for [`ElidedMutex`](crate::ElidedMutex):
/// `lock_api::Condvar` over [`RawElidedCondvar`], with `wait`,
/// `wait_while`, `wait_for`, `wait_until`, `notify_one` and `notify_all`.
///
/// A wait or a notify inside a transactional section ends the transaction
/// first: the section reruns (or, under the HTM model, goes on) under the
/// real lock, where the wait releases and retakes it as a condition
/// variable does.
///
/// ```
/// use std::sync::Arc;
/// use hytm::{ElidedCondvar, ElidedMutex};
///
/// let pair = Arc::new((ElidedMutex::new(false), ElidedCondvar::new()));
/// let pair2 = Arc::clone(&pair);
/// let t = std::thread::spawn(move || {
///     let (ready, cv) = &*pair2;
///     *ready.lock() = true;
///     cv.notify_one();
/// });
/// let (ready, cv) = &*pair;
/// let mut g = ready.lock();
/// cv.wait_while(&mut g, |ready| !*ready);
/// assert!(*g);
/// drop(g);
/// t.join().unwrap();
/// ```
pub type ElidedCondvar = lock_api::Condvar<RawElidedCondvar>;
