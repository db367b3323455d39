//! Composition under injected aborts (conflict with probability 0.5, as
//! `HYTM_INJECT=conflict:0.5`): nested transfers keep the bank exact, and an
//! elided section inside `atomic` runs exactly once per commit.

use std::sync::{Arc, Barrier, Once};

use hytm::rtm::AbortCause;
use hytm::{Config, ElidedMutex, Policy, Site, TCell, TxError};

static ANY: Site = Site::new("compose-inject any");
static STM_ONLY: Site = Site::with_policy("compose-inject stm", Policy::DEFAULT.hardware(false));

fn inject() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        Config::new()
            .inject(AbortCause::Conflict, 0.5)
            .policy(hytm::Policy::default().adaptive(false))
            .install()
            .unwrap();
    });
}

fn transfer(bank: &[TCell<i64>], from: usize, to: usize, n: i64) -> Result<(), &'static str> {
    hytm::try_atomic(|tx| {
        let a = tx.read(&bank[from])?;
        if a < n {
            return Err(TxError::Cancel("insufficient funds"));
        }
        tx.write(&bank[from], a - n)?;
        let b = tx.read(&bank[to])?;
        tx.write(&bank[to], b + n)?;
        Ok(())
    })
}

#[test]
fn nested_transfers_keep_the_bank_exact_under_injection() {
    inject();
    const ACCOUNTS: usize = 8;
    let bank: Arc<Vec<TCell<i64>>> = Arc::new((0..ACCOUNTS).map(|_| TCell::new(100)).collect());
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let bank = Arc::clone(&bank);
            std::thread::spawn(move || {
                for i in 0..2_000usize {
                    let (a, b, c) = (
                        (i + t) % ACCOUNTS,
                        (i * 3 + 1) % ACCOUNTS,
                        (i * 5 + t) % ACCOUNTS,
                    );
                    let _ = hytm::try_atomic(|_| {
                        transfer(&bank, a, b, (i % 70) as i64).map_err(TxError::Cancel)?;
                        transfer(&bank, b, c, (i % 90) as i64).map_err(TxError::Cancel)
                    });
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
}

#[test]
fn an_elided_counter_inside_atomic_is_exact_under_injection() {
    inject();
    const THREADS: usize = 4;
    const ITERS: u64 = 5_000;
    let m = Arc::new(ElidedMutex::new(0u64));
    let cell = Arc::new(TCell::new(0u64));
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (m, cell, barrier) = (Arc::clone(&m), Arc::clone(&cell), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..ITERS {
                    // Under the HTM model a section that wrote in place
                    // inside a hardware `atomic` cannot be rolled back (the
                    // model's stated limit): software only there.
                    let site = if hytm::rtm::MODEL { &STM_ONLY } else { &ANY };
                    site.atomic(|tx| {
                        let v = tx.read(&cell)?;
                        *m.lock() += 1;
                        tx.write(&cell, v + 1)
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = THREADS as u64 * ITERS;
    assert_eq!((*m.lock(), cell.load()), (n, n));
}
