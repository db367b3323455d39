//! hytm runs critical sections as Intel TSX (RTM) hardware transactions and,
//! when a transaction aborts, hands the section to a configurable fallback:
//! retry, the real lock (lock elision), or a software transactional memory
//! path that stays correct while hardware transactions run beside it.
//!
//! TSX is disabled on most machines in the field (microcode, `tsx=off`, AMD,
//! ARM), so the fallback is first class: on those machines every type here
//! behaves like the best plain lock or STM, and forced-fallback mode and
//! abort injection reach every fallback path on any machine.
//!
//! Layers, bottom up: [`rtm`] (the instructions) → [`policy`] (decisions) →
//! [`ElidedMutex`], [`ElidedRwLock`] (safe APIs) → [`stats`] (observation).
//!
//! ```
//! // Detection runs once; the mode comes from HYTM_MODE (auto by default).
//! println!("RTM usable: {} ({})", hytm::htm().usable(), hytm::htm().reason());
//! println!("mode: {} ({})", hytm::mode(), hytm::mode_reason());
//! ```

#![warn(missing_docs)]

mod attempt;
mod cpu;
mod elide;
pub mod policy;
pub mod rtm;
mod runtime;
pub mod stats;
mod tx;

pub use cpu::{htm, CpuFacts, HtmInfo, ProbeResult, Verdict};
pub use elide::{
    ElidedCondvar, ElidedMutex, ElidedMutexGuard, ElidedRwLock, ElidedRwLockReadGuard,
    ElidedRwLockWriteGuard, RawElidedCondvar, RawElidedMutex, RawElidedRwLock,
};
pub use hytm_fallback::Restart;
/// The `lock_api` version whose raw-lock traits hytm's elided locks
/// implement (0.5): `ElidedMutex` is `lock_api::Mutex<RawElidedMutex, T>`
/// with hytm's constructors, so its guards, `MappedMutexGuard` and the
/// condition variable come from here.
pub use lock_api;
/// lock_api 0.4 (feature `lock_api_04`): the raw elided locks implement its
/// `RawMutex` and `RawRwLock` too, so `lock_api_04::Mutex<RawElidedMutex,
/// T>` works where code is on parking_lot 0.12's lock_api.
#[cfg(feature = "lock_api_04")]
pub use lock_api_04;
pub use policy::{FallbackKind, Policy};
pub use runtime::{
    in_transaction, init, mode, mode_reason, Config, ConfigError, Injection, Mode, StatsOutput,
};
pub use tx::{
    atomic, atomic_irrevocable, protocol_words, try_atomic, Site, TCell, Tx, TxError, Word,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
