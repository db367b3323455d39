//! The hardware attempt loop shared by elided locks and `atomic`: begin,
//! subscribe, and on abort carry out what [`Policy::decide`] says.
//!
//! The loop returns *inside* a transaction. When that transaction aborts
//! later (in the caller's critical section), the CPU rolls every register
//! and memory location back to the `xbegin` in this loop, stack frame
//! included, and the loop goes on with the abort status: the same shape as
//! glibc's elided `pthread_mutex_lock`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::policy::{Adaptive, Decision, History, Policy};
use crate::rtm::{code, AbortStatus, Rtm};
use crate::runtime::Runtime;
use crate::stats::{Execution, SiteId};

/// Why the loop gave up on hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GaveUp {
    /// The policy ran out of budget for the aborts seen: counts against the
    /// site's adaptive state.
    Budget,
    /// The lock stayed busy (or was busy too many times): the hardware did
    /// nothing wrong, so the adaptive state is left alone.
    Busy,
    /// The adaptive state said to skip hardware for this execution.
    Skipped,
    /// Injection is on but RTM is not: a non-injected attempt cannot run.
    NoHardware,
    /// The body asked for a serial run (`code::NEEDS_SERIAL`): go there
    /// directly.
    NeedsSerial,
}

/// A hardware attempt that is inside its transaction.
#[derive(Clone, Copy)]
pub(crate) struct Entered {
    pub rtm: Rtm,
    /// An injected rollback: the caller runs the body, then aborts with
    /// [`code::ROLLBACK`] instead of committing.
    pub rollback: bool,
}

impl Entered {
    /// Ends the body's transaction: commits it, or aborts it with
    /// [`code::ROLLBACK`] when this attempt was chosen for an injected
    /// rollback (the loop then goes on as after any abort).
    ///
    /// # Safety
    ///
    /// The transaction `begin` returned inside must still be active.
    #[inline(always)]
    pub unsafe fn end(self) {
        if self.rollback && rollback_possible() {
            self.rtm.abort::<{ code::ROLLBACK }>();
        }
        // SAFETY: the caller guarantees the transaction is active.
        unsafe { self.rtm.end() };
    }
}

/// Whether an abort at the end of the body can still undo all of it: always
/// on hardware; under the HTM model, not after an elided section wrote in
/// place (the model cannot undo plain memory), so injected rollbacks are
/// skipped there.
#[inline(always)]
fn rollback_possible() -> bool {
    #[cfg(hytm_model)]
    {
        hytm_fallback::model::can_roll_back()
    }
    #[cfg(not(hytm_model))]
    {
        true
    }
}

/// Runs hardware attempts until one is inside a transaction that passed
/// `subscribe`, or the policy gives up; the transaction stays open (an
/// elided section runs in the caller's frame and ends it at release).
///
/// `subscribe` runs right after `xbegin` and must abort (with an explicit
/// code) if the protected resource is busy. `resource` says, after a
/// conflict, whether the protected resource is now held: a conflict caused
/// by a real acquisition (or a software commit) is then waited out,
/// uncharged, like a busy subscription, instead of eating the budget in a
/// convoy (the lemming effect). `wait` runs on [`Decision::WaitThenRetry`]
/// with the status decided on, outside any transaction; it returns `false`
/// when waiting should stop and the caller should take its fallback (which
/// can block properly instead of spinning).
///
/// On `Err`, the returned [`Execution`] holds the aborts not yet counted; the
/// caller adds its fallback and counts it.
#[inline]
// The large Err carries the uncounted aborts to the caller on the cold
// fallback path; boxing it would allocate there for nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn begin(
    rt: &Runtime,
    policy: &Policy,
    site: SiteId,
    subscribe: impl Fn(Rtm),
    resource: impl Fn() -> Resource,
    wait: impl Fn(AbortStatus) -> bool,
) -> Result<Entered, (Execution, GaveUp)> {
    run(rt, policy, site, resource, wait, |entered| {
        subscribe(entered.rtm);
        entered
    })
}

/// Runs hardware attempts of `inside` until one returns inside its
/// transaction, or the policy gives up. `inside` runs right after `xbegin`:
/// it subscribes, and may run a whole body and commit (`atomic`) or return
/// with the transaction open (an elided section, through [`begin`]).
///
/// An abort anywhere in `inside` comes back here with its status: on
/// hardware by resuming at `xbegin`, under the HTM model by unwinding.
///
/// On `Err`, as for [`begin`].
#[inline]
#[allow(clippy::result_large_err)]
pub(crate) fn run<R>(
    rt: &Runtime,
    policy: &Policy,
    site: SiteId,
    resource: impl Fn() -> Resource,
    wait: impl Fn(AbortStatus) -> bool,
    mut inside: impl FnMut(Entered) -> R,
) -> Result<R, (Execution, GaveUp)> {
    let mut exec = Execution::default();
    let mut history = History::default();
    loop {
        let status = match next_attempt(rt, &mut exec, site) {
            Attempt::Hardware(rtm, rollback) => {
                match rtm.begin_scoped(|| inside(Entered { rtm, rollback })) {
                    Ok(r) => return Ok(r),
                    Err(status) => {
                        // Under the HTM model the aborted attempt's `TVar`
                        // values are still logged (plain memory is not
                        // rolled back): free them. On RTM the log was
                        // rolled back with the rest.
                        crate::tvar::abort();
                        if status.explicit_code() == Some(code::ROLLBACK) {
                            exec.rollbacks += 1;
                        }
                        status
                    }
                }
            }
            Attempt::Injected(status) => status,
            Attempt::Unavailable => return Err((exec, GaveUp::NoHardware)),
        };
        exec.attempts += 1;
        exec.abort(status);
        // Counted as what the hardware said; decided as what it means.
        let status = match status.is_conflict() && !status.is_explicit() {
            true => match resource() {
                Resource::Free => status,
                Resource::Held => AbortStatus::explicit(code::LOCK_BUSY),
                // A transactional reader conflicted with real readers: it
                // needs no exclusion, so it joins them under the real lock
                // now; retrying would only meet the next reader's count
                // update (each real reader aborts every transactional one).
                Resource::SharedByReaders => return Err((exec, GaveUp::Busy)),
            },
            false => status,
        };
        Policy::record(&mut history, status);
        history.random = crate::rng::u32();
        match policy.decide(&history, status) {
            Decision::Retry { spins } => {
                exec.retries += 1;
                spin(spins);
            }
            Decision::WaitThenRetry => {
                history.waits += 1;
                exec.waits += 1;
                if !wait(status) {
                    return Err((exec, GaveUp::Busy));
                }
            }
            Decision::Fallback => {
                let why = match status.explicit_code() {
                    Some(code::NEEDS_SERIAL) => GaveUp::NeedsSerial,
                    // Busy too often, or the body cancelled: not the
                    // hardware's fault.
                    _ if !Policy::charges(status) || history.charged == 0 => GaveUp::Busy,
                    _ => GaveUp::Budget,
                };
                return Err((exec, why));
            }
        }
    }
}

/// What the resource a transaction subscribed to looks like after a
/// conflict abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    /// Not held: the conflict was with another transaction's data.
    Free,
    /// Held (a real lock holder, a software commit): wait it out.
    Held,
    /// Held shared by real readers, and the transaction is a reader.
    SharedByReaders,
}

/// The waiting for [`Decision::WaitThenRetry`], by what the abort was:
/// a software commit (`0xfe`) is waited out on `seq`, a nested lock that
/// was busy (`0xf9`) with a bounded backoff (its word is not known here:
/// whatever the transaction wrote to say which lock it was is rolled back
/// with it), anything else (`0xff`, a lock busy) on `lock_busy`. Returns
/// `false` when the wait ran long: the caller then blocks on its fallback
/// instead of spinning.
pub(crate) fn wait_out(status: AbortStatus, lock_busy: impl Fn() -> bool) -> bool {
    let backoff = crossbeam_utils::Backoff::new();
    let busy = || match status.explicit_code() {
        Some(code::SW_COMMITTING) => crate::tx::software_committing(),
        Some(code::NESTED_BUSY) => !backoff.is_completed(),
        _ => lock_busy(),
    };
    while busy() {
        if backoff.is_completed() {
            return false;
        }
        backoff.snooze();
    }
    true
}

enum Attempt {
    /// A real attempt; `true` if it is to be rolled back at its end.
    Hardware(Rtm, bool),
    Injected(AbortStatus),
    Unavailable,
}

#[inline]
fn next_attempt(rt: &Runtime, exec: &mut Execution, site: SiteId) -> Attempt {
    let injected = roll_injection(rt);
    if let Some(Injected::Abort(status)) = injected {
        exec.injected += 1;
        return Attempt::Injected(status);
    }
    match rt.rtm {
        Some(rtm) => {
            // Counters of earlier aborts go out now: once inside the
            // transaction nothing may be written to shared memory, and on the
            // success path the commit is counted after `xend`.
            if exec.attempts > 0 {
                exec.commit_to(site);
                *exec = Execution::default();
            }
            Attempt::Hardware(rtm, injected == Some(Injected::Rollback))
        }
        None => Attempt::Unavailable,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Injected {
    /// Abort before the body runs, with this status.
    Abort(AbortStatus),
    /// Run the body, then roll it back.
    Rollback,
}

/// What injection does to this attempt, if a rule fires. One draw per
/// attempt, so each rule fires with exactly its probability (the
/// probabilities add up to at most 1, checked by the configuration). Drawn
/// before `xbegin`: the generator's state must not be rolled back.
#[inline]
fn roll_injection(rt: &Runtime) -> Option<Injected> {
    let rules = rt.config.injections();
    let rollback = rt.config.rollback_probability();
    if rules.is_empty() && rollback == 0.0 {
        return None;
    }
    let mut draw = crate::rng::f64();
    for r in rules {
        if draw < r.probability {
            return Some(Injected::Abort(r.cause.synthetic_status()));
        }
        draw -= r.probability;
    }
    (draw < rollback).then_some(Injected::Rollback)
}

/// Whether a software or serial run is to be rolled back at its end
/// (injected rollback; see [`Config::inject_rollback`]).
///
/// [`Config::inject_rollback`]: crate::Config::inject_rollback
#[inline]
pub(crate) fn roll_software_rollback(rt: &Runtime) -> bool {
    let p = rt.config.rollback_probability();
    p > 0.0 && crate::rng::f64() < p
}

/// Jittered backoff between charged retries: `spins` pause iterations.
#[inline]
fn spin(spins: u32) {
    for _ in 0..spins {
        std::hint::spin_loop();
    }
}

/// The adaptive state of one site, packed in a word beside the lock it
/// governs. Threads update it racily with relaxed loads and stores: it is a
/// heuristic, a lost update only shifts a skip length. It is written only
/// when it changes: while skipping (those executions take the real lock,
/// which writes the same line anyway), after a fallback, and when a commit
/// shortens the skip length of a recovering site. A steady hardware
/// workload never writes it.
///
/// docs/design.md asks for adaptive state "on its own cache lines"; a padded
/// word would make every elided lock 128 bytes larger, and with writes
/// limited as above the shared line costs nothing on the hardware path.
#[derive(Debug, Default)]
pub(crate) struct AdaptiveWord(AtomicU64);

impl AdaptiveWord {
    pub(crate) const fn new() -> Self {
        AdaptiveWord(AtomicU64::new(0))
    }

    /// Whether this execution should try hardware (consumes one skip).
    #[inline]
    pub(crate) fn should_try_hardware(&self) -> bool {
        // Relaxed: a heuristic with no data depending on it.
        let word = self.0.load(Ordering::Relaxed);
        let mut a = Adaptive::unpack(word);
        if !a.is_skipping() {
            // Nothing to consume: no store, so the lock's line stays clean
            // for transactions subscribed to it.
            return true;
        }
        let go = a.should_try_hardware();
        self.0.store(a.pack(), Ordering::Relaxed);
        go
    }

    /// Records how an execution that tried hardware ended.
    #[inline]
    pub(crate) fn record(&self, committed_in_hardware: bool) {
        let word = self.0.load(Ordering::Relaxed);
        if word == 0 && committed_in_hardware {
            return;
        }
        let mut a = Adaptive::unpack(word);
        a.record(committed_in_hardware);
        let new = a.pack();
        if new != word {
            self.0.store(new, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rtm::AbortCause;
    use crate::runtime::Config;

    /// A runtime whose every attempt aborts with an injected conflict, on
    /// any machine (no hardware attempt runs).
    fn conflicting() -> Runtime {
        Runtime::resolve(
            Config::new()
                .assume_no_htm(true)
                .inject(AbortCause::Conflict, 1.0),
        )
        .unwrap()
    }

    fn attempts(resource: Resource) -> (Execution, GaveUp, u32) {
        let rt = conflicting();
        let policy = Policy::DEFAULT.adaptive(false);
        let waits = Cell::new(0);
        let r = run(
            &rt,
            &policy,
            SiteId::ATOMIC,
            || resource,
            |status| {
                assert_eq!(status.explicit_code(), Some(code::LOCK_BUSY));
                waits.set(waits.get() + 1);
                true
            },
            |_| (),
        );
        let (exec, why) = r.expect_err("every attempt aborts");
        (exec, why, waits.get())
    }

    #[test]
    fn a_conflict_with_the_lock_now_held_is_waited_out_uncharged() {
        // The convoy case: a real acquisition aborted the transaction.
        let (exec, why, waits) = attempts(Resource::Held);
        assert_eq!(why, GaveUp::Busy, "{exec:?}");
        assert_eq!(waits, 16, "max_waits uncharged waits, then the lock");
        assert_eq!(exec.retries, 0, "{exec:?}");
        assert_eq!(
            exec.aborts[AbortCause::Conflict.index()],
            17,
            "counted as conflicts"
        );
        // The budget is for conflicts with other transactions only.
        let (exec, why, waits) = attempts(Resource::Free);
        assert_eq!((why, waits, exec.attempts), (GaveUp::Budget, 0, 5));
    }

    #[test]
    fn a_reader_that_conflicts_with_real_readers_joins_them_at_once() {
        let (exec, why, waits) = attempts(Resource::SharedByReaders);
        assert_eq!((why, waits, exec.attempts), (GaveUp::Busy, 0, 1));
    }

    #[test]
    // Timing-based (a 30 ms serial transaction): not a Miri test.
    #[cfg_attr(miri, ignore)]
    fn a_software_commit_is_waited_out_on_seq() {
        // A serial transaction holds `seq` odd for a while; a hardware
        // attempt that met it (0xfe) waits on `seq`, whatever its own lock
        // word says.
        let start = Instant::now();
        let held = Duration::from_millis(30);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || {
                crate::atomic_irrevocable(|_| {
                    tx.send(()).unwrap();
                    std::thread::sleep(held);
                });
            });
            rx.recv().unwrap();
            assert!(crate::tx::software_committing());
            let waited = wait_out(AbortStatus::explicit(code::SW_COMMITTING), || false);
            // Either it saw `seq` even again, or it gave up after a long
            // backoff (then the caller blocks on its fallback): never at once.
            assert!(
                !waited || !crate::tx::software_committing(),
                "returned while the serial transaction ran ({:?})",
                start.elapsed()
            );
        });
    }
}
