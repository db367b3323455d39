//! The hybrid transactional memory in whatever mode the environment selects
//! (ci/test.sh runs this file in auto mode and with HYTM_MODE=fallback).
//! Sites with their own policies put some threads on the STM path and some
//! on the serial path, so every run mixes paths.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hytm::{FallbackKind, Policy, Site, TCell, TxError};

const ACCOUNTS: usize = 64;
const INITIAL: i64 = 1_000;
const TOTAL: i64 = ACCOUNTS as i64 * INITIAL;

static DEFAULT: Site = Site::new("tx-test default");
static STM_ONLY: Site = Site::with_policy("tx-test stm-only", Policy::DEFAULT.hardware(false));
static SERIAL_ONLY: Site = Site::with_policy(
    "tx-test serial-only",
    Policy::DEFAULT
        .hardware(false)
        .fallback(FallbackKind::GlobalLock),
);
static SITES: [&Site; 3] = [&DEFAULT, &STM_ONLY, &SERIAL_ONLY];

mod common;
use common::silence_panics_on_this_thread as silent_panics;

fn bank() -> Arc<Vec<TCell<i64>>> {
    Arc::new((0..ACCOUNTS).map(|_| TCell::new(INITIAL)).collect())
}

/// Moves `amount` from `a` to `b` if `a` has it; balances never go negative,
/// so every partial sum of a consistent state is at most TOTAL.
fn transfer(site: &Site, bank: &[TCell<i64>], a: usize, b: usize, amount: i64) {
    site.atomic(|tx| {
        let x = tx.read(&bank[a])?;
        if x < amount {
            return Ok(());
        }
        tx.write(&bank[a], x - amount)?;
        let y = tx.read(&bank[b])?;
        tx.write(&bank[b], y + amount)
    });
}

/// What one audit transaction observed.
#[derive(Debug)]
struct Audit {
    sum: i64,
    min_balance: i64,
    max_partial: i64,
}

/// Sums the bank inside one transaction. Opacity: a transaction never
/// observes a state no serial order produces, so no balance is negative and
/// no partial sum exceeds TOTAL, even in a run that later restarts. On the
/// software paths that is asserted as each value is read (a panic there
/// propagates); a hardware run's observations are returned and asserted
/// after commit, since a panic inside a hardware transaction would only
/// abort it and rerun the body on the software path, hiding the failure.
fn audit(site: &Site, bank: &[TCell<i64>]) -> Audit {
    let seen = site.atomic(|tx| {
        let mut a = Audit {
            sum: 0,
            min_balance: i64::MAX,
            max_partial: 0,
        };
        for acc in bank {
            let v = tx.read(acc)?;
            a.sum += v;
            a.min_balance = a.min_balance.min(v);
            a.max_partial = a.max_partial.max(a.sum);
            if !tx.is_hardware() {
                assert!(
                    v >= 0,
                    "opacity: negative balance {v} seen inside a transaction"
                );
                assert!(
                    a.sum <= TOTAL,
                    "opacity: partial sum {} > {TOTAL} inside a transaction",
                    a.sum
                );
            }
        }
        Ok(a)
    });
    assert!(seen.min_balance >= 0, "opacity: {seen:?}");
    assert!(seen.max_partial <= TOTAL, "opacity: {seen:?}");
    assert_eq!(seen.sum, TOTAL, "wrong total: {seen:?}");
    seen
}

/// A rough count of the money that moved: how far the accounts are from
/// their initial balances.
fn transfers_so_far(bank: &[TCell<i64>]) -> i64 {
    bank.iter().map(|a| (a.load() - INITIAL).abs()).sum()
}

#[test]
fn bank_is_opaque_on_every_mix_of_paths() {
    let bank = bank();
    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    // Three movers, one per path; the audits cycle through the paths too.
    let movers: Vec<_> = (0..3)
        .map(|t| {
            let (bank, stop, transfers) =
                (Arc::clone(&bank), Arc::clone(&stop), Arc::clone(&transfers));
            std::thread::spawn(move || {
                let mut x = 0x2545_F491_4F6C_DD1Du64 ^ t as u64;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (a, b) = (
                        (x % ACCOUNTS as u64) as usize,
                        ((x >> 20) % ACCOUNTS as u64) as usize,
                    );
                    transfer(SITES[t], &bank, a, b, (x >> 40) as i64 % 300);
                    n += 1;
                }
                transfers.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    // At least 600 ms and 30 audits (a loaded machine is slow), at most 10 s.
    let start = Instant::now();
    let mut audits = 0;
    while (start.elapsed() < Duration::from_millis(600)
        || audits < 30
        || transfers_so_far(&bank) < 1000)
        && start.elapsed() < Duration::from_secs(10)
    {
        audit(SITES[audits % 3], &bank);
        audits += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for m in movers {
        m.join().unwrap();
    }
    assert!(audits > 30, "only {audits} audits");
    assert!(transfers.load(Ordering::Relaxed) > 1000);
    assert_eq!(bank.iter().map(TCell::load).sum::<i64>(), TOTAL);
    let report = hytm::stats::snapshot();
    if hytm::mode() == hytm::Mode::Hardware {
        // Real RTM or the HTM model: the default site ran in hardware, beside
        // the software and serial movers.
        let hw = report.site("tx-test default").expect("default row");
        assert!(hw.hw_commits > 0, "{hw:?}");
    }
    let stm = report.site("tx-test stm-only").expect("stm row");
    assert!(stm.stm_commits > 0 && stm.hw_commits == 0, "{stm:?}");
    let serial = report.site("tx-test serial-only").expect("serial row");
    assert!(
        serial.fallback_lock > 0 && serial.serial == 0 && serial.hw_commits == 0,
        "{serial:?}"
    );
}

#[test]
fn counters_lose_no_update() {
    const THREADS: usize = 3;
    const ITERS: u64 = 5_000;
    let counters: Arc<[TCell<u64>; 4]> = Arc::new(Default::default());
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = Arc::clone(&counters);
            std::thread::spawn(move || {
                for i in 0..ITERS {
                    SITES[t].atomic(|tx| {
                        let k = (i % 4) as usize;
                        let v = tx.read(&c[k])?;
                        tx.write(&c[k], v + 1)?;
                        let w = tx.read(&c[(k + 1) % 4])?;
                        tx.write(&c[(k + 1) % 4], w + 1)
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total: u64 = counters.iter().map(TCell::load).sum();
    assert_eq!(total, 2 * THREADS as u64 * ITERS);
}

#[test]
fn a_panicking_transaction_leaves_none_of_its_writes() {
    silent_panics();
    // A site that always tries hardware first (no adaptive skips).
    static PANICKY: Site = Site::with_policy("tx-test panic", Policy::DEFAULT.adaptive(false));
    for site in [&PANICKY, &DEFAULT, &STM_ONLY, &SERIAL_ONLY] {
        let cells: Vec<TCell<u32>> = (0..16).map(TCell::new).collect();
        for round in 0..10 {
            let r = catch_unwind(AssertUnwindSafe(|| {
                site.atomic(|tx| {
                    for c in &cells {
                        let v = tx.read(c)?;
                        tx.write(c, v + 1000)?;
                    }
                    panic!("boom {round}");
                    #[allow(unreachable_code)]
                    Ok(())
                })
            }));
            assert!(r.is_err());
            for (i, c) in cells.iter().enumerate() {
                assert_eq!(
                    c.load(),
                    i as u32,
                    "a write of a panicking transaction survived"
                );
            }
        }
    }
    if hytm::rtm::MODEL {
        // Under the model the panic aborts the hardware run (0xfc), which
        // commits nothing; the software rerun panics for real. (Real RTM
        // usually aborts earlier, with status 0, in the panic machinery.)
        // Other tests' software commits may abort the hardware attempts
        // first (CONFLICT, 0xfe), so run until one reached the panic.
        let cell = TCell::new(0u32);
        let panics = || {
            let report = hytm::stats::snapshot();
            let row = report.site("tx-test panic").expect("row").clone();
            (row.explicit_code(hytm::rtm::code::PANIC), row)
        };
        for _ in 0..1000 {
            if panics().0 > 0 {
                break;
            }
            let r = catch_unwind(AssertUnwindSafe(|| {
                PANICKY.atomic(|tx| {
                    tx.write(&cell, 1)?;
                    panic!("boom");
                    #[allow(unreachable_code)]
                    Ok(())
                })
            }));
            assert!(r.is_err());
            assert_eq!(cell.load(), 0);
        }
        let (n, row) = panics();
        assert!(n > 0, "{row:?}");
        assert_eq!(row.hw_commits, 0, "{row:?}");
    }
}

#[test]
fn cancel_rolls_back_and_returns_the_error() {
    for site in SITES {
        let a = TCell::new(5);
        let b = TCell::new(0);
        let r: Result<(), &str> = site.try_atomic(|tx| {
            tx.write(&b, 99)?;
            let x = tx.read(&a)?;
            tx.write(&a, x - 10)?;
            if x < 10 {
                return Err(TxError::Cancel("not enough"));
            }
            Ok(())
        });
        assert_eq!(r, Err("not enough"));
        assert_eq!((a.load(), b.load()), (5, 0));
        let ok: Result<i32, &str> = site.try_atomic(|tx| Ok(tx.read(&a)? * 2));
        assert_eq!(ok, Ok(10));
    }
}

#[test]
fn irrevocable_runs_once_and_alone() {
    let c = TCell::new(0u64);
    let mut runs = 0;
    let v = hytm::atomic_irrevocable(|tx| {
        runs += 1;
        assert!(tx.is_irrevocable());
        let v = tx.read(&c).unwrap();
        tx.write(&c, v + 1).unwrap();
        v
    });
    assert_eq!((v, runs, c.load()), (0, 1, 1));
    let mut became = 0;
    DEFAULT.atomic(|tx| {
        tx.become_irrevocable()?;
        became += 1;
        let v = tx.read(&c)?;
        tx.write(&c, v + 1)
    });
    assert_eq!((became, c.load()), (1, 2));
}

#[test]
fn word_types_round_trip() {
    let f = TCell::new(1.5f64);
    let g = TCell::new(-2.25f32);
    let b = TCell::new(true);
    let ch = TCell::new('λ');
    let i = TCell::new(-7i8);
    hytm::atomic(|tx| {
        let (vf, vg, vb, vi) = (tx.read(&f)?, tx.read(&g)?, tx.read(&b)?, tx.read(&i)?);
        tx.write(&f, vf * 2.0)?;
        tx.write(&g, vg * 2.0)?;
        tx.write(&b, !vb)?;
        tx.write(&ch, 'μ')?;
        tx.write(&i, vi - 1)
    });
    assert_eq!(
        (f.load(), g.load(), b.load(), ch.load(), i.load()),
        (3.0, -4.5, false, 'μ', -8)
    );
    assert_eq!(format!("{i:?}"), "TCell(-8)");
}

#[test]
fn nested_atomic_in_a_software_body_joins_it() {
    let c = TCell::new(0);
    STM_ONLY.atomic(|tx| {
        let v = tx.read(&c)?;
        let inner = hytm::atomic(|tx2| {
            tx2.write(&c, v + 10)?;
            tx2.read(&c)
        });
        assert_eq!(inner, v + 10);
        let w = tx.read(&c)?;
        tx.write(&c, w + 1)
    });
    assert_eq!(c.load(), 11);
    STM_ONLY.atomic(|tx| tx.write(&c, 1));
    assert_eq!(c.load(), 1);
}

#[test]
fn short_hardware_transactions_progress_beside_a_long_software_one() {
    if hytm::mode() != hytm::Mode::Hardware {
        println!(
            "skip short_hardware_transactions_progress_beside_a_long_software_one: mode {}",
            hytm::mode()
        );
        return;
    }
    static SHORT: Site = Site::new("tx-test short");
    static LONG: Site = Site::with_policy("tx-test long", Policy::DEFAULT.hardware(false));
    let big: Arc<Vec<TCell<u64>>> = Arc::new((0..4096).map(|_| TCell::new(0)).collect());
    let small: Arc<Vec<TCell<u64>>> = Arc::new((0..64).map(|_| TCell::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let long = {
        let (big, stop) = (Arc::clone(&big), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                LONG.atomic(|tx| {
                    for c in big.iter() {
                        let v = tx.read(c)?;
                        tx.write(c, v + 1)?;
                    }
                    Ok(())
                });
            }
        })
    };
    let deadline = Instant::now() + Duration::from_millis(400);
    let mut i = 0;
    while Instant::now() < deadline {
        SHORT.atomic(|tx| {
            let v = tx.read(&small[i % 64])?;
            tx.write(&small[i % 64], v + 1)
        });
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    long.join().unwrap();
    let report = hytm::stats::snapshot();
    let row = report.site("tx-test short").unwrap();
    println!(
        "short transactions beside a long software one: {:.1}% in hardware",
        100.0 * row.hw_commit_share()
    );
    assert!(row.hw_commit_share() > 0.5, "{row:?}");
}

/// A cancelled execution is counted as a cancel (on every path: a
/// hardware attempt that cancels aborts and the software run decides), and
/// on no commit path; the text table and the JSON have the column.
#[test]
fn cancels_are_counted() {
    static CANCELLING: Site = Site::new("tx-test cancels");
    static CANCELLING_SERIAL: Site = Site::with_policy(
        "tx-test cancels serial",
        Policy::DEFAULT
            .hardware(false)
            .fallback(FallbackKind::GlobalLock),
    );
    let cell = TCell::new(0u64);
    for site in [&CANCELLING, &CANCELLING_SERIAL] {
        for i in 0..3u64 {
            let r = site.try_atomic(|tx| {
                tx.write(&cell, i + 1)?;
                Err::<(), _>(TxError::Cancel(i))
            });
            assert_eq!(r, Err(i));
        }
        site.atomic(|tx| tx.read(&cell));
    }
    assert_eq!(cell.load(), 0);
    let report = hytm::stats::snapshot();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for name in ["tx-test cancels", "tx-test cancels serial"] {
        let row = json["sites"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no row {name} in {json}"));
        assert_eq!(row["cancels"], 3, "{name}: {row}");
        let site = report.site(name).unwrap();
        // The one committed read is the only execution.
        assert_eq!(site.executions(), 1, "{name}: {site:?}");
    }
    let table = report.to_string();
    let head = table.lines().next().unwrap();
    assert!(head.split_whitespace().any(|c| c == "cancel"), "{head}");
}

/// A body marked `#[inline(always)]` is compiled into the software route's
/// first attempt and, out of line, into every other path (see `atomic`'s
/// "Hot transactions"): the two copies behave as one body.
#[test]
fn a_body_marked_inline_always_behaves_as_an_unmarked_one() {
    silent_panics();
    // Transfers among four accounts conflict: their restarts run the
    // out-of-line copy after the first attempt ran the inline one.
    let bank = bank();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let bank = Arc::clone(&bank);
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    let (a, b) = ((i + t) % 4, (3 * i + t + 1) % 4);
                    STM_ONLY.atomic(
                        #[inline(always)]
                        |tx| {
                            let x = tx.read(&bank[a])?;
                            tx.write(&bank[a], x - 1)?;
                            let y = tx.read(&bank[b])?;
                            tx.write(&bank[b], y + 1)
                        },
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(bank.iter().map(TCell::load).sum::<i64>(), TOTAL);

    // A nested irrevocable `atomic` restarts the marked body from inside it
    // (by unwinding) and reruns it serially.
    let c = TCell::new(0);
    let serial = STM_ONLY.atomic(
        #[inline(always)]
        |tx| {
            let v = tx.read(&c)?;
            hytm::atomic_irrevocable(|inner| inner.write(&c, v + 1).expect("a serial write"));
            Ok(tx.is_serial())
        },
    );
    assert!(serial, "the body did not rerun serially");
    assert_eq!(c.load(), 1);

    // A panic leaves none of the marked body's writes.
    let r = catch_unwind(AssertUnwindSafe(|| {
        STM_ONLY.atomic(
            #[inline(always)]
            |tx| {
                tx.write(&c, 99)?;
                panic!("boom");
                #[allow(unreachable_code)]
                Ok(())
            },
        )
    }));
    assert!(r.is_err());
    assert_eq!(c.load(), 1);

    // A cancel rolls the marked body back and returns its error.
    let r: Result<(), &str> = STM_ONLY.try_atomic(
        #[inline(always)]
        |tx| {
            tx.write(&c, 99)?;
            Err(TxError::Cancel("no"))
        },
    );
    assert_eq!((r, c.load()), (Err("no"), 1));
}
