//! Lock elision throughput, side by side with the peers, in one run.
//!
//! `cargo bench --bench locks` (add `-- --quick` for a short run). Each group
//! of peers runs in a child process, since the mode (HYTM_MODE) and glibc's
//! elision (GLIBC_TUNABLES) are fixed per process:
//!
//! - main: std::sync::Mutex, parking_lot::Mutex, pthread mutex, hytm (auto)
//! - glibc: pthread mutex with `glibc.elision.enable=1` (checked with xtest)
//! - fallback: hytm with HYTM_MODE=fallback
//!
//! The children run in interleaved rounds (every child once per round, each
//! figure the median over the rounds), so all peers see the same drift of a
//! shared machine; the table of those medians is printed first.
//!
//! Then criterion measures every (workload, threads, peer) through
//! `iter_custom`: each sample starts a child process of the peer's group
//! that runs exactly the requested number of operations and reports the
//! time it took (process start-up excluded). Criterion's reports land in
//! `target/criterion`; its samples of one peer are taken back to back, so
//! on a noisy machine compare peers in the interleaved table. `--quick`
//! shortens both parts; `--tables-only` skips criterion.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crossbeam_utils::CachePadded;
use harness::{
    print_table, Figure, Lock, Meter, Ops, OpsRequest, PthreadMutex, Ratio, Timing, XorShift,
};

/// FxHash's multiply-rotate: a cheap hasher so the map measures the lock,
/// not SipHash.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<u64, u64, BuildHasherDefault<Fx>>;
const MAP_KEYS: u64 = 1 << 16;

fn counters(n: usize) -> Vec<CachePadded<u64>> {
    (0..n).map(|_| CachePadded::new(0)).collect()
}

fn map() -> Map {
    (0..MAP_KEYS).map(|k| (k, k)).collect()
}

const WORKLOADS: [&str; 4] = [
    "counter N=1",
    "counter N=64",
    "counter N=4096",
    "hashmap 64k 80% get",
];
const THREADS: [usize; 2] = [1, 2];

/// Measures the workloads for one lock type with `meter`: all of them, or
/// only `only`'s (workload, threads).
fn run_workloads<Mt, C, M>(
    meter: &Mt,
    only: Option<(&str, usize)>,
    new_counters: impl Fn(Vec<CachePadded<u64>>) -> C,
    new_map: impl Fn(Map) -> M,
) -> Vec<(String, usize, Mt::Out)>
where
    Mt: Meter,
    C: Lock<Vec<CachePadded<u64>>>,
    M: Lock<Map>,
{
    let mut out = Vec::new();
    let wanted = |w: &str, t: usize| only.is_none_or(|(ow, ot)| ow == w && ot == t);
    for threads in THREADS {
        for n in [1usize, 64, 4096] {
            let workload = format!("counter N={n}");
            if !wanted(&workload, threads) {
                continue;
            }
            let lock = new_counters(counters(n));
            let m = meter.meter(threads, |t| {
                let lock = &lock;
                let mut rng = XorShift::new(t);
                move || {
                    let i = rng.next() as usize % n;
                    lock.with(|c| *c[i] += 1);
                }
            });
            out.push((workload, threads, m));
        }
        let workload = WORKLOADS[3];
        if !wanted(workload, threads) {
            continue;
        }
        let lock = new_map(map());
        let m = meter.meter(threads, |t| {
            let lock = &lock;
            let mut rng = XorShift::new(t);
            move || {
                let r = rng.next();
                let k = r % MAP_KEYS;
                if (r >> 32) % 10 < 8 {
                    std::hint::black_box(lock.with(|m| m.get(&k).copied()));
                } else {
                    lock.with(|m| m.insert(k, r));
                }
            }
        });
        out.push((workload.to_string(), threads, m));
    }
    out
}

/// Every workload for one lock type, timed: the table's figures.
fn figures<C, M>(
    timing: Timing,
    peer: &str,
    new_counters: impl Fn(Vec<CachePadded<u64>>) -> C,
    new_map: impl Fn(Map) -> M,
) -> Vec<Figure>
where
    C: Lock<Vec<CachePadded<u64>>>,
    M: Lock<Map>,
{
    run_workloads(&timing, None, new_counters, new_map)
        .into_iter()
        .map(|(workload, threads, mops)| Figure {
            workload,
            threads,
            peer: peer.into(),
            mops: Some(mops),
        })
        .collect()
}

/// The peers, each with the child group it runs in and that group's
/// environment.
const PEERS: [(&str, &str, (&str, &str)); 6] = [
    ("std", "main", ("HYTM_MODE", "auto")),
    ("parking_lot", "main", ("HYTM_MODE", "auto")),
    ("pthread", "main", ("HYTM_MODE", "auto")),
    ("hytm", "main", ("HYTM_MODE", "auto")),
    (
        "pthread-elide",
        "glibc",
        ("GLIBC_TUNABLES", "glibc.elision.enable=1"),
    ),
    ("hytm-fallback", "fallback", ("HYTM_MODE", "fallback")),
];

/// A child's criterion sample: `req.ops` operations of one workload for one
/// peer.
fn child_ops(req: &OpsRequest) {
    let ops = Ops(req.ops);
    let only = Some((req.workload.as_str(), req.threads));
    let out = match req.peer.as_str() {
        "std" => run_workloads(&ops, only, std::sync::Mutex::new, std::sync::Mutex::new),
        "parking_lot" => {
            run_workloads(&ops, only, parking_lot::Mutex::new, parking_lot::Mutex::new)
        }
        "pthread" | "pthread-elide" => {
            run_workloads(&ops, only, PthreadMutex::new, PthreadMutex::new)
        }
        "hytm" | "hytm-fallback" => {
            run_workloads(&ops, only, hytm::ElidedMutex::new, hytm::ElidedMutex::new)
        }
        other => panic!("unknown peer {other}"),
    };
    let (_, _, elapsed) = out
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("unknown workload {req:?}"));
    OpsRequest::answer(elapsed);
}

/// Criterion's measurement of every (workload, threads, peer), each sample
/// in a child process of the peer's group.
fn criterion_peers(quick: bool) {
    let mut c = harness::peer_criterion(quick);
    for threads in THREADS {
        for workload in WORKLOADS {
            let mut g = c.benchmark_group(format!("locks {workload} thr={threads}"));
            for (peer, group, env) in PEERS {
                g.bench_function(peer, |b| {
                    b.iter_custom(|iters| {
                        let req = OpsRequest {
                            workload: workload.into(),
                            threads,
                            peer: peer.into(),
                            ops: iters,
                        };
                        harness::run_child_ops(group, &[env], &req)
                    })
                });
            }
            g.finish();
        }
    }
    c.final_summary();
}

/// Checks with xtest whether glibc really elides its mutex here.
fn glibc_elision_note() -> String {
    let Some(rtm) = hytm::rtm::Rtm::get() else {
        return format!(
            "glibc elision: cannot be active here ({})",
            hytm::htm().reason()
        );
    };
    let m = PthreadMutex::new(0u64);
    let inside: u32 = (0..1000).map(|_| m.with(|_| u32::from(rtm.test()))).sum();
    format!("glibc elision: {inside} of 1000 pthread sections ran as transactions (xtest)")
}

fn child(group: &str, timing: Timing) {
    if let Some(req) = OpsRequest::from_env() {
        child_ops(&req);
        return;
    }
    let figures = match group {
        "main" => {
            type Peer = Box<dyn Fn() -> Vec<Figure>>;
            let peers: Vec<Peer> = vec![
                Box::new(move || {
                    figures(timing, "std", std::sync::Mutex::new, std::sync::Mutex::new)
                }),
                Box::new(move || {
                    figures(
                        timing,
                        "parking_lot",
                        parking_lot::Mutex::new,
                        parking_lot::Mutex::new,
                    )
                }),
                Box::new(move || figures(timing, "pthread", PthreadMutex::new, PthreadMutex::new)),
                Box::new(move || {
                    figures(
                        timing,
                        "hytm",
                        hytm::ElidedMutex::new,
                        hytm::ElidedMutex::new,
                    )
                }),
            ];
            let f = harness::rotated(peers, harness::child_round())
                .iter()
                .flat_map(|peer| peer())
                .collect();
            println!("NOTE hytm mode: {} ({})", hytm::mode(), hytm::mode_reason());
            f
        }
        "glibc" => {
            println!("NOTE {}", glibc_elision_note());
            figures(
                timing,
                "pthread-elide",
                PthreadMutex::new,
                PthreadMutex::new,
            )
        }
        "fallback" => {
            assert_eq!(hytm::mode(), hytm::Mode::Fallback);
            figures(
                timing,
                "hytm-fallback",
                hytm::ElidedMutex::new,
                hytm::ElidedMutex::new,
            )
        }
        other => panic!("unknown bench group {other}"),
    };
    for f in figures {
        println!("{}", f.line());
    }
}

fn main() {
    let timing = Timing::from_args();
    if let Some(group) = harness::child_group() {
        child(&group, timing);
        return;
    }
    println!(
        "hytm lock bench: median of {} interleaved rounds × {} ms per figure, threads pinned; RTM: {}",
        timing.reps,
        timing.run.as_millis(),
        hytm::htm().reason()
    );
    // Each round runs every child once; the notes are the same every
    // round, so only the first round's are printed.
    let printed_notes = std::cell::Cell::new(false);
    let figures = harness::interleaved(timing, |_, round| {
        let mut figures = Vec::new();
        let round_str = round.to_string();
        let groups = vec![
            ("main", [("HYTM_MODE", "auto")]),
            ("glibc", [("GLIBC_TUNABLES", "glibc.elision.enable=1")]),
            ("fallback", [("HYTM_MODE", "fallback")]),
        ];
        for (group, env) in harness::rotated(groups, round) {
            let mut env = env.to_vec();
            env.push(("HYTM_BENCH_ONE_ROUND", "1"));
            env.push(("HYTM_BENCH_ROUND", &round_str));
            let (f, notes) = harness::run_child(group, &env);
            if !printed_notes.get() {
                for n in notes {
                    if let Some(n) = n.strip_prefix("NOTE ") {
                        println!("{n}");
                    }
                }
            }
            figures.extend(f);
        }
        printed_notes.set(true);
        figures
    });
    // Criterion first, so that the side-by-side table is the last thing
    // printed.
    if !std::env::args().any(|a| a == "--tables-only") {
        criterion_peers(timing.reps == 1 && timing.run < std::time::Duration::from_millis(500));
    }
    print_table(
        "Elided locks",
        &figures,
        &[
            "std",
            "parking_lot",
            "pthread",
            "pthread-elide",
            "hytm",
            "hytm-fallback",
        ],
        &[
            Ratio {
                name: "hytm/glibc-el",
                num: "hytm",
                den: "pthread-elide",
            },
            Ratio {
                name: "hytm/pthread",
                num: "hytm",
                den: "pthread",
            },
            Ratio {
                name: "hytm/std",
                num: "hytm",
                den: "std",
            },
            Ratio {
                name: "fallback/pl",
                num: "hytm-fallback",
                den: "parking_lot",
            },
        ],
    );
}
