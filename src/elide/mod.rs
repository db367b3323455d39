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

mod condvar;
#[cfg(feature = "lock_api_04")]
mod lock_api_04;
mod mutex;
mod rwlock;

pub use condvar::{ElidedCondvar, RawElidedCondvar};
pub(crate) use held::{atomic_begins, atomic_ends};
pub use mutex::{ElidedMutex, ElidedMutexGuard, RawElidedMutex};
pub use rwlock::{ElidedRwLock, ElidedRwLockReadGuard, ElidedRwLockWriteGuard, RawElidedRwLock};

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::attempt::{self, AdaptiveWord, Entered, GaveUp, Resource};
use crate::policy::Policy;
use crate::rtm::{code, Rtm};
use crate::runtime::{runtime, Runtime};
use crate::stats::{self, Execution, Outcome, SiteId, SiteKind};

/// A value on a cache line of its own (64 bytes, the line of every x86-64
/// part so far). A raw elided lock keeps its lock word on one line and its
/// elision state on the next, and the data starts after both: every
/// section reads the lock word, fallbacks write the adaptive state and
/// sections write the data, and any two of those sharing a line would make
/// each such write abort every concurrent section. One line, not
/// crossbeam's 128-byte `CachePadded` (which also covers the adjacent-line
/// prefetcher): the prefetcher's pairing costs a stray conflict now and
/// then, 128-byte padding would cost every lock 256 bytes.
#[repr(align(64))]
#[derive(Debug)]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Line<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

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
/// locks must be released by the thread that took them. `Sync` (lock_api's
/// `GuardNoSend` semantics): sharing `&guard` with another thread only
/// shares `&T`, as std's and parking_lot's guards allow.
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
    _not_send: PhantomData<lock_api::GuardNoSend>,
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
    /// Adaptive state by access kind: `[shared, exclusive]` (a mutex uses
    /// the exclusive one). A rwlock's readers and writers fail in hardware
    /// for different reasons (a reader aborts on every real reader's count
    /// update, a writer on any real holder), so neither should make the
    /// other skip hardware.
    adaptive: [AdaptiveWord; 2],
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
    /// `try_*_for`/`_until`: unavailable if this transaction holds it (it
    /// could only time out), abort if another holder has it (waiting cannot
    /// happen inside a transaction; the enclosing one reruns).
    Timed,
}

impl Elision {
    const fn new(site: SiteId) -> Self {
        Elision {
            adaptive: [AdaptiveWord::new(), AdaptiveWord::new()],
            site,
            policy: None,
        }
    }

    /// The adaptive state of `key`'s access kind.
    fn adaptive(&self, key: Held) -> &AdaptiveWord {
        &self.adaptive[usize::from(key.is_exclusive())]
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
        readers: impl Fn() -> bool,
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
        if policy.is_adaptive() && !self.adaptive(key).should_try_hardware() {
            return Entering::Lock(Some((Execution::default(), GaveUp::Skipped)));
        }
        held::warm();
        let subscribe = |rtm: Rtm| {
            if !model::isolate(key, nesting) || busy() {
                rtm.abort::<{ code::LOCK_BUSY }>();
            }
            // Acquire (no instruction on x86): parking_lot reads its word
            // Relaxed; the section's data accesses are ordered after the
            // read of a free word, the edge to the last holder's release.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            held::push(key, self.site);
            model::enter_section(key, take);
        };
        let resource = || {
            if busy() {
                Resource::Held
            } else if readers() {
                Resource::SharedByReaders
            } else {
                Resource::Free
            }
        };
        // A long wait returns false: the caller then blocks on the real lock
        // (which parks the thread) instead of spinning.
        let wait = |status| nesting != Nesting::Try && attempt::wait_out(status, &busy);
        match attempt::begin(rt, policy, self.site, subscribe, resource, wait) {
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
        // Held by this transaction, or by another holder (a real one, or
        // under the HTM model another section with the lock's isolation).
        let ours = held::conflicts(key);
        let unavailable = ours || !model::isolate(key, nesting) || busy();
        match (unavailable, nesting) {
            (false, _) => {
                // Flat nesting: the hardware counts the depth; an abort
                // anywhere rolls back to the outermost `xbegin`.
                match rtm.begin() {
                    Ok(()) => {
                        held::push(key, self.site);
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
            (true, Nesting::Timed) if ours => Entering::Unavailable,
            (true, Nesting::Blocking | Nesting::Timed) => {
                if !ours {
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
    fn fell_back(&self, key: Held, (mut exec, why): (Execution, GaveUp), took_lock: bool) {
        exec.fallback_lock = took_lock;
        // A skip is counted with the execution it stood for: none when the
        // real try_lock failed too.
        exec.skipped = why == GaveUp::Skipped && took_lock;
        exec.commit_to(self.site);
        if why == GaveUp::Budget {
            self.adaptive(key).record(false);
        }
    }

    /// Leaves a transactional section: abort if unwinding, else commit.
    // Out of line, like `enter`: inlined, it made every guard's drop too big
    // to inline, which cost the fallback path 13 instructions per section
    // (hash map under the lock: 0.66x parking_lot, measured).
    #[inline(never)]
    fn exit(&self, entered: Entered, key: Held) -> model::Exited {
        let rtm = entered.rtm;
        if held::encloses_running_atomic(key) {
            // Released inside an `atomic` nested in this section: its `xend`
            // would commit the only transaction and leave the rest of the
            // atomic's body outside any. Roll everything back instead; the
            // section reruns under its lock, the atomic outside it. (Under
            // the HTM model the section is left first, unpromoted: its
            // release is happening, and the abort reruns the atomic.)
            held::remove(key);
            #[cfg(hytm_model)]
            let _ = hytm_fallback::model::exit_section(key.0);
            rtm.abort::<{ code::CANCELLED }>();
        }
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
            // The outermost level committed: every section of the
            // transaction did, each counted at its own site.
            held::count_commits();
            self.adaptive(key).record(true);
            // An `atomic` nested in the transaction may have written while
            // a transaction waits in `retry`.
            crate::tx::after_hardware_commit();
        }
        #[cfg(hytm_model)]
        return None;
    }
}

/// Whether Debug must not peek at the data through the real lock: this
/// thread's transaction holds `key`'s lock in a mode that excludes `key`, so
/// a real `try_lock` inside the transaction would succeed beside a live
/// guard.
fn debug_must_not_peek(key: Held) -> bool {
    crate::in_transaction() && held::conflicts(key)
}

/// Whether this thread's transaction holds `key`'s lock (any entry, or only
/// a write entry when `write`).
#[cold]
fn held_here(key: Held, write: bool) -> bool {
    crate::in_transaction() && held::holds(key, write)
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
/// set for exclusive access and bit 1 for an upgradable read (which
/// excludes writers and other upgradable reads, not plain reads).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Held(usize);

impl Held {
    const EXCLUSIVE: usize = 1;
    const UPGRADABLE: usize = 2;
    const MODE: usize = Self::EXCLUSIVE | Self::UPGRADABLE;

    fn new<T>(lock: &T, exclusive: bool) -> Held {
        // Raw elided locks start a cache line (see `Line`), so the low bits
        // of their address are free.
        Held(lock as *const T as usize | usize::from(exclusive))
    }

    fn upgradable<T>(lock: &T) -> Held {
        Held(lock as *const T as usize | Self::UPGRADABLE)
    }

    /// A write or an upgradable read: one at a time, and (for the model's
    /// isolation and the adaptive state) a section that may write.
    fn is_exclusive(self) -> bool {
        self.0 & Self::MODE != 0
    }

    /// Whether two sections of the same lock exclude each other: a write
    /// excludes everything, an upgradable read other upgradable reads.
    fn excludes(self, other: Held) -> bool {
        let write = |h: Held| h.0 & Self::EXCLUSIVE != 0;
        write(self) || write(other) || self.0 & other.0 & Self::UPGRADABLE != 0
    }

    fn lock_addr(self) -> usize {
        self.0 & !Self::MODE
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
        /// Sections entered in the current transaction, by site, with how
        /// many times: each commits when the outermost level does, so they
        /// are counted then, whichever guard closes that level (written
        /// inside the transaction, so an abort drops them with it).
        static COMMITS: [Cell<(u32, u32)>; CAP] = const { [const { Cell::new((0, 0)) }; CAP] };
        static COMMITS_LEN: Cell<usize> = const { Cell::new(0) };
        /// How many sections were open when the innermost running `atomic`
        /// nested in them began (0: none): those enclose it.
        static ATOMIC_MARK: Cell<usize> = const { Cell::new(0) };
    }

    /// An `atomic` nested in this thread's transaction begins: the sections
    /// open now enclose it. Returns the previous mark for `atomic_ends`.
    pub(crate) fn atomic_begins() -> usize {
        let open = LEN.with(Cell::get);
        ATOMIC_MARK.with(|m| m.replace(open))
    }

    /// The nested `atomic` ended; `prev` is what `atomic_begins` returned.
    pub(crate) fn atomic_ends(prev: usize) {
        ATOMIC_MARK.with(|m| m.set(prev));
    }

    /// Whether the section `key` being released encloses a running nested
    /// `atomic` (it was opened before the atomic began).
    pub(super) fn encloses_running_atomic(key: Held) -> bool {
        let mark = ATOMIC_MARK.with(Cell::get);
        if mark == 0 {
            return false;
        }
        let len = LEN.with(Cell::get);
        KEYS.with(|keys| {
            keys[..len]
                .iter()
                .rposition(|k| k.get() == key.0)
                .is_some_and(|i| i < mark)
        })
    }

    /// Writes this thread's held-set words outside any transaction, so that
    /// their page is present before a transaction first writes them (a
    /// page fault inside a transaction aborts it, and is never serviced
    /// there).
    #[inline]
    pub(super) fn warm() {
        LEN.with(|len| len.set(len.get()));
        COMMITS_LEN.with(|len| len.set(len.get()));
    }

    /// Notes that a section of `site` entered the current transaction.
    #[inline]
    fn note_commit(site: SiteId) {
        COMMITS_LEN.with(|len| {
            let n = len.get();
            COMMITS.with(|commits| {
                if let Some(c) = commits[..n].iter().find(|c| c.get().0 == site.0) {
                    c.set((site.0, c.get().1 + 1));
                } else if n < CAP {
                    commits[n].set((site.0, 1));
                    len.set(n + 1);
                }
                // More distinct sites than tracked: the rest go uncounted
                // rather than abort the transaction.
            });
        });
    }

    /// After the outermost level committed: counts every section of the
    /// transaction as a hardware commit of its own site.
    pub(super) fn count_commits() {
        let n = COMMITS_LEN.with(|len| len.replace(0));
        COMMITS.with(|commits| {
            for c in &commits[..n] {
                let (site, times) = c.get();
                for _ in 0..times {
                    stats::count(SiteId(site), Outcome::HardwareCommit);
                }
            }
        });
    }

    /// Forgets the current transaction's sections (the HTM model promoted
    /// them: they ran under their real locks).
    #[cfg(hytm_model)]
    pub(super) fn forget_commits() {
        COMMITS_LEN.with(|len| len.set(0));
    }

    /// Whether an entry of the same lock excludes `key`: any entry when
    /// `key` is exclusive, an exclusive one when it is shared.
    pub(super) fn conflicts(key: Held) -> bool {
        let len = LEN.with(Cell::get);
        KEYS.with(|keys| {
            keys[..len].iter().any(|k| {
                let k = Held(k.get());
                k.lock_addr() == key.lock_addr() && key.excludes(k)
            })
        })
    }

    /// Whether this thread's transaction entered exactly `key`.
    #[cfg(feature = "lock_api_04")]
    pub(super) fn contains(key: Held) -> bool {
        let len = LEN.with(Cell::get);
        KEYS.with(|keys| keys[..len].iter().any(|k| k.get() == key.0))
    }

    /// Whether an entry of `key`'s lock is held (a write entry when `write`).
    pub(super) fn holds(key: Held, write: bool) -> bool {
        let len = LEN.with(Cell::get);
        KEYS.with(|keys| {
            keys[..len].iter().any(|k| {
                let k = Held(k.get());
                k.lock_addr() == key.lock_addr() && (!write || k.0 & Held::EXCLUSIVE != 0)
            })
        })
    }

    /// A held section changed mode (an upgrade or a downgrade).
    pub(super) fn rekey(old: Held, new: Held) {
        let len = LEN.with(Cell::get);
        KEYS.with(|keys| {
            if let Some(k) = keys[..len].iter().rev().find(|k| k.get() == old.0) {
                k.set(new.0);
            }
        });
    }

    /// Records a section of `site` entering the current transaction.
    #[inline]
    pub(super) fn push(key: Held, site: SiteId) {
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
        note_commit(site);
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

/// What an acquisition must look at before it takes the real lock, as bits
/// of one byte, so that a program that uses elided locks and no hardware
/// path and no transactions pays one load and one branch per section (the
/// fallback's "one predictable branch"): 0 until the runtime is installed
/// (the first acquisition resolves it, and reports a bad `HYTM_*` value),
/// then `GATE_READY`, plus `GATE_HARDWARE` with a hardware path (RTM or
/// injection), plus `GATE_SOFTWARE` once any thread ran a software or
/// serial transaction (a lock taken inside one makes it irrevocable first).
/// Relaxed throughout: the bits that matter to a thread are set by its own
/// program order (its software transaction) or describe the runtime, which
/// the slow path reads through `runtime()`.
static LOCK_GATE: AtomicU8 = AtomicU8::new(0);
const GATE_READY: u8 = 1;
const GATE_HARDWARE: u8 = 2;
const GATE_SOFTWARE: u8 = 4;

/// The runtime is installed: opens the gate's fast path.
pub(crate) fn on_runtime_installed(hardware_path: bool) {
    let hw = if hardware_path { GATE_HARDWARE } else { 0 };
    LOCK_GATE.fetch_or(GATE_READY | hw, Ordering::Relaxed);
}

/// A software or serial transaction is about to run a body on this thread:
/// from now on acquisitions check whether they are inside one.
#[inline(always)]
pub(crate) fn note_software_transactions() {
    if LOCK_GATE.load(Ordering::Relaxed) & GATE_SOFTWARE == 0 {
        LOCK_GATE.fetch_or(GATE_SOFTWARE, Ordering::Relaxed);
    }
}

/// Whether an acquisition can take the real lock with no further look.
#[inline(always)]
fn plain_lock_only() -> bool {
    LOCK_GATE.load(Ordering::Relaxed) == GATE_READY
}

/// Whether an acquisition past the gate may try a transaction. Inside a
/// software transaction's body it may not: `tx::before_lock` makes that
/// transaction irrevocable first, then the real lock is taken. Nor while
/// unwinding: the section would abort at its end (see `Elision::exit`).
#[inline]
fn may_elide(rt: &Runtime) -> bool {
    !crate::tx::before_lock() && rt.hardware_path && !std::thread::panicking()
}

/// Enters a section: transaction if possible, else the real lock.
#[inline]
fn acquire<G>(
    elision: &Elision,
    key: Held,
    busy: impl Fn() -> bool + Copy,
    readers: impl Fn() -> bool,
    lock: impl FnOnce() -> G,
    try_lock: impl Fn() -> Option<G>,
    take: TakeForModel,
) -> GuardState<G> {
    if plain_lock_only() {
        return GuardState::locked(lock());
    }
    acquire_slow(elision, key, busy, readers, lock, try_lock, take)
}

/// [`acquire`] when there is more to look at than the real lock (a
/// hardware path, transactions in the process, or the runtime's first
/// use). Out of line, so that the plain path does not compute what only
/// this one needs (the key, the closures' captures).
#[cold]
#[inline(never)]
fn acquire_slow<G>(
    elision: &Elision,
    key: Held,
    busy: impl Fn() -> bool + Copy,
    readers: impl Fn() -> bool,
    lock: impl FnOnce() -> G,
    try_lock: impl Fn() -> Option<G>,
    take: TakeForModel,
) -> GuardState<G> {
    let rt = runtime();
    if may_elide(rt) {
        match elision.enter(rt, key, busy, readers, Nesting::Blocking, take) {
            Entering::Transaction(entered) => return GuardState::transaction(entered),
            Entering::Lock(Some(gave_up)) => elision.fell_back(key, gave_up, true),
            Entering::Lock(None) | Entering::Unavailable => {}
        }
    }
    GuardState::locked(model::lock_real(rt, key, busy, lock, try_lock))
}

/// Enters a section without blocking.
#[inline]
fn try_acquire<G>(
    elision: &Elision,
    key: Held,
    busy: impl Fn() -> bool,
    readers: impl Fn() -> bool,
    try_lock: impl Fn() -> Option<G>,
    take: TakeForModel,
) -> Option<GuardState<G>> {
    if plain_lock_only() {
        return try_lock().map(GuardState::locked);
    }
    let rt = runtime();
    if may_elide(rt) {
        match elision.enter(rt, key, busy, readers, Nesting::Try, take) {
            Entering::Transaction(entered) => return Some(GuardState::transaction(entered)),
            Entering::Lock(Some(gave_up)) => {
                let g = model::try_lock_real(rt, key, try_lock);
                elision.fell_back(key, gave_up, g.is_some());
                return g.map(GuardState::locked);
            }
            Entering::Lock(None) => {}
            Entering::Unavailable => return None,
        }
    }
    model::try_lock_real(rt, key, try_lock).map(GuardState::locked)
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
                held::forget_commits();
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

/// Under the HTM model, turns the state of a section that an abort promoted
/// (it runs under its real lock now) into the real lock's state, before the
/// guard changes mode, waits or bumps. Nothing in normal builds.
#[inline(always)]
fn settle<G: 'static>(state: &mut GuardState<G>, key: Held) {
    #[cfg(hytm_model)]
    if matches!(state.entry, Entry::Transaction(_)) {
        if let Some(g) = hytm_fallback::model::take_promoted(key.0) {
            held::remove(key);
            held::forget_commits();
            // The promotion wrote the transaction's buffered words back:
            // the `TVar` values an `atomic` inside it set are published.
            crate::tvar::commit();
            match g.downcast::<G>() {
                Ok(g) => state.entry = Entry::Locked(*g),
                Err(_) => {
                    unreachable!("hytm model: a promoted section's guard has its lock's type")
                }
            }
        }
    }
    #[cfg(not(hytm_model))]
    let _ = (state, key);
}

/// Changes a section's mode (upgrade, downgrade): inside its transaction
/// the section stays elided under its new key; under the real lock `real`
/// changes the real lock's mode.
fn change_mode<G: 'static, H>(
    mut state: GuardState<G>,
    old: Held,
    new: Held,
    real: impl FnOnce(G) -> H,
) -> GuardState<H> {
    settle(&mut state, old);
    match state.entry {
        Entry::Transaction(entered) => {
            held::rekey(old, new);
            #[cfg(hytm_model)]
            hytm_fallback::model::rekey_section(old.0, new.0);
            GuardState::transaction(entered)
        }
        Entry::Locked(g) => GuardState::locked(real(g)),
    }
}

/// `bump`: gives a waiting thread the real lock if the section holds it;
/// a transactional section has nobody waiting on it (waiters park on the
/// real lock, which is free), so there it does nothing.
fn bump<G: 'static>(key: Held, state: &mut GuardState<G>, real: impl FnOnce(&mut G)) {
    settle(state, key);
    if let Entry::Locked(g) = &mut state.entry {
        real(g);
    }
}

/// Enters a section, waiting for the real lock no longer than `lock_until`
/// does: a transaction if possible, else the real lock's timed acquisition.
#[allow(clippy::too_many_arguments)] // the lock's operations, one closure each
fn acquire_until<G>(
    elision: &Elision,
    key: Held,
    busy: impl Fn() -> bool + Copy,
    readers: impl Fn() -> bool,
    try_lock: impl Fn() -> Option<G>,
    lock_until: impl FnOnce() -> Option<G>,
    expired: impl Fn() -> bool,
    take: TakeForModel,
) -> Option<GuardState<G>> {
    let rt = runtime();
    if may_elide(rt) {
        match elision.enter(rt, key, busy, readers, Nesting::Timed, take) {
            Entering::Transaction(entered) => return Some(GuardState::transaction(entered)),
            Entering::Lock(Some(gave_up)) => {
                let g = model::lock_real_until(rt, key, busy, lock_until, try_lock, expired);
                elision.fell_back(key, gave_up, g.is_some());
                return g.map(GuardState::locked);
            }
            Entering::Lock(None) => {}
            Entering::Unavailable => return None,
        }
    }
    model::lock_real_until(rt, key, busy, lock_until, try_lock, expired).map(GuardState::locked)
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

    /// Before a section reads its lock word: under the model the section
    /// takes its lock's isolation (shared for a read, exclusive otherwise)
    /// until its transaction ends, so that no real acquisition slips
    /// between the check and the section. `false` if a `try_*` could not
    /// have it (the lock counts as busy).
    #[inline(always)]
    pub(super) fn isolate(key: Held, nesting: Nesting) -> bool {
        #[cfg(hytm_model)]
        {
            use hytm_fallback::model::Wait;
            let wait = match nesting {
                Nesting::Blocking => Wait::Block,
                Nesting::Try | Nesting::Timed => Wait::Try,
            };
            hytm_fallback::model::isolate_lock(key.lock_addr(), key.is_exclusive(), wait)
        }
        #[cfg(not(hytm_model))]
        {
            let _ = (key, nesting);
            true
        }
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
    /// path, it happens under the lock's isolation, so it never overlaps a
    /// section that elided the lock; it waits for the lock outside it.
    #[inline(always)]
    pub(super) fn lock_real<G>(
        rt: &Runtime,
        key: Held,
        busy: impl Fn() -> bool,
        lock: impl FnOnce() -> G,
        try_lock: impl Fn() -> Option<G>,
    ) -> G {
        #[cfg(hytm_model)]
        if rt.rtm.is_some() {
            let backoff = crossbeam_utils::Backoff::new();
            loop {
                if let Some(g) = real_under_isolation(key, Wait::Block, &try_lock) {
                    return g;
                }
                while busy() {
                    backoff.snooze();
                }
            }
        }
        #[cfg(not(hytm_model))]
        let _ = (rt, key, busy, try_lock);
        lock()
    }

    /// A real timed acquisition; under the model, a loop of `try_lock`
    /// under the lock's isolation until `expired`.
    #[inline(always)]
    pub(super) fn lock_real_until<G>(
        rt: &Runtime,
        key: Held,
        busy: impl Fn() -> bool,
        lock_until: impl FnOnce() -> Option<G>,
        try_lock: impl Fn() -> Option<G>,
        expired: impl Fn() -> bool,
    ) -> Option<G> {
        #[cfg(hytm_model)]
        if rt.rtm.is_some() {
            let backoff = crossbeam_utils::Backoff::new();
            loop {
                if let Some(g) = real_under_isolation(key, Wait::Block, &try_lock) {
                    return Some(g);
                }
                if expired() {
                    return None;
                }
                while busy() && !expired() {
                    backoff.snooze();
                }
            }
        }
        #[cfg(not(hytm_model))]
        let _ = (rt, key, busy, try_lock, expired);
        lock_until()
    }

    #[cfg(hytm_model)]
    use hytm_fallback::model::Wait;

    /// A real acquisition under its lock's isolation (see
    /// `hytm_fallback::model::with_isolation`).
    #[cfg(hytm_model)]
    fn real_under_isolation<G>(
        key: Held,
        wait: Wait,
        try_lock: impl FnOnce() -> Option<G>,
    ) -> Option<G> {
        hytm_fallback::model::with_isolation(key.lock_addr(), key.is_exclusive(), wait, try_lock)
    }

    /// A real `try_lock`, under its lock's isolation under the model.
    #[inline(always)]
    pub(super) fn try_lock_real<G>(
        rt: &Runtime,
        key: Held,
        try_lock: impl Fn() -> Option<G>,
    ) -> Option<G> {
        #[cfg(hytm_model)]
        if rt.rtm.is_some() {
            return real_under_isolation(key, Wait::Try, try_lock);
        }
        #[cfg(not(hytm_model))]
        let _ = (rt, key);
        try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rwlocks_readers_and_writers_adapt_apart() {
        let e = Elision::new(SiteId::RWLOCK);
        let (reader, writer) = (Held(0x1000), Held(0x1001));
        // Writers keep falling back (say, real readers hold the lock).
        for _ in 0..8 {
            e.adaptive(writer).record(false);
        }
        assert!(!e.adaptive(writer).should_try_hardware(), "writers skip");
        // Readers are unaffected.
        assert!(e.adaptive(reader).should_try_hardware());
    }
}
