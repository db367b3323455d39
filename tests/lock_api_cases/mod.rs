//! The lock_api surface of the elided locks, as parking_lot's own tests
//! exercise it: fair unlock and bump, timed acquisition, upgradable reads,
//! downgrade, the condition variable, `Arc` guards and `Sync` guards. Run by
//! `tests/lock_api.rs` in whatever mode the environment selects (auto,
//! `HYTM_MODE=fallback`, the HTM model) and by `tests/lock_api_injected.rs`
//! with aborts injected.

#![allow(dead_code)] // each test binary runs them all, through its wrappers

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hytm::lock_api::{MutexGuard, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};
use hytm::{ElidedCondvar, ElidedMutex, ElidedRwLock, RawElidedMutex, RawElidedRwLock};

pub fn fair_unlock_and_bump() {
    let m = Arc::new(ElidedMutex::new(0u64));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    let mut g = m.lock();
                    *g += 1;
                    if i % 3 == 0 {
                        MutexGuard::bump(&mut g);
                        *g += 1;
                    }
                    if i % 2 == 0 {
                        MutexGuard::unlock_fair(g);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 2 * (2_000 + 667));
    let l = ElidedRwLock::new(0u64);
    let mut w = l.write();
    *w += 1;
    RwLockWriteGuard::bump(&mut w);
    RwLockWriteGuard::unlock_fair(w);
    let mut r = l.read();
    RwLockReadGuard::bump(&mut r);
    assert_eq!(*r, 1);
    RwLockReadGuard::unlock_fair(r);
}

pub fn timed_acquisition_waits_then_gives_up() {
    let m = Arc::new(ElidedMutex::new(0u64));
    assert!(
        m.try_lock_for(Duration::from_millis(1)).is_some(),
        "free lock"
    );
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (m, held) = (Arc::clone(&m), Arc::clone(&held));
        std::thread::spawn(move || {
            let mut g = m.lock();
            // Make sure the real lock is held (a user abort code falls back
            // at once; under the model it promotes the section).
            if let Some(rtm) = hytm::rtm::Rtm::get() {
                rtm.abort::<0x01>();
            }
            *g += 1;
            held.wait();
            std::thread::sleep(Duration::from_millis(60));
        })
    };
    held.wait();
    let start = Instant::now();
    assert!(
        m.try_lock_for(Duration::from_millis(15)).is_none(),
        "held lock"
    );
    assert!(start.elapsed() >= Duration::from_millis(15));
    let g = m
        .try_lock_until(Instant::now() + Duration::from_secs(5))
        .expect("the holder leaves within 60 ms");
    assert_eq!(*g, 1);
    drop(g);
    holder.join().unwrap();

    let l = ElidedRwLock::new(0u64);
    assert!(l.try_read_for(Duration::from_millis(1)).is_some());
    assert!(l.try_write_for(Duration::from_millis(1)).is_some());
    let r = l.read();
    std::thread::scope(|s| {
        s.spawn(|| {
            // A real reader may hold it (fallback, or after a reader joined
            // real readers): a writer must not get in, a reader may.
            assert!(l.try_read_for(Duration::from_millis(5)).is_some());
        });
    });
    drop(r);
    assert!(l
        .try_upgradable_read_for(Duration::from_millis(1))
        .is_some());
}

pub fn upgradable_reads_upgrade_and_exclude_each_other() {
    let l = ElidedRwLock::new(vec![1u32]);
    let u = l.upgradable_read();
    assert_eq!(u.len(), 1);
    let mut w = RwLockUpgradableReadGuard::upgrade(u);
    w.push(2);
    let u = RwLockWriteGuard::downgrade_to_upgradable(w);
    let r = RwLockUpgradableReadGuard::downgrade(u);
    assert_eq!(*r, [1, 2]);
    drop(r);
    let u = l.upgradable_read();
    let w = RwLockUpgradableReadGuard::try_upgrade(u).expect("no other reader");
    drop(w);
    let w =
        RwLockUpgradableReadGuard::try_upgrade_for(l.upgradable_read(), Duration::from_millis(5))
            .expect("no other reader");
    drop(w);

    // Concurrent: upgradable readers that upgrade, plain readers and
    // writers, with an invariant the data must keep.
    let l = Arc::new(ElidedRwLock::new((0u64, 0u64)));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let l = Arc::clone(&l);
            std::thread::spawn(move || {
                for i in 0..1_500u64 {
                    match (i + t) % 3 {
                        0 => {
                            let u = l.upgradable_read();
                            assert_eq!(u.0, u.1, "an upgradable read saw a torn pair");
                            let mut w = RwLockUpgradableReadGuard::upgrade(u);
                            w.0 += 1;
                            w.1 += 1;
                        }
                        1 => {
                            let r = l.read();
                            assert_eq!(r.0, r.1, "a read saw a torn pair");
                        }
                        _ => {
                            let mut w = l.write();
                            w.0 += 1;
                            w.1 += 1;
                            let r = RwLockWriteGuard::downgrade(w);
                            assert_eq!(r.0, r.1);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = l.read();
    assert_eq!((r.0, r.1), (2_000, 2_000));
}

pub fn condvar_producer_consumer() {
    // A bounded queue with two condition variables, the classic.
    struct Queue {
        items: ElidedMutex<std::collections::VecDeque<u64>>,
        not_empty: ElidedCondvar,
        not_full: ElidedCondvar,
    }
    const CAP: usize = 4;
    const N: u64 = 3_000;
    let q = Arc::new(Queue {
        items: ElidedMutex::new(std::collections::VecDeque::new()),
        not_empty: ElidedCondvar::new(),
        not_full: ElidedCondvar::new(),
    });
    let producer = {
        let q = Arc::clone(&q);
        std::thread::spawn(move || {
            for i in 1..=N {
                let mut items = q.items.lock();
                q.not_full
                    .wait_while(&mut items, |items| items.len() == CAP);
                items.push_back(i);
                drop(items);
                q.not_empty.notify_one();
            }
        })
    };
    let mut sum = 0;
    for _ in 0..N {
        let mut items = q.items.lock();
        // A spurious-wakeup-proof loop, written out.
        while items.is_empty() {
            q.not_empty.wait(&mut items);
        }
        sum += items.pop_front().unwrap();
        drop(items);
        q.not_full.notify_one();
    }
    producer.join().unwrap();
    assert_eq!(sum, N * (N + 1) / 2);
    assert!(q.items.lock().is_empty());
}

pub fn condvar_timeouts_and_notify_inside_a_section() {
    let m = ElidedMutex::new(0u32);
    let cv = ElidedCondvar::new();
    let mut g = m.lock();
    let start = Instant::now();
    let r = cv.wait_for(&mut g, Duration::from_millis(10));
    assert!(r.timed_out());
    assert!(start.elapsed() >= Duration::from_millis(10));
    *g += 1;
    drop(g);
    // A notify inside a (possibly transactional) section leaves the
    // transaction first; nothing is lost.
    let woke = AtomicBool::new(false);
    let pair = (ElidedMutex::new(false), ElidedCondvar::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut ready = pair.0.lock();
            pair.1.wait_while(&mut ready, |r| !*r);
            woke.store(true, Ordering::Relaxed);
        });
        std::thread::sleep(Duration::from_millis(5));
        let mut ready = pair.0.lock();
        *ready = true;
        pair.1.notify_all();
        assert!(!hytm::in_transaction());
    });
    assert!(woke.load(Ordering::Relaxed));
    assert_eq!(*m.lock(), 1);
}

pub fn arc_guards_and_sync_guards() {
    fn assert_sync<T: Sync>() {}
    assert_sync::<hytm::ElidedMutexGuard<'static, u8>>();
    assert_sync::<hytm::ElidedRwLockReadGuard<'static, u8>>();
    assert_sync::<hytm::ElidedRwLockWriteGuard<'static, u8>>();
    assert_sync::<RwLockUpgradableReadGuard<'static, RawElidedRwLock, u8>>();
    assert_sync::<MutexGuard<'static, RawElidedMutex, u8>>();
    // A `&guard` shared with another thread reads the data.
    let m = ElidedMutex::new(41u32);
    let g = m.lock();
    let shared = &g;
    std::thread::scope(|s| {
        s.spawn(move || assert_eq!(**shared, 41));
    });
    drop(g);
    let m = Arc::new(ElidedMutex::new(0u32));
    let hits = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (m, hits) = (Arc::clone(&m), Arc::clone(&hits));
            std::thread::spawn(move || {
                for _ in 0..500 {
                    *m.lock_arc() += 1;
                    if let Some(mut g) = m.try_lock_arc() {
                        *g += 1;
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock() as usize, 1_000 + hits.load(Ordering::Relaxed));
    let l = Arc::new(ElidedRwLock::new(1u32));
    *l.write_arc() += 1;
    assert_eq!(*l.read_arc(), 2);
    let g = hytm::ElidedMutexGuard::map(m.lock(), |v| v);
    assert!(*g >= 1_000);
}
