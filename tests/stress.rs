//! Bounded stress: `ElidedMutex`, `ElidedRwLock` and `atomic` transactions on
//! every path at the same time (hardware where RTM works, the STM, serial
//! mode, the real lock), with aborts of every cause injected, while a
//! checker thread checks the invariants continuously.
//!
//! The workload is `examples/soak.rs` (included below), run here for a
//! bounded time; `ci/soak.sh` runs it for minutes. Injection is configured
//! process-wide and must be installed before the first use of hytm, so this
//! binary has exactly one test function and installs first thing.

use std::time::{Duration, Instant};

use hytm::rtm::AbortCause;
use hytm::{Config, Mode, Policy};

#[path = "../examples/soak.rs"]
#[allow(dead_code)] // the example's `main` and argument handling
mod soak;

/// How long the workers run: long enough for thousands of sections on every
/// path even in a debug build, short enough for `ci/test.sh`, which runs the
/// suite twice.
const RUN_FOR: Duration = Duration::from_millis(1500);

/// Chance of an injected abort per attempt, for each of the seven causes.
const INJECT: f64 = 0.02;
/// Chance per attempt of an injected rollback (body run, then rolled back).
const ROLLBACK: f64 = 0.05;

#[test]
fn every_path_at_once_keeps_every_invariant() {
    let started = Instant::now();
    let mut config = Config::from_env().expect("valid HYTM_* environment");
    for cause in AbortCause::ALL {
        config = config.inject(cause, INJECT);
    }
    config
        .inject_rollback(ROLLBACK)
        .policy(Policy::default())
        .install()
        .expect("install the stress configuration before any other use");

    let summary = soak::run(&soak::Run {
        duration: RUN_FOR,
        report_every_second: false,
    })
    .unwrap_or_else(|errors| panic!("invariants violated:\n  {}", errors.join("\n  ")));
    let report = hytm::stats::snapshot();
    soak::print_summary(&summary, &report);

    let t = &summary.tally;
    // Every path did real work: a run where some thread starved would check
    // little.
    for (what, n) in [
        ("transfers at the global-policy site", t.bank),
        ("transfers at the STM-only site", t.bank_stm),
        ("transfers at the serial site", t.bank_serial),
        ("try_atomic transfers", t.bank_try + t.bank_cancelled),
        ("eliding mutex sections", t.mutex),
        ("forced-lock mutex sections", t.mutex_lock),
        ("rwlock writes", t.rw_writes),
        ("rwlock reads", t.rw_reads),
        ("audits", t.audits),
    ] {
        assert!(n > 0, "no {what} in {RUN_FOR:?}");
    }

    let errors = soak::check_stats(&report, t, true);
    assert!(errors.is_empty(), "statistics:\n  {}", errors.join("\n  "));
    let total = report.total();
    assert!(total.injected > 0, "no injected abort was counted");
    assert!(total.rollbacks > 0, "no injected rollback was counted");
    let fallbacks = total.fallback_lock + total.stm_commits + total.serial;
    assert!(fallbacks > 0, "no fallback was counted");
    // The forced paths always fall back, whatever the machine.
    let row = |name: &str| {
        report
            .site(name)
            .unwrap_or_else(|| panic!("no stats row {name}"))
            .clone()
    };
    assert!(row("stress-bank-stm").stm_commits > 0);
    let serial = row("stress-bank-serial");
    // A global-lock fallback is counted as the lock (or, by older counting,
    // as a serial run): either way, counted.
    assert!(serial.fallback_lock + serial.serial > 0);
    if hytm::mode() == Mode::Fallback {
        // Nothing commits in hardware; with injection on, every section of
        // the eliding mutex is counted, as a fallback to its real lock.
        assert!(row("stress-mutex").fallback_lock > 0);
        assert_eq!(row("stress-mutex").hw_commits, 0);
    } else {
        println!("hardware mode: {} hardware commits", total.hw_commits);
        assert!(
            total.hw_commits > 0,
            "hardware mode but nothing committed in hardware"
        );
    }
    println!(
        "stress test took {:.2} s in all",
        started.elapsed().as_secs_f64()
    );
}
