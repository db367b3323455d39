//! Elided locks in whatever mode the environment selects (ci/test.sh runs
//! this file in auto mode and with HYTM_MODE=fallback).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hytm::{ElidedMutex, ElidedRwLock};

mod common;
use common::silence_panics_on_this_thread as silent_panics;

#[test]
fn counters_lose_no_increment() {
    const THREADS: usize = 4;
    const ITERS: usize = 20_000;
    let counters = Arc::new(ElidedMutex::new([0u64; 16]));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = Arc::clone(&counters);
            std::thread::spawn(move || {
                for i in 0..ITERS {
                    let mut g = c.lock();
                    g[(t * 7 + i) % 16] += 1;
                    g[15] += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let g = counters.lock();
    // Every iteration adds 1 to slot 15, and some also chose slot 15.
    let chose_15: usize = (0..THREADS)
        .map(|t| (0..ITERS).filter(|i| (t * 7 + i) % 16 == 15).count())
        .sum();
    assert_eq!(g[15] as usize, THREADS * ITERS + chose_15);
    assert_eq!(g.iter().sum::<u64>() as usize, 2 * THREADS * ITERS);
}

#[test]
fn bank_total_never_changes() {
    const ACCOUNTS: usize = 64;
    let bank = Arc::new(ElidedMutex::new(vec![100i64; ACCOUNTS]));
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = (0..2)
        .map(|t| {
            let (bank, stop) = (Arc::clone(&bank), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut x = t as usize + 1;
                while !stop.load(Ordering::Relaxed) {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let (a, b) = ((x >> 20) % ACCOUNTS, (x >> 40) % ACCOUNTS);
                    let mut g = bank.lock();
                    g[a] -= 7;
                    g[b] += 7;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut checks = 0;
    while Instant::now() < deadline {
        let total: i64 = bank.lock().iter().sum();
        assert_eq!(total, 100 * ACCOUNTS as i64);
        checks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for m in movers {
        m.join().unwrap();
    }
    assert!(checks > 10);
    assert_eq!(bank.lock().iter().sum::<i64>(), 100 * ACCOUNTS as i64);
}

#[test]
fn a_panicking_section_leaves_exactly_one_run_and_releases_the_lock() {
    silent_panics();
    let m = ElidedMutex::new(vec![0u32; 4]);
    for round in 1..=20 {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut g = m.lock();
            g[0] += 1;
            g.push(round);
            panic!("boom {round}");
        }));
        assert!(r.is_err());
        // The lock was released by unwinding.
        let g = m.try_lock().expect("lock still held after a panic");
        // Exactly one run of the section is visible: a committed partial
        // transactional run would show as two increments / two pushes.
        assert_eq!(g[0], round);
        assert_eq!(g.len(), 4 + round as usize);
    }
}

#[test]
fn try_lock_never_lies_about_a_held_lock() {
    // Observations are made inside the sections and asserted after them: a
    // failing assert inside a hardware transaction would only abort it and
    // rerun the section under the real lock, hiding the bug.
    let a = ElidedMutex::new(1);
    let b = ElidedMutex::new(2);
    for _ in 0..100 {
        let ga = a.lock();
        // Held by this very section (transactional or real): unavailable.
        let self_try = a.try_lock().is_none();
        // A different free lock nests.
        let gb = b.try_lock();
        let other_try = gb.as_ref().map(|g| **g);
        let sum = *ga + other_try.unwrap_or(0);
        drop(gb);
        drop(ga);
        assert!(self_try, "try_lock returned a second guard of a held lock");
        assert_eq!(other_try, Some(2), "a free lock was refused");
        assert_eq!(sum, 3);
        assert!(a.try_lock().is_some());
    }
    let rw = ElidedRwLock::new(0);
    let r = rw.read();
    let seen = (rw.try_write().is_none(), rw.try_read().is_some());
    drop(r);
    assert_eq!(
        seen,
        (true, true),
        "(write refused, read granted) under a read guard"
    );
    let w = rw.write();
    let seen = (rw.try_read().is_none(), rw.try_write().is_none());
    drop(w);
    assert_eq!(seen, (true, true), "everything refused under a write guard");
    assert!(rw.try_write().is_some());
}

#[test]
fn rwlock_readers_see_whole_writes() {
    let rw = Arc::new(ElidedRwLock::new([0u64; 8]));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (rw, stop, reads) = (Arc::clone(&rw), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Copy out, assert after the section (see above).
                    let seen = *rw.read();
                    assert!(
                        seen.iter().all(|&v| v == seen[0]),
                        "torn write seen: {seen:?}"
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Write until the readers have read a good number of times (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0u64;
    while i < 5_000 || (reads.load(Ordering::Relaxed) < 1_000 && Instant::now() < deadline) {
        i += 1;
        let mut g = rw.write();
        for v in g.iter_mut() {
            *v = i;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(*rw.read(), [i; 8]);
    assert!(reads.load(Ordering::Relaxed) >= 1_000, "readers starved");
}

#[test]
fn after_a_real_holder_leaves_hardware_takes_over_again() {
    // The lemming test: a real holder forces everyone off the hardware path;
    // once it leaves, sections must run as transactions again quickly.
    if hytm::mode() != hytm::Mode::Hardware {
        println!(
            "skip after_a_real_holder_leaves_hardware_takes_over_again: mode {}",
            hytm::mode()
        );
        return;
    }
    let m = Arc::new(ElidedMutex::new(0u64).named("lemming"));
    let barrier = Arc::new(Barrier::new(3));
    let holder = {
        let (m, barrier) = (Arc::clone(&m), Arc::clone(&barrier));
        std::thread::spawn(move || {
            let mut g = m.lock();
            // A user abort code falls back at once (on hardware the section
            // reruns under the real lock, where `xabort` does nothing; under
            // the HTM model the section is promoted to the real lock), which
            // we then hold for a while.
            if let Some(rtm) = hytm::rtm::Rtm::get() {
                rtm.abort::<0x01>();
            }
            assert!(!hytm::in_transaction());
            barrier.wait();
            std::thread::sleep(Duration::from_millis(50));
            *g += 1;
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (m, barrier) = (Arc::clone(&m), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                // These block behind the holder, then must return to hardware.
                let mut first_hw = None;
                for i in 0..200 {
                    let mut g = m.lock();
                    *g += 1;
                    if hytm::in_transaction() && first_hw.is_none() {
                        first_hw = Some(i);
                    }
                }
                first_hw
            })
        })
        .collect();
    holder.join().unwrap();
    for w in workers {
        let first = w.join().unwrap().expect("hardware never took over again");
        assert!(
            first <= 16,
            "hardware took over only after {first} acquisitions"
        );
    }
    assert_eq!(*m.lock(), 401);
}

#[test]
fn sections_really_run_as_transactions_where_rtm_is_usable() {
    if hytm::mode() != hytm::Mode::Hardware {
        println!(
            "skip sections_really_run_as_transactions_where_rtm_is_usable: mode {}",
            hytm::mode()
        );
        return;
    }
    let m = ElidedMutex::new(0u64).named("xtest-check");
    let mut inside = 0;
    for _ in 0..1000 {
        let mut g = m.lock();
        *g += 1;
        inside += usize::from(hytm::in_transaction());
    }
    // A few percent of status-0 aborts are normal under a hypervisor.
    assert!(
        inside >= 900,
        "only {inside} of 1000 sections ran in hardware"
    );
    let row = hytm::stats::snapshot();
    let row = row.site("xtest-check").expect("row");
    assert!(row.hw_commits >= 900, "{row:?}");
}

#[test]
fn std_like_api() {
    let m: ElidedMutex<Vec<u8>> = ElidedMutex::default();
    m.lock().push(1);
    assert_eq!(format!("{m:?}"), "ElidedMutex { data: [1], .. }");
    let g = m.lock();
    if !hytm::in_transaction() {
        assert_eq!(format!("{m:?}"), "ElidedMutex { data: <locked>, .. }");
    }
    drop(g);
    let mut m = ElidedMutex::from(5);
    *m.get_mut() += 1;
    assert_eq!(m.into_inner(), 6);
    let rw: ElidedRwLock<u8> = 3.into();
    assert_eq!(format!("{rw:?}"), "ElidedRwLock { data: 3, .. }");

    fn send_sync<T: Send + Sync>() {}
    send_sync::<ElidedMutex<Vec<u8>>>();
    send_sync::<ElidedRwLock<Vec<u8>>>();
}

#[test]
fn a_section_never_runs_beside_a_real_holder() {
    // The holder takes the real lock (a user abort code falls back at once;
    // under the HTM model it promotes the section), breaks the invariant
    // and keeps it broken for a while; a section begun meanwhile must see
    // the lock word held and wait, on every path.
    let m = Arc::new(ElidedMutex::new((0u64, 0u64)));
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (m, held) = (Arc::clone(&m), Arc::clone(&held));
        std::thread::spawn(move || {
            let mut g = m.lock();
            if let Some(rtm) = hytm::rtm::Rtm::get() {
                rtm.abort::<0x01>();
            }
            assert!(!hytm::in_transaction());
            g.0 += 1;
            held.wait();
            std::thread::sleep(Duration::from_millis(30));
            g.1 += 1;
        })
    };
    held.wait();
    for _ in 0..100 {
        let g = m.lock();
        assert_eq!(g.0, g.1, "a section ran beside the real holder");
    }
    holder.join().unwrap();
    assert_eq!(*m.lock(), (1, 1));
}

#[test]
fn debug_inside_the_threads_own_section_never_reads_the_data() {
    // Inside its own section (transactional or not) the thread holds a
    // `&mut T`: Debug must not make a `&T` beside it.
    let m = ElidedMutex::new(vec![7u8]);
    let mut g = m.lock();
    g.push(8);
    let text = format!("{m:?}");
    assert!(text.contains("<locked>"), "{text}");
    drop(g);
    assert!(format!("{m:?}").contains("[7, 8]"));
    let rw = ElidedRwLock::new(vec![7u8]);
    let mut w = rw.write();
    w.push(8);
    let text = format!("{rw:?}");
    assert!(text.contains("<locked>"), "{text}");
    drop(w);
    assert!(format!("{rw:?}").contains("[7, 8]"));
}

#[test]
fn the_lock_word_and_the_elision_state_have_their_own_lines() {
    // Every section reads the lock word; a fallback writes the adaptive
    // state; sections write the data. Sharing a line would make each of
    // those writes abort every concurrent section.
    let m = ElidedMutex::new(0u64);
    let base = &m as *const ElidedMutex<u64> as usize;
    let data = &*m.lock() as *const u64 as usize;
    assert_eq!(base % 64, 0, "the lock word starts a line");
    assert!(data >= base + 128, "data at offset {}", data - base);
    let rw = ElidedRwLock::new(0u64);
    let base = &rw as *const ElidedRwLock<u64> as usize;
    let data = &*rw.read() as *const u64 as usize;
    assert_eq!(base % 64, 0);
    assert!(data >= base + 128, "data at offset {}", data - base);
}

#[test]
fn nested_sections_count_their_own_commits_whatever_the_release_order() {
    if hytm::mode() != hytm::Mode::Hardware {
        println!(
            "skip nested_sections_count_their_own_commits_whatever_the_release_order: mode {}",
            hytm::mode()
        );
        return;
    }
    let outer = ElidedMutex::with_policy(0u64, hytm::Policy::DEFAULT.adaptive(false))
        .named("attribution outer");
    let inner = ElidedMutex::with_policy(0u64, hytm::Policy::DEFAULT.adaptive(false))
        .named("attribution inner");
    let mut both = 0;
    for _ in 0..100 {
        let mut a = outer.lock();
        let mut b = inner.lock();
        if hytm::in_transaction() {
            both += 1;
        }
        *a += 1;
        *b += 1;
        drop(a); // out of order: the inner guard closes the outermost level
        drop(b);
    }
    let report = hytm::stats::snapshot();
    let (o, i) = (
        report.site("attribution outer").expect("row"),
        report.site("attribution inner").expect("row"),
    );
    assert!(both > 50, "only {both} nested transactional runs");
    assert_eq!(o.hw_commits, i.hw_commits, "outer {o:?}\ninner {i:?}");
    assert!(o.hw_commits >= both, "{o:?}");
}
