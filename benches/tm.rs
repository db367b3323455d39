//! Hybrid TM throughput, side by side with the peers, in one run.
//!
//! `cargo bench --bench tm` (add `-- --quick` for a short run). Workloads:
//! bank transfers over 1024 accounts, and a transactional hash set (linear
//! probing with backward-shift deletion, 8192 slots, keys 1..=2048, 80%
//! lookups, 10% inserts, 10% removals). Peers: hytm (auto), hytm forced to
//! the STM path (its bodies unmarked, and marked `#[inline(always)]` as
//! `hytm-stm-hot`), hytm with the single-lock fallback, the `stm` crate, and
//! parking_lot's, std's and a default pthread mutex around the same
//! structure; at 2 threads also the mixes with one thread forced to
//! software. Each round measures every peer once; the figures are medians
//! over the rounds, so every peer sees the same drift of the machine, and
//! each round starts at another peer. That table is printed last, after a
//! table of the STM path over the plain locks paired within each round (the
//! median of per-round ratios: TinySTM's published figures are against a
//! default pthread mutex).
//!
//! Before it, criterion measures every (workload, threads, peer) through
//! `iter_custom` (each sample a fixed number of operations on the pinned
//! threads); its reports land in `target/criterion`. Its samples of one
//! peer are taken back to back, so on a noisy machine compare peers in the
//! interleaved table. `--quick` shortens both parts; `--tables-only` skips
//! criterion; `--threads 2` and `--peers hytm-stm,pthread` restrict the
//! rounds to those thread counts and peers (a quick paired look on a noisy
//! machine, between its slow spells).

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::{
    print_paired, print_table, Figure, Lock, Meter, Ops, PthreadMutex, Ratio, Timing, XorShift,
};
use hytm::{FallbackKind, Policy, Restart, Site, TCell, Tx};

const ACCOUNTS: usize = 1024;
const SLOTS: usize = 8192;
const KEYS: u64 = 2048;

static AUTO: Site = Site::new("bench auto");
static STM_PATH: Site = Site::with_policy("bench stm", Policy::DEFAULT.hardware(false));
/// The STM path with the bodies marked `#[inline(always)]` (`atomic`'s
/// "Hot transactions").
static STM_HOT: Site = Site::with_policy("bench stm hot", Policy::DEFAULT.hardware(false));
static LOCK_FALLBACK: Site = Site::with_policy(
    "bench lock-fallback",
    Policy::DEFAULT.fallback(FallbackKind::GlobalLock),
);
static LOCK_ONLY: Site = Site::with_policy(
    "bench lock-only",
    Policy::DEFAULT
        .hardware(false)
        .fallback(FallbackKind::GlobalLock),
);

/// Slot access for the set algorithm, over any of the peers' transactions.
/// The impls are `#[inline(always)]`, as a body written against one
/// peer's API would be: left to itself, even with `#[inline]`, LLVM kept
/// hytm's `get` out of line (a call per probe).
trait Slots {
    type Err;
    fn get(&mut self, i: usize) -> Result<u64, Self::Err>;
    fn set(&mut self, i: usize, v: u64) -> Result<(), Self::Err>;
}

#[inline]
fn home(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 51) as usize % SLOTS
}

/// Finds `key`: its slot and whether it is there (else the empty slot).
/// `#[inline(always)]`, like `set_op`: see `Slots`.
#[inline(always)]
fn find<S: Slots>(s: &mut S, key: u64) -> Result<(usize, bool), S::Err> {
    let mut i = home(key);
    loop {
        match s.get(i)? {
            0 => return Ok((i, false)),
            v if v == key => return Ok((i, true)),
            _ => i = (i + 1) % SLOTS,
        }
    }
}

/// One set operation chosen by `r`; returns whether the key was present.
/// `#[inline(always)]` for every peer, so that a marked hytm body has it
/// inline (see `STM_HOT`), and an unmarked one as before.
#[inline(always)]
fn set_op<S: Slots>(s: &mut S, r: u64) -> Result<bool, S::Err> {
    let key = 1 + r % KEYS;
    let (i, found) = find(s, key)?;
    match (r >> 32) % 10 {
        0 if !found => s.set(i, key)?,
        1 if found => {
            // Backward-shift deletion: no tombstones, probes stay short.
            let mut hole = i;
            let mut j = (i + 1) % SLOTS;
            loop {
                let v = s.get(j)?;
                if v == 0 {
                    break;
                }
                let h = home(v);
                if (j + SLOTS - h) % SLOTS >= (j + SLOTS - hole) % SLOTS {
                    s.set(hole, v)?;
                    hole = j;
                }
                j = (j + 1) % SLOTS;
            }
            s.set(hole, 0)?;
        }
        _ => {}
    }
    Ok(found)
}

struct HytmSlots<'a, 'env>(&'a mut hytm::Tx<'env>, &'env [TCell<u64>]);
impl Slots for HytmSlots<'_, '_> {
    type Err = hytm::Restart;
    #[inline(always)]
    fn get(&mut self, i: usize) -> Result<u64, hytm::Restart> {
        self.0.read(&self.1[i])
    }
    #[inline(always)]
    fn set(&mut self, i: usize, v: u64) -> Result<(), hytm::Restart> {
        self.0.write(&self.1[i], v)
    }
}

struct StmSlots<'a>(&'a mut stm::Transaction, &'a [stm::TVar<u64>]);
impl Slots for StmSlots<'_> {
    type Err = stm::StmError;
    #[inline(always)]
    fn get(&mut self, i: usize) -> Result<u64, stm::StmError> {
        self.1[i].read(self.0)
    }
    #[inline(always)]
    fn set(&mut self, i: usize, v: u64) -> Result<(), stm::StmError> {
        self.1[i].write(self.0, v)
    }
}

struct PlainSlots<'a>(&'a mut [u64]);
impl Slots for PlainSlots<'_> {
    type Err = std::convert::Infallible;
    #[inline(always)]
    fn get(&mut self, i: usize) -> Result<u64, Self::Err> {
        Ok(self.0[i])
    }
    #[inline(always)]
    fn set(&mut self, i: usize, v: u64) -> Result<(), Self::Err> {
        self.0[i] = v;
        Ok(())
    }
}

fn initial_set() -> Vec<u64> {
    let mut slots = vec![0u64; SLOTS];
    let mut s = PlainSlots(&mut slots);
    for k in (1..=KEYS).step_by(2) {
        let Ok((i, _)) = find(&mut s, k);
        let Ok(()) = s.set(i, k);
    }
    slots
}

fn accounts(r: u64) -> (usize, usize) {
    (
        (r % ACCOUNTS as u64) as usize,
        ((r >> 24) % ACCOUNTS as u64) as usize,
    )
}

const WORKLOADS: [&str; 2] = ["bank 1k accounts", "hash set 80% get"];

/// Whether `workload` is wanted: all of them, or only the one named.
fn wanted(only: Option<&str>, workload: &str) -> bool {
    only.is_none_or(|w| w == workload)
}

/// One bank transfer in a transaction.
#[inline(always)]
fn transfer<'env>(
    tx: &mut Tx<'env>,
    bank: &'env [TCell<i64>],
    a: usize,
    b: usize,
) -> Result<(), Restart> {
    let x = tx.read(&bank[a])?;
    tx.write(&bank[a], x - 1)?;
    let y = tx.read(&bank[b])?;
    tx.write(&bank[b], y + 1)
}

/// hytm bank and set, with the site each thread uses; measured with
/// `meter`, all workloads or only `only`. `HOT`: the bodies are marked
/// `#[inline(always)]`.
fn hytm_run<Mt: Meter, const HOT: bool>(
    meter: &Mt,
    only: Option<&str>,
    sites: [&'static Site; 2],
    threads: usize,
) -> Vec<(&'static str, Mt::Out)> {
    let mut out = Vec::new();
    if wanted(only, WORKLOADS[0]) {
        let bank: Vec<TCell<i64>> = (0..ACCOUNTS).map(|_| TCell::new(1000)).collect();
        let m = meter.meter(threads, |t| {
            let (bank, site) = (&bank, sites[t % 2]);
            let mut rng = XorShift::new(t);
            move || {
                let (a, b) = accounts(rng.next());
                if HOT {
                    site.atomic(
                        #[inline(always)]
                        |tx| transfer(tx, bank, a, b),
                    );
                } else {
                    site.atomic(|tx| transfer(tx, bank, a, b));
                }
            }
        });
        assert_eq!(
            bank.iter().map(TCell::load).sum::<i64>(),
            1000 * ACCOUNTS as i64
        );
        out.push((WORKLOADS[0], m));
    }
    if wanted(only, WORKLOADS[1]) {
        let set: Vec<TCell<u64>> = initial_set().into_iter().map(TCell::new).collect();
        let m = meter.meter(threads, |t| {
            let (set, site) = (&set, sites[t % 2]);
            let mut rng = XorShift::new(t);
            move || {
                let r = rng.next();
                let found = if HOT {
                    site.atomic(
                        #[inline(always)]
                        |tx| set_op(&mut HytmSlots(tx, set), r),
                    )
                } else {
                    site.atomic(|tx| set_op(&mut HytmSlots(tx, set), r))
                };
                std::hint::black_box(found);
            }
        });
        out.push((WORKLOADS[1], m));
    }
    out
}

fn stm_crate_run<Mt: Meter>(
    meter: &Mt,
    only: Option<&str>,
    threads: usize,
) -> Vec<(&'static str, Mt::Out)> {
    let mut out = Vec::new();
    if wanted(only, WORKLOADS[0]) {
        let bank: Vec<stm::TVar<i64>> = (0..ACCOUNTS).map(|_| stm::TVar::new(1000)).collect();
        let m = meter.meter(threads, |t| {
            let bank = &bank;
            let mut rng = XorShift::new(t);
            move || {
                let (a, b) = accounts(rng.next());
                stm::atomically(|tx| {
                    let x = bank[a].read(tx)?;
                    bank[a].write(tx, x - 1)?;
                    let y = bank[b].read(tx)?;
                    bank[b].write(tx, y + 1)
                });
            }
        });
        out.push((WORKLOADS[0], m));
    }
    if wanted(only, WORKLOADS[1]) {
        let set: Vec<stm::TVar<u64>> = initial_set().into_iter().map(stm::TVar::new).collect();
        let m = meter.meter(threads, |t| {
            let set = &set;
            let mut rng = XorShift::new(t);
            move || {
                let r = rng.next();
                std::hint::black_box(stm::atomically(|tx| set_op(&mut StmSlots(tx, set), r)));
            }
        });
        out.push((WORKLOADS[1], m));
    }
    out
}

/// A plain lock around the same structures: the baselines. `bank` and
/// `set` build the lock around each structure.
fn lock_run<Mt: Meter, B: Lock<Vec<i64>>, S: Lock<Vec<u64>>>(
    meter: &Mt,
    only: Option<&str>,
    threads: usize,
    bank: fn(Vec<i64>) -> B,
    set: fn(Vec<u64>) -> S,
) -> Vec<(&'static str, Mt::Out)> {
    let mut out = Vec::new();
    if wanted(only, WORKLOADS[0]) {
        let bank = bank(vec![1000i64; ACCOUNTS]);
        let m = meter.meter(threads, |t| {
            let bank = &bank;
            let mut rng = XorShift::new(t);
            move || {
                let (a, b) = accounts(rng.next());
                bank.with(|g| {
                    g[a] -= 1;
                    g[b] += 1;
                });
            }
        });
        out.push((WORKLOADS[0], m));
    }
    if wanted(only, WORKLOADS[1]) {
        let set = set(initial_set());
        let m = meter.meter(threads, |t| {
            let set = &set;
            let mut rng = XorShift::new(t);
            move || {
                let r = rng.next();
                let Ok(found) = set.with(|s| set_op(&mut PlainSlots(s), r));
                std::hint::black_box(found);
            }
        });
        out.push((WORKLOADS[1], m));
    }
    out
}

/// The peers: name, and whether it runs at 2 threads only.
const PEERS: [(&str, bool); 10] = [
    ("hytm", false),
    ("hytm-stm", false),
    ("hytm-stm-hot", false),
    ("hytm-lock", false),
    ("stm-crate", false),
    ("parking_lot", false),
    ("std", false),
    ("pthread", false),
    ("mix-stm", true),
    ("mix-lock", true),
];

/// Measures one peer with `meter`.
fn run_peer<Mt: Meter>(
    meter: &Mt,
    only: Option<&str>,
    peer: &str,
    threads: usize,
) -> Vec<(&'static str, Mt::Out)> {
    match peer {
        "hytm" => hytm_run::<_, false>(meter, only, [&AUTO, &AUTO], threads),
        "hytm-stm" => hytm_run::<_, false>(meter, only, [&STM_PATH, &STM_PATH], threads),
        "hytm-stm-hot" => hytm_run::<_, true>(meter, only, [&STM_HOT, &STM_HOT], threads),
        "hytm-lock" => hytm_run::<_, false>(meter, only, [&LOCK_FALLBACK, &LOCK_FALLBACK], threads),
        "stm-crate" => stm_crate_run(meter, only, threads),
        "parking_lot" => lock_run(
            meter,
            only,
            threads,
            parking_lot::Mutex::new,
            parking_lot::Mutex::new,
        ),
        "std" => lock_run(
            meter,
            only,
            threads,
            std::sync::Mutex::new,
            std::sync::Mutex::new,
        ),
        "pthread" => lock_run(meter, only, threads, PthreadMutex::new, PthreadMutex::new),
        "mix-stm" => hytm_run::<_, false>(meter, only, [&AUTO, &STM_PATH], threads),
        "mix-lock" => hytm_run::<_, false>(meter, only, [&LOCK_FALLBACK, &LOCK_ONLY], threads),
        other => panic!("unknown peer {other}"),
    }
}

/// Criterion's measurement of every (workload, threads, peer), in this
/// process: each sample runs the requested number of operations.
fn criterion_peers(quick: bool) {
    let mut c = harness::peer_criterion(quick);
    for threads in [1, 2] {
        for workload in WORKLOADS {
            let mut g = c.benchmark_group(format!("tm {workload} thr={threads}"));
            for (peer, two_only) in PEERS {
                if two_only && threads != 2 {
                    continue;
                }
                g.bench_function(peer, |b| {
                    b.iter_custom(|iters| run_peer(&Ops(iters), Some(workload), peer, threads)[0].1)
                });
            }
            g.finish();
        }
    }
    c.final_summary();
}

/// Every peer once, starting at peer `round`: one round of
/// [`harness::interleaved`].
/// The value of `--<name> a,b,...` on the command line, split at commas.
fn list_arg(name: &str) -> Option<Vec<String>> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    let Some(v) = args.get(i + 1) else {
        panic!("{name}: expected a comma-separated list after it");
    };
    Some(v.split(',').map(str::to_owned).collect())
}

/// The thread counts to measure: `--threads 1,2` (the default) or a part.
fn thread_counts() -> Vec<usize> {
    list_arg("--threads").map_or(vec![1, 2], |l| {
        l.iter()
            .map(|t| match t.as_str() {
                "1" => 1,
                "2" => 2,
                _ => panic!("--threads {t:?}: expected 1 or 2"),
            })
            .collect()
    })
}

/// Whether `peer` is measured: all of them, or those named by `--peers`
/// (for a quick paired look at a few, e.g. `--peers hytm-stm,pthread`).
fn peer_wanted(peer: &str) -> bool {
    list_arg("--peers").is_none_or(|l| {
        for p in &l {
            assert!(
                PEERS.iter().any(|(known, _)| known == p),
                "--peers {p:?}: expected some of {:?}",
                PEERS.map(|(k, _)| k)
            );
        }
        l.iter().any(|p| p == peer)
    })
}

fn all_figures(timing: Timing, round: usize) -> Vec<Figure> {
    let mut figures = Vec::new();
    for threads in thread_counts() {
        let peers: Vec<&str> = PEERS
            .iter()
            .filter(|(_, two_only)| threads == 2 || !two_only)
            .map(|(peer, _)| *peer)
            .filter(|peer| peer_wanted(peer))
            .collect();
        for peer in harness::rotated(peers, round) {
            for (workload, mops) in run_peer(&timing, None, peer, threads) {
                figures.push(Figure {
                    workload: workload.into(),
                    threads,
                    peer: peer.into(),
                    mops: Some(mops),
                });
            }
        }
    }
    figures
}

fn main() {
    let timing = Timing::from_args();
    println!(
        "hytm TM bench: median of {} interleaved rounds × {} ms per figure, threads pinned; mode {} ({})",
        timing.reps,
        timing.run.as_millis(),
        hytm::mode(),
        hytm::mode_reason()
    );
    let rounds = harness::interleaved_rounds(timing, all_figures);
    let figures = harness::medians(&rounds);
    // Criterion after the rounds, so that the side-by-side table is the
    // last thing printed.
    if !std::env::args().any(|a| a == "--tables-only") {
        criterion_peers(timing.reps == 1 && timing.run < Duration::from_millis(500));
    }
    print_table(
        "Hybrid TM",
        &figures,
        &[
            "hytm",
            "hytm-stm",
            "hytm-stm-hot",
            "hytm-lock",
            "stm-crate",
            "parking_lot",
            "std",
            "pthread",
            "mix-stm",
            "mix-lock",
        ],
        &[
            Ratio {
                name: "stm/stm-crate",
                num: "hytm-stm",
                den: "stm-crate",
            },
            Ratio {
                name: "hytm/pl",
                num: "hytm",
                den: "parking_lot",
            },
            Ratio {
                name: "hytm/stm-path",
                num: "hytm",
                den: "hytm-stm",
            },
            Ratio {
                name: "hot/stm-path",
                num: "hytm-stm-hot",
                den: "hytm-stm",
            },
            Ratio {
                name: "mix-stm/hytm",
                num: "mix-stm",
                den: "hytm",
            },
            Ratio {
                name: "mix-lock/hytm",
                num: "mix-lock",
                den: "hytm",
            },
        ],
    );
    // TinySTM's published comparison is against a default pthread mutex;
    // rounds on this guest move by 1.5-3x, so each ratio is taken within a
    // round (both figures measured moments apart) and the median of those
    // is printed.
    print_paired(
        "Software path against plain locks, paired per round",
        &rounds,
        &[
            Ratio {
                name: "stm/pthread",
                num: "hytm-stm",
                den: "pthread",
            },
            Ratio {
                name: "hot/pthread",
                num: "hytm-stm-hot",
                den: "pthread",
            },
            Ratio {
                name: "stm/std",
                num: "hytm-stm",
                den: "std",
            },
            Ratio {
                name: "stm/pl",
                num: "hytm-stm",
                den: "parking_lot",
            },
        ],
    );
    println!(
        "\nper-site statistics of this run:\n{}",
        hytm::stats::snapshot()
    );
}
