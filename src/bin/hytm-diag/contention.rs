//! `hytm-diag contention`: an elided lock over K counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use hytm::rtm::AbortCause;
use hytm::ElidedMutex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::args::ContentionArgs;
use crate::{Lines, Output};

const SITE: &str = "hytm-diag contention";

pub fn run(a: ContentionArgs) -> Output {
    let lock = ElidedMutex::new(
        (0..a.keys)
            .map(|_| CachePadded::new(0u64))
            .collect::<Vec<_>>(),
    )
    .named(SITE);
    let before = hytm::stats::snapshot();
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..a.threads {
            let (lock, stop, ops) = (&lock, &stop, &ops);
            s.spawn(move || {
                let mut r = SmallRng::seed_from_u64(t as u64 + 1);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        let k = r.random_range(0..a.keys);
                        *lock.lock()[k] += 1;
                    }
                    n += 64;
                }
                ops.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(a.duration);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let total = ops.load(Ordering::Relaxed);
    let counted: u64 = lock.into_inner().iter().map(|c| **c).sum();
    assert_eq!(counted, total, "the elided lock lost an increment");

    let after = hytm::stats::snapshot();
    let row = |r: &hytm::stats::Report| r.site(SITE).cloned();
    let (before, after) = (row(&before), row(&after));
    let delta = |f: fn(&hytm::stats::SiteStats) -> u64| {
        after.as_ref().map_or(0, f) - before.as_ref().map_or(0, f)
    };
    let attempts = delta(|s| s.attempts);
    let hw = delta(|s| s.hw_commits);
    // Every section either committed in hardware or ran under the lock.
    let fallback = total - hw.min(total);
    let aborts: Vec<(AbortCause, u64)> = AbortCause::ALL
        .iter()
        .map(|&c| {
            (
                c,
                after.as_ref().map_or(0, |s| s.aborts_of(c))
                    - before.as_ref().map_or(0, |s| s.aborts_of(c)),
            )
        })
        .collect();
    let total_aborts: u64 = aborts.iter().map(|(_, n)| n).sum();
    let share = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };

    let mut l = Lines::default();
    l.add(
        "workload",
        format!("{} threads, {} keys, {:.2} s", a.threads, a.keys, secs),
    );
    l.add(
        "mode",
        format!("{} ({})", hytm::mode(), hytm::mode_reason()),
    );
    l.add(
        "throughput",
        format!("{:.2} M sections/s", total as f64 / secs / 1e6),
    );
    l.add("hw attempts", attempts);
    // Without a hardware path, attempts exist only under injection: no
    // `xbegin` runs and every attempt is an injected abort.
    let of = if hytm::mode() == hytm::Mode::Hardware {
        "of hardware attempts"
    } else {
        "of simulated attempts (no hardware path: each one an injected abort)"
    };
    l.add(
        "abort rate",
        format!("{:.2}% {of}", 100.0 * share(total_aborts, attempts)),
    );
    for (c, n) in &aborts {
        l.add(
            &format!("  {c}"),
            format!("{n} ({:.2}%)", 100.0 * share(*n, attempts)),
        );
    }
    l.add(
        "hw commit share",
        format!("{:.2}%", 100.0 * share(hw, total)),
    );
    l.add(
        "fallback share",
        format!("{:.2}%", 100.0 * share(fallback, total)),
    );
    if hytm::mode() != hytm::Mode::Hardware {
        l.add(
            "note",
            "every section took the lock: no hardware path in this mode",
        );
    }
    let json = serde_json::json!({
        "threads": a.threads,
        "keys": a.keys,
        "seconds": secs,
        "mode": hytm::mode().name(),
        "sections": total,
        "mops": total as f64 / secs / 1e6,
        "hw_attempts": attempts,
        "aborts": aborts.iter().map(|(c, n)| (c.name().to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "abort_rate": share(total_aborts, attempts),
        "attempts_simulated": hytm::mode() != hytm::Mode::Hardware,
        "hw_commit_share": share(hw, total),
        "fallback_share": share(fallback, total),
    });
    Output {
        text: l.into_string(),
        json,
    }
}
