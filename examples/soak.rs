//! Soak test: every hytm path at once, for as long as you like, with the
//! invariants checked continuously.
//!
//! The workload mixes, in one process and at the same time:
//!
//! - bank transfers over [`TCell`]s at four `atomic` sites: the global
//!   policy (hardware where RTM works, else the STM), forced to the STM
//!   (`Policy::hardware(false)`), forced serial (`FallbackKind::GlobalLock`),
//!   and the unnamed site with `try_atomic` cancels and `atomic_irrevocable`;
//! - exact counters under two [`ElidedMutex`]es, one eliding by the global
//!   policy and one forced to its real lock;
//! - a sorted array under an [`ElidedRwLock`], whose writers break the order
//!   while they shift an element into place and whose readers assert it.
//!
//! A checker thread audits while the workers run: the bank total inside a
//! transaction (at a hardware-capable and at an STM-only site), the counter
//! pairs under their mutexes, the array under a read lock. At the end every
//! counter is compared exactly with what the workers counted, and the
//! statistics rows with the sections that ran.
//!
//! `tests/stress.rs` runs this same workload for a bounded time (it includes
//! this file as a module); `ci/soak.sh` runs it for minutes.
//!
//! ```sh
//! cargo run --release --example soak -- 60          # seconds
//! HYTM_MODE=fallback HYTM_INJECT=conflict:0.01,other:0.01 cargo run --release --example soak -- 60
//! ```
//!
//! Exit status: 0 when every invariant held, 1 on any violation, 2 for a
//! bad argument or `HYTM_*` value.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hytm::stats::{Report, SiteStats};
use hytm::{ElidedMutex, ElidedRwLock, FallbackKind, Mode, Policy, Site, TCell, Tx, TxError};

/// Accounts in the bank; few, so that transfers conflict.
const ACCOUNTS: usize = 16;
/// Each account's opening balance.
const OPENING: i64 = 1_000;
/// The bank total every audit must see.
const BANK_TOTAL: i64 = ACCOUNTS as i64 * OPENING;
/// Elements of the sorted array: 48 words, six cache lines, well inside a
/// hardware transaction's footprint.
const SORTED_LEN: usize = 48;

/// Workers that transfer money (they own one transfer counter each).
const BANK_WORKERS: usize = 4;

static BANK: Site = Site::new("stress-bank");
static BANK_STM: Site = Site::with_policy("stress-bank-stm", Policy::DEFAULT.hardware(false));
static BANK_SERIAL: Site = Site::with_policy(
    "stress-bank-serial",
    Policy::DEFAULT
        .hardware(false)
        .fallback(FallbackKind::GlobalLock),
);
static AUDIT: Site = Site::new("stress-audit");
static AUDIT_STM: Site = Site::with_policy("stress-audit-stm", Policy::DEFAULT.hardware(false));

/// Row names in the statistics report.
const MUTEX_ROW: &str = "stress-mutex";
const MUTEX_LOCK_ROW: &str = "stress-mutex-lock";
const RWLOCK_ROW: &str = "stress-rwlock";

/// Two counters that a critical section increments one after the other:
/// equal whenever nobody is inside.
#[derive(Default, Debug)]
struct Pair {
    a: u64,
    b: u64,
}

/// A sorted array and its sum: both hold whenever nobody is inside.
#[derive(Debug)]
struct Sorted {
    items: Vec<u64>,
    sum: u64,
}

impl Sorted {
    fn new() -> Sorted {
        let items: Vec<u64> = (0..SORTED_LEN as u64).map(|i| i * 100).collect();
        let sum = items.iter().sum();
        Sorted { items, sum }
    }

    /// Why the invariant does not hold, if it does not.
    fn violation(&self) -> Option<String> {
        if let Some(i) = self.items.windows(2).position(|w| w[0] > w[1]) {
            return Some(format!(
                "array not sorted at {i}: {} > {} in {:?}",
                self.items[i],
                self.items[i + 1],
                self.items
            ));
        }
        let sum: u64 = self.items.iter().sum();
        if sum != self.sum {
            return Some(format!("array sums to {sum}, recorded sum {}", self.sum));
        }
        if self.items.len() != SORTED_LEN {
            return Some(format!("array has {} elements", self.items.len()));
        }
        None
    }
}

/// Everything the threads share.
struct Shared {
    bank: Vec<TCell<i64>>,
    /// Committed transfers, one cell per bank worker (written only by it, so
    /// counters add no conflicts), read by the audits.
    transfers: Vec<TCell<u64>>,
    elided: ElidedMutex<Pair>,
    locked: ElidedMutex<Pair>,
    sorted: ElidedRwLock<Sorted>,
    stop: AtomicBool,
    progress: Vec<Progress>,
}

/// One thread's running totals, read by the main thread every second.
#[derive(Default)]
#[repr(align(128))]
struct Progress {
    ops: AtomicU64,
    checks: AtomicU64,
}

impl Progress {
    fn add(&self, ops: u64, checks: u64) {
        // Relaxed: progress figures for people, nothing depends on them.
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.checks.fetch_add(checks, Ordering::Relaxed);
    }
}

/// What the threads did, added up: operations by where they ran, and
/// invariant checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Committed transfers at `stress-bank` (global policy).
    pub bank: u64,
    /// Committed transfers at `stress-bank-stm`.
    pub bank_stm: u64,
    /// Committed transfers at `stress-bank-serial`.
    pub bank_serial: u64,
    /// Committed `try_atomic` transfers at the unnamed site.
    pub bank_try: u64,
    /// `try_atomic` transfers cancelled (overdraft), rolled back.
    pub bank_cancelled: u64,
    /// `atomic_irrevocable` transfers.
    pub bank_irrevocable: u64,
    /// Increments of the eliding mutex's pair, by the workers.
    pub mutex: u64,
    /// Increments of the forced-lock mutex's pair.
    pub mutex_lock: u64,
    /// Sections of the eliding mutex that only checked (checker).
    pub mutex_reads: u64,
    /// Sections of the forced-lock mutex that only checked (checker).
    pub mutex_lock_reads: u64,
    /// Write sections of the rwlock.
    pub rw_writes: u64,
    /// Net change of the array's sum by the writers.
    pub rw_delta: i64,
    /// Read sections of the rwlock (readers and checker).
    pub rw_reads: u64,
    /// Audit transactions at `stress-audit` and `stress-audit-stm`.
    pub audits: u64,
    /// Audit transactions at `stress-audit-stm`.
    pub audits_stm: u64,
    /// Invariant checks made (each audit, pair check and array check).
    pub checks: u64,
}

impl Tally {
    /// Every critical section and transaction run.
    pub fn ops(&self) -> u64 {
        self.transfers()
            + self.bank_cancelled
            + self.mutex
            + self.mutex_lock
            + self.mutex_reads
            + self.mutex_lock_reads
            + self.rw_writes
            + self.rw_reads
            + self.audits
    }

    /// Committed transfers at every site.
    pub fn transfers(&self) -> u64 {
        self.bank + self.bank_stm + self.bank_serial + self.bank_try + self.bank_irrevocable
    }

    fn add(&mut self, o: &Tally) {
        self.bank += o.bank;
        self.bank_stm += o.bank_stm;
        self.bank_serial += o.bank_serial;
        self.bank_try += o.bank_try;
        self.bank_cancelled += o.bank_cancelled;
        self.bank_irrevocable += o.bank_irrevocable;
        self.mutex += o.mutex;
        self.mutex_lock += o.mutex_lock;
        self.mutex_reads += o.mutex_reads;
        self.mutex_lock_reads += o.mutex_lock_reads;
        self.rw_writes += o.rw_writes;
        self.rw_delta += o.rw_delta;
        self.rw_reads += o.rw_reads;
        self.audits += o.audits;
        self.audits_stm += o.audits_stm;
        self.checks += o.checks;
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "operations        {} (transfers {}: global policy {}, stm {}, serial {}, try {}, irrevocable {}; cancelled {})",
            self.ops(),
            self.transfers(),
            self.bank,
            self.bank_stm,
            self.bank_serial,
            self.bank_try,
            self.bank_irrevocable,
            self.bank_cancelled
        )?;
        writeln!(
            f,
            "                  mutex {} + forced lock {} + checker {}; rwlock writes {} reads {}; audits {} ({} stm-only)",
            self.mutex,
            self.mutex_lock,
            self.mutex_reads + self.mutex_lock_reads,
            self.rw_writes,
            self.rw_reads,
            self.audits,
            self.audits_stm
        )?;
        write!(f, "invariant checks  {}", self.checks)
    }
}

/// What one run did.
pub struct Summary {
    /// Operations and checks.
    pub tally: Tally,
    /// How long the workers ran.
    pub elapsed: Duration,
}

/// Settings of one run.
pub struct Run {
    /// How long the workers run.
    pub duration: Duration,
    /// Print operations and checks per second while running.
    pub report_every_second: bool,
}

/// A small xorshift generator: each thread its own, no shared state.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Time the threads get to return after the stop: far longer than any
/// section takes, so running out of it means a deadlock or a livelock.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which threads have returned, for the watchdog.
struct Watch {
    names: Vec<&'static str>,
    returned: Vec<AtomicBool>,
    joined: AtomicBool,
}

impl Watch {
    /// Ends the process if the threads have not all been joined within
    /// [`STOP_TIMEOUT`]: a hung stress test must fail, not hang CI.
    fn start(self: &Arc<Watch>) {
        let watch = Arc::clone(self);
        thread::spawn(move || {
            let until = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < until {
                // Relaxed: a flag polled by a timer; the join that set it
                // is what orders the real work.
                if watch.joined.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let stuck: Vec<_> = watch
                .names
                .iter()
                .zip(&watch.returned)
                .filter(|(_, r)| !r.load(Ordering::Relaxed))
                .map(|(n, _)| *n)
                .collect();
            eprintln!(
                "soak: VIOLATION: threads still running {STOP_TIMEOUT:?} after the stop (deadlock or livelock): {stuck:?}"
            );
            std::process::exit(1);
        });
    }
}

/// Marks a worker as returned when it ends, and sets `stop` if it unwinds,
/// so a violation ends the run at once instead of at the deadline.
struct OnExit<'a> {
    stop: &'a AtomicBool,
    returned: &'a AtomicBool,
}

impl Drop for OnExit<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.stop.store(true, Ordering::Relaxed);
        }
        self.returned.store(true, Ordering::Relaxed);
    }
}

/// Moves `amount` from `from` to `to` and counts the transfer in `counter`.
fn transfer<'env>(
    tx: &mut Tx<'env>,
    s: &'env Shared,
    counter: usize,
    from: usize,
    to: usize,
    amount: i64,
) -> Result<(), hytm::Restart> {
    let a = tx.read(&s.bank[from])?;
    tx.write(&s.bank[from], a - amount)?;
    let b = tx.read(&s.bank[to])?;
    tx.write(&s.bank[to], b + amount)?;
    let n = tx.read(&s.transfers[counter])?;
    tx.write(&s.transfers[counter], n + 1)
}

/// Bank worker `w` at `site` (or, for `None`, the unnamed site with cancels
/// and irrevocable transfers).
fn bank_worker(s: &Shared, w: usize, site: Option<&Site>) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng::new(w as u64 + 1);
    while !s.stop.load(Ordering::Relaxed) {
        let from = rng.below(ACCOUNTS as u64) as usize;
        let to = rng.below(ACCOUNTS as u64) as usize;
        let amount = 1 + rng.below(40) as i64;
        match site {
            Some(site) => {
                site.atomic(|tx| transfer(tx, s, w, from, to, amount));
                if std::ptr::eq(site, &BANK) {
                    t.bank += 1;
                } else if std::ptr::eq(site, &BANK_STM) {
                    t.bank_stm += 1;
                } else {
                    t.bank_serial += 1;
                }
            }
            None if rng.below(64) == 0 => {
                hytm::atomic_irrevocable(|tx| {
                    transfer(tx, s, w, from, to, amount).expect("serial reads never restart")
                });
                t.bank_irrevocable += 1;
            }
            None => {
                // Larger amounts, refused when they would overdraw: the
                // write happens first, so a cancel must roll it back.
                let amount = amount * 10;
                let r = hytm::try_atomic(|tx| {
                    let a = tx.read(&s.bank[from])?;
                    tx.write(&s.bank[from], a - amount)?;
                    if a - amount < 0 {
                        return Err(TxError::Cancel(a));
                    }
                    let b = tx.read(&s.bank[to])?;
                    tx.write(&s.bank[to], b + amount)?;
                    let n = tx.read(&s.transfers[w])?;
                    tx.write(&s.transfers[w], n + 1)?;
                    Ok(())
                });
                match r {
                    Ok(()) => t.bank_try += 1,
                    Err(balance) => {
                        assert!(
                            balance - amount < 0,
                            "cancelled a transfer of {amount} from a balance of {balance}"
                        );
                        t.bank_cancelled += 1;
                    }
                }
            }
        }
        s.progress[w].add(1, 0);
    }
    t
}

/// A pair increment with some work between the halves, so that a section
/// that was not isolated would be seen half done.
fn bump(p: &mut Pair, rng: &mut Rng) {
    p.a += 1;
    let spin = rng.below(16);
    for _ in 0..spin {
        std::hint::black_box(&mut *p);
    }
    p.b += 1;
}

/// Mutex worker: increments the eliding mutex's pair and the forced-lock
/// mutex's pair, in a random mix (`try_lock` now and then on the latter).
fn mutex_worker(s: &Shared, w: usize) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng::new(w as u64 + 100);
    while !s.stop.load(Ordering::Relaxed) {
        if rng.below(2) == 0 {
            bump(&mut s.elided.lock(), &mut rng);
            t.mutex += 1;
        } else {
            // Decide before trying: a `match` on `try_lock()` would keep its
            // guard alive in the other arms, and `lock()` there deadlocks.
            let tried = if rng.below(4) == 0 {
                s.locked.try_lock()
            } else {
                None
            };
            let mut g = tried.unwrap_or_else(|| s.locked.lock());
            bump(&mut g, &mut rng);
            t.mutex_lock += 1;
        }
        s.progress[w].add(1, 0);
    }
    t
}

/// Rwlock writer: moves one element up or down by a random amount and
/// restores the order by swapping it along; the sum is updated first, so
/// both invariants are broken inside the section.
fn rw_writer(s: &Shared, w: usize) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng::new(w as u64 + 200);
    while !s.stop.load(Ordering::Relaxed) {
        let mut i = rng.below(SORTED_LEN as u64) as usize;
        let d = 1 + rng.below(50);
        let up = rng.below(2) == 0;
        // The section: nothing but the array (a hardware transaction keeps
        // its footprint to the lock's data).
        let delta = {
            let mut g = s.sorted.write();
            let g = &mut *g;
            if up {
                g.sum += d;
                g.items[i] += d;
                while i + 1 < g.items.len() && g.items[i] > g.items[i + 1] {
                    g.items.swap(i, i + 1);
                    i += 1;
                }
                d as i64
            } else {
                let d = d.min(g.items[i]);
                g.sum -= d;
                g.items[i] -= d;
                while i > 0 && g.items[i - 1] > g.items[i] {
                    g.items.swap(i - 1, i);
                    i -= 1;
                }
                -(d as i64)
            }
        };
        t.rw_delta += delta;
        t.rw_writes += 1;
        s.progress[w].add(1, 0);
    }
    t
}

/// Checks the array under a read lock.
fn check_sorted(s: &Shared, t: &mut Tally) {
    let g = s.sorted.read();
    if let Some(why) = g.violation() {
        panic!("rwlock invariant violated: {why}");
    }
    drop(g);
    t.rw_reads += 1;
    t.checks += 1;
}

/// Rwlock reader: checks the array continuously.
fn rw_reader(s: &Shared, w: usize) -> Tally {
    let mut t = Tally::default();
    while !s.stop.load(Ordering::Relaxed) {
        check_sorted(s, &mut t);
        s.progress[w].add(1, 1);
    }
    t
}

/// The checker: audits the bank inside transactions (alternating a
/// hardware-capable and an STM-only site), the two pairs and the array.
fn checker(s: &Shared, w: usize) -> Tally {
    let mut t = Tally::default();
    let mut last_transfers = [0u64; BANK_WORKERS];
    let mut round = 0u64;
    while !s.stop.load(Ordering::Relaxed) {
        let site = if round % 2 == 0 { &AUDIT } else { &AUDIT_STM };
        round += 1;
        let (total, transfers) = site.atomic(|tx| {
            let mut total = 0;
            for a in &s.bank {
                total += tx.read(a)?;
            }
            // Opacity: even a transaction that will not commit must never
            // see money created or lost.
            assert_eq!(total, BANK_TOTAL, "bank total inside a transaction");
            // A fixed array: no allocation inside a hardware transaction.
            let mut transfers = [0u64; BANK_WORKERS];
            for (n, c) in transfers.iter_mut().zip(&s.transfers) {
                *n = tx.read(c)?;
            }
            Ok((total, transfers))
        });
        assert_eq!(total, BANK_TOTAL, "bank total after the audit committed");
        for (w, (now, before)) in transfers.iter().zip(&last_transfers).enumerate() {
            assert!(
                now >= before,
                "transfer counter {w} went back from {before} to {now}"
            );
        }
        last_transfers = transfers;
        t.audits += 1;
        if std::ptr::eq(site, &AUDIT_STM) {
            t.audits_stm += 1;
        }
        t.checks += 2;

        {
            let g = s.elided.lock();
            assert_eq!(g.a, g.b, "eliding mutex: pair seen half updated");
        }
        t.mutex_reads += 1;
        {
            let g = s.locked.lock();
            assert_eq!(g.a, g.b, "forced-lock mutex: pair seen half updated");
        }
        t.mutex_lock_reads += 1;
        t.checks += 2;

        check_sorted(s, &mut t);
        s.progress[w].add(4, 5);
    }
    t
}

/// Runs the mixed workload for `run.duration` and checks every invariant at
/// the end. Violations seen while running panic in the thread that saw them
/// (and stop the others); they come back here as `Err`, with the final
/// checks' failures.
///
/// # Errors
///
/// Every violated invariant, one line each.
pub fn run(run: &Run) -> Result<Summary, Vec<String>> {
    let mut roles: Vec<(&'static str, Role)> = vec![
        ("bank (global policy)", Role::Bank(Some(&BANK))),
        ("bank (stm)", Role::Bank(Some(&BANK_STM))),
        ("bank (serial)", Role::Bank(Some(&BANK_SERIAL))),
        ("bank (try/irrevocable)", Role::Bank(None)),
    ];
    assert_eq!(roles.len(), BANK_WORKERS);
    roles.extend([
        ("mutex #1", Role::Mutex),
        ("mutex #2", Role::Mutex),
        ("rwlock writer", Role::RwWriter),
        ("rwlock reader", Role::RwReader),
        ("checker", Role::Checker),
    ]);
    let mut shared = Shared {
        bank: (0..ACCOUNTS).map(|_| TCell::new(OPENING)).collect(),
        transfers: (0..BANK_WORKERS).map(|_| TCell::new(0)).collect(),
        elided: ElidedMutex::new(Pair::default()).named(MUTEX_ROW),
        locked: ElidedMutex::with_policy(Pair::default(), Policy::default().hardware(false))
            .named(MUTEX_LOCK_ROW),
        sorted: ElidedRwLock::new(Sorted::new()).named(RWLOCK_ROW),
        stop: AtomicBool::new(false),
        progress: roles.iter().map(|_| Progress::default()).collect(),
    };
    let s = &shared;
    let watch = Arc::new(Watch {
        names: roles.iter().map(|(n, _)| *n).collect(),
        returned: roles.iter().map(|_| AtomicBool::new(false)).collect(),
        joined: AtomicBool::new(false),
    });
    let returned = &watch.returned;
    let start = Instant::now();
    let mut errors = Vec::new();
    let mut tally = Tally::default();
    thread::scope(|scope| {
        let handles: Vec<_> = roles
            .iter()
            .enumerate()
            .map(|(w, (name, role))| {
                let role = *role;
                let h = thread::Builder::new()
                    .name((*name).to_string())
                    .spawn_scoped(scope, move || {
                        let _exit = OnExit {
                            stop: &s.stop,
                            returned: &returned[w],
                        };
                        match role {
                            Role::Bank(site) => bank_worker(s, w, site),
                            Role::Mutex => mutex_worker(s, w),
                            Role::RwWriter => rw_writer(s, w),
                            Role::RwReader => rw_reader(s, w),
                            Role::Checker => checker(s, w),
                        }
                    })
                    .expect("spawn a worker thread");
                (*name, h)
            })
            .collect();
        wait(s, start, run);
        s.stop.store(true, Ordering::Relaxed);
        watch.start();
        // Join explicitly (not at the end of the scope): a joined thread has
        // run its thread-local destructors, so its statistics are final.
        for (name, h) in handles {
            match h.join() {
                Ok(t) => tally.add(&t),
                Err(panic) => errors.push(format!("thread {name:?}: {}", panic_text(&*panic))),
            }
        }
        watch.joined.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed();
    if errors.is_empty() {
        errors.extend(final_checks(&mut shared, &tally));
    }
    if errors.is_empty() {
        Ok(Summary { tally, elapsed })
    } else {
        Err(errors)
    }
}

#[derive(Clone, Copy)]
enum Role {
    Bank(Option<&'static Site>),
    Mutex,
    RwWriter,
    RwReader,
    Checker,
}

/// Waits out the run (or until a thread stopped it), printing progress
/// every second if asked.
fn wait(s: &Shared, start: Instant, run: &Run) {
    let deadline = start + run.duration;
    let mut last = (0u64, 0u64);
    let mut second = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline || s.stop.load(Ordering::Relaxed) {
            return;
        }
        let next = if run.report_every_second {
            (start + Duration::from_secs(second + 1)).min(deadline)
        } else {
            deadline
        };
        // Short naps so a stop by a failing thread ends the run quickly.
        thread::sleep((next - now).min(Duration::from_millis(50)));
        if run.report_every_second && Instant::now() >= start + Duration::from_secs(second + 1) {
            second += 1;
            // Relaxed: figures for people.
            let ops: u64 = s
                .progress
                .iter()
                .map(|p| p.ops.load(Ordering::Relaxed))
                .sum();
            let checks: u64 = s
                .progress
                .iter()
                .map(|p| p.checks.load(Ordering::Relaxed))
                .sum();
            println!(
                "{second:>5} s  {:>10} ops/s  {:>10} checks/s",
                ops - last.0,
                checks - last.1
            );
            last = (ops, checks);
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".into()
    }
}

/// The exact checks after every thread joined. Through `&mut`, without
/// locking: these reads are not sections, so the statistics stay exact.
fn final_checks(s: &mut Shared, t: &Tally) -> Vec<String> {
    let mut errors = Vec::new();
    let mut expect = |what: &str, got: i128, want: i128| {
        if got != want {
            errors.push(format!("{what}: {got}, expected {want}"));
        }
    };
    let total: i64 = s.bank.iter().map(TCell::load).sum();
    expect("bank total", total.into(), BANK_TOTAL.into());
    let transfers: u64 = s.transfers.iter().map(TCell::load).sum();
    expect(
        "transfers counted in TCells",
        transfers.into(),
        t.transfers().into(),
    );
    let elided = s.elided.get_mut();
    expect("eliding mutex counter a", elided.a.into(), t.mutex.into());
    expect("eliding mutex counter b", elided.b.into(), t.mutex.into());
    let locked = s.locked.get_mut();
    expect(
        "forced-lock mutex counter a",
        locked.a.into(),
        t.mutex_lock.into(),
    );
    expect(
        "forced-lock mutex counter b",
        locked.b.into(),
        t.mutex_lock.into(),
    );
    let sorted = s.sorted.get_mut();
    if let Some(why) = sorted.violation() {
        errors.push(format!("rwlock invariant at the end: {why}"));
    }
    let initial: u64 = Sorted::new().sum;
    let expected_sum = i128::from(initial) + i128::from(t.rw_delta);
    if i128::from(sorted.sum) != expected_sum {
        errors.push(format!(
            "rwlock sum {}, expected {expected_sum} (writers' net change {})",
            sorted.sum, t.rw_delta
        ));
    }
    errors
}

/// Checks the statistics rows against the sections that ran: every
/// execution is counted exactly once, at its site.
///
/// `injecting`: whether abort injection is configured. Elided locks count
/// their executions only when the hardware path is on (hardware mode, or
/// injection); otherwise their rows may be missing.
pub fn check_stats(report: &Report, t: &Tally, injecting: bool) -> Vec<String> {
    type Count = fn(&SiteStats) -> u64;
    let executions: Count = SiteStats::executions;
    let attempts: Count = |r| r.attempts;
    let locks = hytm::mode() == Mode::Hardware || injecting;
    // (row, counter, getter, expected, whether the row must exist)
    let expected: [(&str, &str, Count, u64, bool); 9] = [
        ("stress-bank", "executions", executions, t.bank, true),
        (
            "stress-bank-stm",
            "executions",
            executions,
            t.bank_stm,
            true,
        ),
        ("stress-bank-stm", "hardware attempts", attempts, 0, true),
        (
            "stress-bank-serial",
            "executions",
            executions,
            t.bank_serial,
            true,
        ),
        (
            "stress-audit",
            "executions",
            executions,
            t.audits - t.audits_stm,
            true,
        ),
        (
            "stress-audit-stm",
            "executions",
            executions,
            t.audits_stm,
            true,
        ),
        (
            MUTEX_ROW,
            "executions",
            executions,
            t.mutex + t.mutex_reads,
            locks,
        ),
        (
            RWLOCK_ROW,
            "executions",
            executions,
            t.rw_writes + t.rw_reads,
            locks,
        ),
        // The forced-lock mutex never tries hardware; whether it counts its
        // lock acquisitions is not part of the contract.
        (MUTEX_LOCK_ROW, "hardware attempts", attempts, 0, false),
    ];
    let mut errors = Vec::new();
    for (name, what, count, want, required) in expected {
        match report.site(name) {
            Some(row) if count(row) == want => {}
            Some(row) => errors.push(format!(
                "stats row {name}: {what} = {}, expected {want}",
                count(row)
            )),
            None if !required || want == 0 => {}
            None => errors.push(format!(
                "stats row {name} missing ({what}: expected {want})"
            )),
        }
    }
    if injecting && report.total().injected == 0 {
        errors.push("injection is configured but no injected abort was counted".into());
    }
    errors
}

/// Prints the summary and the statistics table.
pub fn print_summary(summary: &Summary, report: &Report) {
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    let t = &summary.tally;
    println!(
        "mode {} ({}), {:.1} s",
        hytm::mode(),
        hytm::mode_reason(),
        secs
    );
    println!("{t}");
    println!(
        "per second        {:.0} operations, {:.0} invariant checks",
        t.ops() as f64 / secs,
        t.checks as f64 / secs
    );
    print!("{report}");
}

fn usage_error(msg: &str) -> ! {
    eprintln!("soak: {msg}");
    eprintln!("usage: soak [DURATION]   DURATION in seconds, a positive integer (default 60)");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let duration = match args.next() {
        None => 60,
        Some(a) => match a.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => usage_error(&format!(
                "DURATION must be a positive integer number of seconds, got {a:?}"
            )),
        },
    };
    if let Some(extra) = args.next() {
        usage_error(&format!("unexpected argument {extra:?}"));
    }
    let config = match hytm::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let injecting = !config.injections().is_empty();
    if let Err(e) = config.install() {
        eprintln!("soak: {e}");
        std::process::exit(2);
    }
    println!(
        "soak: {duration} s, mode {} ({}), injection {}",
        hytm::mode(),
        hytm::mode_reason(),
        std::env::var("HYTM_INJECT").unwrap_or_else(|_| "off".into())
    );
    let result = run(&Run {
        duration: Duration::from_secs(duration),
        report_every_second: true,
    });
    let report = hytm::stats::snapshot();
    match result {
        Ok(summary) => {
            print_summary(&summary, &report);
            let errors = check_stats(&report, &summary.tally, injecting);
            if !errors.is_empty() {
                for e in &errors {
                    eprintln!("soak: VIOLATION: {e}");
                }
                std::process::exit(1);
            }
            println!("soak: every invariant held");
        }
        Err(errors) => {
            print!("{report}");
            for e in &errors {
                eprintln!("soak: VIOLATION: {e}");
            }
            std::process::exit(1);
        }
    }
}
