//! Tests of the serial-irrevocable mode (`SerialTx`) and of how it excludes
//! the software path.
#![cfg(not(loom))] // loom builds run tests/loom.rs only

mod common;

use common::iters;
use hytm_fallback::AtomicU64;
use hytm_fallback::{Globals, SerialTx, SoftTx};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

fn seq(g: &Globals) -> u64 {
    g.seq().load(Relaxed)
}

fn active(g: &Globals) -> u64 {
    g.sw_active().load(Relaxed)
}

on_both_protocols!(
    serial_tx_excludes_software_committers,
    serial_txs_exclude_each_other,
    software_readers_never_see_a_half_done_serial_tx,
);

#[test]
fn commit_publishes_direct_writes_and_releases() {
    let g = Globals::new();
    let x = AtomicU64::new(1);
    let mut t = SerialTx::begin(&g);
    assert_eq!((seq(&g), active(&g)), (1, 1));
    assert_eq!(t.read(&x), 1);
    t.write(&x, 2);
    assert_eq!(x.load(Relaxed), 2, "serial writes are direct");
    assert_eq!(t.read(&x), 2);
    t.commit();
    assert_eq!((x.load(Relaxed), seq(&g), active(&g)), (2, 2, 0));
    // A read-only serial transaction still moves seq (odd + 1).
    let t = SerialTx::begin(&g);
    t.commit();
    assert_eq!(seq(&g), 4);
}

#[test]
fn dropped_serial_tx_is_undone() {
    let g = Globals::new();
    let x = AtomicU64::new(1);
    let y = AtomicU64::new(2);
    let mut t = SerialTx::begin(&g);
    t.write(&x, 10);
    t.write(&y, 20);
    t.write(&x, 11); // second write of x: the undo value stays 1
    drop(t);
    assert_eq!((x.load(Relaxed), y.load(Relaxed)), (1, 2));
    assert_eq!((seq(&g), active(&g)), (2, 0));
}

#[test]
fn panicking_serial_tx_leaves_no_writes() {
    let g = Globals::new();
    let words: Vec<AtomicU64> = (0..40).map(AtomicU64::new).collect();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut t = SerialTx::begin(&g);
        for (i, w) in words.iter().enumerate() {
            t.write(w, 1000 + i as u64);
        }
        for w in &words {
            t.write(w, 7);
        }
        panic!("serial body panics");
    }));
    assert!(r.is_err());
    for (i, w) in words.iter().enumerate() {
        assert_eq!(w.load(Relaxed), i as u64, "word {i} not restored");
    }
    assert_eq!(active(&g), 0);
    assert_eq!(seq(&g) % 2, 0);
    assert_eq!(
        seq(&g),
        2,
        "seq must move on, never return to its old value"
    );
    // The serial ticket was released: another serial transaction runs.
    let mut t = SerialTx::begin(&g);
    t.write(&words[0], 5);
    t.commit();
    assert_eq!(words[0].load(Relaxed), 5);
}

fn serial_tx_excludes_software_committers(g: Globals) {
    let x = AtomicU64::new(0);
    let ready = AtomicBool::new(false);
    let go = AtomicBool::new(false);
    let committed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut t = SoftTx::begin_for(&g, !g.is_striped());
            let v = t.read(&x).unwrap();
            t.write(&x, v + 1);
            ready.store(true, Relaxed);
            while !go.load(Relaxed) {
                std::thread::yield_now();
            }
            let mut conflicts = 0;
            loop {
                match t.commit() {
                    Ok(()) => break,
                    Err(_) => {
                        conflicts += 1;
                        t.restart();
                        let v = t.read(&x).unwrap();
                        t.write(&x, v + 1);
                    }
                }
            }
            committed.store(true, Relaxed);
            conflicts
        });
        while !ready.load(Relaxed) {
            std::thread::yield_now();
        }
        let mut ser = SerialTx::begin_for(&g, !g.is_striped());
        go.store(true, Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !committed.load(Relaxed),
            "software commit ran inside a serial tx"
        );
        assert_eq!(ser.read(&x), 0);
        ser.write(&x, 100);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!committed.load(Relaxed));
        assert_eq!(ser.read(&x), 100);
        ser.commit();
        let conflicts = h.join().unwrap();
        assert!(
            conflicts >= 1,
            "the software tx read x before the serial write"
        );
    });
    assert_eq!(x.load(Relaxed), 101);
    assert_eq!((seq(&g) % 2, active(&g)), (0, 0));
}

fn serial_txs_exclude_each_other(g: Globals) {
    let x = AtomicU64::new(0);
    let (threads, n) = (3, iters(300, 20));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..n {
                    let mut t = SerialTx::begin_for(&g, !g.is_striped());
                    let v = t.read(&x);
                    std::thread::yield_now(); // widen the window for a lost update
                    t.write(&x, v + 1);
                    t.commit();
                }
            });
        }
    });
    assert_eq!(x.load(Relaxed), (threads * n) as u64);
    assert_eq!(seq(&g), 2 * (threads * n) as u64);
    assert_eq!(active(&g), 0);
}

fn software_readers_never_see_a_half_done_serial_tx(g: Globals) {
    const TOTAL: u64 = 1000;
    let a = AtomicU64::new(TOTAL);
    let b = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let n = iters(500, 30);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                let mut t = SerialTx::begin_for(&g, !g.is_striped());
                let (va, vb) = (t.read(&a), t.read(&b));
                let amount = (i as u64 % 7).min(va);
                t.write(&a, va - amount);
                std::thread::yield_now(); // a half-done state is in memory now
                t.write(&b, vb + amount);
                if i % 2 == 0 {
                    t.commit();
                } // else: dropped, undone
            }
            done.store(true, Relaxed);
        });
        s.spawn(|| loop {
            let finished = done.load(Relaxed);
            let out = common::atomically(&g, u32::MAX, |tx| {
                let vb = tx.rd(&b)?;
                let va = tx.rd(&a)?;
                assert_eq!(va + vb, TOTAL, "opacity violated");
                Ok(())
            });
            assert!(!out.serial);
            if finished {
                break;
            }
        });
    });
    assert_eq!(a.load(Relaxed) + b.load(Relaxed), TOTAL);
}
