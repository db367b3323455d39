//! The HTM model itself (`RUSTFLAGS="--cfg hytm_model"`): status words,
//! nesting, capacity, strong isolation against the software path, and the
//! promotion of elided sections. In other builds every test prints a skip
//! line: the hardware-path behaviour they check is exercised on real RTM by
//! `tests/rtm.rs`, `tests/elide.rs` and `tests/tx.rs`.

use std::ops::DerefMut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use hytm::rtm::{AbortStatus, Rtm};
use hytm::{ElidedMutex, ElidedRwLock, TCell, TVar, TxError};

fn model_or_skip(test: &str) -> Option<Rtm> {
    if !hytm::rtm::MODEL {
        println!("skip {test}: not an HTM model build (RUSTFLAGS=\"--cfg hytm_model\")");
        return None;
    }
    if hytm::mode() != hytm::Mode::Hardware {
        println!("skip {test}: mode {}", hytm::mode());
        return None;
    }
    Some(Rtm::get().expect("the model is usable everywhere"))
}

#[test]
fn the_model_reports_itself() {
    let Some(_) = model_or_skip("the_model_reports_itself") else {
        return;
    };
    assert_eq!(*hytm::htm().verdict(), hytm::Verdict::Model);
    assert!(hytm::htm().reason().contains("HTM model"));
    assert_eq!(hytm::mode_reason(), "HTM model, --cfg hytm_model");
    let probe = hytm::htm().probe().expect("the probe runs on the model");
    assert_eq!(probe.commits, probe.attempts);
}

#[test]
fn explicit_aborts_carry_their_code_and_nested_ones_the_nested_bit() {
    let Some(rtm) =
        model_or_skip("explicit_aborts_carry_their_code_and_nested_ones_the_nested_bit")
    else {
        return;
    };
    let s = rtm.transaction(|| rtm.abort::<0x42>()).unwrap_err();
    assert_eq!(s.raw(), 0x4200_0001);
    let s = rtm
        .transaction(|| {
            let _ = rtm.transaction(|| rtm.abort::<0x43>());
        })
        .unwrap_err();
    assert_eq!(s.raw(), 0x4300_0001 | AbortStatus::NESTED);
    assert!(!rtm.test());
    // xabort outside a transaction does nothing.
    rtm.abort::<0x44>();
}

#[test]
fn nesting_is_flat_and_eight_levels_abort() {
    let Some(rtm) = model_or_skip("nesting_is_flat_and_eight_levels_abort") else {
        return;
    };
    fn nest(rtm: Rtm, levels: u32) {
        if levels > 0 {
            rtm.transaction(|| nest(rtm, levels - 1)).unwrap();
        }
    }
    // Seven levels commit (an inner level's end only counts down).
    rtm.transaction(|| nest(rtm, 6)).unwrap();
    let s = rtm
        .transaction(|| nest(rtm, 7))
        .expect_err("an eighth level must abort");
    assert!(s.is_nested() && !s.is_explicit(), "{s:?}");
}

#[test]
fn a_software_commit_aborts_a_reader_with_conflict() {
    let Some(rtm) = model_or_skip("a_software_commit_aborts_a_reader_with_conflict") else {
        return;
    };
    let cell = TCell::new(1u64);
    let mut runs = 0;
    let r = rtm.transaction(|| {
        runs += 1;
        // Inside a model transaction a TCell's load is transactional.
        let before = cell.load();
        std::thread::scope(|s| {
            s.spawn(|| hytm::atomic_irrevocable(|tx| tx.write(&cell, 2).unwrap()));
        });
        // The serial writer's store hit our read set: the next operation
        // revalidates and aborts, as a real conflict would.
        (before, cell.load())
    });
    let s = r.expect_err("a transaction committed over a conflicting software write");
    assert_eq!(s.raw(), AbortStatus::CONFLICT | AbortStatus::RETRY);
    assert_eq!((runs, cell.load()), (1, 2));
}

#[test]
fn buffered_writes_are_invisible_until_commit_and_gone_after_abort() {
    let Some(rtm) =
        model_or_skip("buffered_writes_are_invisible_until_commit_and_gone_after_abort")
    else {
        return;
    };
    let cell = Arc::new(TCell::new(7u64));
    let seen_outside = AtomicBool::new(false);
    let r = rtm.transaction(|| {
        hytm::atomic(|tx| tx.write(&cell, 8));
        assert_eq!(cell.load(), 8, "read-your-own-writes");
        std::thread::scope(|s| {
            s.spawn(|| seen_outside.store(cell.load() == 8, Ordering::Relaxed));
        });
        rtm.abort::<0x01>();
    });
    assert_eq!(r.unwrap_err().explicit_code(), Some(0x01));
    assert!(
        !seen_outside.load(Ordering::Relaxed),
        "an uncommitted write leaked"
    );
    assert_eq!(cell.load(), 7, "an aborted write survived");
    rtm.transaction(|| hytm::atomic(|tx| tx.write(&cell, 9)))
        .unwrap();
    assert_eq!(cell.load(), 9);
}

#[cfg(not(hytm_model))]
#[test]
fn capacity_counts_distinct_lines() {
    println!("skip capacity_counts_distinct_lines: not an HTM model build");
}

#[cfg(hytm_model)]
#[test]
fn capacity_counts_distinct_lines() {
    let Some(_) = model_or_skip("capacity_counts_distinct_lines") else {
        return;
    };
    // Cells padded to a line each, so that lines are cells.
    #[repr(align(64))]
    struct Padded(TCell<u64>);
    let cells: Vec<Padded> = (0..64).map(|_| Padded(TCell::new(0))).collect();
    static BIG: hytm::Site =
        hytm::Site::with_policy("model capacity", hytm::Policy::DEFAULT.adaptive(false));
    let (read, write) = hytm::rtm::model::capacity();
    assert_eq!((read, write), (2000, 768));
    hytm::rtm::model::set_capacity(2000, 16);
    BIG.atomic(|tx| {
        for c in &cells {
            let v = tx.read(&c.0)?;
            tx.write(&c.0, v + 1)?;
        }
        Ok(())
    });
    hytm::rtm::model::set_capacity(read, write);
    let report = hytm::stats::snapshot();
    let row = report.site("model capacity").expect("row");
    assert!(
        row.aborts_of(hytm::rtm::AbortCause::Capacity) > 0,
        "{row:?}"
    );
    assert_eq!(row.hw_commits, 0, "{row:?}");
    assert!(cells.iter().all(|c| c.0.load() == 1));
}

#[test]
fn an_abort_inside_an_elided_section_promotes_it_to_the_real_lock() {
    let Some(rtm) = model_or_skip("an_abort_inside_an_elided_section_promotes_it_to_the_real_lock")
    else {
        return;
    };
    let m = ElidedMutex::new(0u64);
    {
        let mut g = m.lock();
        assert!(rtm.test());
        *g += 1;
        rtm.abort::<0x10>();
        // Promoted: out of the transaction, holding the real lock, and the
        // write made before the abort is kept (it ran isolated).
        assert!(!rtm.test());
        assert!(m.is_locked());
        *g += 1;
    }
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 2);
}

#[test]
fn promoted_and_transactional_sections_never_overlap() {
    let Some(rtm) = model_or_skip("promoted_and_transactional_sections_never_overlap") else {
        return;
    };
    const THREADS: usize = 2;
    const ITERS: u64 = 3_000;
    let m = Arc::new(ElidedMutex::new((0u64, 0u64)));
    let rw = Arc::new(ElidedRwLock::new(0u64));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (m, rw, barrier) = (Arc::clone(&m), Arc::clone(&rw), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..ITERS {
                    let mut g = m.lock();
                    // Two words that must move together: a section that
                    // overlapped another would see them apart.
                    assert_eq!(g.0, g.1, "two sections overlapped");
                    g.0 += 1;
                    if (i + t as u64) % 7 == 0 {
                        rtm.abort::<0x10>(); // promote mid-section
                    }
                    g.1 += 1;
                    drop(g);
                    if i % 3 == 0 {
                        *rw.write() += 1;
                    } else {
                        let r = rw.read();
                        assert!(*r <= ITERS * THREADS as u64);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = ITERS * THREADS as u64;
    assert_eq!(*m.lock(), (n, n));
    assert_eq!(*rw.read(), THREADS as u64 * ITERS.div_ceil(3));
}

#[test]
fn a_cancelled_atomic_inside_an_elided_section_reruns_in_software() {
    let Some(rtm) = model_or_skip("a_cancelled_atomic_inside_an_elided_section_reruns_in_software")
    else {
        return;
    };
    let m = ElidedMutex::new(0u64);
    let cell = TCell::new(5i64);
    let mut g = m.lock();
    assert!(rtm.test());
    *g += 1;
    let r = hytm::try_atomic(|tx| {
        let v = tx.read(&cell)?;
        tx.write(&cell, v - 10)?;
        if v < 10 {
            return Err(TxError::Cancel("short"));
        }
        Ok(())
    });
    assert_eq!(r, Err("short"));
    // The cancel's abort promoted the section; its atomic reran in software.
    assert!(!rtm.test() && m.is_locked());
    assert_eq!(cell.load(), 5);
    *g += 1;
    drop(g);
    assert_eq!(*m.lock(), 2);
    let r = hytm::try_atomic::<_, &str>(|tx| {
        let v = tx.read(&cell)?;
        tx.write(&cell, v + 1)?;
        Ok(())
    });
    assert_eq!((r, cell.load()), (Ok(()), 6));
}

#[test]
fn a_panicking_section_is_promoted_and_releases_its_lock() {
    let Some(_) = model_or_skip("a_panicking_section_is_promoted_and_releases_its_lock") else {
        return;
    };
    let m = Arc::new(ElidedMutex::new(0u64));
    let m2 = Arc::clone(&m);
    let r = std::thread::spawn(move || {
        std::panic::set_hook(Box::new(|_| {}));
        let mut g = m2.lock();
        *g += 1;
        panic!("in the section");
    })
    .join();
    assert!(r.is_err());
    assert!(!m.is_locked());
    assert_eq!(*m.lock(), 1);
    assert!(!hytm::in_transaction());
}

#[test]
fn a_nested_atomic_that_drops_its_enclosing_guard_reruns_outside() {
    let Some(rtm) = model_or_skip("a_nested_atomic_that_drops_its_enclosing_guard_reruns_outside")
    else {
        return;
    };
    // The body releases the elided section it runs in: on hardware that
    // `xend` would commit the only transaction and leave the rest of the
    // body outside any. It must abort instead, and the atomic rerun as an
    // ordinary one (on the model: the section is left, the atomic reruns).
    let m = ElidedMutex::new(0u64);
    let x = TCell::new(0u64);
    let mut g = Some(m.lock());
    assert!(rtm.test());
    *g.as_mut().unwrap().deref_mut() += 1;
    let mut runs = 0;
    let r: Result<(), &str> = hytm::try_atomic(|tx| {
        runs += 1;
        drop(g.take());
        tx.write(&x, 1)?;
        Err(TxError::Cancel("no"))
    });
    assert_eq!(r, Err("no"));
    assert_eq!(x.load(), 0, "a cancelled write survived");
    assert!(!rtm.test() && !m.is_locked());
    assert_eq!(*m.lock(), 1);
    // Nested (aborted), then outermost: in hardware (its cancel aborts),
    // then in software, which gives the answer.
    assert!(runs >= 2, "{runs}");
    assert_eq!(hytm::protocol_words().0 % 2, 0);
}

#[test]
fn retry_in_a_hardware_transaction_aborts_and_waits_in_software() {
    let Some(_) = model_or_skip("retry_in_a_hardware_transaction_aborts_and_waits_in_software")
    else {
        return;
    };
    use hytm::rtm::code::CANCELLED;
    use hytm::{Policy, Site};
    static WAITER: Site = Site::with_policy("model retry waiter", Policy::DEFAULT.adaptive(false));
    static PRODUCER: Site =
        Site::with_policy("model retry producer", Policy::DEFAULT.adaptive(false));
    let slot = Arc::new(TCell::new(0u64));
    let waiter = {
        let slot = Arc::clone(&slot);
        std::thread::spawn(move || {
            let v = WAITER.atomic(|tx| match tx.read(&slot)? {
                0 => tx.retry(),
                v => Ok(v),
            });
            (v, std::time::Instant::now())
        })
    };
    // The waiter aborted its hardware run and waits in software (counted
    // in sw_active, so the producer's hardware commit moves `seq`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hytm::protocol_words().1 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never waited"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let committed = std::time::Instant::now();
    PRODUCER.atomic(|tx| tx.write(&slot, 9));
    let (v, woke) = waiter.join().unwrap();
    assert_eq!(v, 9);
    println!(
        "retry on the model: woke {:?} after the producer's hardware commit",
        woke.duration_since(committed)
    );
    let report = hytm::stats::snapshot();
    let w = report.site("model retry waiter").expect("row");
    assert!(w.explicit_code(CANCELLED) >= 1, "{w:?}");
    assert!(w.stm_commits + w.serial >= 1, "{w:?}");
    let p = report.site("model retry producer").expect("row");
    assert_eq!(p.hw_commits, 1, "{p:?}");
    // `or_else` in hardware: the first alternative's retry aborts, and the
    // software rerun takes the second.
    let r = WAITER.atomic(|tx| tx.or_else(|tx| tx.retry(), |_| Ok(5)));
    assert_eq!(r, 5);
}

#[test]
fn a_nested_hardware_commit_wakes_a_retrying_transaction() {
    let Some(_) = model_or_skip("a_nested_hardware_commit_wakes_a_retrying_transaction") else {
        return;
    };
    use hytm::{Policy, Site};
    use std::time::{Duration, Instant};
    static PRODUCER: Site =
        Site::with_policy("model nested producer", Policy::DEFAULT.adaptive(false));
    // The producer's write is made by an atomic nested in a hardware atomic
    // (or elided section) that writes nothing itself: the commit that
    // publishes it is the enclosing one's, which must still wake the waiter
    // (and not leave it to the waiter's periodic recheck).
    let slot = Arc::new(TCell::new(0u64));
    let m = ElidedMutex::new(());
    let mut latencies = Vec::new();
    for round in 1..=5u64 {
        let waiter = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || {
                hytm::atomic(|tx| match tx.read(&slot)? {
                    v if v < round => tx.retry(),
                    v => Ok(v),
                });
                Instant::now()
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while hytm::protocol_words().1 == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        let committed = Instant::now();
        if round % 2 == 0 {
            PRODUCER.atomic(|_| {
                hytm::atomic(|tx| tx.write(&slot, round));
                Ok(())
            });
        } else {
            let _g = m.lock();
            hytm::atomic(|tx| tx.write(&slot, round));
        }
        latencies.push(waiter.join().unwrap().saturating_duration_since(committed));
    }
    latencies.sort();
    println!("nested hardware commits woke the waiter after {latencies:?}");
    // Without a wake the waiter rechecks every 100 ms.
    assert!(latencies[2] < Duration::from_millis(30), "{latencies:?}");
}

/// A value that records its drop by id (clones keep the id, untracked).
struct Tracked(u32, &'static std::sync::Mutex<Vec<u32>>, bool);

impl Clone for Tracked {
    fn clone(&self) -> Tracked {
        Tracked(self.0, self.1, false)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.2 {
            self.1.lock().unwrap().push(self.0);
        }
    }
}

#[test]
fn tvar_values_an_atomic_set_inside_a_promoted_section_stay_published() {
    let Some(rtm) =
        model_or_skip("tvar_values_an_atomic_set_inside_a_promoted_section_stay_published")
    else {
        return;
    };
    static DROPPED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
    let dropped = |id| DROPPED.lock().unwrap().contains(&id);
    let m = ElidedMutex::new(0u64);
    let (v, w) = (
        TVar::new(Tracked(1, &DROPPED, true)),
        TVar::new(Tracked(2, &DROPPED, true)),
    );
    {
        let mut g = m.lock();
        assert!(rtm.test());
        // Flat in the section's transaction.
        hytm::atomic(|tx| tx.set(&v, Tracked(3, &DROPPED, true)));
        // The cancel's abort promotes the section: the first atomic's value
        // is written back, this one's is dropped, and it reruns in software.
        let r: Result<(), &str> = hytm::try_atomic(|tx| {
            tx.set(&w, Tracked(4, &DROPPED, true))?;
            Err(TxError::Cancel("no"))
        });
        assert_eq!(r, Err("no"));
        assert!(!rtm.test() && m.is_locked());
        *g += 1;
    }
    // A later cancel on this thread frees only its own value.
    let r: Result<(), ()> = hytm::try_atomic(|tx| {
        tx.set(&v, Tracked(5, &DROPPED, true))?;
        Err(TxError::Cancel(()))
    });
    assert_eq!(r, Err(()));
    assert!(
        dropped(4) && dropped(5),
        "the cancelled values were not freed"
    );
    assert!(!dropped(3) && !dropped(2), "a published value was freed");
    assert_eq!((v.load().0, w.load().0), (3, 2));
    drop((v, w));
    assert!(dropped(3) && dropped(2));
}
