//! The atomics shim: every atomic and every wait loop of the crate comes
//! through here, so that `--cfg loom` can swap in loom's model-checked types.
//!
//! | build        | atomics                     | waiting (`Backoff`)                    |
//! | ------------ | --------------------------- | -------------------------------------- |
//! | normal, Miri | `std::sync::atomic`         | `crossbeam_utils::Backoff`             |
//! | `cfg(loom)`  | `loom::sync::atomic`        | `loom::thread::yield_now` on every step |
//! | `cfg(hytm_model)` | [`ModelAtomicU64`]: std's, every operation through the HTM model | `crossbeam_utils::Backoff` |
//!
//! Loom needs every spin loop to yield to its scheduler, or it explores the
//! spinning thread forever; that is why the backoff is shimmed as well.

#[cfg(not(any(loom, hytm_model)))]
pub use std::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, Ordering};

#[cfg(hytm_model)]
pub use ModelAtomicU64 as AtomicU64;

#[cfg(loom)]
pub use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, Ordering};

#[cfg(not(loom))]
pub(crate) use crossbeam_utils::Backoff;

/// One step of a short busy wait: a `pause` (under loom a yield, so that
/// the model checker runs the thread being waited for).
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Loom stand-in for `crossbeam_utils::Backoff`: the same vocabulary, each
/// step a `yield_now` so the model checker can schedule the thread we wait for.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Backoff;

#[cfg(loom)]
impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff
    }

    /// After a lost race (a failed CAS): retry soon.
    pub(crate) fn spin(&self) {
        loom::thread::yield_now();
    }

    /// While another thread holds something we need.
    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }

    /// Under loom a bounded wait is one step: the model checker explores
    /// the schedules, not the timing.
    pub(crate) fn is_completed(&self) -> bool {
        true
    }
}

/// The transactional word under the HTM model (`--cfg hytm_model`): std's
/// `AtomicU64` with the same methods, each routed through
/// [`crate::model`]. Inside a model transaction its loads are logged and its
/// stores buffered; outside, its stores and read-modify-writes take the
/// model lock, which is how the model gives strong isolation.
#[cfg(hytm_model)]
#[derive(Default)]
#[repr(transparent)]
pub struct ModelAtomicU64(std::sync::atomic::AtomicU64);

#[cfg(hytm_model)]
#[allow(missing_docs)] // std's methods, with std's meaning
impl ModelAtomicU64 {
    #[must_use]
    pub const fn new(v: u64) -> Self {
        ModelAtomicU64(std::sync::atomic::AtomicU64::new(v))
    }

    pub fn load(&self, order: Ordering) -> u64 {
        crate::model::load(&self.0, order)
    }

    pub fn store(&self, v: u64, order: Ordering) {
        crate::model::store(&self.0, v, order);
    }

    /// # Errors
    ///
    /// The value seen, when it was not `current`.
    pub fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        _success: Ordering,
        _failure: Ordering,
    ) -> Result<u64, u64> {
        let seen = crate::model::rmw(&self.0, |v| (v == current).then_some(new));
        if seen == current {
            Ok(seen)
        } else {
            Err(seen)
        }
    }

    /// # Errors
    ///
    /// As [`Self::compare_exchange`].
    pub fn compare_exchange_weak(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64> {
        self.compare_exchange(current, new, success, failure)
    }

    pub fn fetch_add(&self, v: u64, _order: Ordering) -> u64 {
        crate::model::rmw(&self.0, |old| Some(old.wrapping_add(v)))
    }

    pub fn fetch_sub(&self, v: u64, _order: Ordering) -> u64 {
        crate::model::rmw(&self.0, |old| Some(old.wrapping_sub(v)))
    }

    pub fn swap(&self, v: u64, _order: Ordering) -> u64 {
        crate::model::rmw(&self.0, |_| Some(v))
    }

    pub fn get_mut(&mut self) -> &mut u64 {
        self.0.get_mut()
    }

    pub fn into_inner(self) -> u64 {
        self.0.into_inner()
    }
}

#[cfg(hytm_model)]
impl core::fmt::Debug for ModelAtomicU64 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Relaxed: a diagnostic snapshot.
        core::fmt::Debug::fmt(&self.load(Ordering::Relaxed), f)
    }
}
