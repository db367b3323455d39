//! Per-site statistics: counters, snapshot, text and JSON report.
//!
//! A *site* is a row of the report: an elided lock or an `atomic` site that
//! was given a name, or one row per kind for the unnamed ones. Each thread
//! counts into its own slot per site (a `CachePadded` block that only the
//! owning thread writes, with plain relaxed load + store, never a locked
//! instruction); [`snapshot`] sums the slots. Counting happens after a
//! transaction committed or aborted, never inside one: a counter written in
//! a transaction would be rolled back, and a shared one would be a conflict
//! generator. When a thread exits, its slots are folded into the site's
//! retired totals, so nothing is lost.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_utils::CachePadded;

use crate::rtm::{code, AbortCause, AbortStatus};
use crate::runtime::{Config, StatsOutput};

/// What kind of site a row counts.
///
/// ```
/// use hytm::{stats::SiteKind, Site, TCell};
/// static LOOKUP: Site = Site::new("doc SiteKind");
/// let c = TCell::new(0);
/// LOOKUP.atomic(|tx| tx.read(&c));
/// let report = hytm::stats::snapshot();
/// assert_eq!(report.site("doc SiteKind").unwrap().kind, SiteKind::Atomic);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// An [`crate::ElidedMutex`].
    Mutex,
    /// An [`crate::ElidedRwLock`].
    RwLock,
    /// An [`crate::atomic`] transaction.
    Atomic,
}

impl SiteKind {
    /// Lower-case name used in tables and JSON.
    ///
    /// ```
    /// use hytm::stats::SiteKind;
    /// // The `kind` column of the table and of the JSON report.
    /// assert_eq!(SiteKind::RwLock.name(), "rwlock");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            SiteKind::Mutex => "mutex",
            SiteKind::RwLock => "rwlock",
            SiteKind::Atomic => "atomic",
        }
    }
}

/// A site's identity: an index into the site registry.
///
/// The first ids are the unnamed rows of each kind, so `const` constructors
/// can use them without registering anything.
///
/// ```
/// use hytm::stats::{SiteId, SiteKind};
/// // The unnamed rows come first; a named site gets a row of its own.
/// let id = SiteId::named(SiteKind::Mutex, "doc SiteId");
/// assert_ne!(id, SiteId::MUTEX);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SiteId(pub(crate) u32);

impl SiteId {
    /// Unnamed elided mutexes.
    pub const MUTEX: SiteId = SiteId(0);
    /// Unnamed elided rwlocks.
    pub const RWLOCK: SiteId = SiteId(1);
    /// Unnamed `atomic` transactions.
    pub const ATOMIC: SiteId = SiteId(2);

    /// Registers a named site (or finds the one with that name and kind).
    ///
    /// ```
    /// use hytm::stats::{SiteId, SiteKind};
    /// let a = SiteId::named(SiteKind::Atomic, "doc named");
    /// assert_eq!(SiteId::named(SiteKind::Atomic, "doc named"), a);
    /// // The kind is part of the identity: a mutex of that name is another row.
    /// assert_ne!(SiteId::named(SiteKind::Mutex, "doc named"), a);
    /// ```
    pub fn named(kind: SiteKind, name: &str) -> SiteId {
        let mut sites = lock(&registry().sites);
        if let Some(i) = sites.iter().position(|s| s.kind == kind && s.name == name) {
            return SiteId(i as u32);
        }
        sites.push(SiteMeta {
            name: name.to_string(),
            kind,
            retired: [0; idx::LEN],
        });
        SiteId((sites.len() - 1) as u32)
    }
}

/// Counters named by index, so a slot is one flat array.
mod idx {
    pub const ATTEMPTS: usize = 0;
    pub const HW_COMMITS: usize = 1;
    /// Seven causes, in `AbortCause::ALL` order.
    pub const ABORTS: usize = 2;
    /// Explicit codes 0xf0..=0xff, then one slot for user codes.
    pub const EXPLICIT: usize = ABORTS + 7;
    pub const EXPLICIT_USER: usize = EXPLICIT + 16;
    pub const INJECTED: usize = EXPLICIT_USER + 1;
    pub const ROLLBACKS: usize = INJECTED + 1;
    pub const RETRIES: usize = ROLLBACKS + 1;
    pub const WAITS: usize = RETRIES + 1;
    pub const SKIPPED: usize = WAITS + 1;
    pub const FALLBACK_LOCK: usize = SKIPPED + 1;
    pub const STM_COMMITS: usize = FALLBACK_LOCK + 1;
    pub const STM_RESTARTS: usize = STM_COMMITS + 1;
    pub const SERIAL: usize = STM_RESTARTS + 1;
    pub const CANCELS: usize = SERIAL + 1;
    pub const LEN: usize = CANCELS + 1;
}

type Counters = [u64; idx::LEN];

/// One thread's counters for one site. Only the owning thread writes.
struct Slot {
    site: SiteId,
    c: CachePadded<[AtomicU64; idx::LEN]>,
}

impl Slot {
    fn read(&self) -> Counters {
        // Relaxed: counters are independent statistics; a snapshot taken
        // while threads run is a little stale, never torn per counter.
        std::array::from_fn(|i| self.c[i].load(Ordering::Relaxed))
    }
}

struct SiteMeta {
    name: String,
    kind: SiteKind,
    /// Counts of threads that exited.
    retired: Counters,
}

struct Registry {
    sites: Mutex<Vec<SiteMeta>>,
    slots: Mutex<Vec<Arc<Slot>>>,
}

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        sites: Mutex::new(
            [SiteKind::Mutex, SiteKind::RwLock, SiteKind::Atomic]
                .into_iter()
                .map(|kind| SiteMeta {
                    name: format!("(unnamed {})", kind.name()),
                    kind,
                    retired: [0; idx::LEN],
                })
                .collect(),
        ),
        slots: Mutex::new(Vec::new()),
    })
}

/// Statistics must keep working after a panic elsewhere: the data behind
/// these mutexes is plain counters, valid at every point.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This thread's slots, indexed by site id.
struct LocalTable {
    slots: Vec<Option<Arc<Slot>>>,
}

impl Drop for LocalTable {
    fn drop(&mut self) {
        // The cached slot pointer dies with this table.
        LAST.with(|c| c.set((u32::MAX, std::ptr::null())));
        let reg = registry();
        let mut sites = lock(&reg.sites);
        let mut slots = lock(&reg.slots);
        for slot in self.slots.iter().flatten() {
            let counts = slot.read();
            let retired = &mut sites[slot.site.0 as usize].retired;
            for (r, c) in retired.iter_mut().zip(counts) {
                *r += c;
            }
            slots.retain(|s| !Arc::ptr_eq(s, slot));
        }
    }
}

thread_local! {
    static LOCAL: RefCell<LocalTable> = const { RefCell::new(LocalTable { slots: Vec::new() }) };
    /// The last slot this thread counted into, as (site, slot): the fast
    /// path skips the table when a thread keeps counting at one site. The
    /// pointer stays valid while `LOCAL` lives (the table holds an `Arc`);
    /// `LocalTable::drop` clears it. No destructor, so it is usable during
    /// thread teardown.
    static LAST: Cell<(u32, *const Slot)> = const { Cell::new((u32::MAX, std::ptr::null())) };
}

#[cold]
fn new_slot(site: SiteId) -> Arc<Slot> {
    let slot = Arc::new(Slot {
        site,
        c: CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0))),
    });
    lock(&registry().slots).push(Arc::clone(&slot));
    slot
}

/// What one execution (one lock acquisition or one `atomic` call) did,
/// accumulated in registers and written to this thread's slot once at the
/// end by [`Execution::commit_to`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Execution {
    pub attempts: u32,
    pub hw_committed: bool,
    pub injected: u32,
    pub rollbacks: u32,
    pub retries: u32,
    pub waits: u32,
    pub skipped: bool,
    pub fallback_lock: bool,
    pub stm_commits: u32,
    pub stm_restarts: u32,
    pub serial: bool,
    pub aborts: [u32; 7],
    pub explicit: [u32; 17],
}

impl Execution {
    /// Counts one hardware abort.
    #[inline]
    pub fn abort(&mut self, status: AbortStatus) {
        self.aborts[status.cause().index()] += 1;
        if let Some(c) = status.explicit_code() {
            let i = c.checked_sub(code::RESERVED_START).map_or(16, usize::from);
            self.explicit[i] += 1;
        }
    }

    /// Writes this execution into the calling thread's slot for `site`.
    /// Must not run inside a hardware transaction.
    #[inline]
    pub fn commit_to(&self, site: SiteId) {
        with_slot(site, |slot| {
            slot.add(idx::ATTEMPTS, self.attempts.into());
            slot.add(idx::HW_COMMITS, self.hw_committed.into());
            slot.add(idx::INJECTED, self.injected.into());
            slot.add(idx::ROLLBACKS, self.rollbacks.into());
            slot.add(idx::RETRIES, self.retries.into());
            slot.add(idx::WAITS, self.waits.into());
            slot.add(idx::SKIPPED, self.skipped.into());
            slot.add(idx::FALLBACK_LOCK, self.fallback_lock.into());
            slot.add(idx::STM_COMMITS, self.stm_commits.into());
            slot.add(idx::STM_RESTARTS, self.stm_restarts.into());
            slot.add(idx::SERIAL, self.serial.into());
            if self.attempts > u32::from(self.hw_committed) {
                for (k, n) in self.aborts.iter().enumerate() {
                    slot.add(idx::ABORTS + k, (*n).into());
                }
                for (k, n) in self.explicit.iter().enumerate() {
                    slot.add(idx::EXPLICIT + k, (*n).into());
                }
            }
        });
    }
}

/// The two outcomes counted on every fast path, without building an
/// [`Execution`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// One hardware attempt that committed.
    HardwareCommit,
    /// One software transaction that committed without restarting.
    SoftwareCommit,
    /// One execution whose body cancelled (`TxError::Cancel`). Counted on
    /// its own, not in [`Execution`]: a larger `Execution` is copied with
    /// `memcpy` on the attempt loop's exits (callgrind: +60 instructions per
    /// injected abort when it grew by one flag).
    Cancelled,
}

/// Counts one fast-path outcome for `site` in this thread's slot. Must not
/// run inside a hardware transaction.
#[inline]
pub(crate) fn count(site: SiteId, outcome: Outcome) {
    // `move`: the outcome goes to the slow path in a register, not stored
    // on the stack on every call (1 instruction per transaction).
    with_slot(site, move |slot| match outcome {
        Outcome::HardwareCommit => {
            slot.add(idx::ATTEMPTS, 1);
            slot.add(idx::HW_COMMITS, 1);
        }
        Outcome::SoftwareCommit => slot.add(idx::STM_COMMITS, 1),
        Outcome::Cancelled => slot.add(idx::CANCELS, 1),
    });
}

#[inline]
fn with_slot(site: SiteId, f: impl FnOnce(&Slot)) {
    let (last_site, last) = LAST.with(Cell::get);
    // No null test: LAST's pointer is null only with the site `u32::MAX`,
    // which no site has (ids are registry indices), so a matching site
    // comes with a slot (2 instructions fewer per transaction and per
    // elided section, callgrind).
    if last_site == site.0 {
        debug_assert!(!last.is_null(), "LAST matched a site without a slot");
        // SAFETY: LAST is only set below from a slot owned by this thread's
        // live table (an Arc it holds), and cleared (to the site
        // `u32::MAX`, which no site has) when that table drops.
        return f(unsafe { &*last });
    }
    with_slot_slow(site, f);
}

#[cold]
fn with_slot_slow(site: SiteId, f: impl FnOnce(&Slot)) {
    // try_with: during thread teardown the table may be gone; losing the
    // counts of that last execution is better than a panic.
    let _ = LOCAL.try_with(|table| {
        let mut table = table.borrow_mut();
        let i = site.0 as usize;
        let slot: &Slot = match table.slots.get(i) {
            Some(Some(slot)) => slot,
            _ => table.slot_slow(site),
        };
        LAST.with(|c| c.set((site.0, slot as *const Slot)));
        f(slot);
    });
}

impl LocalTable {
    #[cold]
    fn slot_slow(&mut self, site: SiteId) -> &Slot {
        let i = site.0 as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i].get_or_insert_with(|| new_slot(site))
    }
}

impl Slot {
    /// Adds `n` to counter `k`. Single writer (the owning thread): a plain
    /// load + store, not a locked read-modify-write.
    #[inline]
    fn add(&self, k: usize, n: u64) {
        if n != 0 {
            let c = &self.c[k];
            // Relaxed: statistics, read by snapshots with Relaxed loads.
            c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        }
    }
}

/// One row of a [`Report`]: the counts of one site, over all threads.
///
/// ```
/// use hytm::{Mode, Site, TCell};
/// static DEPOSIT: Site = Site::new("doc SiteStats");
/// let balance = TCell::new(10);
/// DEPOSIT.atomic(|tx| {
///     let b = tx.read(&balance)?;
///     tx.write(&balance, b + 5)
/// });
/// let report = hytm::stats::snapshot();
/// let row = report.site("doc SiteStats").expect("the site has counted");
/// assert_eq!(row.hw_commits + row.stm_commits + row.serial + row.fallback_lock, 1);
/// if hytm::mode() == Mode::Fallback {
///     assert_eq!(row.hw_commits, 0); // no `xbegin` ever runs
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteStats {
    /// The site's name; `(unnamed mutex)` etc. for the grouped rows.
    pub name: String,
    /// The site's kind.
    pub kind: SiteKind,
    /// Hardware transactions started (including injected aborts).
    pub attempts: u64,
    /// Hardware transactions that committed.
    pub hw_commits: u64,
    /// Aborts by cause, indexed like [`AbortCause::ALL`].
    pub aborts: [u64; 7],
    /// Explicit aborts by code, for the runtime's codes `0xf0..=0xff`.
    pub explicit_runtime: [u64; 16],
    /// Explicit aborts with user codes (below `0xf0`).
    pub explicit_user: u64,
    /// Aborts injected by `HYTM_INJECT` or [`Config::inject`] (also counted
    /// under their cause).
    pub injected: u64,
    /// Injected rollbacks: bodies run to their end and then rolled back
    /// (hardware ones are also counted as explicit aborts with code `0xf7`).
    pub rollbacks: u64,
    /// Charged hardware retries.
    pub retries: u64,
    /// Waits for a busy lock or software commit.
    pub waits: u64,
    /// Executions that skipped hardware because the adaptive policy said so.
    pub skipped: u64,
    /// Executions that ran under the real lock (elision) or the global lock.
    pub fallback_lock: u64,
    /// Software (STM) commits.
    pub stm_commits: u64,
    /// Software restarts.
    pub stm_restarts: u64,
    /// Serial-irrevocable runs.
    pub serial: u64,
    /// Executions whose body cancelled ([`TxError::Cancel`](crate::TxError::Cancel)):
    /// everything rolled back, counted on no commit path (and not in
    /// [`executions`](SiteStats::executions)).
    pub cancels: u64,
}

impl SiteStats {
    fn from_counters(name: String, kind: SiteKind, c: &Counters) -> SiteStats {
        SiteStats {
            name,
            kind,
            attempts: c[idx::ATTEMPTS],
            hw_commits: c[idx::HW_COMMITS],
            aborts: std::array::from_fn(|i| c[idx::ABORTS + i]),
            explicit_runtime: std::array::from_fn(|i| c[idx::EXPLICIT + i]),
            explicit_user: c[idx::EXPLICIT_USER],
            injected: c[idx::INJECTED],
            rollbacks: c[idx::ROLLBACKS],
            retries: c[idx::RETRIES],
            waits: c[idx::WAITS],
            skipped: c[idx::SKIPPED],
            fallback_lock: c[idx::FALLBACK_LOCK],
            stm_commits: c[idx::STM_COMMITS],
            stm_restarts: c[idx::STM_RESTARTS],
            serial: c[idx::SERIAL],
            cancels: c[idx::CANCELS],
        }
    }

    /// Aborts of every cause.
    ///
    /// ```
    /// use hytm::{rtm::AbortCause, Config, Policy, Site, TCell};
    /// // Injection aborts every attempt, with or without RTM.
    /// Config::new().inject(AbortCause::Conflict, 1.0).install()?;
    /// static SITE: Site = Site::with_policy("doc total_aborts", Policy::DEFAULT.max_attempts(3));
    /// let c = TCell::new(0);
    /// SITE.atomic(|tx| tx.read(&c));
    /// let report = hytm::stats::snapshot();
    /// let row = report.site("doc total_aborts").unwrap();
    /// assert_eq!((row.attempts, row.total_aborts()), (3, 3));
    /// assert_eq!(row.executions(), 1); // the fallback finished it
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn total_aborts(&self) -> u64 {
        self.aborts.iter().sum()
    }

    /// Aborts of one cause.
    ///
    /// ```
    /// use hytm::{rtm::AbortCause, Config, Site, TCell};
    /// Config::new().inject(AbortCause::Capacity, 1.0).install()?;
    /// static SITE: Site = Site::new("doc aborts_of");
    /// let c = TCell::new(0);
    /// SITE.atomic(|tx| tx.read(&c));
    /// let report = hytm::stats::snapshot();
    /// let row = report.site("doc aborts_of").unwrap();
    /// // Capacity aborts get two attempts by default, not five.
    /// assert_eq!(row.aborts_of(AbortCause::Capacity), 2);
    /// assert_eq!(row.aborts_of(AbortCause::Conflict), 0);
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn aborts_of(&self, cause: AbortCause) -> u64 {
        self.aborts[cause.index()]
    }

    /// Explicit aborts with one code.
    ///
    /// ```
    /// use hytm::{rtm::{code, AbortCause}, Config, Site, TCell};
    /// // Injected explicit aborts carry the runtime's own code.
    /// Config::new().inject(AbortCause::Explicit, 1.0).install()?;
    /// static SITE: Site = Site::new("doc explicit_code");
    /// let c = TCell::new(0);
    /// SITE.atomic(|tx| tx.read(&c));
    /// let report = hytm::stats::snapshot();
    /// let row = report.site("doc explicit_code").unwrap();
    /// assert_eq!(row.explicit_code(code::INJECTED), 5); // the default budget
    /// assert_eq!(row.explicit_code(0x12), 0);
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn explicit_code(&self, code: u8) -> u64 {
        match code.checked_sub(code::RESERVED_START) {
            Some(i) => self.explicit_runtime[usize::from(i)],
            None => self.explicit_user,
        }
    }

    /// Executions: hardware commits plus every fallback kind.
    ///
    /// ```
    /// use hytm::{Site, TCell};
    /// static COUNTER: Site = Site::new("doc executions");
    /// let c = TCell::new(0);
    /// for _ in 0..3 {
    ///     COUNTER.atomic(|tx| {
    ///         let v = tx.read(&c)?;
    ///         tx.write(&c, v + 1)
    ///     });
    /// }
    /// let report = hytm::stats::snapshot();
    /// // Each call is counted once, on whichever path it ended.
    /// assert_eq!(report.site("doc executions").unwrap().executions(), 3);
    /// ```
    pub fn executions(&self) -> u64 {
        self.hw_commits + self.fallback_lock + self.stm_commits + self.serial
    }

    /// Aborts per hardware attempt, 0 when nothing was attempted.
    ///
    /// Without a hardware path (no RTM, or fallback mode) attempts exist
    /// only under injection (`HYTM_INJECT`): they are simulated, no
    /// `xbegin` runs, and each one is an injected abort, so the rate is 1.
    /// [`Report`]'s table says so under it.
    ///
    /// ```
    /// use hytm::{rtm::AbortCause, Config, Policy, Site, TCell};
    /// Config::new().inject(AbortCause::Conflict, 1.0).install()?;
    /// static HW: Site = Site::new("doc abort_rate hw");
    /// static SW: Site = Site::with_policy("doc abort_rate sw", Policy::DEFAULT.hardware(false));
    /// let c = TCell::new(0);
    /// HW.atomic(|tx| tx.read(&c));
    /// SW.atomic(|tx| tx.read(&c));
    /// let report = hytm::stats::snapshot();
    /// assert_eq!(report.site("doc abort_rate hw").unwrap().abort_rate(), 1.0);
    /// // No attempts: 0, not NaN.
    /// assert_eq!(report.site("doc abort_rate sw").unwrap().abort_rate(), 0.0);
    /// # Ok::<(), hytm::ConfigError>(())
    /// ```
    pub fn abort_rate(&self) -> f64 {
        ratio(self.total_aborts(), self.attempts)
    }

    /// Share of executions that committed in hardware.
    ///
    /// ```
    /// use hytm::{Mode, Site, TCell};
    /// static READER: Site = Site::new("doc hw_commit_share");
    /// let c = TCell::new(0);
    /// for _ in 0..10 {
    ///     READER.atomic(|tx| tx.read(&c));
    /// }
    /// let report = hytm::stats::snapshot();
    /// let share = report.site("doc hw_commit_share").unwrap().hw_commit_share();
    /// assert!((0.0..=1.0).contains(&share));
    /// if hytm::mode() == Mode::Fallback {
    ///     assert_eq!(share, 0.0);
    /// }
    /// ```
    pub fn hw_commit_share(&self) -> f64 {
        ratio(self.hw_commits, self.executions())
    }

    fn add(&mut self, o: &SiteStats) {
        self.attempts += o.attempts;
        self.hw_commits += o.hw_commits;
        for (a, b) in self.aborts.iter_mut().zip(o.aborts) {
            *a += b;
        }
        for (a, b) in self.explicit_runtime.iter_mut().zip(o.explicit_runtime) {
            *a += b;
        }
        self.explicit_user += o.explicit_user;
        self.injected += o.injected;
        self.rollbacks += o.rollbacks;
        self.retries += o.retries;
        self.waits += o.waits;
        self.skipped += o.skipped;
        self.fallback_lock += o.fallback_lock;
        self.stm_commits += o.stm_commits;
        self.stm_restarts += o.stm_restarts;
        self.serial += o.serial;
        self.cancels += o.cancels;
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// All sites' statistics at one moment; see [`snapshot`].
///
/// ```
/// use hytm::{Site, TCell};
/// static TRANSFER: Site = Site::new("doc Report");
/// let c = TCell::new(0);
/// TRANSFER.atomic(|tx| tx.read(&c));
/// let report = hytm::stats::snapshot();
/// assert!(report.sites.iter().any(|row| row.name == "doc Report"));
/// // Display prints the aligned table, one line per row.
/// assert!(report.to_string().contains("doc Report"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// One row per site that counted anything.
    pub sites: Vec<SiteStats>,
}

impl Report {
    /// The row of the site with this name, if it counted anything.
    ///
    /// ```
    /// use hytm::{Site, TCell};
    /// static USED: Site = Site::new("doc site used");
    /// let c = TCell::new(0);
    /// USED.atomic(|tx| tx.read(&c));
    /// let report = hytm::stats::snapshot();
    /// assert_eq!(report.site("doc site used").map(|row| row.executions()), Some(1));
    /// // A name that never counted anything has no row.
    /// assert!(report.site("doc site unused").is_none());
    /// ```
    pub fn site(&self, name: &str) -> Option<&SiteStats> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// All rows added up.
    ///
    /// ```
    /// use hytm::{Site, TCell};
    /// static A: Site = Site::new("doc total a");
    /// static B: Site = Site::new("doc total b");
    /// let c = TCell::new(0);
    /// A.atomic(|tx| tx.read(&c));
    /// B.atomic(|tx| tx.read(&c));
    /// let report = hytm::stats::snapshot();
    /// let total = report.total();
    /// assert_eq!(total.executions(), report.sites.iter().map(|s| s.executions()).sum::<u64>());
    /// assert!(total.executions() >= 2);
    /// ```
    pub fn total(&self) -> SiteStats {
        let mut t = SiteStats::from_counters("total".into(), SiteKind::Atomic, &[0; idx::LEN]);
        for s in &self.sites {
            t.add(s);
        }
        t
    }

    /// The report as JSON: `{"mode": ..., "sites": [{...}, ...]}`.
    ///
    /// ```
    /// let json = hytm::stats::snapshot().to_json();
    /// let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    /// assert!(v["sites"].is_array());
    /// ```
    pub fn to_json(&self) -> String {
        // Written by hand (a fixed, flat shape), so the library needs no
        // JSON dependency.
        let mut out = String::new();
        out.push_str("{\"mode\":");
        json_str(&mut out, crate::mode().name());
        out.push_str(",\"sites\":[");
        for (n, s) in self.sites.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json_str(&mut out, &s.name);
            out.push_str(",\"kind\":");
            json_str(&mut out, s.kind.name());
            let mut field = |key: &str, value: &dyn fmt::Display| {
                out.push_str(&format!(",\"{key}\":{value}"));
            };
            field("attempts", &s.attempts);
            field("hw_commits", &s.hw_commits);
            let aborts: Vec<String> = AbortCause::ALL
                .iter()
                .map(|c| format!("\"{}\":{}", c.name(), s.aborts_of(*c)))
                .collect();
            field("aborts", &format_args!("{{{}}}", aborts.join(",")));
            let mut explicit: Vec<String> = (0..16u8)
                .filter(|i| s.explicit_runtime[usize::from(*i)] > 0)
                .map(|i| {
                    format!(
                        "\"{:#04x}\":{}",
                        code::RESERVED_START + i,
                        s.explicit_runtime[usize::from(i)]
                    )
                })
                .collect();
            if s.explicit_user > 0 {
                explicit.push(format!("\"user\":{}", s.explicit_user));
            }
            field(
                "explicit_codes",
                &format_args!("{{{}}}", explicit.join(",")),
            );
            field("injected", &s.injected);
            field("rollbacks", &s.rollbacks);
            field("retries", &s.retries);
            field("waits", &s.waits);
            field("skipped", &s.skipped);
            field("fallback_lock", &s.fallback_lock);
            field("stm_commits", &s.stm_commits);
            field("stm_restarts", &s.stm_restarts);
            field("serial", &s.serial);
            field("cancels", &s.cancels);
            // Ratios are finite (0 when the denominator is 0); `{:?}` keeps
            // a decimal point, which JSON accepts like any number.
            field("abort_rate", &format_args!("{:?}", s.abort_rate()));
            field(
                "hw_commit_share",
                &format_args!("{:?}", s.hw_commit_share()),
            );
            out.push('}');
        }
        out.push_str("]}");
        out
    }
}

/// Appends `s` as a JSON string literal.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = [
            "site",
            "kind",
            "attempts",
            "hw-commit",
            "abort%",
            "conflict",
            "capacity",
            "explicit",
            "other",
            "injected",
            "rollback",
            "waits",
            "lock",
            "stm",
            "stm-rst",
            "serial",
            "cancel",
            "hw-share",
        ];
        let rows: Vec<Vec<String>> = self
            .sites
            .iter()
            .map(|s| {
                let other = s.aborts_of(AbortCause::Other)
                    + s.aborts_of(AbortCause::Retry)
                    + s.aborts_of(AbortCause::Debug)
                    + s.aborts_of(AbortCause::Nested);
                vec![
                    s.name.clone(),
                    s.kind.name().into(),
                    s.attempts.to_string(),
                    s.hw_commits.to_string(),
                    format!("{:.1}", 100.0 * s.abort_rate()),
                    s.aborts_of(AbortCause::Conflict).to_string(),
                    s.aborts_of(AbortCause::Capacity).to_string(),
                    s.aborts_of(AbortCause::Explicit).to_string(),
                    other.to_string(),
                    s.injected.to_string(),
                    s.rollbacks.to_string(),
                    s.waits.to_string(),
                    s.fallback_lock.to_string(),
                    s.stm_commits.to_string(),
                    s.stm_restarts.to_string(),
                    s.serial.to_string(),
                    s.cancels.to_string(),
                    format!("{:.1}%", 100.0 * s.hw_commit_share()),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..head.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([head[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            for (i, c) in cells.iter().enumerate() {
                if i < 2 {
                    write!(f, "{c:<w$}  ", w = widths[i])?;
                } else {
                    write!(f, "{c:>w$}  ", w = widths[i])?;
                }
            }
            writeln!(f)
        };
        line(f, &head)?;
        for r in &rows {
            line(f, &r.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        if rows.is_empty() {
            writeln!(f, "(no site has counted anything)")?;
        }
        if crate::runtime::runtime().rtm.is_none() && self.sites.iter().any(|s| s.attempts > 0) {
            writeln!(
                f,
                "(no hardware path in this mode: attempts are simulated by injection, each one an injected abort, so abort% is 100)"
            )?;
        }
        Ok(())
    }
}

/// The statistics of every site that counted anything, summed over threads
/// (live and exited).
///
/// ```
/// let m = hytm::ElidedMutex::new(0);
/// *m.lock() += 1;
/// let report = hytm::stats::snapshot();
/// println!("{report}");
/// ```
pub fn snapshot() -> Report {
    let reg = registry();
    let sites = lock(&reg.sites);
    let mut sums: Vec<Counters> = sites.iter().map(|s| s.retired).collect();
    for slot in lock(&reg.slots).iter() {
        for (a, b) in sums[slot.site.0 as usize].iter_mut().zip(slot.read()) {
            *a += b;
        }
    }
    Report {
        sites: sites
            .iter()
            .zip(sums)
            .filter(|(_, c)| c.iter().any(|&n| n != 0))
            .map(|(meta, c)| SiteStats::from_counters(meta.name.clone(), meta.kind, &c))
            .collect(),
    }
}

/// Arranges the `HYTM_STATS` report at process exit.
pub(crate) fn on_runtime_installed(config: &Config) {
    if *config.stats() != StatsOutput::None {
        // SAFETY: `report_at_exit` is an `extern "C" fn()` that never
        // unwinds across the FFI boundary (it catches panics).
        let rc = unsafe { libc::atexit(report_at_exit) };
        if rc != 0 {
            eprintln!("hytm: HYTM_STATS: could not register the exit report");
        }
    }
}

extern "C" fn report_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let report = snapshot();
        match crate::runtime::runtime().config.stats() {
            StatsOutput::None => {}
            StatsOutput::Stderr => eprint!("hytm statistics (mode {}):\n{report}", crate::mode()),
            StatsOutput::Json(path) => {
                if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
                    eprintln!("hytm: HYTM_STATS: cannot write {}: {e}", path.display());
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_counts_reach_the_named_site() {
        let site = SiteId::named(SiteKind::Atomic, "stats-unit-test");
        let mut e = Execution {
            attempts: 3,
            ..Execution::default()
        };
        e.abort(AbortStatus::explicit(code::LOCK_BUSY));
        e.abort(AbortStatus::from_raw(
            AbortStatus::CONFLICT | AbortStatus::RETRY,
        ));
        e.abort(AbortStatus::explicit(0x12));
        e.fallback_lock = true;
        e.commit_to(site);
        std::thread::spawn(move || {
            let e = Execution {
                attempts: 1,
                hw_committed: true,
                ..Execution::default()
            };
            e.commit_to(site);
        })
        .join()
        .unwrap();
        let r = snapshot();
        let s = r.site("stats-unit-test").expect("row");
        assert_eq!(s.attempts, 4);
        assert_eq!(s.hw_commits, 1);
        assert_eq!(s.aborts_of(AbortCause::Explicit), 2);
        assert_eq!(s.aborts_of(AbortCause::Conflict), 1);
        assert_eq!(s.explicit_code(0xff), 1);
        assert_eq!(s.explicit_code(0x12), 1);
        assert_eq!(s.fallback_lock, 1);
        assert_eq!(s.executions(), 2);
        assert!((s.abort_rate() - 0.75).abs() < 1e-9);
        let text = r.to_string();
        assert!(text.contains("stats-unit-test"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let row = json["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "stats-unit-test")
            .unwrap();
        assert_eq!(row["attempts"], 4);
        assert_eq!(row["explicit_codes"]["0xff"], 1);
        assert_eq!(row["explicit_codes"]["user"], 1);
        assert_eq!(row["aborts"]["conflict"], 1);
        assert_eq!(row["fallback_lock"], 1);
        assert_eq!(row["abort_rate"], 0.75);
        assert_eq!(row["hw_commit_share"], 0.5);
        assert_eq!(row["kind"], "atomic");
        assert_eq!(json["mode"], crate::mode().name());
    }

    /// The hand-written JSON escapes names, so every name parses back.
    #[test]
    fn json_escapes_site_names() {
        let name = "json \"quoted\" back\\slash\nnew line\ttab\u{1} \u{e9}";
        let e = Execution {
            stm_commits: 1,
            ..Execution::default()
        };
        e.commit_to(SiteId::named(SiteKind::Atomic, name));
        let json: serde_json::Value = serde_json::from_str(&snapshot().to_json()).unwrap();
        assert!(
            json["sites"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == name),
            "{json}"
        );
    }

    #[test]
    fn naming_the_same_site_twice_gives_one_row() {
        let a = SiteId::named(SiteKind::Mutex, "twice");
        let b = SiteId::named(SiteKind::Mutex, "twice");
        let c = SiteId::named(SiteKind::Atomic, "twice");
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
