//! The software paths of hytm: a NOrec STM engine that stays correct beside
//! hardware (RTM) transactions, a striped (TL2-style) protocol for domains
//! in which no hardware transaction can run, and a serial-irrevocable mode.
//!
//! This crate has no inline assembly and no hardware dependence: it runs on every
//! target, under Miri, and under loom (`--cfg loom`). The `hytm` crate
//! builds `TCell`, `atomic` and the RTM path on top of it.
//!
//! # The hybrid protocol
//!
//! A domain's shared state is one [`Globals`]: the sequence lock `seq` and
//! the software-activity counter `sw_active` (their bits are tabled in the
//! [`Globals`] docs). Transactional data are [`AtomicU64`] words holding `u64`
//! bit patterns.
//!
//! | path | begin | access | commit |
//! | ---- | ----- | ------ | ------ |
//! | hardware (in `hytm`) | `xbegin`; read `sw_active`; if non-zero, read `seq`, abort `0xfe` if odd | plain loads and stores | if `sw_active` was non-zero and it wrote: `seq += 2`; `xend` |
//! | [`SoftTx`] | `sw_active += 1`; snapshot `seq` (wait while odd) | reads validated by value when `seq` moves; writes to a redo log | read-only: free; else CAS `seq` snapshot → +1, write back, store +2 |
//! | [`SerialTx`] | `sw_active += 1`; ticket; CAS `seq` even → odd | direct, with an undo log | store `seq` odd + 1 |
//!
//! A domain whose transactions begin without hardware
//! ([`SoftTx::begin_without_hardware`]) is software-only: its transactions
//! skip `sw_active` and follow the striped protocol instead (ownership
//! records over the words and `seq` as a version clock; see
//! [`Globals::is_striped`]), so that commits to disjoint words do not all
//! meet on `seq`'s line. The guarantees below hold on both.
//!
//! Guarantees, each tested in `tests/`:
//!
//! - **Opacity**: a running transaction never observes a state that no
//!   serial order produces. A software read returns a value only after it
//!   checked that every earlier read is still current; an inconsistent read
//!   is `Err(`[`Restart`]`)`, never a value.
//! - **Panic atomicity**: a [`SoftTx`] that panics wrote nothing (its writes
//!   were only in its redo log); a [`SerialTx`] that panics restores its undo
//!   log before it releases `seq`.
//! - **Progress**: a software writer loses the commit race only to another
//!   commit, so some transaction always commits. A starving [`SoftTx`]
//!   reports it (`Err(Restart)` after a bounded number of lost rounds) so the
//!   caller can escalate to a [`SerialTx`], and serial transactions are FIFO
//!   and take precedence over software writers.
//!
//! # Examples
//!
//! A retry loop with escalation to the serial mode after repeated restarts:
//!
//! ```
//! use hytm_fallback::{Globals, Restart, SerialTx, SoftTx};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! static G: Globals = Globals::new();
//! static COUNTER: AtomicU64 = AtomicU64::new(0);
//!
//! fn increment() {
//!     let mut tx = SoftTx::begin(&G);
//!     while tx.restarts() < 8 {
//!         let r: Result<(), Restart> = (|| {
//!             let v = tx.read(&COUNTER)?;
//!             tx.write(&COUNTER, v + 1);
//!             tx.commit()
//!         })();
//!         match r {
//!             Ok(()) => return,
//!             Err(Restart) => tx.restart(),
//!         }
//!     }
//!     drop(tx); // done with the software attempts
//!     let mut tx = SerialTx::begin(&G);
//!     let v = tx.read(&COUNTER);
//!     tx.write(&COUNTER, v + 1);
//!     tx.commit();
//! }
//!
//! let ts: Vec<_> = (0..4)
//!     .map(|_| std::thread::spawn(|| (0..100).for_each(|_| increment())))
//!     .collect();
//! for t in ts {
//!     t.join().unwrap();
//! }
//! assert_eq!(COUNTER.load(Ordering::Relaxed), 400);
//! assert_eq!(G.sw_active().load(Ordering::Relaxed), 0);
//! ```

mod entry_log;
mod globals;
mod log;
mod norec;
mod serial;
mod striped;
mod sync;

/// The HTM model's core (`--cfg hytm_model` only); `hytm::rtm` is its
/// public face. Not for direct use.
#[cfg(hytm_model)]
#[doc(hidden)]
pub mod model;

pub use globals::Globals;
pub use norec::{Restart, Savepoint, SoftTx};
pub use serial::SerialTx;
/// The transactional word: `std::sync::atomic::AtomicU64`, or loom's under
/// `cfg(loom)`.
pub use sync::AtomicU64;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
