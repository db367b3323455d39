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
//! shared machine.

#[path = "harness/mod.rs"]
mod harness;

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crossbeam_utils::CachePadded;
use harness::{measure, print_table, Figure, Ratio, Timing, XorShift};

/// The locks compared: each runs a closure with exclusive access.
trait Lock<T>: Sync {
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
struct PthreadMutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    data: UnsafeCell<T>,
}

// SAFETY: the data is only reached under the pthread mutex.
unsafe impl<T: Send> Sync for PthreadMutex<T> {}

impl<T> PthreadMutex<T> {
    fn new(data: T) -> Self {
        PthreadMutex {
            raw: Box::new(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)),
            data: UnsafeCell::new(data),
        }
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

/// Measures every workload for one lock type.
fn run_workloads<C, M>(
    timing: Timing,
    peer: &str,
    new_counters: impl Fn(Vec<CachePadded<u64>>) -> C,
    new_map: impl Fn(Map) -> M,
) -> Vec<Figure>
where
    C: Lock<Vec<CachePadded<u64>>>,
    M: Lock<Map>,
{
    let mut out = Vec::new();
    for threads in [1, 2] {
        for n in [1usize, 64, 4096] {
            let lock = new_counters(counters(n));
            let mops = measure(timing, threads, |t| {
                let lock = &lock;
                let mut rng = XorShift::new(t);
                move || {
                    let i = rng.next() as usize % n;
                    lock.with(|c| *c[i] += 1);
                }
            });
            out.push(Figure {
                workload: format!("counter N={n}"),
                threads,
                peer: peer.into(),
                mops: Some(mops),
            });
        }
        let lock = new_map(map());
        let mops = measure(timing, threads, |t| {
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
        out.push(Figure {
            workload: "hashmap 64k 80% get".into(),
            threads,
            peer: peer.into(),
            mops: Some(mops),
        });
    }
    out
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
    let figures = match group {
        "main" => {
            type Peer = Box<dyn Fn() -> Vec<Figure>>;
            let peers: Vec<Peer> = vec![
                Box::new(move || {
                    run_workloads(timing, "std", std::sync::Mutex::new, std::sync::Mutex::new)
                }),
                Box::new(move || {
                    run_workloads(
                        timing,
                        "parking_lot",
                        parking_lot::Mutex::new,
                        parking_lot::Mutex::new,
                    )
                }),
                Box::new(move || {
                    run_workloads(timing, "pthread", PthreadMutex::new, PthreadMutex::new)
                }),
                Box::new(move || {
                    run_workloads(
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
            run_workloads(
                timing,
                "pthread-elide",
                PthreadMutex::new,
                PthreadMutex::new,
            )
        }
        "fallback" => {
            assert_eq!(hytm::mode(), hytm::Mode::Fallback);
            run_workloads(
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
