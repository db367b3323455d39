//! Injected aborts of every cause drive `atomic` through every retry and
//! fallback decision, on any machine, and the invariants still hold.

use std::sync::Arc;

use hytm::rtm::AbortCause;
use hytm::{Config, Site, TCell};

static SITE: Site = Site::new("tx-inject");

#[test]
fn invariants_hold_and_injected_aborts_are_counted() {
    let mut config = Config::new();
    for (cause, p) in [
        (AbortCause::Conflict, 0.3),
        (AbortCause::Capacity, 0.1),
        (AbortCause::Retry, 0.05),
        (AbortCause::Explicit, 0.05),
        (AbortCause::Nested, 0.05),
        (AbortCause::Debug, 0.05),
        (AbortCause::Other, 0.1),
    ] {
        config = config.inject(cause, p);
    }
    config
        .policy(hytm::Policy::default().adaptive(false))
        .install()
        .unwrap();

    const ACCOUNTS: usize = 16;
    let bank: Arc<Vec<TCell<i64>>> = Arc::new((0..ACCOUNTS).map(|_| TCell::new(100)).collect());
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let bank = Arc::clone(&bank);
            std::thread::spawn(move || {
                for i in 0..5_000usize {
                    let (a, b) = ((i * 7 + t) % ACCOUNTS, (i * 13 + 5 * t + 1) % ACCOUNTS);
                    SITE.atomic(|tx| {
                        let x = tx.read(&bank[a])?;
                        tx.write(&bank[a], x - 3)?;
                        let y = tx.read(&bank[b])?;
                        tx.write(&bank[b], y + 3)
                    });
                    if i % 100 == 0 {
                        let sum = SITE.atomic(|tx| {
                            let mut s = 0;
                            for acc in bank.iter() {
                                s += tx.read(acc)?;
                            }
                            Ok(s)
                        });
                        assert_eq!(sum, 100 * ACCOUNTS as i64);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        bank.iter().map(TCell::load).sum::<i64>(),
        100 * ACCOUNTS as i64
    );

    let report = hytm::stats::snapshot();
    let row = report.site("tx-inject").expect("row");
    assert!(row.injected > 1000, "{row:?}");
    for cause in AbortCause::ALL {
        assert!(
            row.aborts_of(cause) > 0,
            "no {cause} abort injected: {row:?}"
        );
    }
    // Every execution ended somewhere.
    assert_eq!(row.executions(), 2 * (5_000 + 50), "{row:?}");
    if !hytm::htm().usable() {
        assert_eq!(row.hw_commits, 0);
        assert_eq!(row.stm_commits + row.serial, row.executions());
    }
}
