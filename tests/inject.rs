//! Abort injection reaches every retry and fallback decision, with or
//! without RTM. This file installs its own configuration, so it runs the
//! same under HYTM_MODE=fallback.

use std::sync::Arc;

use hytm::rtm::AbortCause;
use hytm::{Config, ElidedMutex};

#[test]
fn injected_conflicts_are_retried_then_fall_back_and_are_counted() {
    Config::new()
        .mode(hytm::Mode::Auto)
        .inject(AbortCause::Conflict, 1.0)
        .policy(hytm::Policy::default().adaptive(false))
        .install()
        .unwrap();
    let m = Arc::new(ElidedMutex::new(0u64).named("injected"));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 2000);
    let report = hytm::stats::snapshot();
    let row = report.site("injected").expect("row");
    // Every attempt aborts: the default budget is 5 charged attempts, then
    // the lock. A conflict met while the other thread holds the real lock
    // is waited out instead (uncharged, up to 16 waits), so each execution
    // makes its charged attempts plus its waits.
    assert_eq!(row.fallback_lock, 2001 - row.hw_commits);
    assert_eq!(row.hw_commits, 0);
    assert_eq!(row.injected, row.attempts, "{row:?}");
    assert_eq!(row.aborts_of(AbortCause::Conflict), row.attempts, "{row:?}");
    assert!(row.retries <= 4 * 2001, "{row:?}");
    assert!(
        row.attempts >= 2001 && row.attempts <= (5 + 16) * 2001,
        "{row:?}"
    );
    // Each attempt after the first of its execution followed a retry or a
    // wait; a wait that ran long ends its execution on the lock instead, and
    // an execution that ran out of waits makes one attempt more.
    assert!(
        row.attempts <= 2 * 2001 + row.retries + row.waits,
        "{row:?}"
    );
    assert!(
        row.attempts + 2001 >= 2001 + row.retries + row.waits,
        "{row:?}"
    );

    // A try_lock that gives up on hardware and then finds the real lock
    // taken did not run under the lock: its aborts count, no fallback does.
    let held = ElidedMutex::new(0u64).named("try-held");
    let mut g = held.lock();
    // Every hardware attempt aborts (injected): this section holds the real
    // lock.
    *g += 1;
    std::thread::scope(|s| {
        s.spawn(|| assert!(held.try_lock().is_none()));
    });
    drop(g);
    // A try_lock that gives up on hardware and gets the real lock counts
    // its fallback.
    *held.try_lock().expect("the lock is free") += 1;
    let report = hytm::stats::snapshot();
    let row = report.site("try-held").expect("row");
    assert_eq!(row.fallback_lock, 2, "{row:?}");
    // 5 attempts for each section that got the lock; the try_lock that met
    // the held lock gave up after its first conflict (a try does not wait).
    assert_eq!(row.injected, 5 + 1 + 5, "{row:?}");
}
