//! The side-by-side throughput harness shared by the benches: timed runs on
//! pinned threads, medians, child processes for settings that are fixed per
//! process (HYTM_MODE, GLIBC_TUNABLES), and tables with ratios.
#![allow(dead_code)]

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// How long and how often each cell is measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub run: Duration,
    pub reps: usize,
}

impl Timing {
    /// `--quick` (or HYTM_BENCH_QUICK=1): 1 × 200 ms; otherwise the median
    /// of 5 × 500 ms, the setting the peer figures were taken with.
    /// `HYTM_BENCH_ROUNDS=<n>` sets the number of rounds (1 to 99), for a
    /// machine too noisy for 5. A child measuring one round of
    /// [`interleaved`] gets `reps = 1` through `HYTM_BENCH_ONE_ROUND=1`.
    ///
    /// # Panics
    ///
    /// On a `HYTM_BENCH_ROUNDS` that is not a number from 1 to 99.
    pub fn from_args() -> Timing {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("HYTM_BENCH_QUICK").is_ok_and(|v| v == "1");
        let mut timing = if quick {
            Timing {
                run: Duration::from_millis(200),
                reps: 1,
            }
        } else {
            Timing {
                run: Duration::from_millis(500),
                reps: 5,
            }
        };
        if let Ok(v) = std::env::var("HYTM_BENCH_ROUNDS") {
            timing.reps = match v.trim().parse::<usize>() {
                Ok(n @ 1..=99) => n,
                _ => panic!("HYTM_BENCH_ROUNDS={v:?}: expected a number of rounds from 1 to 99"),
            };
        }
        if std::env::var("HYTM_BENCH_ONE_ROUND").is_ok_and(|v| v == "1") {
            timing.reps = 1;
        }
        timing
    }
}

/// Pins the calling thread to one CPU (best effort).
pub fn pin(cpu: usize) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads `set` only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Runs `threads` pinned threads, each calling its operation in a loop, and
/// returns the median throughput in million operations per second.
pub fn measure<F, Op>(timing: Timing, threads: usize, make_op: F) -> f64
where
    F: Fn(usize) -> Op + Sync,
    Op: FnMut(),
{
    let mut samples: Vec<f64> = (0..timing.reps)
        .map(|_| {
            let stop = AtomicBool::new(false);
            let total = AtomicU64::new(0);
            let barrier = Barrier::new(threads + 1);
            let elapsed = std::thread::scope(|s| {
                for t in 0..threads {
                    let (stop, total, barrier, make_op) = (&stop, &total, &barrier, &make_op);
                    s.spawn(move || {
                        pin(t);
                        let mut op = make_op(t);
                        barrier.wait();
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..64 {
                                op();
                            }
                            n += 64;
                        }
                        total.fetch_add(n, Ordering::Relaxed);
                    });
                }
                barrier.wait();
                let start = Instant::now();
                std::thread::sleep(timing.run);
                stop.store(true, Ordering::Relaxed);
                start.elapsed()
            });
            total.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64() / 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs `threads` pinned threads that together call their operation `ops`
/// times (split evenly), and returns the wall time from the common start
/// to the last thread's end: criterion's `iter_custom` measurement.
pub fn measure_ops<F, Op>(threads: usize, ops: u64, make_op: F) -> Duration
where
    F: Fn(usize) -> Op + Sync,
    Op: FnMut(),
{
    let threads_u64 = threads as u64;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, make_op) = (&barrier, &make_op);
            let mine = ops / threads_u64 + u64::from((t as u64) < ops % threads_u64);
            s.spawn(move || {
                pin(t);
                let mut op = make_op(t);
                barrier.wait();
                for _ in 0..mine {
                    op();
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

/// How a workload is measured: for a time, giving Mops/s ([`Timing`]), or
/// for a number of operations, giving the elapsed time ([`Ops`]).
pub trait Meter: Sync {
    type Out;
    fn meter<F, Op>(&self, threads: usize, make_op: F) -> Self::Out
    where
        F: Fn(usize) -> Op + Sync,
        Op: FnMut();
}

impl Meter for Timing {
    type Out = f64;
    fn meter<F, Op>(&self, threads: usize, make_op: F) -> f64
    where
        F: Fn(usize) -> Op + Sync,
        Op: FnMut(),
    {
        measure(*self, threads, make_op)
    }
}

/// A fixed number of operations, for criterion's `iter_custom`.
#[derive(Clone, Copy, Debug)]
pub struct Ops(pub u64);

impl Meter for Ops {
    type Out = Duration;
    fn meter<F, Op>(&self, threads: usize, make_op: F) -> Duration
    where
        F: Fn(usize) -> Op + Sync,
        Op: FnMut(),
    {
        measure_ops(threads, self.0, make_op)
    }
}

/// What a child started by [`run_child_ops`] measures: this many
/// operations of one workload, at one thread count, for one peer.
#[derive(Clone, Debug)]
pub struct OpsRequest {
    pub workload: String,
    pub threads: usize,
    pub peer: String,
    pub ops: u64,
}

impl OpsRequest {
    /// The request this process was started for, if it was.
    pub fn from_env() -> Option<OpsRequest> {
        let var = |k: &str| std::env::var(k).ok();
        Some(OpsRequest {
            workload: var("HYTM_BENCH_WORKLOAD")?,
            threads: var("HYTM_BENCH_THREADS")?.parse().ok()?,
            peer: var("HYTM_BENCH_PEER")?,
            ops: var("HYTM_BENCH_OPS")?.parse().ok()?,
        })
    }

    /// Prints the child's answer for [`run_child_ops`].
    pub fn answer(elapsed: Duration) {
        println!("ELAPSED_NS\t{}", elapsed.as_nanos());
    }
}

/// Re-executes this bench binary with `env` to measure `req` in peer group
/// `group` (a child process, for settings fixed per process), and returns
/// the time the child measured, process start-up excluded.
///
/// # Panics
///
/// If the child fails or gives no answer.
pub fn run_child_ops(group: &str, env: &[(&str, &str)], req: &OpsRequest) -> Duration {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.env("HYTM_BENCH_CHILD", group)
        .env("HYTM_BENCH_WORKLOAD", &req.workload)
        .env("HYTM_BENCH_THREADS", req.threads.to_string())
        .env("HYTM_BENCH_PEER", &req.peer)
        .env("HYTM_BENCH_OPS", req.ops.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bench child");
    let text = String::from_utf8_lossy(&out.stdout);
    let ns = text
        .lines()
        .find_map(|l| l.strip_prefix("ELAPSED_NS\t"))
        .and_then(|n| n.parse::<u64>().ok());
    match (out.status.success(), ns) {
        (true, Some(ns)) => Duration::from_nanos(ns),
        _ => panic!(
            "bench child {group} {req:?} failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Runs `round` (which measures every peer once, with one repetition)
/// `timing.reps` times and returns each figure's median over the rounds.
/// `round` gets the round's index: it should start its peers there (see
/// [`rotated`]), so that no peer is always measured first.
///
/// Interleaving the peers, instead of measuring one peer's repetitions back
/// to back, puts every peer under the same drift of a shared machine (here
/// throughput moves by 2x within a minute): the ratios between peers stay
/// meaningful even when the absolute figures wander. Rotating the order
/// keeps any effect of a peer's position in the round (what ran just
/// before it, the state of the heap) from always falling on the same peer.
pub fn interleaved(timing: Timing, round: impl Fn(Timing, usize) -> Vec<Figure>) -> Vec<Figure> {
    medians(&interleaved_rounds(timing, round))
}

/// The rounds of [`interleaved`], kept apart, for ratios paired within a
/// round ([`print_paired`]).
pub fn interleaved_rounds(
    timing: Timing,
    round: impl Fn(Timing, usize) -> Vec<Figure>,
) -> Vec<Vec<Figure>> {
    let one = Timing { reps: 1, ..timing };
    (0..timing.reps).map(|i| round(one, i)).collect()
}

/// Each figure's median over the rounds.
pub fn medians(rounds: &[Vec<Figure>]) -> Vec<Figure> {
    let key = |f: &Figure| (f.workload.clone(), f.threads, f.peer.clone());
    let mut figures = rounds[0].clone();
    for f in &mut figures {
        let mut samples: Vec<f64> = rounds
            .iter()
            .flat_map(|r| r.iter().filter(|g| key(g) == key(f)).map(|g| g.mops))
            .flatten()
            .collect();
        samples.sort_by(f64::total_cmp);
        f.mops = samples.get(samples.len() / 2).copied();
    }
    figures
}

/// Prints, per (workload, threads), the median over rounds of each ratio
/// taken within one round: both figures measured moments apart, so the
/// machine's drift between rounds cancels.
pub fn print_paired(title: &str, rounds: &[Vec<Figure>], ratios: &[Ratio<'_>]) {
    let mut rows: Vec<(String, usize)> = Vec::new();
    for f in &rounds[0] {
        if !rows.contains(&(f.workload.clone(), f.threads)) {
            rows.push((f.workload.clone(), f.threads));
        }
    }
    println!(
        "\n{title} (median of per-round ratios over {} rounds)",
        rounds.len()
    );
    let mut head = format!("| {:<22} | {:>3} |", "workload", "thr");
    let mut rule = format!("|{:-<24}|{:-<5}|", "", "");
    for r in ratios {
        head += &format!(" {:>14} |", r.name);
        rule += &format!("{:-<16}|", "");
    }
    println!("{head}\n{rule}");
    for (workload, threads) in rows {
        let mut line = format!("| {workload:<22} | {threads:>3} |");
        for r in ratios {
            let fig = |round: &[Figure], peer: &str| {
                round
                    .iter()
                    .find(|f| f.workload == workload && f.threads == threads && f.peer == peer)
                    .and_then(|f| f.mops)
            };
            let mut per_round: Vec<f64> = rounds
                .iter()
                .filter_map(|round| match (fig(round, r.num), fig(round, r.den)) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                })
                .collect();
            per_round.sort_by(f64::total_cmp);
            line += &match per_round.get(per_round.len() / 2) {
                Some(x) => format!(" {x:>13.2}x |"),
                None => format!(" {:>14} |", "n/a"),
            };
        }
        println!("{line}");
    }
}

/// `peers` in the order of round `round`: rotated left by `round`.
pub fn rotated<T>(mut peers: Vec<T>, round: usize) -> Vec<T> {
    if !peers.is_empty() {
        let k = round % peers.len();
        peers.rotate_left(k);
    }
    peers
}

/// The round index a child process was started for (`HYTM_BENCH_ROUND`),
/// so that it can rotate its own peers; 0 when not set.
pub fn child_round() -> usize {
    std::env::var("HYTM_BENCH_ROUND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A small fast generator for workload indices (not for anything else).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: usize) -> XorShift {
        XorShift(0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9))
    }

    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    pub workload: String,
    pub threads: usize,
    pub peer: String,
    pub mops: Option<f64>,
}

impl Figure {
    pub fn line(&self) -> String {
        format!(
            "FIGURE\t{}\t{}\t{}\t{}",
            self.workload,
            self.threads,
            self.peer,
            self.mops.map_or("-".into(), |m| format!("{m:.3}"))
        )
    }

    fn parse(line: &str) -> Option<Figure> {
        let mut it = line.strip_prefix("FIGURE\t")?.split('\t');
        Some(Figure {
            workload: it.next()?.into(),
            threads: it.next()?.parse().ok()?,
            peer: it.next()?.into(),
            mops: it.next()?.parse().ok(),
        })
    }
}

/// Whether this process is a child measuring one group of peers.
pub fn child_group() -> Option<String> {
    std::env::var("HYTM_BENCH_CHILD").ok()
}

/// Re-executes this bench binary with `env`, measuring peer group `group`;
/// returns its figures and the lines it printed that were not figures.
pub fn run_child(group: &str, env: &[(&str, &str)]) -> (Vec<Figure>, Vec<String>) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args().skip(1))
        .env("HYTM_BENCH_CHILD", group);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bench child");
    if !out.status.success() {
        eprintln!(
            "child {group} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    for l in text.lines() {
        match Figure::parse(l) {
            Some(f) => figures.push(f),
            None => notes.push(l.to_string()),
        }
    }
    (figures, notes)
}

/// A ratio column: `name` = figure of `num` / figure of `den`.
pub struct Ratio<'a> {
    pub name: &'a str,
    pub num: &'a str,
    pub den: &'a str,
}

/// Prints one table: a row per (workload, threads), a column per peer in
/// Mops/s, then the ratio columns.
pub fn print_table(title: &str, figures: &[Figure], peers: &[&str], ratios: &[Ratio<'_>]) {
    let mut rows: BTreeMap<(usize, String, usize), BTreeMap<String, Option<f64>>> = BTreeMap::new();
    let mut order: Vec<(String, usize)> = Vec::new();
    for f in figures {
        let key = (f.workload.clone(), f.threads);
        if !order.contains(&key) {
            order.push(key.clone());
        }
        let pos = order.iter().position(|k| *k == key).unwrap();
        rows.entry((pos, f.workload.clone(), f.threads))
            .or_default()
            .insert(f.peer.clone(), f.mops);
    }
    println!("\n{title} (Mops/s; ratios are hytm over the peer named)");
    let mut head = format!("| {:<22} | {:>3} |", "workload", "thr");
    let mut rule = format!("|{:-<24}|{:-<5}|", "", "");
    for p in peers {
        head += &format!(" {p:>14} |");
        rule += &format!("{:-<16}|", "");
    }
    for r in ratios {
        head += &format!(" {:>14} |", r.name);
        rule += &format!("{:-<16}|", "");
    }
    println!("{head}\n{rule}");
    for ((_, workload, threads), cells) in &rows {
        let mut line = format!("| {workload:<22} | {threads:>3} |");
        let get = |p: &str| cells.get(p).copied().flatten();
        for p in peers {
            line += &match get(p) {
                Some(m) => format!(" {m:>14.2} |"),
                None => format!(" {:>14} |", "n/a"),
            };
        }
        for r in ratios {
            line += &match (get(r.num), get(r.den)) {
                (Some(a), Some(b)) if b > 0.0 => format!(" {:>13.2}x |", a / b),
                _ => format!(" {:>14} |", "n/a"),
            };
        }
        println!("{line}");
    }
}

/// The locks compared (by the lock bench, and as the TM bench's baselines):
/// each runs a closure with exclusive access.
pub trait Lock<T>: Sync {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

impl<T: Send> Lock<T> for std::sync::Mutex<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock().unwrap())
    }
}

impl<T: Send> Lock<T> for parking_lot::Mutex<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }
}

impl<T: Send> Lock<T> for hytm::ElidedMutex<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }
}

/// glibc's default pthread mutex, which glibc elides when
/// `GLIBC_TUNABLES=glibc.elision.enable=1` and RTM works.
pub struct PthreadMutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached under the pthread mutex.
unsafe impl<T: Send> Sync for PthreadMutex<T> {}

impl<T> PthreadMutex<T> {
    pub fn new(data: T) -> Self {
        PthreadMutex {
            raw: Box::new(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)),
            data: UnsafeCell::new(data),
        }
    }

    /// The data back (a statically initialized mutex needs no destroy).
    #[allow(dead_code)] // the data bench's; the tm bench does not use it
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Send> Lock<T> for PthreadMutex<T> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the mutex is initialized and boxed (it never moves); the
        // data is accessed only between lock and unlock.
        unsafe {
            libc::pthread_mutex_lock(self.raw.get());
            let r = f(&mut *self.data.get());
            libc::pthread_mutex_unlock(self.raw.get());
            r
        }
    }
}

/// Criterion for the peer comparisons: 10 samples a figure, a short warm-up
/// and measurement with `--quick`.
pub fn peer_criterion(quick: bool) -> criterion::Criterion {
    let (warm_up, measurement) = if quick {
        (Duration::from_millis(100), Duration::from_millis(300))
    } else {
        (Duration::from_millis(500), Duration::from_secs(2))
    };
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
}
