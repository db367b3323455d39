//! Single-thread and two-party tests of the NOrec engine (`SoftTx`).
#![cfg(not(loom))] // loom builds run tests/loom.rs only

mod common;

use hytm_fallback::AtomicU64;
use hytm_fallback::{Globals, Restart, SerialTx, SoftTx};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;

fn seq(g: &Globals) -> u64 {
    g.seq().load(Relaxed)
}

fn active(g: &Globals) -> u64 {
    g.sw_active().load(Relaxed)
}

/// What the hardware path does when it commits a write while
/// `sw_active != 0`: plain stores, then `seq += 2` (atomically, in hardware).
fn simulated_hw_commit(g: &Globals, w: &AtomicU64, v: u64) {
    assert_ne!(active(g), 0);
    assert_eq!(seq(g) % 2, 0, "hardware aborts while seq is odd");
    w.store(v, Relaxed);
    g.seq().fetch_add(2, Relaxed);
}

#[test]
fn read_your_writes() {
    let g = Globals::new();
    let x = AtomicU64::new(1);
    let y = AtomicU64::new(2);
    let mut tx = SoftTx::begin(&g);
    assert_eq!(tx.read(&x), Ok(1));
    tx.write(&x, 10);
    tx.write(&y, 20);
    assert_eq!(tx.read(&x), Ok(10));
    assert_eq!(tx.read(&y), Ok(20));
    tx.write(&x, 11);
    assert_eq!(tx.read(&x), Ok(11));
    // Memory is untouched before commit.
    assert_eq!((x.load(Relaxed), y.load(Relaxed)), (1, 2));
    tx.commit().unwrap();
    assert_eq!((x.load(Relaxed), y.load(Relaxed)), (11, 20));
}

#[test]
fn read_only_commit_is_free_and_leaves_seq() {
    let g = Globals::new();
    let x = AtomicU64::new(5);
    let y = AtomicU64::new(6);
    let mut ro = SoftTx::begin(&g);
    assert_eq!(ro.read(&x), Ok(5));
    assert!(ro.is_read_only());
    // Another transaction commits to an unrelated word in between.
    let mut w = SoftTx::begin(&g);
    w.write(&y, 7);
    w.commit().unwrap();
    drop(w);
    let before = seq(&g);
    assert_eq!(ro.commit(), Ok(()));
    assert_eq!(seq(&g), before, "read-only commit must not touch seq");
    assert_eq!(active(&g), 1);
    drop(ro);
    assert_eq!(active(&g), 0);
}

#[test]
fn writer_commit_moves_seq_by_two() {
    let g = Globals::new();
    let x = AtomicU64::new(0);
    for i in 1..=3 {
        let mut tx = SoftTx::begin(&g);
        tx.write(&x, i);
        tx.commit().unwrap();
        assert_eq!(seq(&g), 2 * i);
    }
}

#[test]
fn read_after_conflicting_commit_restarts() {
    // t1 reads a; a transfer a -> b commits; t1 must not get the new b
    // beside the old a.
    let g = Globals::new();
    let a = AtomicU64::new(100);
    let b = AtomicU64::new(0);
    let mut t1 = SoftTx::begin(&g);
    assert_eq!(t1.read(&a), Ok(100));
    let mut t2 = SoftTx::begin(&g);
    let (va, vb) = (t2.read(&a).unwrap(), t2.read(&b).unwrap());
    t2.write(&a, va - 30);
    t2.write(&b, vb + 30);
    t2.commit().unwrap();
    assert_eq!(t1.read(&b), Err(Restart));
    // Still refused on a second try: the read log stays inconsistent.
    assert_eq!(t1.read(&b), Err(Restart));
    t1.restart();
    let sum = t1.read(&a).unwrap() + t1.read(&b).unwrap();
    assert_eq!(sum, 100);
}

#[test]
fn unrelated_commit_revalidates_by_value() {
    let g = Globals::new();
    let x = AtomicU64::new(1);
    let y = AtomicU64::new(2);
    let z = AtomicU64::new(3);
    let mut t1 = SoftTx::begin(&g);
    assert_eq!(t1.read(&x), Ok(1));
    let mut t2 = SoftTx::begin(&g);
    t2.write(&z, 30);
    t2.commit().unwrap();
    assert_eq!(t1.read(&y), Ok(2));
    t1.write(&x, 10);
    assert_eq!(t1.commit(), Ok(()));
    assert_eq!((x.load(Relaxed), z.load(Relaxed)), (10, 30));
}

#[test]
fn commit_after_conflicting_commit_restarts_and_writes_nothing() {
    let g = Globals::new();
    let x = AtomicU64::new(0);
    let y = AtomicU64::new(0);
    let mut t1 = SoftTx::begin(&g);
    let v = t1.read(&x).unwrap();
    t1.write(&y, v + 1);
    let mut t2 = SoftTx::begin(&g);
    t2.write(&x, 5);
    t2.commit().unwrap();
    assert_eq!(t1.commit(), Err(Restart));
    assert_eq!(y.load(Relaxed), 0);
    assert_eq!(seq(&g) % 2, 0);
}

#[test]
fn hardware_commits_are_seen_through_seq() {
    let g = Globals::new();
    let a = AtomicU64::new(1);
    let b = AtomicU64::new(2);
    let mut t = SoftTx::begin(&g);
    assert_eq!(t.read(&a), Ok(1));
    simulated_hw_commit(&g, &a, 9);
    assert_eq!(t.read(&b), Err(Restart));
    t.restart();
    assert_eq!(t.read(&a), Ok(9));
    // A hardware commit that leaves our read set's values alone: fine.
    simulated_hw_commit(&g, &b, 3);
    assert_eq!(t.read(&b), Ok(3));
    t.write(&a, 0);
    assert_eq!(t.commit(), Ok(()));
}

#[test]
fn restart_clears_logs_and_stays_active() {
    let g = Globals::new();
    let x = AtomicU64::new(4);
    let mut t = SoftTx::begin(&g);
    t.write(&x, 40);
    assert!(!t.is_read_only());
    t.restart();
    assert!(t.is_read_only());
    assert_eq!(t.read(&x), Ok(4), "redo log must be gone");
    assert_eq!(t.restarts(), 1);
    assert_eq!(active(&g), 1);
    t.commit().unwrap();
    drop(t);
    assert_eq!((x.load(Relaxed), active(&g)), (4, 0));
}

#[test]
fn ok_commit_continues_as_a_fresh_transaction() {
    let g = Globals::new();
    let x = AtomicU64::new(0);
    let mut t = SoftTx::begin(&g);
    t.write(&x, 1);
    t.commit().unwrap();
    assert!(t.is_read_only());
    // Another commit after ours: our fresh snapshot revalidates (empty log).
    let mut u = SoftTx::begin(&g);
    u.write(&x, 2);
    u.commit().unwrap();
    drop(u);
    assert_eq!(t.read(&x), Ok(2));
    t.write(&x, 3);
    t.commit().unwrap();
    assert_eq!(x.load(Relaxed), 3);
}

#[test]
fn large_transaction_uses_the_indexed_write_set() {
    let n = common::iters(2000, 200);
    let g = Globals::new();
    let words: Vec<AtomicU64> = (0..n as u64).map(AtomicU64::new).collect();
    let mut t = SoftTx::begin(&g);
    for w in &words {
        let v = t.read(w).unwrap();
        t.write(w, v * 2);
    }
    for (i, w) in words.iter().enumerate().rev() {
        assert_eq!(t.read(w), Ok(2 * i as u64));
        let v = t.read(w).unwrap();
        t.write(w, v + 1);
    }
    t.commit().unwrap();
    for (i, w) in words.iter().enumerate() {
        assert_eq!(w.load(Relaxed), 2 * i as u64 + 1);
    }
}

#[test]
fn panicking_soft_tx_leaves_no_writes() {
    let g = Globals::new();
    let x = AtomicU64::new(1);
    let y = AtomicU64::new(2);
    let seq_before = seq(&g);
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut t = SoftTx::begin(&g);
        let v = t.read(&x).unwrap();
        t.write(&x, v + 100);
        t.write(&y, 0);
        panic!("body panics before commit");
    }));
    assert!(r.is_err());
    assert_eq!((x.load(Relaxed), y.load(Relaxed)), (1, 2));
    assert_eq!(active(&g), 0);
    assert_eq!(seq(&g), seq_before);
    assert_eq!(seq(&g) % 2, 0);
    // The domain still works.
    let mut t = SoftTx::begin(&g);
    t.write(&x, 3);
    t.commit().unwrap();
    assert_eq!(x.load(Relaxed), 3);
}

#[test]
fn begin_waits_for_a_serial_transaction() {
    use std::sync::atomic::AtomicBool;
    let g = Globals::new();
    let x = AtomicU64::new(0);
    let began = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut ser = SerialTx::begin(&g);
        ser.write(&x, 1);
        let h = s.spawn(|| {
            let mut t = SoftTx::begin(&g);
            began.store(true, Relaxed);
            t.read(&x).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!began.load(Relaxed), "SoftTx::begin ran while seq was odd");
        ser.write(&x, 2);
        ser.commit();
        assert_eq!(h.join().unwrap(), 2);
    });
    assert_eq!(active(&g), 0);
}

on_both_protocols!(a_transaction_committed_last_is_over);

/// `commit_last` leaves the logs for the drop to empty: the transaction
/// must neither read its write back (stale once another commit moved the
/// word on) nor commit it again, until a restart.
fn a_transaction_committed_last_is_over(g: Globals) {
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut t1 = common::begin(&g);
    t1.write(&x, 1);
    t1.commit_last().unwrap();
    assert_eq!(x.load(Relaxed), 1);
    assert_eq!(t1.commit(), Err(Restart), "committed its write again");
    let mut t2 = common::begin(&g);
    t2.write(&x, 2);
    t2.commit().unwrap();
    assert_eq!(t1.read(&x), Err(Restart), "read its stale write back");
    assert_eq!(t1.commit(), Err(Restart), "committed its write again");
    assert_eq!(x.load(Relaxed), 2);
    // A read-only one is over too.
    let mut t3 = common::begin(&g);
    assert_eq!(t3.read(&y), Ok(0));
    t3.commit_last().unwrap();
    assert_eq!(t3.commit(), Err(Restart));
    // A restart makes each a transaction again.
    t1.restart();
    assert_eq!(t1.read(&x), Ok(2));
    t1.write(&y, 3);
    t1.commit().unwrap();
    assert_eq!(y.load(Relaxed), 3);
    t3.restart();
    assert_eq!(t3.read(&y), Ok(3));
    t3.commit().unwrap();
}
