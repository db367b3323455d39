//! The atomics shim: every atomic and every wait loop of the crate comes
//! through here, so that `--cfg loom` can swap in loom's model-checked types.
//!
//! | build        | atomics                     | waiting (`Backoff`)                    |
//! | ------------ | --------------------------- | -------------------------------------- |
//! | normal, Miri | `std::sync::atomic`         | `crossbeam_utils::Backoff`             |
//! | `cfg(loom)`  | `loom::sync::atomic`        | `loom::thread::yield_now` on every step |
//!
//! Loom needs every spin loop to yield to its scheduler, or it explores the
//! spinning thread forever; that is why the backoff is shimmed as well.

#[cfg(not(loom))]
pub use std::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, Ordering};

#[cfg(loom)]
pub use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, Ordering};

#[cfg(not(loom))]
pub(crate) use crossbeam_utils::Backoff;

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
}
