//! Lock elision: [`ElidedMutex`] and [`ElidedRwLock`].
//!
//! Each elided lock is a raw lock (`RawElidedMutex`, `RawElidedRwLock`)
//! implementing `lock_api`'s raw traits around one of parking_lot's raw
//! locks, plus `lock_api`'s data wrapper. A critical section first runs as an
//! RTM transaction that reads the real lock's word right after `xbegin`
//! (eager subscription) and aborts with `0xff` if it is held; when the policy
//! gives up, the section runs under the real lock. The guard state records
//! how the section got in ([`Entry`]) and release dispatches on that, never
//! on the lock word.

mod mutex;
mod rwlock;

pub use mutex::{ElidedMutex, ElidedMutexGuard, RawElidedMutex};
pub use rwlock::{ElidedRwLock, ElidedRwLockReadGuard, ElidedRwLockWriteGuard, RawElidedRwLock};

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;

use crate::attempt::{self, AdaptiveWord, Entered, GaveUp};
use crate::policy::Policy;
use crate::rtm::{code, Rtm};
use crate::runtime::{runtime, Runtime};
use crate::stats::{self, Execution, Outcome, SiteId, SiteKind};

/// Per-acquisition state kept in a guard: how the section got in, as a
/// hardware transaction or holding the real lock (`G` is the real lock's
/// own guard state).
///
/// It is the `Guard` type of [`RawElidedMutex`](crate::RawElidedMutex) and
/// [`RawElidedRwLock`](crate::RawElidedRwLock) as `lock_api` raw locks:
/// code using [`ElidedMutex`](crate::ElidedMutex) never sees it, and code
/// using the raw locks passes it back to the matching unlock.
///
/// `!Send`: a transaction belongs to the thread that began it, and parking_lot
/// locks must be released by the thread that took them.
///
/// ```
/// use hytm::RawElidedMutex;
/// use lock_api::RawMutex;
/// let raw = <RawElidedMutex as RawMutex>::INIT;
/// let state = raw.lock();
/// // Without RTM (or in fallback mode) the section holds the real lock.
/// assert_eq!(state.is_transactional(), hytm::in_transaction());
/// // SAFETY: `state` comes from this lock's `lock`.
/// unsafe { raw.unlock(state) };
/// ```
pub struct GuardState<G> {
    entry: Entry<G>,
    _not_send: PhantomData<*mut ()>,
}

/// How a critical section was entered.
enum Entry<G> {
    /// Inside an RTM transaction subscribed to the lock word.
    Transaction(Entered),
    /// Holding the real lock, with its guard state.
    Locked(G),
}

impl<G> GuardState<G> {
    fn transaction(rtm: Entered) -> Self {
        GuardState {
            entry: Entry::Transaction(rtm),
            _not_send: PhantomData,
        }
    }

    fn locked(g: G) -> Self {
        GuardState {
            entry: Entry::Locked(g),
            _not_send: PhantomData,
        }
    }

    /// Whether this acquisition runs as a hardware transaction.
    pub fn is_transactional(&self) -> bool {
        matches!(self.entry, Entry::Transaction(_))
    }
}

/// What elided locks of both kinds share: the site their statistics go to,
/// their policy (or the global one) and their adaptive state.
#[derive(Debug)]
struct Elision {
    adaptive: AdaptiveWord,
    site: SiteId,
    policy: Option<Policy>,
}

/// How a transactional section enters when already inside a transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// `lock`/`write`/`read`: abort if the lock is busy or already held by
    /// this transaction (the real lock would deadlock there).
    Blocking,
    /// `try_*`: report the lock as unavailable instead.
    Try,
}

impl Elision {
    const fn new(site: SiteId) -> Self {
        Elision {
            adaptive: AdaptiveWord::new(),
            site,
            policy: None,
        }
    }

    fn policy<'a>(&'a self, rt: &'a Runtime) -> &'a Policy {
        self.policy.as_ref().unwrap_or(rt.config.default_policy())
    }

    fn name(&mut self, kind: SiteKind, name: &str) {
        self.site = SiteId::named(kind, name);
    }

    /// Tries to enter as a transaction; see [`Entering`].
    ///
    /// `key` identifies the lock and access kind in this thread's held set;
    /// `busy` reads the lock word; `conflicts` says whether a held key of the
    /// same lock excludes this acquisition.
    // Out of line: it is the hardware path (which costs a transaction
    // anyway); keeping it out of `acquire` keeps the fallback's fast path as
    // small as the plain lock's.
    #[inline(never)]
    fn enter(
        &self,
        rt: &Runtime,
        key: Held,
        busy: impl Fn() -> bool,
        nesting: Nesting,
        take: TakeForModel,
    ) -> Entering {
        if let Some(rtm) = rt.rtm {
            if rtm.test() {
                return self.enter_nested(rtm, key, busy, nesting, take);
            }
        }
        let policy = self.policy(rt);
        if !policy.uses_hardware() {
            return Entering::Lock(None);
        }
        if policy.is_adaptive() && !self.adaptive.should_try_hardware() {
            return Entering::Lock(Some((Execution::default(), GaveUp::Skipped)));
        }
        let subscribe = |rtm: Rtm| {
            model::isolate();
            if busy() {
                rtm.abort::<{ code::LOCK_BUSY }>();
            }
            held::push(key);
            model::enter_section(key, take);
        };
        let wait = || {
            if nesting == Nesting::Try {
                return false;
            }
            let backoff = crossbeam_utils::Backoff::new();
            while busy() {
                if backoff.is_completed() {
                    // A long holder: block on the real lock instead of
                    // spinning (the lock parks the thread).
                    return false;
                }
                backoff.snooze();
            }
            true
        };
        match attempt::begin(rt, policy, self.site, subscribe, wait) {
            Ok(entered) => Entering::Transaction(entered),
            Err(gave_up) => Entering::Lock(Some(gave_up)),
        }
    }

    #[cold]
    fn enter_nested(
        &self,
        rtm: Rtm,
        key: Held,
        busy: impl Fn() -> bool,
        nesting: Nesting,
        take: TakeForModel,
    ) -> Entering {
        model::isolate();
        let unavailable = busy() || held::conflicts(key);
        match (unavailable, nesting) {
            (false, _) => {
                // Flat nesting: the hardware counts the depth; an abort
                // anywhere rolls back to the outermost `xbegin`.
                match rtm.begin() {
                    Ok(()) => {
                        held::push(key);
                        model::enter_section(key, take);
                        // Injected rollbacks belong to the outermost level.
                        Entering::Transaction(Entered {
                            rtm,
                            rollback: false,
                        })
                    }
                    // Unreachable in practice: an abort of a nested
                    // transaction resumes at the outermost `xbegin`.
                    Err(_) => Entering::Lock(None),
                }
            }
            (true, Nesting::Try) => Entering::Unavailable,
            (true, Nesting::Blocking) => {
                if busy() {
                    // Not LOCK_BUSY: the enclosing loop waits on its own
                    // lock's word, not this one; it backs off instead.
                    rtm.abort::<{ code::NESTED_BUSY }>();
                } else {
                    rtm.abort::<{ code::NESTED_TRY_LOCK }>();
                }
                // xabort inside a transaction does not return.
                Entering::Lock(None)
            }
        }
    }

    /// Counts an execution that gave up on hardware; `took_lock` is false
    /// when a `try_*` then found the real lock taken too.
    #[cold]
    fn fell_back(&self, (mut exec, why): (Execution, GaveUp), took_lock: bool) {
        exec.fallback_lock = took_lock;
        // A skip is counted with the execution it stood for: none when the
        // real try_lock failed too.
        exec.skipped = why == GaveUp::Skipped && took_lock;
        exec.commit_to(self.site);
        if why == GaveUp::Budget {
            self.adaptive.record(false);
        }
    }

    /// Leaves a transactional section: abort if unwinding, else commit.
    // Out of line, like `enter`: inlined, it made every guard's drop too big
    // to inline, which cost the fallback path 13 instructions per section
    // (hash map under the lock: 0.66x parking_lot, measured).
    #[inline(never)]
    fn exit(&self, entered: Entered, key: Held) -> model::Exited {
        let rtm = entered.rtm;
        if std::thread::panicking() {
            // Never commit a section that is unwinding: roll it back, and the
            // fallback reruns it under the real lock, where the panic
            // happens for real.
            rtm.abort::<{ code::PANIC }>();
        }
        held::remove(key);
        #[cfg(hytm_model)]
        if let Some(guard) = hytm_fallback::model::exit_section(key.0) {
            // Promoted by an abort the model could not roll back: the
            // section ran under the real lock, which the caller releases.
            return Some(guard);
        }
        // SAFETY: this guard entered through a transaction that is still
        // active: an abort would have resumed at its `xbegin` instead.
        unsafe { entered.end() };
        if !rtm.test() {
            stats::count(self.site, Outcome::HardwareCommit);
            self.adaptive.record(true);
        }
        #[cfg(hytm_model)]
        return None;
    }
}

/// What [`Elision::enter`] decided.
enum Entering {
    /// Inside a transaction subscribed to the lock.
    Transaction(Entered),
    /// Take the real lock. The counts of the hardware attempts, if any, are
    /// counted once the caller knows whether it got the lock.
    Lock(Option<(Execution, GaveUp)>),
    /// (`try_*` only) the lock is held, by another thread or by this
    /// transaction.
    Unavailable,
}

/// A lock held by the current transaction: the lock's address, with bit 0
/// set for exclusive access.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Held(usize);

impl Held {
    fn new<T>(lock: &T, exclusive: bool) -> Held {
        // Raw elided locks hold an AtomicU64, so their address is even.
        Held(lock as *const T as usize | usize::from(exclusive))
    }
}

/// The locks this thread's current transaction has entered, so that a nested
/// `try_lock` never lies about a lock the transaction itself holds. Only
/// touched inside transactions, on thread-local memory: rolled back with
/// them, and never a conflict with another thread.
mod held {
    use super::*;

    const CAP: usize = 8;

    thread_local! {
        static KEYS: [Cell<usize>; CAP] = const { [const { Cell::new(0) }; CAP] };
        static LEN: Cell<usize> = const { Cell::new(0) };
    }

    /// Whether an entry of the same lock excludes `key`: any entry when
    /// `key` is exclusive, an exclusive one when it is shared.
    pub(super) fn conflicts(key: Held) -> bool {
        let base = key.0 & !1;
        let len = LEN.with(Cell::get);
        KEYS.with(|keys| {
            keys[..len].iter().any(|k| {
                let k = k.get();
                k & !1 == base && (key.0 & 1 == 1 || k & 1 == 1)
            })
        })
    }

    #[inline]
    pub(super) fn push(key: Held) {
        LEN.with(|len| {
            let n = len.get();
            if n == CAP {
                // Deeper nesting than we track: run this section on the
                // fallback rather than risk a lying try_lock.
                if let Some(rtm) = runtime().rtm {
                    rtm.abort::<{ code::NESTED_TRY_LOCK }>();
                }
                return;
            }
            KEYS.with(|keys| keys[n].set(key.0));
            len.set(n + 1);
        });
    }

    #[inline]
    pub(super) fn remove(key: Held) {
        LEN.with(|len| {
            let n = len.get();
            KEYS.with(|keys| {
                if let Some(i) = keys[..n].iter().rposition(|k| k.get() == key.0) {
                    keys[i].set(keys[n - 1].get());
                    len.set(n - 1);
                }
            });
        });
    }
}

/// Enters a section: transaction if possible, else the real lock.
#[inline]
fn acquire<G>(
    elision: &Elision,
    key: Held,
    busy: impl Fn() -> bool + Copy,
    lock: impl FnOnce() -> G,
    try_lock: impl Fn() -> Option<G>,
    take: TakeForModel,
) -> GuardState<G> {
    let rt = runtime();
    // A section entered while unwinding would abort at its end (see
    // `Elision::exit`): take the real lock directly.
    if rt.hardware_path && !std::thread::panicking() {
        match elision.enter(rt, key, busy, Nesting::Blocking, take) {
            Entering::Transaction(entered) => return GuardState::transaction(entered),
            Entering::Lock(Some(gave_up)) => elision.fell_back(gave_up, true),
            Entering::Lock(None) | Entering::Unavailable => {}
        }
    }
    GuardState::locked(model::lock_real(rt, busy, lock, try_lock))
}

/// Enters a section without blocking.
#[inline]
fn try_acquire<G>(
    elision: &Elision,
    key: Held,
    busy: impl Fn() -> bool,
    try_lock: impl Fn() -> Option<G>,
    take: TakeForModel,
) -> Option<GuardState<G>> {
    let rt = runtime();
    if rt.hardware_path && !std::thread::panicking() {
        match elision.enter(rt, key, busy, Nesting::Try, take) {
            Entering::Transaction(entered) => return Some(GuardState::transaction(entered)),
            Entering::Lock(Some(gave_up)) => {
                let g = model::try_lock_real(rt, try_lock);
                elision.fell_back(gave_up, g.is_some());
                return g.map(GuardState::locked);
            }
            Entering::Lock(None) => {}
            Entering::Unavailable => return None,
        }
    }
    model::try_lock_real(rt, try_lock).map(GuardState::locked)
}

/// Leaves a section the way it was entered.
#[inline]
fn release<G: 'static>(elision: &Elision, key: Held, state: GuardState<G>, unlock: impl FnOnce(G)) {
    match state.entry {
        #[cfg(not(hytm_model))]
        Entry::Transaction(rtm) => elision.exit(rtm, key),
        #[cfg(hytm_model)]
        Entry::Transaction(rtm) => {
            if let Some(guard) = elision.exit(rtm, key) {
                match guard.downcast::<G>() {
                    Ok(g) => unlock(*g),
                    Err(_) => {
                        unreachable!("hytm model: a promoted section's guard has its lock's type")
                    }
                }
            }
        }
        Entry::Locked(g) => unlock(g),
    }
}

/// How the HTM model takes a section's real lock when it promotes it: the
/// section's key (its lock's address and access kind) to the real guard.
/// Each raw lock supplies one; normal builds never call it.
type TakeForModel = unsafe fn(usize) -> Box<dyn Any>;

/// The elided locks' seams with the HTM model (`--cfg hytm_model`); in
/// normal builds every function here is the plain operation or nothing.
mod model {
    use super::*;

    /// What [`Elision::exit`] hands back: under the model, the real guard
    /// of a promoted section.
    #[cfg(hytm_model)]
    pub(super) type Exited = Option<Box<dyn Any>>;
    #[cfg(not(hytm_model))]
    pub(super) type Exited = ();

    /// Before a section reads its lock word: under the model the
    /// transaction holds the model lock from here to its end, so no real
    /// acquisition can slip between the check and the section.
    #[inline(always)]
    pub(super) fn isolate() {
        #[cfg(hytm_model)]
        hytm_fallback::model::isolate();
    }

    /// After a section subscribed: the model may now have to promote it.
    #[inline(always)]
    pub(super) fn enter_section(key: Held, take: TakeForModel) {
        #[cfg(hytm_model)]
        hytm_fallback::model::enter_section(key.0, take);
        #[cfg(not(hytm_model))]
        let _ = (key, take);
    }

    /// A real (blocking) acquisition. Under the model, with a hardware
    /// path, it happens under the model lock, so it never overlaps an
    /// isolated section; it waits for the lock outside the model lock.
    #[inline(always)]
    pub(super) fn lock_real<G>(
        rt: &Runtime,
        busy: impl Fn() -> bool,
        lock: impl FnOnce() -> G,
        try_lock: impl Fn() -> Option<G>,
    ) -> G {
        #[cfg(hytm_model)]
        if rt.rtm.is_some() {
            let backoff = crossbeam_utils::Backoff::new();
            loop {
                if let Some(g) = hytm_fallback::model::with_lock(&try_lock) {
                    return g;
                }
                while busy() {
                    backoff.snooze();
                }
            }
        }
        #[cfg(not(hytm_model))]
        let _ = (rt, busy, try_lock);
        lock()
    }

    /// A real `try_lock`, under the model lock under the model.
    #[inline(always)]
    pub(super) fn try_lock_real<G>(rt: &Runtime, try_lock: impl Fn() -> Option<G>) -> Option<G> {
        #[cfg(hytm_model)]
        if rt.rtm.is_some() {
            return hytm_fallback::model::with_lock(try_lock);
        }
        #[cfg(not(hytm_model))]
        let _ = rt;
        try_lock()
    }
}
