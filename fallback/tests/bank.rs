//! Multi-thread stress tests: a bank with auditors that check opacity inside
//! their transactions, and a lost-update counter. Software, escalated and
//! serial transactions all run side by side.
#![cfg(not(loom))] // loom builds run tests/loom.rs only

mod common;

use common::{atomically, iters, serially, Rng};
use hytm_fallback::AtomicU64;
use hytm_fallback::Globals;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

on_both_protocols!(
    bank_total_holds_inside_every_transaction,
    counter_has_no_lost_updates,
    readers_and_writers_on_disjoint_words_do_not_block_each_other,
);

const ACCOUNTS: usize = 64;
const INITIAL: u64 = 1000;
const TOTAL: u64 = ACCOUNTS as u64 * INITIAL;

fn bank_total_holds_inside_every_transaction(g: Globals) {
    let accounts: Vec<AtomicU64> = (0..ACCOUNTS).map(|_| AtomicU64::new(INITIAL)).collect();
    let writers = if cfg!(miri) { 2 } else { 3 };
    let transfers = iters(100_000, 60);
    let writers_left = AtomicUsize::new(writers);
    let audits = AtomicUsize::new(0);
    let audit_restarts = AtomicU64::new(0);
    let escalations = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..writers {
            let (g, accounts, writers_left, escalations) =
                (&g, &accounts, &writers_left, &escalations);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9 + t as u64);
                for k in 0..transfers {
                    let i = rng.below(ACCOUNTS as u64) as usize;
                    let j = (i + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                    let amount = rng.below(50);
                    let body = common::body(|tx| {
                        let a = tx.rd(&accounts[i])?;
                        let b = tx.rd(&accounts[j])?;
                        // True in every consistent state (all balances >= 0).
                        assert!(a + b <= TOTAL, "transfer saw {a} + {b} > {TOTAL}");
                        let amount = amount.min(a);
                        tx.wr(&accounts[i], a - amount);
                        tx.wr(&accounts[j], b + amount);
                        Ok(())
                    });
                    if k % 64 == 63 {
                        serially(g, body);
                    } else if atomically(g, 8, body).serial {
                        escalations.fetch_add(1, Relaxed);
                    }
                }
                writers_left.fetch_sub(1, Relaxed);
            });
        }
        s.spawn(|| loop {
            let last = writers_left.load(Relaxed) == 0;
            let out = atomically(&g, 8, |tx| {
                let mut sum = 0;
                for (n, acc) in accounts.iter().enumerate() {
                    sum += tx.rd(acc)?;
                    assert!(sum <= TOTAL, "partial sum {sum} after {} accounts", n + 1);
                }
                // Opacity: the transaction continues with this total, so it
                // must be the true one, not merely one that commit rejects.
                assert_eq!(sum, TOTAL, "audit saw an inconsistent state");
                Ok(sum)
            });
            assert_eq!(out.value, TOTAL);
            audits.fetch_add(1, Relaxed);
            audit_restarts.fetch_add(out.restarts.into(), Relaxed);
            if last {
                break;
            }
        });
    });
    let sum: u64 = accounts.iter().map(|a| a.load(Relaxed)).sum();
    assert_eq!(sum, TOTAL);
    assert_eq!(g.sw_active().load(Relaxed), 0);
    assert_eq!(g.seq().load(Relaxed) % 2, 0);
    assert!(audits.load(Relaxed) >= 1);
    eprintln!(
        "bank: {} audits ({} restarts), {} escalations to serial",
        audits.load(Relaxed),
        audit_restarts.load(Relaxed),
        escalations.load(Relaxed)
    );
}

fn counter_has_no_lost_updates(g: Globals) {
    let hits = AtomicU64::new(0);
    let shadow = AtomicU64::new(0);
    let threads = if cfg!(miri) { 3 } else { 4 };
    let n = iters(50_000, 50);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (g, hits, shadow) = (&g, &hits, &shadow);
            s.spawn(move || {
                // Thread 0 never escalates (pure software progress), the
                // others escalate after a few restarts or go serial now and then.
                let max_restarts = if t == 0 { u32::MAX } else { 4 };
                for k in 0..n {
                    let body = common::body(|tx| {
                        let v = tx.rd(hits)?;
                        let w = tx.rd(shadow)?;
                        assert_eq!(v, w, "increments must be atomic");
                        tx.wr(hits, v + 1);
                        tx.wr(shadow, w + 1);
                        Ok(())
                    });
                    if t != 0 && k % 100 == 99 {
                        serially(g, body);
                    } else {
                        atomically(g, max_restarts, body);
                    }
                }
            });
        }
    });
    let want = (threads * n) as u64;
    assert_eq!(hits.load(Relaxed), want);
    assert_eq!(shadow.load(Relaxed), want);
    assert_eq!(g.sw_active().load(Relaxed), 0);
    // Every increment committed exactly once, each moving seq by 2.
    assert_eq!(g.seq().load(Relaxed), 2 * want);
}

fn readers_and_writers_on_disjoint_words_do_not_block_each_other(g: Globals) {
    // Value-based validation: a reader whose words did not change keeps
    // going however many unrelated commits land.
    let mine = AtomicU64::new(42);
    let other = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let n = iters(10_000, 30);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Relaxed) {
                atomically(&g, u32::MAX, |tx| {
                    let v = tx.rd(&other)?;
                    tx.wr(&other, v + 1);
                    Ok(())
                });
            }
        });
        let mut restarts = 0u64;
        for _ in 0..n {
            let out = atomically(&g, u32::MAX, |tx| tx.rd(&mine));
            assert_eq!(out.value, 42);
            restarts += u64::from(out.restarts);
        }
        stop.store(true, Relaxed);
        assert_eq!(restarts, 0, "a reader of unchanged words never restarts");
    });
}
