//! lock_api 0.4's wrappers over hytm's raw elided locks (feature
//! `lock_api_04`): the guard state is rebuilt at unlock, on every path.
#![cfg(feature = "lock_api_04")]

use std::sync::Arc;

use hytm::lock_api_04::{Mutex, RwLock};
use hytm::{RawElidedMutex, RawElidedRwLock};

#[test]
fn a_lock_api_04_mutex_and_rwlock_keep_their_invariants() {
    let m: Arc<Mutex<RawElidedMutex, (u64, u64)>> = Arc::new(Mutex::new((0, 0)));
    let rw: Arc<RwLock<RawElidedRwLock, (u64, u64)>> = Arc::new(RwLock::new((0, 0)));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (m, rw) = (Arc::clone(&m), Arc::clone(&rw));
            std::thread::spawn(move || {
                for i in 0..3_000u64 {
                    let mut g = m.lock();
                    assert_eq!(g.0, g.1);
                    g.0 += 1;
                    g.1 += 1;
                    drop(g);
                    if let Some(mut g) = m.try_lock() {
                        g.0 += 1;
                        g.1 += 1;
                    }
                    if (i + t) % 4 == 0 {
                        let mut w = rw.write();
                        w.0 += 1;
                        w.1 += 1;
                    } else {
                        let r = rw.read();
                        assert_eq!(r.0, r.1, "a read saw a torn pair");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let g = m.lock();
    assert!(g.0 >= 6_000 && g.0 == g.1);
    drop(g);
    assert!(!m.is_locked());
    assert_eq!(*rw.read(), (1_500, 1_500));
    assert!(!rw.is_locked());
}
