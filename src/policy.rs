//! What to do after a hardware transaction aborts: the retry policy.
//!
//! [`Policy::decide`] is a pure function of the abort status and the attempt
//! history, so it is unit-tested on synthetic statuses without HTM. Only this
//! module decides whether to retry; the lock and transaction code carries the
//! decision out. The adaptive part ([`Adaptive`]) decides whether to try the
//! hardware at all, per site and per thread.

use std::fmt;

use crate::rtm::{code, AbortStatus};
use crate::runtime::ConfigError;

/// What the caller of a hardware attempt does next.
///
/// ```
/// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
/// let status = AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY);
/// let mut h = History::default();
/// Policy::record(&mut h, status);
/// match Policy::default().decide(&h, status) {
///     Decision::Retry { spins } => (0..spins).for_each(|_| std::hint::spin_loop()),
///     Decision::WaitThenRetry => unreachable!("only busy-lock aborts wait"),
///     Decision::Fallback => unreachable!("one conflict is within the budget"),
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Spin for about this many `pause`-length iterations, then try again.
    Retry {
        /// Jittered backoff length.
        spins: u32,
    },
    /// The lock (or a software commit) was busy: wait until it is free, then
    /// try again. Not charged to the retry budget.
    WaitThenRetry,
    /// Give up on hardware for this execution: take the fallback.
    Fallback,
}

/// The attempts of one execution so far, as the decision function sees them.
///
/// ```
/// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
/// let conflict = AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY);
/// let fresh = History { charged: 2, ..History::default() };
/// // An earlier capacity abort keeps its tighter budget for later conflicts.
/// let after_capacity = History { capacity: 1, ..fresh };
/// let p = Policy::default();
/// assert!(matches!(p.decide(&fresh, conflict), Decision::Retry { .. }));
/// assert_eq!(p.decide(&after_capacity, conflict), Decision::Fallback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Hardware attempts charged to the budget (busy waits are not).
    pub charged: u32,
    /// Aborts with CAPACITY and without RETRY.
    pub capacity: u32,
    /// Aborts with status 0, DEBUG or NESTED.
    pub other: u32,
    /// Times the execution waited for a busy lock or software commit.
    pub waits: u32,
    /// A random number for jitter, fresh for each decision.
    pub random: u32,
}

/// A user-supplied decision function, replacing [`Policy::decide`]'s table.
pub type DecideFn = fn(&Policy, &History, AbortStatus) -> Decision;

/// Which software path a transaction takes when hardware gives up.
///
/// Elided locks always fall back to their real lock; this chooses the
/// fallback of [`crate::atomic`].
///
/// ```
/// use hytm::{FallbackKind, Policy};
/// assert_eq!(Policy::default().fallback_kind(), FallbackKind::Stm);
/// // Long sections that keep aborting may do better serialized on one lock.
/// let p = Policy::default().fallback(FallbackKind::GlobalLock);
/// assert_eq!(p.fallback_kind(), FallbackKind::GlobalLock);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FallbackKind {
    /// The NOrec STM, safe beside hardware transactions; serial after
    /// repeated software restarts.
    #[default]
    Stm,
    /// A single global lock (the serial-irrevocable mode): simple, and what
    /// collapses throughput when one thread keeps falling back.
    GlobalLock,
    /// Keep retrying hardware; the serial mode only where hardware cannot
    /// make progress (no RTM, capacity, or the retry budget × 16 spent).
    RetryOnly,
}

/// The retry policy: budgets per abort cause, backoff, adaptivity, fallback.
///
/// The defaults: RETRY or CONFLICT retry with jittered exponential backoff,
/// up to 5 attempts in all; lock busy (`0xff`) or software committing
/// (`0xfe`) wait until free without charging the budget; CAPACITY without
/// RETRY gets one more attempt; status 0, DEBUG and NESTED one retry; a
/// panic or a user abort code falls back at once. Adaptive skipping is on.
/// (The reasons are in the retry policy table of `docs/design.md` in the
/// repository.) Build on [`Policy::default`]:
///
/// ```
/// use hytm::{Policy, rtm::AbortStatus, policy::{Decision, History}};
/// let p = Policy::default().max_attempts(3);
/// p.validate()?;
/// let conflict = AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY);
/// let h = History { charged: 1, ..History::default() };
/// assert!(matches!(p.decide(&h, conflict), Decision::Retry { .. }));
/// let h = History { charged: 3, ..History::default() };
/// assert_eq!(p.decide(&h, conflict), Decision::Fallback);
/// # Ok::<(), hytm::ConfigError>(())
/// ```
#[derive(Clone, Copy)]
pub struct Policy {
    max_attempts: u32,
    capacity_attempts: u32,
    other_attempts: u32,
    max_waits: u32,
    backoff_min: u32,
    backoff_max: u32,
    adaptive: bool,
    hardware: bool,
    fallback: FallbackKind,
    decide_fn: Option<DecideFn>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::DEFAULT
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("max_attempts", &self.max_attempts)
            .field("capacity_attempts", &self.capacity_attempts)
            .field("other_attempts", &self.other_attempts)
            .field("max_waits", &self.max_waits)
            .field("backoff", &(self.backoff_min..=self.backoff_max))
            .field("adaptive", &self.adaptive)
            .field("hardware", &self.hardware)
            .field("fallback", &self.fallback)
            .field("custom_decide", &self.decide_fn.is_some())
            .finish()
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.key() == other.key()
    }
}

impl Policy {
    /// The fields equality compares. Function pointers do not compare
    /// reliably, so a custom decision function counts only as present.
    #[allow(clippy::type_complexity)]
    fn key(&self) -> (u32, u32, u32, u32, u32, u32, bool, bool, FallbackKind, bool) {
        (
            self.max_attempts,
            self.capacity_attempts,
            self.other_attempts,
            self.max_waits,
            self.backoff_min,
            self.backoff_max,
            self.adaptive,
            self.hardware,
            self.fallback,
            self.decide_fn.is_some(),
        )
    }
}

impl Policy {
    /// The defaults.
    pub const DEFAULT: Policy = Policy {
        // docs/design.md: up to 5 attempts in all on RETRY/CONFLICT; glibc's
        // elision uses 3 (`glibc.elision.retry_tries`), oneTBB 10.
        max_attempts: 5,
        // docs/design.md: one more attempt after CAPACITY without RETRY, since
        // contention can report capacity on 1-2 line footprints.
        capacity_attempts: 2,
        // docs/design.md: status 0, DEBUG, NESTED fall back after one retry; the
        // hypervisor's trickle of status-0 aborts makes the retry worth it.
        other_attempts: 2,
        // Busy waits are not charged, but are bounded so an execution facing
        // an endless stream of lock holders still ends (on the lock).
        max_waits: 16,
        // Backoff in pause iterations: about 40 ns to 5 µs on current parts
        // (a `pause` is ~40 cycles since Skylake).
        backoff_min: 4,
        backoff_max: 512,
        adaptive: true,
        hardware: true,
        fallback: FallbackKind::Stm,
        decide_fn: None,
    };

    /// Total hardware attempts charged before falling back (RETRY/CONFLICT).
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
    /// let p = Policy::default().max_attempts(2);
    /// assert_eq!(p.attempt_budget(), 2);
    /// let conflict = AbortStatus::from_raw(AbortStatus::CONFLICT);
    /// let h = History { charged: 2, ..History::default() };
    /// assert_eq!(p.decide(&h, conflict), Decision::Fallback);
    /// ```
    pub const fn max_attempts(mut self, n: u32) -> Policy {
        self.max_attempts = n;
        self
    }

    /// Attempts allowed once a CAPACITY abort (without RETRY) was seen.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
    /// let capacity = AbortStatus::from_raw(AbortStatus::CAPACITY);
    /// let h = History { charged: 1, capacity: 1, ..History::default() };
    /// // The default gives a capacity abort one more attempt; 1 gives none.
    /// assert!(matches!(Policy::default().decide(&h, capacity), Decision::Retry { .. }));
    /// let p = Policy::default().capacity_attempts(1);
    /// assert_eq!(p.decide(&h, capacity), Decision::Fallback);
    /// ```
    pub const fn capacity_attempts(mut self, n: u32) -> Policy {
        self.capacity_attempts = n;
        self
    }

    /// Attempts allowed once a status-0, DEBUG or NESTED abort was seen.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
    /// let status_0 = AbortStatus::from_raw(0);
    /// let h = History { charged: 2, other: 2, ..History::default() };
    /// assert_eq!(Policy::default().decide(&h, status_0), Decision::Fallback);
    /// // Under a hypervisor that interrupts often, status 0 deserves more tries.
    /// let p = Policy::default().other_attempts(3);
    /// assert!(matches!(p.decide(&h, status_0), Decision::Retry { .. }));
    /// ```
    pub const fn other_attempts(mut self, n: u32) -> Policy {
        self.other_attempts = n;
        self
    }

    /// Uncharged waits for a busy lock before falling back anyway.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::{code, AbortStatus}};
    /// let busy = AbortStatus::explicit(code::LOCK_BUSY);
    /// let h = History::default();
    /// assert_eq!(Policy::default().decide(&h, busy), Decision::WaitThenRetry);
    /// // 0: never wait for a lock holder, take the fallback at once.
    /// assert_eq!(Policy::default().max_waits(0).decide(&h, busy), Decision::Fallback);
    /// ```
    pub const fn max_waits(mut self, n: u32) -> Policy {
        self.max_waits = n;
        self
    }

    /// Backoff bounds, in spin iterations, for the jittered exponential
    /// backoff between charged retries.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
    /// let p = Policy::default().backoff(8, 64);
    /// let conflict = AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY);
    /// let spins = |charged| {
    ///     match p.decide(&History { charged, random: 99, ..History::default() }, conflict) {
    ///         Decision::Retry { spins } => spins,
    ///         d => panic!("{d:?}"),
    ///     }
    /// };
    /// assert!((8..=16).contains(&spins(1)));
    /// assert!((32..=64).contains(&spins(4))); // capped at max_spins
    /// ```
    pub const fn backoff(mut self, min_spins: u32, max_spins: u32) -> Policy {
        self.backoff_min = min_spins;
        self.backoff_max = max_spins;
        self
    }

    /// Turns the per-site adaptive skipping of the hardware path on or off.
    ///
    /// ```
    /// use hytm::{Config, Policy};
    /// // Every execution tries hardware, e.g. to measure each attempt.
    /// let config = Config::new().policy(Policy::default().adaptive(false));
    /// assert!(!config.default_policy().is_adaptive());
    /// ```
    pub const fn adaptive(mut self, on: bool) -> Policy {
        self.adaptive = on;
        self
    }

    /// Whether to try hardware at all. `false` sends every execution of the
    /// lock or site straight to its fallback: for sections known to abort
    /// (long, or doing I/O), and for tests that need the software path on
    /// an RTM machine.
    ///
    /// ```
    /// let stm_only = hytm::Policy::default().hardware(false);
    /// assert!(!stm_only.uses_hardware());
    /// ```
    pub const fn hardware(mut self, on: bool) -> Policy {
        self.hardware = on;
        self
    }

    /// Whether hardware is tried at all.
    ///
    /// ```
    /// use hytm::{Policy, Site, TCell};
    /// const SOFTWARE_ONLY: Policy = Policy::DEFAULT.hardware(false);
    /// assert!(!SOFTWARE_ONLY.uses_hardware());
    /// static LOG: Site = Site::with_policy("doc uses_hardware", SOFTWARE_ONLY);
    /// let c = TCell::new(1);
    /// assert_eq!(LOG.atomic(|tx| tx.read(&c)), 1);
    /// let report = hytm::stats::snapshot();
    /// assert_eq!(report.site("doc uses_hardware").unwrap().attempts, 0);
    /// ```
    pub const fn uses_hardware(&self) -> bool {
        self.hardware
    }

    /// The software path of [`crate::atomic`] when hardware gives up.
    ///
    /// ```
    /// use hytm::{FallbackKind, Policy, Site, TCell};
    /// // `const`, so a static site can carry its own policy.
    /// const SERIAL: Policy = Policy::DEFAULT.fallback(FallbackKind::GlobalLock);
    /// static AUDIT: Site = Site::with_policy("doc fallback", SERIAL);
    /// let c = TCell::new(7);
    /// assert_eq!(AUDIT.atomic(|tx| tx.read(&c)), 7);
    /// ```
    pub const fn fallback(mut self, kind: FallbackKind) -> Policy {
        self.fallback = kind;
        self
    }

    /// Replaces the decision table with your own function. It still gets
    /// the validated table fields through its `&Policy` argument.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
    /// fn never_retry(_: &Policy, _: &History, _: AbortStatus) -> Decision {
    ///     Decision::Fallback
    /// }
    /// let p = Policy::default().decide_with(never_retry);
    /// assert_eq!(p.decide(&History::default(), AbortStatus::from_raw(2)), Decision::Fallback);
    /// ```
    pub const fn decide_with(mut self, f: DecideFn) -> Policy {
        self.decide_fn = Some(f);
        self
    }

    /// Whether adaptive skipping is on.
    ///
    /// ```
    /// use hytm::Policy;
    /// assert!(Policy::default().is_adaptive());
    /// assert!(!Policy::default().adaptive(false).is_adaptive());
    /// ```
    pub const fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// The fallback kind.
    ///
    /// ```
    /// use hytm::{FallbackKind, Policy};
    /// assert_eq!(Policy::default().fallback_kind(), FallbackKind::Stm);
    /// let p = Policy::default().fallback(FallbackKind::RetryOnly);
    /// assert_eq!(p.fallback_kind(), FallbackKind::RetryOnly);
    /// ```
    pub const fn fallback_kind(&self) -> FallbackKind {
        self.fallback
    }

    /// The charged-attempt budget.
    ///
    /// ```
    /// use hytm::Policy;
    /// assert_eq!(Policy::default().attempt_budget(), 5);
    /// assert_eq!(Policy::default().max_attempts(3).attempt_budget(), 3);
    /// ```
    pub const fn attempt_budget(&self) -> u32 {
        self.max_attempts
    }

    /// Checks the fields.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`Policy::max_attempts`, ...), the
    /// value and the accepted range.
    ///
    /// ```
    /// use hytm::Policy;
    /// assert!(Policy::default().validate().is_ok());
    /// let err = Policy::default().max_attempts(0).validate().unwrap_err();
    /// assert_eq!(err.setting(), "Policy::max_attempts");
    /// assert_eq!(err.accepted(), "1..=1000");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |field: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    field,
                    &v.to_string(),
                    &format!("{lo}..={hi}"),
                ))
            }
        };
        check("Policy::max_attempts", self.max_attempts, 1, 1000)?;
        check("Policy::capacity_attempts", self.capacity_attempts, 1, 1000)?;
        check("Policy::other_attempts", self.other_attempts, 1, 1000)?;
        check("Policy::max_waits", self.max_waits, 0, 1_000_000)?;
        check("Policy::backoff min_spins", self.backoff_min, 0, 1 << 20)?;
        check(
            "Policy::backoff max_spins",
            self.backoff_max,
            self.backoff_min,
            1 << 20,
        )
    }

    /// The decision after an abort with `status`, given the history of this
    /// execution (with `history.charged` already counting the aborted
    /// attempt if it was charged, see [`Policy::charges`]).
    ///
    /// The table:
    ///
    /// | status | decision |
    /// | --- | --- |
    /// | explicit `0xff` lock busy, `0xfe` software committing, `0xf9` nested lock busy | wait until free (`0xf9`: a bounded backoff), retry (uncharged), up to `max_waits` |
    /// | explicit `0xfc` panic, `0xfa` needs serial, user codes | fallback at once |
    /// | explicit `0xfd` injected, `0xf7` rollback injected | retry like a conflict |
    /// | explicit `0xf8` body cancelled (uncharged) | fallback at once |
    /// | CAPACITY without RETRY | retry until `capacity_attempts` |
    /// | RETRY or CONFLICT | jittered exponential backoff, until `max_attempts` |
    /// | status 0, DEBUG, NESTED alone | retry until `other_attempts` |
    ///
    /// The attempt loop decides a CONFLICT after which the protected lock is
    /// held (a real acquisition aborted the transaction) as `0xff`: a convoy
    /// behind a real holder must not eat the budget.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::{code, AbortStatus}};
    /// let p = Policy::default();
    /// let h = History { charged: 1, ..History::default() };
    /// let decide = |s| p.decide(&h, s);
    /// let conflict = AbortStatus::from_raw(AbortStatus::CONFLICT);
    /// assert!(matches!(decide(conflict), Decision::Retry { .. }));
    /// assert_eq!(decide(AbortStatus::explicit(code::LOCK_BUSY)), Decision::WaitThenRetry);
    /// assert_eq!(decide(AbortStatus::explicit(code::PANIC)), Decision::Fallback);
    /// assert_eq!(decide(AbortStatus::explicit(0x12)), Decision::Fallback); // a user code
    /// ```
    pub fn decide(&self, history: &History, status: AbortStatus) -> Decision {
        if let Some(f) = self.decide_fn {
            return f(self, history, status);
        }
        self.decide_by_table(history, status)
    }

    /// [`Policy::decide`]'s built-in table, for custom functions that only
    /// want to change a few cases.
    ///
    /// ```
    /// use hytm::{Policy, policy::{Decision, History}, rtm::AbortStatus};
    /// // Give up at once on capacity; the table decides everything else.
    /// fn no_capacity_retry(p: &Policy, h: &History, s: AbortStatus) -> Decision {
    ///     if s.is_capacity() { Decision::Fallback } else { p.decide_by_table(h, s) }
    /// }
    /// let p = Policy::default().decide_with(no_capacity_retry);
    /// let h = History { charged: 1, ..History::default() };
    /// let (capacity, conflict) = (AbortStatus::CAPACITY, AbortStatus::CONFLICT);
    /// assert_eq!(p.decide(&h, AbortStatus::from_raw(capacity)), Decision::Fallback);
    /// assert!(matches!(p.decide(&h, AbortStatus::from_raw(conflict)), Decision::Retry { .. }));
    /// ```
    pub fn decide_by_table(&self, h: &History, status: AbortStatus) -> Decision {
        if let Some(c) = status.explicit_code() {
            return match c {
                code::LOCK_BUSY | code::SW_COMMITTING | code::NESTED_BUSY
                    if h.waits < self.max_waits =>
                {
                    Decision::WaitThenRetry
                }
                code::INJECTED | code::ROLLBACK => self.retry_within(h, self.max_attempts),
                _ => Decision::Fallback,
            };
        }
        let budget = if status.is_capacity() && !status.may_retry() {
            self.capacity_attempts.min(self.max_attempts)
        } else if status.may_retry() || status.is_conflict() {
            self.max_attempts
        } else {
            self.other_attempts.min(self.max_attempts)
        };
        // A capacity or status-0 abort earlier in this execution keeps its
        // tighter budget even if a later abort is a conflict.
        let budget = match (h.capacity > 0, h.other > 0) {
            (true, _) => budget.min(self.capacity_attempts),
            (_, true) => budget.min(self.other_attempts),
            _ => budget,
        };
        self.retry_within(h, budget)
    }

    fn retry_within(&self, h: &History, budget: u32) -> Decision {
        if h.charged >= budget {
            return Decision::Fallback;
        }
        // Exponential in the attempts made, jittered to [1/2, 1] of the
        // ceiling so two threads that collided do not collide again in step.
        let ceiling = self
            .backoff_min
            .max(1)
            .saturating_mul(1u32 << h.charged.min(20))
            .min(self.backoff_max);
        let spins = if ceiling <= 1 {
            ceiling
        } else {
            ceiling / 2 + h.random % (ceiling / 2 + 1)
        };
        Decision::Retry { spins }
    }

    /// Whether an abort with `status` is charged to the attempt budget:
    /// everything but waiting for a busy lock or software commit.
    ///
    /// ```
    /// use hytm::{Policy, rtm::{code, AbortStatus}};
    /// assert!(Policy::charges(AbortStatus::from_raw(AbortStatus::CONFLICT)));
    /// // Waiting for a lock holder is not the transaction's failure.
    /// assert!(!Policy::charges(AbortStatus::explicit(code::LOCK_BUSY)));
    /// ```
    pub fn charges(status: AbortStatus) -> bool {
        !matches!(
            status.explicit_code(),
            Some(code::LOCK_BUSY | code::SW_COMMITTING | code::NESTED_BUSY | code::CANCELLED)
        )
    }

    /// Records `status` in the history (charged attempts and the sticky
    /// capacity / other flags).
    ///
    /// ```
    /// use hytm::{Policy, policy::History, rtm::{code, AbortStatus}};
    /// let mut h = History::default();
    /// for raw in [AbortStatus::CAPACITY, 0, AbortStatus::explicit(code::LOCK_BUSY).raw()] {
    ///     Policy::record(&mut h, AbortStatus::from_raw(raw));
    /// }
    /// // The busy lock is not charged; the caller counts its wait in `h.waits`.
    /// assert_eq!((h.charged, h.capacity, h.other, h.waits), (2, 1, 1, 0));
    /// ```
    pub fn record(history: &mut History, status: AbortStatus) {
        if Self::charges(status) {
            history.charged += 1;
        }
        if status.is_explicit() {
            // Explicit aborts carry NESTED when raised in a nested level;
            // that says nothing about the hardware, so no tighter budget.
        } else if status.is_capacity() && !status.may_retry() {
            history.capacity += 1;
        } else if !status.may_retry() && !status.is_conflict() && !status.is_capacity() {
            // Status 0, DEBUG, or NESTED alone. NESTED is not a cause: the
            // SDM sets it beside the cause bits on every abort taken in a
            // nested level, so the cause bits are looked at first.
            history.other += 1;
        }
    }
}

/// Per-site adaptive state (one per lock or `atomic` site, shared by its
/// threads): whether to try hardware at all.
///
/// When executions keep ending on the fallback, the hardware path is skipped
/// for a growing number of executions (doubling from [`Adaptive::MIN_SKIP`]
/// to [`Adaptive::MAX_SKIP`]), then probed once; a probe that commits in
/// hardware quarters the skip length, so the site returns to hardware within
/// a few executions once hardware works again.
///
/// ```
/// use hytm::policy::Adaptive;
/// let mut a = Adaptive::default();
/// for _ in 0..Adaptive::STREAK {
///     assert!(a.should_try_hardware());
///     a.record(false);
/// }
/// assert!(!a.should_try_hardware()); // skipping now
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Adaptive {
    skip_left: u32,
    skip_len: u32,
    fallback_streak: u32,
}

impl Adaptive {
    /// Consecutive fallbacks that start skipping. Four: one or two fallbacks
    /// in a row are normal noise under a hypervisor (status-0 aborts).
    pub const STREAK: u32 = 4;
    /// First skip length, in executions.
    pub const MIN_SKIP: u32 = 16;
    /// Longest skip: bounded so a phase change back to hardware-friendly
    /// work is noticed within about a thousand executions.
    pub const MAX_SKIP: u32 = 1024;

    /// Whether this execution should try hardware (consumes one skip).
    ///
    /// ```
    /// use hytm::policy::Adaptive;
    /// let mut a = Adaptive::default();
    /// let mut tries = 0;
    /// for _ in 0..100 {
    ///     if a.should_try_hardware() {
    ///         tries += 1;
    ///         a.record(false); // say the hardware keeps aborting
    ///     }
    /// }
    /// // STREAK (4) failures, then one probe after each skip, each skip twice as long.
    /// assert_eq!(tries, 6);
    /// ```
    #[inline]
    pub fn should_try_hardware(&mut self) -> bool {
        if self.skip_left == 0 {
            true
        } else {
            self.skip_left -= 1;
            false
        }
    }

    /// Records how an execution that tried hardware ended.
    ///
    /// ```
    /// use hytm::policy::Adaptive;
    /// let mut a = Adaptive::default();
    /// for _ in 0..Adaptive::STREAK {
    ///     a.record(false);
    /// }
    /// while !a.should_try_hardware() {}
    /// // The probe after the skip commits: hardware is tried again at once.
    /// a.record(true);
    /// assert!(a.should_try_hardware() && !a.is_skipping());
    /// ```
    #[inline]
    pub fn record(&mut self, committed_in_hardware: bool) {
        if committed_in_hardware {
            self.fallback_streak = 0;
            self.skip_len /= 4;
            return;
        }
        self.fallback_streak += 1;
        if self.fallback_streak >= Self::STREAK {
            self.skip_len = (self.skip_len * 2).clamp(Self::MIN_SKIP, Self::MAX_SKIP);
            self.skip_left = self.skip_len;
            // After the skip, one failed probe is enough to skip again.
            self.fallback_streak = Self::STREAK - 1;
        }
    }

    /// Packs the state in one word (skip left: bits 0..32, skip length:
    /// 32..48, streak: 48..64) so a lock can keep it in an `AtomicU64`.
    /// The default state packs to 0.
    ///
    /// ```
    /// use hytm::policy::Adaptive;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// // One word a lock's threads share without a lock of their own.
    /// let word = AtomicU64::new(Adaptive::default().pack());
    /// let mut a = Adaptive::unpack(word.load(Ordering::Relaxed));
    /// a.record(false);
    /// word.store(a.pack(), Ordering::Relaxed);
    /// assert_eq!(Adaptive::unpack(word.load(Ordering::Relaxed)), a);
    /// ```
    pub const fn pack(self) -> u64 {
        self.skip_left as u64 | (self.skip_len as u64) << 32 | (self.fallback_streak as u64) << 48
    }

    /// The inverse of [`Adaptive::pack`].
    ///
    /// ```
    /// use hytm::policy::Adaptive;
    /// let mut a = Adaptive::default();
    /// for _ in 0..Adaptive::STREAK { a.record(false); }
    /// assert_eq!(Adaptive::unpack(a.pack()), a);
    /// assert_eq!(Adaptive::default().pack(), 0);
    /// ```
    pub const fn unpack(word: u64) -> Adaptive {
        Adaptive {
            skip_left: word as u32,
            skip_len: (word >> 32) as u16 as u32,
            fallback_streak: (word >> 48) as u16 as u32,
        }
    }

    /// Whether the site is currently skipping hardware.
    ///
    /// ```
    /// use hytm::policy::Adaptive;
    /// let mut a = Adaptive::default();
    /// assert!(!a.is_skipping());
    /// for _ in 0..Adaptive::STREAK {
    ///     a.record(false);
    /// }
    /// // Unlike `should_try_hardware`, asking uses up no skip.
    /// assert!(a.is_skipping());
    /// ```
    pub fn is_skipping(&self) -> bool {
        self.skip_left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFLICT: AbortStatus = AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY);
    const CAPACITY: AbortStatus = AbortStatus::from_raw(AbortStatus::CAPACITY);
    const ZERO: AbortStatus = AbortStatus::from_raw(0);

    fn run(p: &Policy, statuses: &[AbortStatus]) -> Vec<Decision> {
        let mut h = History::default();
        statuses
            .iter()
            .map(|&s| {
                Policy::record(&mut h, s);
                let d = p.decide(&h, s);
                if d == Decision::WaitThenRetry {
                    h.waits += 1;
                }
                d
            })
            .collect()
    }

    #[test]
    fn conflicts_retry_up_to_five_attempts() {
        let d = run(&Policy::default(), &[CONFLICT; 5]);
        assert!(d[..4].iter().all(|d| matches!(d, Decision::Retry { .. })));
        assert_eq!(d[4], Decision::Fallback);
    }

    #[test]
    fn capacity_gets_one_more_attempt() {
        assert_eq!(
            run(&Policy::default(), &[CAPACITY, CAPACITY])[1],
            Decision::Fallback
        );
        assert!(matches!(
            run(&Policy::default(), &[CAPACITY])[0],
            Decision::Retry { .. }
        ));
        // A conflict after a capacity abort keeps the capacity budget.
        assert_eq!(
            run(&Policy::default(), &[CAPACITY, CONFLICT])[1],
            Decision::Fallback
        );
        // CAPACITY with RETRY is contention: the conflict budget.
        let cap_retry = AbortStatus::from_raw(AbortStatus::CAPACITY | AbortStatus::RETRY);
        assert!(matches!(
            run(&Policy::default(), &[cap_retry, cap_retry])[1],
            Decision::Retry { .. }
        ));
    }

    #[test]
    fn status_zero_debug_nested_retry_once() {
        for s in [
            ZERO,
            AbortStatus::from_raw(AbortStatus::DEBUG),
            AbortStatus::from_raw(AbortStatus::NESTED),
        ] {
            let d = run(&Policy::default(), &[s, s]);
            assert!(matches!(d[0], Decision::Retry { .. }), "{s}");
            assert_eq!(d[1], Decision::Fallback, "{s}");
        }
    }

    #[test]
    fn nested_is_not_a_cause_beside_cause_bits() {
        // The SDM sets NESTED on every abort taken below the outermost
        // level, beside the cause bits: CONFLICT|RETRY|NESTED is a conflict
        // and keeps the conflict budget.
        let nested_conflict =
            AbortStatus::from_raw(AbortStatus::CONFLICT | AbortStatus::RETRY | AbortStatus::NESTED);
        let d = run(&Policy::default(), &[nested_conflict; 5]);
        assert!(
            d[..4].iter().all(|d| matches!(d, Decision::Retry { .. })),
            "{d:?}"
        );
        assert_eq!(d[4], Decision::Fallback);
        let mut h = History::default();
        Policy::record(&mut h, nested_conflict);
        assert_eq!((h.charged, h.other, h.capacity), (1, 0, 0));
        // CAPACITY|NESTED keeps the capacity budget, not a tighter one.
        let mut h = History::default();
        Policy::record(
            &mut h,
            AbortStatus::from_raw(AbortStatus::CAPACITY | AbortStatus::NESTED),
        );
        assert_eq!((h.capacity, h.other), (1, 0));
    }

    #[test]
    fn a_busy_nested_lock_is_waited_out_uncharged() {
        // The enclosing section did nothing wrong: no budget, no adaptive
        // charge (the loop gives up as Busy when the waits run out).
        let nested = AbortStatus::explicit(code::NESTED_BUSY);
        assert!(!Policy::charges(nested));
        let d = run(&Policy::default(), &[nested; 17]);
        assert!(
            d[..16].iter().all(|d| *d == Decision::WaitThenRetry),
            "{d:?}"
        );
        assert_eq!(d[16], Decision::Fallback);
    }

    #[test]
    fn busy_waits_are_not_charged_but_bounded() {
        let busy = AbortStatus::explicit(code::LOCK_BUSY);
        let p = Policy::default();
        let d = run(&p, &[busy; 17]);
        assert!(d[..16].iter().all(|d| *d == Decision::WaitThenRetry));
        assert_eq!(d[16], Decision::Fallback);
        let mut h = History::default();
        Policy::record(&mut h, busy);
        assert_eq!(h.charged, 0);
        // Waits do not eat the conflict budget.
        let mut seq = vec![busy; 10];
        seq.extend([CONFLICT; 4]);
        assert!(matches!(run(&p, &seq)[13], Decision::Retry { .. }));
    }

    #[test]
    fn injected_aborts_and_rollbacks_retry_like_conflicts() {
        for c in [code::INJECTED, code::ROLLBACK] {
            let s = AbortStatus::explicit(c);
            let d = run(&Policy::default(), &[s; 5]);
            assert!(
                d[..4].iter().all(|d| matches!(d, Decision::Retry { .. })),
                "{c:#x}: {d:?}"
            );
            assert_eq!(d[4], Decision::Fallback, "{c:#x}");
        }
    }

    #[test]
    fn panics_and_user_codes_fall_back_at_once() {
        for c in [code::PANIC, code::NEEDS_SERIAL, 0x01, 0x7f] {
            assert_eq!(
                run(&Policy::default(), &[AbortStatus::explicit(c)])[0],
                Decision::Fallback
            );
        }
    }

    #[test]
    fn backoff_is_jittered_exponential_and_bounded() {
        let p = Policy::default().backoff(8, 64);
        let spins = |charged, random| match p.decide(
            &History {
                charged,
                random,
                ..History::default()
            },
            CONFLICT,
        ) {
            Decision::Retry { spins } => spins,
            d => panic!("{d:?}"),
        };
        assert!((8..=16).contains(&spins(1, 0)) && (8..=16).contains(&spins(1, u32::MAX)));
        assert_ne!(spins(1, 0), spins(1, 8));
        assert!((16..=32).contains(&spins(2, 12345)));
        let p = Policy::default().max_attempts(100).backoff(8, 64);
        for charged in 3..50 {
            let s = match p.decide(
                &History {
                    charged,
                    random: 7,
                    ..History::default()
                },
                CONFLICT,
            ) {
                Decision::Retry { spins } => spins,
                d => panic!("{d:?}"),
            };
            assert!((32..=64).contains(&s));
        }
    }

    #[test]
    fn validation_names_the_field() {
        let e = Policy::default().max_attempts(0).validate().unwrap_err();
        assert_eq!(e.setting(), "Policy::max_attempts");
        assert_eq!(e.accepted(), "1..=1000");
        let e = Policy::default().backoff(10, 5).validate().unwrap_err();
        assert_eq!(e.setting(), "Policy::backoff max_spins");
        assert!(Policy::default().validate().is_ok());
    }

    #[test]
    fn adaptive_skips_grow_and_shrink() {
        let mut a = Adaptive::default();
        let fail_until_skipping = |a: &mut Adaptive| {
            let mut tries = 0;
            while a.should_try_hardware() {
                a.record(false);
                tries += 1;
            }
            tries
        };
        assert_eq!(fail_until_skipping(&mut a), Adaptive::STREAK);
        let skipped = 1 + (0..).take_while(|_| !a.should_try_hardware()).count() as u32;
        assert_eq!(skipped, Adaptive::MIN_SKIP);
        // One failed probe doubles the skip.
        a.record(false);
        let skipped = (0..).take_while(|_| !a.should_try_hardware()).count() as u32;
        assert_eq!(skipped, 2 * Adaptive::MIN_SKIP);
        // Skips are bounded.
        for _ in 0..20 {
            a.record(false);
            while !a.should_try_hardware() {}
        }
        assert_eq!(a.skip_len, Adaptive::MAX_SKIP);
        // Commits bring it back quickly: a handful of successful probes.
        let mut executions = 0;
        while a.skip_len > 0 {
            if a.should_try_hardware() {
                a.record(true);
            }
            executions += 1;
            assert!(executions < 2000);
        }
        assert!(!a.is_skipping());
    }
}
