//! The `TVar` and `TQueue` cases, shared by `tests/tvar.rs` and
//! `tests/tqueue.rs` (as configured: auto mode,
//! `HYTM_MODE=fallback`, the HTM model) and `tests/tvar_inject.rs` (under
//! injected conflicts and rollbacks). Every case counts the values it
//! creates and drops (its own counters: the cases run in parallel) and
//! ends with created == dropped once the epoch's deferred destructors ran:
//! no leak, and (each drop checks it was not dropped before) no double free.

#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use hytm::{FallbackKind, Policy, Restart, Site, TQueue, TVar, TxError};

pub static DEFAULT: Site = Site::new("tvar default");
pub static STM: Site = Site::with_policy("tvar stm", Policy::DEFAULT.hardware(false));
pub static LOCK: Site = Site::with_policy(
    "tvar lock",
    Policy::DEFAULT.fallback(FallbackKind::GlobalLock),
);

/// The three sites: whatever the mode picks (hardware where RTM or the
/// model is there), NOrec STM, and the global-lock (serial) fallback.
pub fn sites() -> [(&'static str, &'static Site); 3] {
    [("default", &DEFAULT), ("stm", &STM), ("lock", &LOCK)]
}

/// Values created and dropped, per case.
pub struct Counters {
    pub created: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Counters {
    pub const fn new() -> Counters {
        Counters {
            created: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    pub fn live(&self) -> isize {
        self.created.load(Ordering::SeqCst) as isize - self.dropped.load(Ordering::SeqCst) as isize
    }

    /// Waits (bounded) for the deferred destructors, then asserts that
    /// every value created was dropped.
    pub fn assert_all_dropped(&self, case: &str) {
        for _ in 0..20_000 {
            if self.live() == 0 {
                return;
            }
            // Moves this thread's deferred destructors to the global queue
            // and runs what the epoch allows; other threads' bags went
            // there when they exited.
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
        panic!(
            "{case}: {} values created, {} dropped",
            self.created.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst)
        );
    }
}

/// A value that counts its creations (clones included) and drops, and
/// refuses to be dropped twice.
pub struct Counted {
    pub v: Vec<u32>,
    pub name: String,
    c: &'static Counters,
    alive: AtomicBool,
}

impl Counted {
    pub fn new(c: &'static Counters, v: Vec<u32>) -> Counted {
        c.created.fetch_add(1, Ordering::SeqCst);
        Counted {
            name: format!("{v:?}"),
            v,
            c,
            alive: AtomicBool::new(true),
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Counted {
        assert!(
            self.alive.load(Ordering::SeqCst),
            "clone of a dropped value"
        );
        Counted::new(self.c, self.v.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        assert!(self.alive.swap(false, Ordering::SeqCst), "double drop");
        assert_eq!(self.name, format!("{:?}", self.v), "a corrupted value");
        self.c.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn strings_and_vecs_on_every_path() {
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let s = TVar::new(String::from("a"));
        let v = TVar::new(vec![1u32]);
        let c = TVar::new(Counted::new(&C, vec![0]));
        let mut hardware = false;
        for i in 0..50u32 {
            site.atomic(|tx| {
                hardware |= tx.is_hardware();
                let mut t = tx.get(&s)?;
                t.push('b');
                tx.set(&s, t)?;
                let mut w = tx.get(&v)?;
                w.push(i);
                tx.set(&v, w)?;
                let x = tx.get(&c)?;
                tx.set(&c, Counted::new(&C, vec![x.v[0] + 1]))
            });
        }
        assert_eq!(s.load().len(), 51, "{name}");
        assert_eq!(v.load().len(), 51, "{name}");
        assert_eq!(v.load()[50], 49, "{name}");
        assert_eq!(c.load().v, [50], "{name}");
        if name == "default" && hytm::mode() == hytm::Mode::Hardware {
            // RTM or the HTM model: the hardware path ran (at least once).
            assert!(hardware, "no hardware run");
        }
        let read = site.atomic(|tx| Ok((tx.get(&s)?, tx.get(&c)?.v[0])));
        assert_eq!((read.0.len(), read.1), (51, 50), "{name}");
    }
    C.assert_all_dropped("strings_and_vecs_on_every_path");
}

pub fn readers_see_the_invariant_under_two_writers() {
    static C: Counters = Counters::new();
    const ITERS: u32 = 1_500;
    for (name, site) in sites() {
        // Invariant: `a` holds [k; 4] and `b` holds [k, k], the same k.
        let a = Arc::new(TVar::new(Counted::new(&C, vec![0; 4])));
        let b = Arc::new(TVar::new(Counted::new(&C, vec![0; 2])));
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (a, b, barrier) = (Arc::clone(&a), Arc::clone(&b), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..ITERS {
                        if (i + t) % 3 == 0 {
                            site.atomic(|tx| {
                                let k = tx.get(&a)?.v[0] + 1;
                                tx.set(&a, Counted::new(&C, vec![k; 4]))?;
                                tx.set(&b, Counted::new(&C, vec![k; 2]))
                            });
                        } else {
                            let (x, y) = site.atomic(|tx| Ok((tx.get(&a)?, tx.get(&b)?)));
                            assert!(x.v.iter().all(|&k| k == x.v[0]), "{name}: {:?}", x.v);
                            assert_eq!((x.v.len(), y.v.len()), (4, 2), "{name}");
                            assert_eq!(x.v[0], y.v[0], "{name}: a torn read");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let writes: u32 = (0..2u32)
            .map(|t| (0..ITERS).filter(|i| (i + t) % 3 == 0).count() as u32)
            .sum();
        assert_eq!(a.load().v, vec![writes; 4], "{name}");
        assert_eq!(b.load().v, vec![writes; 2], "{name}");
    }
    C.assert_all_dropped("readers_see_the_invariant_under_two_writers");
}

pub fn a_cancel_frees_what_it_set() {
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let a = TVar::new(Counted::new(&C, vec![1]));
        for _ in 0..20 {
            let r: Result<(), &str> = site.try_atomic(|tx| {
                tx.set(&a, Counted::new(&C, vec![2]))?;
                tx.set(&a, Counted::new(&C, vec![3]))?;
                Err(TxError::Cancel("no"))
            });
            assert_eq!(r, Err("no"), "{name}");
        }
        assert_eq!(a.load().v, [1], "{name}");
    }
    C.assert_all_dropped("a_cancel_frees_what_it_set");
}

pub fn a_nested_cancel_frees_only_what_it_set() {
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let a = TVar::new(Counted::new(&C, vec![1]));
        let b = TVar::new(Counted::new(&C, vec![10]));
        for _ in 0..20 {
            site.atomic(|tx| {
                tx.set(&a, Counted::new(&C, vec![2]))?;
                let inner: Result<(), &str> = hytm::try_atomic(|tx| {
                    tx.set(&a, Counted::new(&C, vec![3]))?;
                    tx.set(&a, Counted::new(&C, vec![4]))?;
                    tx.set(&b, Counted::new(&C, vec![11]))?;
                    Err(TxError::Cancel("inner"))
                });
                assert_eq!(inner, Err("inner"));
                // Only the inner writes were undone.
                assert_eq!(tx.get(&a)?.v, [2]);
                assert_eq!(tx.get(&b)?.v, [10]);
                Ok(())
            });
            // Each time: `a` back to [1] for the next round, in a nested
            // transaction that commits with its outer one.
            site.atomic(|_| {
                hytm::atomic(|tx| tx.set(&a, Counted::new(&C, vec![1])));
                Ok::<(), Restart>(())
            });
        }
        assert_eq!(
            (a.load().v.clone(), b.load().v.clone()),
            (vec![1], vec![10]),
            "{name}"
        );
        // `or_else`: the first alternative's values are freed when it
        // retries.
        let took = site.atomic(|tx| {
            tx.or_else(
                |tx| {
                    tx.set(&b, Counted::new(&C, vec![12]))?;
                    tx.retry()
                },
                |tx| {
                    tx.set(&a, Counted::new(&C, vec![5]))?;
                    Ok(5)
                },
            )
        });
        assert_eq!(
            (took, a.load().v.clone(), b.load().v.clone()),
            (5, vec![5], vec![10]),
            "{name}"
        );
    }
    C.assert_all_dropped("a_nested_cancel_frees_only_what_it_set");
}

pub fn a_value_set_twice_is_freed_at_once() {
    static C: Counters = Counters::new();
    let a = TVar::new(Counted::new(&C, vec![0]));
    STM.atomic(|tx| {
        tx.set(&a, Counted::new(&C, vec![1]))?;
        let live = C.live();
        tx.set(&a, Counted::new(&C, vec![2]))?;
        // The [1] went at once (never published): one created, one dropped.
        assert_eq!(C.live(), live);
        Ok(())
    });
    assert_eq!(a.load().v, [2]);
    drop(a);
    C.assert_all_dropped("a_value_set_twice_is_freed_at_once");
}

pub fn a_panic_frees_what_it_set() {
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let a = TVar::new(Counted::new(&C, vec![1]));
        let r = catch_unwind(AssertUnwindSafe(|| {
            site.atomic(|tx| {
                tx.set(&a, Counted::new(&C, vec![2]))?;
                hytm::atomic(|tx| tx.set(&a, Counted::new(&C, vec![3])));
                if tx.get(&a)?.v[0] == 3 {
                    panic!("in the body");
                }
                Ok(())
            })
        }));
        assert!(r.is_err(), "{name}");
        assert_eq!(a.load().v, [1], "{name}");
    }
    C.assert_all_dropped("a_panic_frees_what_it_set");
}

pub fn restarts_and_retries_free_what_they_set() {
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let a = TVar::new(Counted::new(&C, vec![1]));
        // A body that asks to restart twice before it commits.
        let mut runs = 0;
        site.atomic(|tx| {
            runs += 1;
            tx.set(&a, Counted::new(&C, vec![runs]))?;
            if runs < 3 {
                return Err(Restart);
            }
            Ok(())
        });
        assert!(runs >= 3, "{name}");
        assert_eq!(a.load().v, [runs], "{name}");
        // `retry`: the consumer's scratch value is freed each time it waits.
        let slot = Arc::new(TVar::new(None::<Counted>));
        let scratch = TVar::new(Counted::new(&C, vec![0]));
        let producer = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                hytm::atomic(|tx| tx.set(&slot, Some(Counted::new(&C, vec![42]))));
            })
        };
        let got = site.atomic(|tx| {
            tx.set(&scratch, Counted::new(&C, vec![7]))?;
            match tx.get(&slot)? {
                None => tx.retry(),
                Some(v) => {
                    tx.set(&slot, None)?;
                    Ok(v.v[0])
                }
            }
        });
        producer.join().unwrap();
        assert_eq!((got, scratch.load().v.clone()), (42, vec![7]), "{name}");
    }
    C.assert_all_dropped("restarts_and_retries_free_what_they_set");
}

pub fn a_var_dropped_inside_a_transaction_leaves_it() {
    static C: Counters = Counters::new();
    // Software and serial paths (a hardware-path variable must outlive the
    // transaction that wrote it, as a `TCell`).
    for (name, site) in [("stm", &STM), ("lock", &LOCK)] {
        let keep = TVar::new(Counted::new(&C, vec![0]));
        site.atomic(|tx| {
            let local = TVar::new(Counted::new(&C, vec![1]));
            hytm::atomic(|tx| tx.set(&local, Counted::new(&C, vec![2])));
            drop(local);
            let unset = TVar::new(Counted::new(&C, vec![3]));
            hytm::atomic(|tx| tx.get(&unset).map(drop));
            drop(unset);
            tx.set(&keep, Counted::new(&C, vec![4]))
        });
        assert_eq!(keep.load().v, [4], "{name}");
    }
    C.assert_all_dropped("a_var_dropped_inside_a_transaction_leaves_it");
}

pub fn owners_api() {
    static C: Counters = Counters::new();
    let mut a = TVar::new(Counted::new(&C, vec![1]));
    a.set_mut(Counted::new(&C, vec![2]));
    assert_eq!(a.load().v, [2]);
    assert_eq!(a.into_inner().v.clone(), [2]);
    let d: TVar<String> = TVar::default();
    assert_eq!(format!("{d:?}"), "TVar(\"\")");
    let f = TVar::from(vec![3u32]);
    assert_eq!(f.load(), [3]);
    C.assert_all_dropped("owners_api");
}

pub fn a_consumer_pops_what_a_producer_pushed_in_order() {
    static C: Counters = Counters::new();
    const N: u32 = 600;
    for (name, site) in sites() {
        let q = Arc::new(TQueue::new());
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..N {
                    // Sometimes two at once.
                    if i % 7 == 0 && i + 1 < N {
                        continue;
                    }
                    site.atomic(|tx| {
                        if i % 7 == 1 {
                            q.push(tx, Counted::new(&C, vec![i - 1]))?;
                        }
                        q.push(tx, Counted::new(&C, vec![i]))
                    });
                }
            })
        };
        for i in 0..N {
            let v = site.atomic(|tx| q.pop(tx));
            assert_eq!(v.v, [i], "{name}");
        }
        producer.join().unwrap();
        assert!(site.atomic(|tx| q.is_empty(tx)), "{name}");
        assert!(site.atomic(|tx| q.try_pop(tx)).is_none(), "{name}");
    }
    C.assert_all_dropped("a_consumer_pops_what_a_producer_pushed_in_order");
}

pub fn a_move_between_queues_commits_or_cancels_whole() {
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let (a, b) = (TQueue::new(), TQueue::new());
        site.atomic(|tx| {
            for i in 0..5 {
                a.push(tx, Counted::new(&C, vec![i]))?;
            }
            Ok(())
        });
        // Moves two, then cancels: nothing moved.
        let r: Result<(), &str> = site.try_atomic(|tx| {
            for _ in 0..2 {
                let v = a.pop(tx)?;
                b.push(tx, v)?;
            }
            Err(TxError::Cancel("changed my mind"))
        });
        assert_eq!(r, Err("changed my mind"), "{name}");
        // Moves three for real.
        site.atomic(|tx| {
            for _ in 0..3 {
                let v = a.pop(tx)?;
                b.push(tx, v)?;
            }
            Ok(())
        });
        let drained = |q: &TQueue<Counted>| {
            let mut out = Vec::new();
            while let Some(v) = site.atomic(|tx| q.try_pop(tx)) {
                out.push(v.v[0]);
            }
            out
        };
        assert_eq!(
            (drained(&a), drained(&b)),
            (vec![3, 4], vec![0, 1, 2]),
            "{name}"
        );
        // A queue dropped with values in it frees them.
        site.atomic(|tx| {
            for i in 0..3 {
                a.push(tx, Counted::new(&C, vec![i]))?;
            }
            Ok(())
        });
    }
    C.assert_all_dropped("a_move_between_queues_commits_or_cancels_whole");
}
