//! Hybrid TM throughput, side by side with the peers, in one run.
//!
//! `cargo bench --bench tm` (add `-- --quick` for a short run). Workloads:
//! bank transfers over 1024 accounts, and a transactional hash set (linear
//! probing with backward-shift deletion, 8192 slots, keys 1..=2048, 80%
//! lookups, 10% inserts, 10% removals). Peers: hytm (auto), hytm forced to
//! the STM path, hytm with the single-lock fallback, the `stm` crate, and a
//! parking_lot::Mutex around the same structure; at 2 threads also the mixes
//! with one thread forced to software. Each round measures every peer once;
//! the figures are medians over the rounds, so every peer sees the same drift
//! of the machine, and each round starts at another peer.

#[path = "harness/mod.rs"]
mod harness;

use harness::{measure, print_table, Figure, Ratio, Timing, XorShift};
use hytm::{FallbackKind, Policy, Site, TCell};

const ACCOUNTS: usize = 1024;
const SLOTS: usize = 8192;
const KEYS: u64 = 2048;

static AUTO: Site = Site::new("bench auto");
static STM_PATH: Site = Site::with_policy("bench stm", Policy::DEFAULT.hardware(false));
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
#[inline]
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
#[inline]
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
    fn get(&mut self, i: usize) -> Result<u64, hytm::Restart> {
        self.0.read(&self.1[i])
    }
    fn set(&mut self, i: usize, v: u64) -> Result<(), hytm::Restart> {
        self.0.write(&self.1[i], v)
    }
}

struct StmSlots<'a>(&'a mut stm::Transaction, &'a [stm::TVar<u64>]);
impl Slots for StmSlots<'_> {
    type Err = stm::StmError;
    fn get(&mut self, i: usize) -> Result<u64, stm::StmError> {
        self.1[i].read(self.0)
    }
    fn set(&mut self, i: usize, v: u64) -> Result<(), stm::StmError> {
        self.1[i].write(self.0, v)
    }
}

struct PlainSlots<'a>(&'a mut [u64]);
impl Slots for PlainSlots<'_> {
    type Err = std::convert::Infallible;
    fn get(&mut self, i: usize) -> Result<u64, Self::Err> {
        Ok(self.0[i])
    }
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

/// hytm bank and set, with the site each thread uses.
fn hytm_figures(
    timing: Timing,
    peer: &str,
    sites: [&'static Site; 2],
    threads: usize,
) -> Vec<Figure> {
    let bank: Vec<TCell<i64>> = (0..ACCOUNTS).map(|_| TCell::new(1000)).collect();
    let bank_mops = measure(timing, threads, |t| {
        let (bank, site) = (&bank, sites[t % 2]);
        let mut rng = XorShift::new(t);
        move || {
            let (a, b) = accounts(rng.next());
            site.atomic(|tx| {
                let x = tx.read(&bank[a])?;
                tx.write(&bank[a], x - 1)?;
                let y = tx.read(&bank[b])?;
                tx.write(&bank[b], y + 1)
            });
        }
    });
    assert_eq!(
        bank.iter().map(TCell::load).sum::<i64>(),
        1000 * ACCOUNTS as i64
    );
    let set: Vec<TCell<u64>> = initial_set().into_iter().map(TCell::new).collect();
    let set_mops = measure(timing, threads, |t| {
        let (set, site) = (&set, sites[t % 2]);
        let mut rng = XorShift::new(t);
        move || {
            let r = rng.next();
            std::hint::black_box(site.atomic(|tx| set_op(&mut HytmSlots(tx, set), r)));
        }
    });
    vec![
        Figure {
            workload: "bank 1k accounts".into(),
            threads,
            peer: peer.into(),
            mops: Some(bank_mops),
        },
        Figure {
            workload: "hash set 80% get".into(),
            threads,
            peer: peer.into(),
            mops: Some(set_mops),
        },
    ]
}

fn stm_crate_figures(timing: Timing, threads: usize) -> Vec<Figure> {
    let bank: Vec<stm::TVar<i64>> = (0..ACCOUNTS).map(|_| stm::TVar::new(1000)).collect();
    let bank_mops = measure(timing, threads, |t| {
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
    let set: Vec<stm::TVar<u64>> = initial_set().into_iter().map(stm::TVar::new).collect();
    let set_mops = measure(timing, threads, |t| {
        let set = &set;
        let mut rng = XorShift::new(t);
        move || {
            let r = rng.next();
            std::hint::black_box(stm::atomically(|tx| set_op(&mut StmSlots(tx, set), r)));
        }
    });
    vec![
        Figure {
            workload: "bank 1k accounts".into(),
            threads,
            peer: "stm-crate".into(),
            mops: Some(bank_mops),
        },
        Figure {
            workload: "hash set 80% get".into(),
            threads,
            peer: "stm-crate".into(),
            mops: Some(set_mops),
        },
    ]
}

fn mutex_figures(timing: Timing, threads: usize) -> Vec<Figure> {
    let bank = parking_lot::Mutex::new(vec![1000i64; ACCOUNTS]);
    let bank_mops = measure(timing, threads, |t| {
        let bank = &bank;
        let mut rng = XorShift::new(t);
        move || {
            let (a, b) = accounts(rng.next());
            let mut g = bank.lock();
            g[a] -= 1;
            g[b] += 1;
        }
    });
    let set = parking_lot::Mutex::new(initial_set());
    let set_mops = measure(timing, threads, |t| {
        let set = &set;
        let mut rng = XorShift::new(t);
        move || {
            let r = rng.next();
            let Ok(found) = set_op(&mut PlainSlots(&mut set.lock()), r);
            std::hint::black_box(found);
        }
    });
    vec![
        Figure {
            workload: "bank 1k accounts".into(),
            threads,
            peer: "parking_lot".into(),
            mops: Some(bank_mops),
        },
        Figure {
            workload: "hash set 80% get".into(),
            threads,
            peer: "parking_lot".into(),
            mops: Some(set_mops),
        },
    ]
}

/// Every peer once, starting at peer `round`: one round of
/// [`harness::interleaved`].
fn all_figures(timing: Timing, round: usize) -> Vec<Figure> {
    type Peer<'a> = Box<dyn Fn() -> Vec<Figure> + 'a>;
    let mut figures = Vec::new();
    for threads in [1, 2] {
        let mut peers: Vec<Peer> = vec![
            Box::new(move || hytm_figures(timing, "hytm", [&AUTO, &AUTO], threads)),
            Box::new(move || hytm_figures(timing, "hytm-stm", [&STM_PATH, &STM_PATH], threads)),
            Box::new(move || {
                hytm_figures(
                    timing,
                    "hytm-lock",
                    [&LOCK_FALLBACK, &LOCK_FALLBACK],
                    threads,
                )
            }),
            Box::new(move || stm_crate_figures(timing, threads)),
            Box::new(move || mutex_figures(timing, threads)),
        ];
        if threads == 2 {
            peers.push(Box::new(move || {
                hytm_figures(timing, "mix-stm", [&AUTO, &STM_PATH], threads)
            }));
            peers.push(Box::new(move || {
                hytm_figures(timing, "mix-lock", [&LOCK_FALLBACK, &LOCK_ONLY], threads)
            }));
        }
        for peer in harness::rotated(peers, round) {
            figures.extend(peer());
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
    let figures = harness::interleaved(timing, all_figures);
    print_table(
        "Hybrid TM",
        &figures,
        &[
            "hytm",
            "hytm-stm",
            "hytm-lock",
            "stm-crate",
            "parking_lot",
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
    println!(
        "\nper-site statistics of this run:\n{}",
        hytm::stats::snapshot()
    );
}
