//! hytm runs critical sections as Intel TSX (RTM) hardware transactions and,
//! when a transaction aborts, hands the section to a configurable fallback:
//! retry, the real lock (lock elision), or a NOrec software transactional
//! memory path that stays correct while hardware transactions run beside it.
//!
//! TSX is disabled on most machines in the field (microcode, `tsx=off`, AMD,
//! ARM), so the fallback is first class: there every type here behaves like
//! parking_lot's lock or a NOrec STM, and forced-fallback mode and abort
//! injection reach every fallback path on any machine.
//!
//! # Which API
//!
//! - [`ElidedMutex`] and [`ElidedRwLock`] (with [`ElidedCondvar`]): drop-in locks for short sections
//!   that mostly touch different data under one lock. With RTM they run in
//!   parallel as transactions; without it they are parking_lot's locks.
//! - [`TCell`] with [`atomic`], [`try_atomic`] and [`atomic_irrevocable`]:
//!   several word-sized values updated together, with no lock order, and
//!   rolled back when the body fails. Hardware transaction, NOrec software
//!   transaction or serial run, chosen per execution by the [`Policy`].
//! - [`TVar`], [`TQueue`] and [`TMap`]: values of any `Send + Sync` type,
//!   an unbounded FIFO and a growing hash map, as parts of the same
//!   transactions (replaced values are reclaimed through
//!   `crossbeam-epoch`).
//! - Plain `parking_lot` for sections that do I/O, system calls or heap
//!   growth, or are long: those abort every hardware transaction.
//!
//! Layers, bottom up: [`rtm`] (the instructions, detection through [`htm`])
//! → [`policy`] (retry decisions) → [`ElidedMutex`], [`ElidedRwLock`],
//! [`TCell`]/[`atomic`] (safe APIs, configured through [`Config`]) →
//! [`stats`] (per-site counters and reports).
//!
//! # Examples
//!
//! An elided lock, then a transaction over two cells:
//!
//! ```
//! use hytm::{ElidedMutex, TCell};
//!
//! let table = ElidedMutex::new(vec![0u32; 16]).named("table");
//! table.lock()[3] += 1;
//! assert_eq!(table.lock()[3], 1);
//!
//! let (from, to) = (TCell::new(10u64), TCell::new(0u64));
//! let moved = hytm::atomic(|tx| {
//!     let f = tx.read(&from)?;
//!     tx.write(&from, f - 4)?;
//!     let t = tx.read(&to)?;
//!     tx.write(&to, t + 4)?;
//!     Ok(4)
//! });
//! assert_eq!((moved, from.load(), to.load()), (4, 6, 4));
//!
//! // What ran where, per site (elided locks count only where a hardware
//! // path exists; transactions always count).
//! let report = hytm::stats::snapshot();
//! assert_eq!(report.site("(unnamed atomic)").map(|row| row.executions()), Some(1));
//! println!("mode {} ({})\n{report}", hytm::mode(), hytm::mode_reason());
//! ```
//!
//! # Environment
//!
//! Read once, at the first use of any hytm type (or by [`init`]); an empty
//! value is the same as an unset variable:
//!
//! | variable | values | meaning |
//! | --- | --- | --- |
//! | `HYTM_MODE` | `auto` (default), `htm`, `fallback` | `htm` is an error where RTM is not usable; `fallback` never executes `xbegin` |
//! | `HYTM_INJECT` | `<cause>:<probability>[,...]`, cause `conflict`, `capacity`, `retry`, `explicit`, `nested`, `debug`, `other`, or `rollback`; probabilities add up to at most 1 | abort (or roll back) that share of attempts, on any machine |
//! | `HYTM_STATS` | `stderr`, `json:<path>` | the [`stats`] report at process exit (the JSON file is created at initialisation) |
//!
//! A bad value is a [`ConfigError`] naming the variable, the value and what
//! is accepted: [`init`] returns it, and otherwise the first use panics with
//! it. [`Config`] sets the same from code.
//!
//! # Testing without TSX
//!
//! `HYTM_MODE=fallback` and `HYTM_INJECT` reach every fallback path on any
//! machine. Builds with `RUSTFLAGS="--cfg hytm_model"` run the hardware
//! paths themselves on a software model of RTM ([`rtm::MODEL`] is true
//! there). The repository's README and `docs/design.md` say more.

#![warn(missing_docs)]

mod attempt;
mod cpu;
mod elide;
pub mod policy;
mod rng;
pub mod rtm;
mod runtime;
pub mod stats;
mod tmap;
mod tqueue;
mod tvar;
mod tx;
mod word;

pub use cpu::{htm, CpuFacts, HtmInfo, ProbeResult, Verdict};
pub use elide::{
    ElidedCondvar, ElidedMutex, ElidedMutexGuard, ElidedRwLock, ElidedRwLockReadGuard,
    ElidedRwLockWriteGuard, GuardState, RawElidedCondvar, RawElidedMutex, RawElidedRwLock,
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
    in_transaction, init, mode, mode_reason, stm_protocol, Config, ConfigError, Injection, Mode,
    StatsOutput, StmProtocol,
};
pub use tmap::TMap;
pub use tqueue::TQueue;
pub use tvar::TVar;
pub use tx::{
    atomic, atomic_irrevocable, protocol_words, try_atomic, Site, TCell, Tx, TxError, Word,
};
pub use word::{Bits, Narrow};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
