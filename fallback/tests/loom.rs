//! Loom models of the commit protocol: every interleaving (up to the
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

struct Env {
    g: Globals,
    a: AtomicU64,
    b: AtomicU64,
}

impl Env {
    fn new(a: u64, b: u64) -> Arc<Self> {
        Arc::new(Env {
            g: Globals::new(),
            a: AtomicU64::new(a),
            b: AtomicU64::new(b),
        })
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
    let mut tx = SoftTx::begin(g);
    loop {
        match body(&mut tx).and_then(|r| tx.commit().map(|()| r)) {
            Ok(r) => return r,
            Err(Restart) => tx.restart(),
        }
    }
}

#[test]
fn transfer_and_reader_see_only_consistent_states() {
    model(|| {
        let env = Env::new(1, 1);
        let e = env.clone();
        let t = thread::spawn(move || {
            soft(&e.g, |tx| {
                let a = tx.read(&e.a)?;
                let b = tx.read(&e.b)?;
                tx.write(&e.a, a - 1);
                tx.write(&e.b, b + 1);
                Ok(())
            })
        });
        let (a, b) = soft(&env.g, |tx| {
            let a = tx.read(&env.a)?;
            let b = tx.read(&env.b)?;
            // Opacity: checked before the transaction can be rejected.
            assert_eq!(a + b, 2, "reader saw a torn transfer");
            Ok((a, b))
        });
        assert!((a, b) == (1, 1) || (a, b) == (0, 2));
        t.join().unwrap();
        assert_eq!((env.a.load(Relaxed), env.b.load(Relaxed)), (0, 2));
        assert_eq!(env.g.seq().load(Relaxed), 2);
        env.check_quiescent();
    });
}

#[test]
fn two_writers_lose_no_update() {
    model(|| {
        let env = Env::new(0, 0);
        let e = env.clone();
        let incr = |env: &Env| {
            soft(&env.g, |tx| {
                let v = tx.read(&env.a)?;
                tx.write(&env.a, v + 1);
                Ok(())
            })
        };
        let t = thread::spawn(move || incr(&e));
        incr(&env);
        t.join().unwrap();
        assert_eq!(env.a.load(Relaxed), 2);
        assert_eq!(env.g.seq().load(Relaxed), 4);
        env.check_quiescent();
    });
}

#[test]
fn serial_and_software_writers_serialize() {
    model(|| {
        let env = Env::new(0, 0);
        let e = env.clone();
        let t = thread::spawn(move || {
            let mut tx = SerialTx::begin(&e.g);
            let a = tx.read(&e.a);
            tx.write(&e.a, a + 1);
            let b = tx.read(&e.b);
            tx.write(&e.b, b + 1);
            tx.commit();
        });
        soft(&env.g, |tx| {
            let a = tx.read(&env.a)?;
            let b = tx.read(&env.b)?;
            assert_eq!(a, b, "software tx saw a half-done serial tx");
            tx.write(&env.a, a + 1);
            tx.write(&env.b, b + 1);
            Ok(())
        });
        t.join().unwrap();
        assert_eq!((env.a.load(Relaxed), env.b.load(Relaxed)), (2, 2));
        env.check_quiescent();
    });
}

#[test]
fn rolled_back_serial_tx_is_never_seen() {
    model(|| {
        let env = Env::new(5, 5);
        let e = env.clone();
        let t = thread::spawn(move || {
            let mut tx = SerialTx::begin(&e.g);
            tx.write(&e.a, 6);
            tx.write(&e.b, 7);
            drop(tx); // not committed: undone before seq is released
        });
        let (a, b) = soft(&env.g, |tx| Ok((tx.read(&env.a)?, tx.read(&env.b)?)));
        assert_eq!((a, b), (5, 5), "reader saw an undone write");
        t.join().unwrap();
        assert_eq!((env.a.load(Relaxed), env.b.load(Relaxed)), (5, 5));
        env.check_quiescent();
    });
}
