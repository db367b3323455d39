//! Loom models of both commit protocols (NOrec, and the striped one of
//! software-only domains): every interleaving (up to the
//! preemption bound) of tiny two-thread programs over one or two words.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p hytm-fallback --release --test loom
//! ```
//!
//! Preemptions default to 3 (`LOOM_MAX_PREEMPTIONS` overrides it); the whole
//! file runs in well under a second at 3, about half a second at 4.
#![cfg(loom)]

use hytm_fallback::{AtomicU64, Globals, Restart, SerialTx, SoftTx};
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering::Relaxed;

/// Each model runs on both protocols, in both arrangements of its two
/// threads (see `pair`): `name::norec`, `name::striped`, and the same
/// `_swapped`.
macro_rules! on_both_protocols {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn norec() {
                super::$name(false, false);
            }
            #[test]
            fn striped() {
                super::$name(true, false);
            }
            #[test]
            fn norec_swapped() {
                super::$name(false, true);
            }
            #[test]
            fn striped_swapped() {
                super::$name(true, true);
            }
        }
    )*};
}

on_both_protocols!(
    transfer_and_reader_see_only_consistent_states,
    two_writers_lose_no_update,
    serial_and_software_writers_serialize,
    rolled_back_serial_tx_is_never_seen
);

struct Env {
    g: Globals,
    a: AtomicU64,
    b: AtomicU64,
}

impl Env {
    /// A domain with two words; `striped`: software-only (the striped
    /// protocol), else hybrid (NOrec).
    fn new(striped: bool, a: u64, b: u64) -> Arc<Self> {
        let g = Globals::new();
        if striped {
            drop(SoftTx::begin_without_hardware(&g));
        }
        Arc::new(Env {
            g,
            a: AtomicU64::new(a),
            b: AtomicU64::new(b),
        })
    }

    /// Exactly `n` writing commits so far (each moves `seq` by 2).
    fn check_commits(&self, n: u64) {
        assert_eq!(self.g.seq().load(Relaxed), 2 * n);
    }

    /// Quiescent state: nobody in flight, `seq` even.
    fn check_quiescent(&self) {
        assert_eq!(self.g.sw_active().load(Relaxed), 0);
        assert_eq!(self.g.seq().load(Relaxed) % 2, 0);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    b.check(move || {
        r.fetch_add(1, SeqCst);
        f()
    });
    let runs = runs.load(SeqCst);
    eprintln!("explored {runs} interleavings");
    assert!(runs > 1, "the model explored nothing");
}

/// Runs `body` as a software transaction until it commits.
fn soft<'g, 'env, R>(
    g: &'g Globals,
    mut body: impl FnMut(&mut SoftTx<'g, 'env>) -> Result<R, Restart>,
) -> R {
    let mut tx = SoftTx::begin_for(g, !g.is_striped());
    loop {
        match body(&mut tx).and_then(|r| tx.commit().map(|()| r)) {
            Ok(r) => return r,
            Err(Restart) => tx.restart(),
        }
    }
}

/// Runs `x` and `y` on two threads: `x` spawned and `y` on this one, or
/// (`swap`) the other way round. Loom's partial-order reduction remembers
/// only the last access to each atomic, so a thread that loads a record
/// and then CASes it hides the other thread's earlier loads of it; a model
/// run in both arrangements explores both orders.
fn pair(swap: bool, x: impl FnOnce() + Send + 'static, y: impl FnOnce() + Send + 'static) {
    if swap {
        let t = thread::spawn(y);
        x();
        t.join().unwrap();
    } else {
        let t = thread::spawn(x);
        y();
        t.join().unwrap();
    }
}

fn transfer_and_reader_see_only_consistent_states(striped: bool, swap: bool) {
    model(move || {
        let env = Env::new(striped, 1, 1);
        let (e, r) = (env.clone(), env.clone());
        let writer = move || {
            soft(&e.g, |tx| {
                let a = tx.read(&e.a)?;
                let b = tx.read(&e.b)?;
                tx.write(&e.a, a - 1);
                tx.write(&e.b, b + 1);
                Ok(())
            })
        };
        let reader = move || {
            let (a, b) = soft(&r.g, |tx| {
                let a = tx.read(&r.a)?;
                let b = tx.read(&r.b)?;
                // Opacity: checked before the transaction can be rejected.
                assert_eq!(a + b, 2, "reader saw a torn transfer");
                Ok((a, b))
            });
            assert!((a, b) == (1, 1) || (a, b) == (0, 2));
        };
        pair(swap, writer, reader);
        assert_eq!((env.a.load(Relaxed), env.b.load(Relaxed)), (0, 2));
        env.check_commits(1);
        env.check_quiescent();
    });
}

fn two_writers_lose_no_update(striped: bool, swap: bool) {
    model(move || {
        let env = Env::new(striped, 0, 0);
        let incr = |env: Arc<Env>| {
            move || {
                soft(&env.g, |tx| {
                    let v = tx.read(&env.a)?;
                    tx.write(&env.a, v + 1);
                    Ok(())
                })
            }
        };
        pair(swap, incr(env.clone()), incr(env.clone()));
        assert_eq!(env.a.load(Relaxed), 2);
        env.check_commits(2);
        env.check_quiescent();
    });
}

fn serial_and_software_writers_serialize(striped: bool, swap: bool) {
    model(move || {
        let env = Env::new(striped, 0, 0);
        let (e, f) = (env.clone(), env.clone());
        let serial = move || {
            let mut tx = SerialTx::begin_for(&e.g, !e.g.is_striped());
            let a = tx.read(&e.a);
            tx.write(&e.a, a + 1);
            let b = tx.read(&e.b);
            tx.write(&e.b, b + 1);
            tx.commit();
        };
        let software = move || {
            soft(&f.g, |tx| {
                let a = tx.read(&f.a)?;
                let b = tx.read(&f.b)?;
                assert_eq!(a, b, "software tx saw a half-done serial tx");
                tx.write(&f.a, a + 1);
                tx.write(&f.b, b + 1);
                Ok(())
            })
        };
        pair(swap, serial, software);
        assert_eq!((env.a.load(Relaxed), env.b.load(Relaxed)), (2, 2));
        env.check_quiescent();
    });
}

fn rolled_back_serial_tx_is_never_seen(striped: bool, swap: bool) {
    model(move || {
        let env = Env::new(striped, 5, 5);
        let (e, r) = (env.clone(), env.clone());
        let serial = move || {
            let mut tx = SerialTx::begin_for(&e.g, !e.g.is_striped());
            tx.write(&e.a, 6);
            tx.write(&e.b, 7);
            drop(tx); // not committed: undone before seq is released
        };
        let reader = move || {
            let (a, b) = soft(&r.g, |tx| Ok((tx.read(&r.a)?, tx.read(&r.b)?)));
            assert_eq!((a, b), (5, 5), "reader saw an undone write");
        };
        pair(swap, serial, reader);
        assert_eq!((env.a.load(Relaxed), env.b.load(Relaxed)), (5, 5));
        env.check_quiescent();
    });
}

/// Words of a striped domain grouped by record (loom's domains have 4
/// records over 8-byte stripes): three words `x`, `y`, `z` of one record
/// and a word `w` of another.
struct SharedRecord {
    g: Globals,
    words: Vec<AtomicU64>,
    x: usize,
    y: usize,
    z: usize,
    w: usize,
}

impl SharedRecord {
    fn new() -> Arc<Self> {
        let g = Globals::new();
        drop(SoftTx::begin_without_hardware(&g));
        let words: Vec<AtomicU64> = (0..32).map(|_| AtomicU64::new(0)).collect();
        // The record index as `striped::record` computes it (4 records).
        let record = |i: usize| ((&words[i] as *const AtomicU64 as usize) >> 3) & 3;
        let same: Vec<usize> = (0..32).filter(|&i| record(i) == record(0)).collect();
        let w = (0..32).find(|&i| record(i) != record(0)).unwrap();
        assert!(same.len() >= 3);
        Arc::new(SharedRecord {
            g,
            words,
            x: same[0],
            y: same[1],
            z: same[2],
            w,
        })
    }

    /// One thread commits `w = x = 10`. The other commits a transaction
    /// writing `mine` (words of `x`'s record, but not `x`), then, from the
    /// snapshot it committed at, reads `x` and `w`: it must see both
    /// written or neither.
    fn check(mine: &'static [fn(&SharedRecord) -> usize]) {
        model(move || {
            let env = SharedRecord::new();
            let other = env.clone();
            let t = thread::spawn(move || {
                soft(&other.g, |tx| {
                    tx.write(&other.words[other.w], 10);
                    tx.write(&other.words[other.x], 10);
                    Ok(())
                });
            });
            let mut tx = SoftTx::begin_without_hardware(&env.g);
            loop {
                for word in mine {
                    tx.write(&env.words[word(&env)], 5);
                }
                if tx.commit().is_ok() {
                    break;
                }
                tx.restart();
            }
            loop {
                let read = (|| Ok((tx.read(&env.words[env.x])?, tx.read(&env.words[env.w])?)))();
                match read.and_then(|v| tx.commit().map(|()| v)) {
                    Ok((x, w)) => {
                        assert_eq!(x, w, "a reader saw x = {x} and w = {w}: half of a commit");
                        break;
                    }
                    Err(Restart) => tx.restart(),
                }
            }
            drop(tx);
            t.join().unwrap();
        });
    }
}

/// A commit whose two words share a record releases the record once: a
/// second release would overwrite the lock of the next committer, who may
/// have locked the record in between and still be writing back.
#[test]
fn a_record_shared_by_two_written_words_is_released_once() {
    SharedRecord::check(&[|e| e.y, |e| e.z]);
}

/// A committer that locks a record another committer has just released
/// acquires that release: it overwrites the record, and a reader that
/// acquires its own release must then see the other committer's words.
#[test]
fn a_record_taken_over_from_another_commit_passes_its_write_back_on() {
    SharedRecord::check(&[|e| e.y]);
}
