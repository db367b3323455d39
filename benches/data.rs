//! Transactional data structures against the usual concurrent peers, side
//! by side in one run.
//!
//! `cargo bench --bench data` (add `-- --quick` for a short run,
//! `-- --tables-only` to skip criterion). Workloads, at 1 and 2 pinned
//! threads:
//!
//! - `tvar string 95% read`: one `TVar<String>` (read in place with
//!   `Tx::get_with`, and cloned with `Tx::get` as "hytm-get"), 5% of the
//!   operations replace it with a new string; against parking_lot's
//!   `RwLock<String>` and `arc-swap`'s `ArcSwap<String>`.
//! - `queue 1 prod 1 cons`: items through a `TQueue<u64>` (the consumer
//!   waits in `pop`, i.e. `retry`), a `crossbeam-channel` unbounded
//!   channel, and a parking_lot `Mutex<VecDeque<u64>>` (the consumer spins
//!   and yields while it is empty). At 1 thread the same thread pushes and
//!   pops each item; at 2, one produces and one consumes. Mops/s are items
//!   through the queue per second.
//! - `tmap 80% get`: 4096 keys, half present, 80% lookups, 10% inserts,
//!   10% removals; `TMap<u64, u64>` against a parking_lot
//!   `Mutex<HashMap>` and `DashMap` (std's SipHash in all three).
//! - `vacation low` / `vacation high` (2 clients only; `examples/vacation.rs`,
//!   STAMP's sets with `-t` raised to 65536 so that a run lasts long
//!   enough to time): hytm's `atomic` (auto), the same with
//!   `HYTM_MODE=fallback` (a child process, since the mode is fixed per
//!   process), a site with the global-lock fallback (serial mode), and
//!   the same code on `HashMap`s under one `std::sync::Mutex`. Mops/s are
//!   million tasks per second.
//!
//! As in the `tm` bench, the peers are measured in interleaved rounds
//! (each round starting at another peer; figures are medians over the
//! rounds) and the table is printed last. Criterion measures the first
//! three workloads (its reports land in `target/criterion`); vacation runs
//! are whole programs and are measured by the rounds only.

#[path = "harness/mod.rs"]
mod harness;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/vacation.rs"]
mod vacation;

use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{
    print_paired, print_table, Figure, Lock, Meter, Ops, PthreadMutex, Ratio, Timing, XorShift,
};
use hytm::{TMap, TQueue, TVar};

const WORKLOADS: [&str; 5] = [
    "tvar string 95% read",
    "queue 1 prod 1 cons",
    "tmap 80% get",
    "vacation low",
    "vacation high",
];

/// The peers of each workload, in the table's column order.
fn peers(workload: &str) -> &'static [&'static str] {
    match workload {
        "tvar string 95% read" => &["hytm", "hytm-get", "rwlock", "arc-swap"],
        "queue 1 prod 1 cons" => &["hytm", "crossbeam", "mutex-deque"],
        "tmap 80% get" => &["hytm", "mutex-hashmap", "dashmap"],
        _ => &[
            "hytm",
            "hytm-fallback",
            "hytm-global-lock",
            "coarse-lock",
            "pthread",
        ],
    }
}

fn string_value(r: u64) -> String {
    format!("a configuration value, version {r:016x}")
}

/// `tvar string 95% read` for one peer.
fn tvar_run<Mt: Meter>(meter: &Mt, peer: &str, threads: usize) -> Mt::Out {
    let write = |r: u64| r % 100 < 5;
    match peer {
        "hytm" | "hytm-get" => {
            let clone = peer == "hytm-get";
            let v = TVar::new(string_value(0));
            meter.meter(threads, |t| {
                let v = &v;
                let mut rng = XorShift::new(t);
                move || {
                    let r = rng.next();
                    if write(r) {
                        hytm::atomic(|tx| tx.set(v, string_value(r)));
                    } else if clone {
                        black_box(hytm::atomic(|tx| Ok(tx.get(v)?.len())));
                    } else {
                        black_box(hytm::atomic(|tx| tx.get_with(v, String::len)));
                    }
                }
            })
        }
        "rwlock" => {
            let v = parking_lot::RwLock::new(string_value(0));
            meter.meter(threads, |t| {
                let v = &v;
                let mut rng = XorShift::new(t);
                move || {
                    let r = rng.next();
                    if write(r) {
                        let s = string_value(r);
                        *v.write() = s;
                    } else {
                        black_box(v.read().len());
                    }
                }
            })
        }
        "arc-swap" => {
            let v = arc_swap::ArcSwap::from_pointee(string_value(0));
            meter.meter(threads, |t| {
                let v = &v;
                let mut rng = XorShift::new(t);
                move || {
                    let r = rng.next();
                    if write(r) {
                        v.store(Arc::new(string_value(r)));
                    } else {
                        black_box(v.load().len());
                    }
                }
            })
        }
        other => panic!("unknown peer {other}"),
    }
}

const MAP_KEYS: u64 = 4096;

/// `tmap 80% get` for one peer.
fn tmap_run<Mt: Meter>(meter: &Mt, peer: &str, threads: usize) -> Mt::Out {
    let key = |r: u64| r % MAP_KEYS;
    let op = |r: u64| (r >> 32) % 10;
    match peer {
        "hytm" => {
            let m: TMap<u64, u64> = (0..MAP_KEYS).step_by(2).map(|k| (k, k)).collect();
            meter.meter(threads, |t| {
                let m = &m;
                let mut rng = XorShift::new(t);
                move || {
                    let r = rng.next();
                    let k = key(r);
                    match op(r) {
                        0 => black_box(hytm::atomic(|tx| m.insert(tx, k, r)).is_some()),
                        1 => black_box(hytm::atomic(|tx| m.remove(tx, &k)).is_some()),
                        _ => black_box(hytm::atomic(|tx| m.get(tx, &k)).is_some()),
                    };
                }
            })
        }
        "mutex-hashmap" => {
            let m: parking_lot::Mutex<HashMap<u64, u64>> =
                parking_lot::Mutex::new((0..MAP_KEYS).step_by(2).map(|k| (k, k)).collect());
            meter.meter(threads, |t| {
                let m = &m;
                let mut rng = XorShift::new(t);
                move || {
                    let r = rng.next();
                    let k = key(r);
                    match op(r) {
                        0 => black_box(m.lock().insert(k, r).is_some()),
                        1 => black_box(m.lock().remove(&k).is_some()),
                        _ => black_box(m.lock().get(&k).copied().is_some()),
                    };
                }
            })
        }
        "dashmap" => {
            let m: dashmap::DashMap<u64, u64> = (0..MAP_KEYS).step_by(2).map(|k| (k, k)).collect();
            meter.meter(threads, |t| {
                let m = &m;
                let mut rng = XorShift::new(t);
                move || {
                    let r = rng.next();
                    let k = key(r);
                    match op(r) {
                        0 => black_box(m.insert(k, r).is_some()),
                        1 => black_box(m.remove(&k).is_some()),
                        _ => black_box(m.get(&k).map(|v| *v).is_some()),
                    };
                }
            })
        }
        other => panic!("unknown peer {other}"),
    }
}

/// A queue of the `queue` workload: push, and a pop that waits.
trait Queue: Sync {
    fn push(&self, v: u64);
    fn pop(&self) -> u64;
}

impl Queue for TQueue<u64> {
    fn push(&self, v: u64) {
        hytm::atomic(|tx| TQueue::push(self, tx, v));
    }
    fn pop(&self) -> u64 {
        hytm::atomic(|tx| TQueue::pop(self, tx))
    }
}

struct Channel(
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
);

impl Queue for Channel {
    fn push(&self, v: u64) {
        self.0.send(v).unwrap();
    }
    fn pop(&self) -> u64 {
        self.1.recv().unwrap()
    }
}

impl Queue for parking_lot::Mutex<VecDeque<u64>> {
    fn push(&self, v: u64) {
        self.lock().push_back(v);
    }
    fn pop(&self) -> u64 {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if let Some(v) = self.lock().pop_front() {
                return v;
            }
            backoff.snooze();
        }
    }
}

/// Moves `items` items through `q`: at 1 thread pushing and popping each
/// in turn, at 2 from a producer to a consumer. Returns the elapsed time.
fn queue_items(q: &impl Queue, threads: usize, items: u64) -> Duration {
    if threads == 1 {
        harness::pin(0);
        let start = Instant::now();
        for i in 0..items {
            q.push(i);
            assert_eq!(q.pop(), i);
        }
        return start.elapsed();
    }
    let barrier = std::sync::Barrier::new(3);
    std::thread::scope(|s| {
        let barrier = &barrier;
        s.spawn(move || {
            harness::pin(0);
            barrier.wait();
            for i in 0..items {
                q.push(i);
            }
        });
        s.spawn(move || {
            harness::pin(1);
            barrier.wait();
            for i in 0..items {
                assert_eq!(q.pop(), i, "FIFO order");
            }
        });
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

fn queue_run(peer: &str, threads: usize, items: u64) -> Duration {
    match peer {
        "hytm" => queue_items(&TQueue::new(), threads, items),
        "crossbeam" => {
            let (tx, rx) = crossbeam_channel::unbounded();
            queue_items(&Channel(tx, rx), threads, items)
        }
        "mutex-deque" => queue_items(&parking_lot::Mutex::new(VecDeque::new()), threads, items),
        other => panic!("unknown peer {other}"),
    }
}

/// Items per queue figure: about as many as the slowest peer moves in the
/// run time.
fn queue_items_for(timing: Timing) -> u64 {
    timing.run.as_millis() as u64 * 400
}

/// The vacation sets of this bench: STAMP's, with `-t` 65536.
fn vacation_params(workload: &str) -> vacation::Params {
    let base = if workload == "vacation low" {
        vacation::Params::LOW
    } else {
        vacation::Params::HIGH
    };
    vacation::Params {
        tasks: 65536,
        ..base
    }
}

/// One vacation run in this process; million tasks per second.
fn vacation_run(workload: &str, method: vacation::Method) -> f64 {
    let out = vacation::run(&vacation_params(workload), method);
    assert_eq!(out.check, Ok(()), "vacation tables after {workload}");
    out.tasks_per_sec() / 1e6
}

/// One figure, in Mops/s (`None` where the peer does not run there).
fn figure(timing: Timing, workload: &str, peer: &str, threads: usize) -> Option<f64> {
    match workload {
        "tvar string 95% read" => Some(tvar_run(&timing, peer, threads)),
        "tmap 80% get" => Some(tmap_run(&timing, peer, threads)),
        "queue 1 prod 1 cons" => {
            let items = queue_items_for(timing);
            Some(items as f64 / queue_run(peer, threads, items).as_secs_f64() / 1e6)
        }
        _ if threads != 2 => None,
        _ => Some(match peer {
            "hytm" => vacation_run(workload, vacation::Method::Atomic),
            "hytm-global-lock" => vacation_run(workload, vacation::Method::GlobalLock),
            "coarse-lock" => vacation_run(workload, vacation::Method::Lock),
            "pthread" => {
                let out = vacation::run_coarse::<PthreadMutex<vacation::LockManager>>(
                    &vacation_params(workload),
                );
                assert_eq!(out.check, Ok(()), "vacation tables after {workload}");
                out.tasks_per_sec() / 1e6
            }
            "hytm-fallback" => {
                // The mode is fixed per process: a child runs it.
                let (figures, notes) = harness::run_child(
                    &format!("fallback:{workload}"),
                    &[("HYTM_MODE", "fallback"), ("HYTM_BENCH_ONE_ROUND", "1")],
                );
                match figures.first().and_then(|f| f.mops) {
                    Some(m) => m,
                    None => panic!("the HYTM_MODE=fallback child gave no figure: {notes:?}"),
                }
            }
            other => panic!("unknown peer {other}"),
        }),
    }
}

/// One round: every (workload, threads, peer), each workload's peers
/// starting at `round`.
fn all_figures(timing: Timing, round: usize) -> Vec<Figure> {
    let mut out = Vec::new();
    for threads in [1, 2] {
        for workload in WORKLOADS {
            for peer in harness::rotated(peers(workload).to_vec(), round) {
                if let Some(mops) = figure(timing, workload, peer, threads) {
                    out.push(Figure {
                        workload: workload.into(),
                        threads,
                        peer: peer.into(),
                        mops: Some(mops),
                    });
                }
            }
        }
    }
    out
}

/// Criterion's measurement of the tvar, queue and map workloads.
fn criterion_peers(quick: bool) {
    let mut c = harness::peer_criterion(quick);
    for threads in [1, 2] {
        for workload in &WORKLOADS[..3] {
            let mut g = c.benchmark_group(format!("data {workload} thr={threads}"));
            for &peer in peers(workload) {
                g.bench_function(peer, |b| {
                    b.iter_custom(|iters| match *workload {
                        "tvar string 95% read" => tvar_run(&Ops(iters), peer, threads),
                        "tmap 80% get" => tmap_run(&Ops(iters), peer, threads),
                        _ => queue_run(peer, threads, iters),
                    })
                });
            }
            g.finish();
        }
    }
    c.final_summary();
}

fn main() {
    // A child measuring vacation under HYTM_MODE=fallback.
    if let Some(group) = harness::child_group() {
        let workload = group.strip_prefix("fallback:").expect("child group");
        let mops = vacation_run(workload, vacation::Method::Atomic);
        println!(
            "{}",
            Figure {
                workload: workload.into(),
                threads: 2,
                peer: "hytm-fallback".into(),
                mops: Some(mops),
            }
            .line()
        );
        println!("child mode {} ({})", hytm::mode(), hytm::mode_reason());
        return;
    }
    let timing = Timing::from_args();
    println!(
        "hytm data bench: median of {} interleaved rounds × {} ms per figure, threads pinned; mode {} ({})",
        timing.reps,
        timing.run.as_millis(),
        hytm::mode(),
        hytm::mode_reason()
    );
    if !hytm::htm().usable() {
        println!("no usable RTM here: every hytm figure is of the software fallback");
    }
    let rounds = harness::interleaved_rounds(timing, all_figures);
    let figures = harness::medians(&rounds);
    if !std::env::args().any(|a| a == "--tables-only") {
        criterion_peers(timing.reps == 1 && timing.run < Duration::from_millis(500));
    }
    let only = |workloads: &[&str]| -> Vec<Figure> {
        figures
            .iter()
            .filter(|f| workloads.contains(&f.workload.as_str()))
            .cloned()
            .collect()
    };
    let ratio = |name, num, den| Ratio { name, num, den };
    print_table(
        "TVar<String>, 95% reads",
        &only(&WORKLOADS[..1]),
        peers(WORKLOADS[0]),
        &[
            ratio("hytm/rwlock", "hytm", "rwlock"),
            ratio("hytm/arc-swap", "hytm", "arc-swap"),
            ratio("get/get_with", "hytm-get", "hytm"),
        ],
    );
    print_table(
        "TQueue, one producer and one consumer",
        &only(&WORKLOADS[1..2]),
        peers(WORKLOADS[1]),
        &[
            ratio("hytm/crossbeam", "hytm", "crossbeam"),
            ratio("hytm/mutex-dq", "hytm", "mutex-deque"),
        ],
    );
    print_table(
        "TMap, 80% lookups",
        &only(&WORKLOADS[2..3]),
        peers(WORKLOADS[2]),
        &[
            ratio("hytm/mutex-map", "hytm", "mutex-hashmap"),
            ratio("hytm/dashmap", "hytm", "dashmap"),
        ],
    );
    print_table(
        "vacation, 2 clients (million tasks/s)",
        &only(&WORKLOADS[3..]),
        peers(WORKLOADS[3]),
        &[
            ratio("hytm/coarse", "hytm", "coarse-lock"),
            ratio("fallback/coarse", "hytm-fallback", "coarse-lock"),
            ratio("glock/coarse", "hytm-global-lock", "coarse-lock"),
        ],
    );
    // TinySTM's baseline (and the tm bench's): a default pthread mutex,
    // paired within each round.
    let vacation_rounds: Vec<Vec<Figure>> = rounds
        .iter()
        .map(|r| {
            r.iter()
                .filter(|f| WORKLOADS[3..].contains(&f.workload.as_str()))
                .cloned()
                .collect()
        })
        .collect();
    print_paired(
        "vacation against one pthread mutex, paired per round",
        &vacation_rounds,
        &[
            ratio("hytm/pthread", "hytm", "pthread"),
            ratio("fallback/pthread", "hytm-fallback", "pthread"),
            ratio("coarse/pthread", "coarse-lock", "pthread"),
        ],
    );
    println!(
        "\nper-site statistics of this run:\n{}",
        hytm::stats::snapshot()
    );
}

/// vacation's coarse-lock peer on a default pthread mutex.
impl vacation::CoarseLock for PthreadMutex<vacation::LockManager> {
    fn new(m: vacation::LockManager) -> Self {
        PthreadMutex::new(m)
    }
    fn with<R>(&self, f: impl FnOnce(&mut vacation::LockManager) -> R) -> R {
        Lock::with(self, f)
    }
    fn into_inner(self) -> vacation::LockManager {
        PthreadMutex::into_inner(self)
    }
}
