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
use hytm::stats::SiteStats;
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

/// The row of `site` in a fresh snapshot.
fn row(site: &str) -> SiteStats {
    hytm::stats::snapshot()
        .site(site)
        .unwrap_or_else(|| panic!("no row {site}"))
        .clone()
}

/// Asserts `rollbacks` is the count a fair draw of probability `ROLLBACK`
/// gives over `draws` (± 0.1 of them).
fn assert_drawn(row: &SiteStats, draws_low: u64, draws_high: u64) {
    let (low, high) = (
        (ROLLBACK - 0.1) * draws_low as f64,
        (ROLLBACK + 0.1) * draws_high as f64,
    );
    assert!(
        (low..=high).contains(&(row.rollbacks as f64)),
        "{}: {} rollbacks, expected {low:.0}..={high:.0}: {row:?}",
        row.name,
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
    let row = row("rollback-stm");
    // A draw at every attempt that reaches its end until one fires: at
    // least once per execution, at most once per attempt. Each execution
    // rolls back at most once.
    assert_drawn(&row, n, n + row.stm_restarts);
    assert!(row.rollbacks <= n, "{row:?}");
    assert_eq!(
        body_runs.load(Ordering::Relaxed),
        n + row.rollbacks + row.stm_restarts,
        "body runs: one per commit, rollback and restart"
    );
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
                assert!(tx.is_serial(), "a global-lock site runs serially");
                assert!(!tx.is_irrevocable(), "but undoably");
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
    // A serial run never restarts: exactly one draw per execution.
    assert_drawn(&row("rollback-serial"), n, n);
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
                assert!(tx.is_irrevocable());
                effects.fetch_add(1, Ordering::Relaxed);
                let v = tx.read(&cell).unwrap();
                tx.write(&cell, v + 1).unwrap();
            });
            SITE.atomic(|tx| {
                tx.become_irrevocable()?;
                assert!(tx.is_irrevocable());
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
    let mutex = mutex.expect("row");
    let hw = report.site("rollback-hw").expect("row");
    for row in [mutex, hw] {
        assert!(row.hw_commits > 0, "{row:?}");
        if hytm::rtm::MODEL && row.name == "rollback-mutex" {
            // The HTM model cannot undo a section's in-place writes, so it
            // never picks a section for an injected rollback.
            assert_eq!(row.rollbacks, 0, "{row:?}");
            continue;
        }
        assert!(row.rollbacks > row.hw_commits / 4, "{row:?}");
    }

    // The rollback comes at the end of the body, never before it: a body
    // that always aborts itself (user code 0x42) before its end is never
    // rolled back.
    static SELF_ABORT: Site =
        Site::with_policy("rollback-after-body", Policy::DEFAULT.adaptive(false));
    let rtm = hytm::rtm::Rtm::get().expect("hardware mode has RTM");
    for _ in 0..1000 {
        SELF_ABORT.atomic(|tx| {
            let v = tx.read(&cell)?;
            tx.write(&cell, v + 1)?;
            if tx.is_hardware() {
                rtm.abort::<0x42>();
            }
            Ok(())
        });
    }
    let row = row("rollback-after-body");
    assert!(row.explicit_user > 0, "{row:?}");
    assert_eq!(row.explicit_code(code::ROLLBACK), 0, "{row:?}");
    assert_eq!(row.hw_commits, 0, "{row:?}");
    assert_eq!(cell.load(), n + 1000);
}
