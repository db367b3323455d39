//! Rollback injection: bodies run to their end and are then rolled back
//! instead of committed. Every write of a rolled-back body must vanish, on
//! every path that can roll back (hardware, STM, serial), and work declared
//! irrevocable must never be rolled back.
//!
//! Injection is process-wide, so every test here shares one configuration,
//! installed by `setup`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use hytm::rtm::code;
use hytm::FallbackKind;
use hytm::{Config, ElidedMutex, Mode, Policy, Site, TCell};

/// Chance per attempt of an injected rollback.
const ROLLBACK: f64 = 0.5;
const THREADS: u64 = 2;
const PER_THREAD: u64 = 5_000;

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        Config::from_env()
            .expect("valid HYTM_* environment")
            .inject_rollback(ROLLBACK)
            .install()
            .expect("install before any other use of hytm");
    });
}

/// Runs `step` `PER_THREAD` times on each of `THREADS` threads.
fn on_threads(step: impl Fn() + Send + Sync + 'static) {
    let step = Arc::new(step);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let step = Arc::clone(&step);
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    step();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Each software attempt that reaches its end is rolled back with
/// probability `ROLLBACK`, and each execution at most once (so that it
/// finishes): with restarts an execution draws more than once, so the share
/// lands between `ROLLBACK` (less noise) and 1.
fn assert_rollback_share(site: &str, executions: u64) {
    let report = hytm::stats::snapshot();
    let row = report.site(site).unwrap_or_else(|| panic!("no row {site}"));
    let share = row.rollbacks as f64 / executions as f64;
    assert!(
        share >= ROLLBACK - 0.1 && row.rollbacks <= executions,
        "{site}: {} rollbacks in {executions} executions: {row:?}",
        row.rollbacks
    );
}

#[test]
fn stm_rollbacks_publish_no_write() {
    setup();
    static SITE: Site = Site::with_policy("rollback-stm", Policy::DEFAULT.hardware(false));
    let cells = Arc::new([TCell::new(0u64), TCell::new(0u64)]);
    let body_runs = Arc::new(AtomicU64::new(0));
    {
        let (cells, body_runs) = (Arc::clone(&cells), Arc::clone(&body_runs));
        on_threads(move || {
            SITE.atomic(|tx| {
                body_runs.fetch_add(1, Ordering::Relaxed);
                let a = tx.read(&cells[0])?;
                tx.write(&cells[0], a + 1)?;
                let b = tx.read(&cells[1])?;
                tx.write(&cells[1], b + 1)
            });
        });
    }
    let n = THREADS * PER_THREAD;
    // A rolled-back run whose writes leaked would show as extra increments.
    assert_eq!(cells[0].load(), n);
    assert_eq!(cells[1].load(), n);
    assert!(body_runs.load(Ordering::Relaxed) > n + n / 4);
    assert_rollback_share("rollback-stm", n);
}

#[test]
fn serial_rollbacks_apply_the_undo_log() {
    setup();
    static SITE: Site = Site::with_policy(
        "rollback-serial",
        Policy::DEFAULT
            .hardware(false)
            .fallback(FallbackKind::GlobalLock),
    );
    const CELLS: usize = 8;
    let cells: Arc<Vec<TCell<u64>>> = Arc::new((0..CELLS).map(|_| TCell::new(0)).collect());
    {
        let cells = Arc::clone(&cells);
        on_threads(move || {
            SITE.atomic(|tx| {
                assert!(tx.is_irrevocable(), "a global-lock site runs serially");
                // Serial writes go straight to memory: only the undo log
                // can take them back.
                for c in cells.iter() {
                    let v = tx.read(c)?;
                    tx.write(c, v + 1)?;
                }
                Ok(())
            });
        });
    }
    let n = THREADS * PER_THREAD;
    for (i, c) in cells.iter().enumerate() {
        assert_eq!(c.load(), n, "cell {i}");
    }
    assert_rollback_share("rollback-serial", n);
}

#[test]
fn irrevocable_work_is_never_rolled_back() {
    setup();
    static SITE: Site = Site::new("rollback-irrevocable");
    let effects = Arc::new(AtomicU64::new(0));
    let cell = Arc::new(TCell::new(0u64));
    {
        let (effects, cell) = (Arc::clone(&effects), Arc::clone(&cell));
        on_threads(move || {
            SITE.atomic_irrevocable(|tx| {
                effects.fetch_add(1, Ordering::Relaxed);
                let v = tx.read(&cell).unwrap();
                tx.write(&cell, v + 1).unwrap();
            });
            SITE.atomic(|tx| {
                tx.become_irrevocable()?;
                effects.fetch_add(1, Ordering::Relaxed);
                let v = tx.read(&cell)?;
                tx.write(&cell, v + 1)
            });
        });
    }
    let n = THREADS * PER_THREAD;
    assert_eq!(
        effects.load(Ordering::Relaxed),
        2 * n,
        "an irrevocable body ran twice"
    );
    assert_eq!(cell.load(), 2 * n);
    let report = hytm::stats::snapshot();
    let row = report.site("rollback-irrevocable").expect("row");
    assert_eq!(row.rollbacks, 0, "{row:?}");
}

#[test]
fn hardware_rollbacks_and_elided_sections() {
    setup();
    let m = Arc::new(ElidedMutex::new([0u64; 4]).named("rollback-mutex"));
    static SITE: Site = Site::new("rollback-hw");
    let cell = Arc::new(TCell::new(0u64));
    {
        let (m, cell) = (Arc::clone(&m), Arc::clone(&cell));
        on_threads(move || {
            let mut g = m.lock();
            for v in g.iter_mut() {
                *v += 1;
            }
            drop(g);
            SITE.atomic(|tx| {
                let v = tx.read(&cell)?;
                tx.write(&cell, v + 1)
            });
        });
    }
    let n = THREADS * PER_THREAD;
    assert_eq!(*m.lock(), [n; 4]);
    assert_eq!(cell.load(), n);
    let report = hytm::stats::snapshot();
    // Without a hardware path elided locks count nothing: no row.
    let mutex = report.site("rollback-mutex");
    let mutex_rollbacks = mutex.map_or(0, |r| r.rollbacks);
    if hytm::mode() != Mode::Hardware {
        // Sections under the real lock write in place: they are never
        // chosen for rollback.
        assert_eq!(mutex_rollbacks, 0, "{mutex:?}");
        println!(
            "skip hardware rollbacks: mode {}; software ones checked",
            hytm::mode()
        );
        return;
    }
    // Every hardware rollback is an explicit abort with its own code.
    let mutex = mutex.expect("row");
    assert!(mutex.rollbacks > n / 4, "{mutex:?}");
    assert_eq!(mutex.rollbacks, mutex.explicit_code(code::ROLLBACK));
    let hw = report.site("rollback-hw").expect("row");
    assert!(hw.rollbacks > n / 4, "{hw:?}");
    assert!(hw.explicit_code(code::ROLLBACK) > 0, "{hw:?}");
}
