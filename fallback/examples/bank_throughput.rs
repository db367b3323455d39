//! Bank-transfer throughput of the software path, one thread and two.
//!
//! Each transfer is one `SoftTx`: 2 reads + 2 writes on 1024 accounts
//! (the workload of the `stm` crate comparison in hytm's benches).
//!
//! ```text
//! cargo run -p hytm-fallback --release --example bank_throughput
//! ```

#![cfg_attr(loom, allow(dead_code, unused_imports))]

use hytm_fallback::{AtomicU64, Globals, Restart, SoftTx};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 1024;
const INITIAL: u64 = 1_000_000;

fn transfer(g: &Globals, accounts: &[AtomicU64], i: usize, j: usize, n: u64) {
    let mut tx = SoftTx::begin(g);
    loop {
        let r: Result<(), Restart> = (|| {
            let a = tx.read(&accounts[i])?;
            let b = tx.read(&accounts[j])?;
            let n = n.min(a);
            tx.write(&accounts[i], a - n);
            tx.write(&accounts[j], b + n);
            tx.commit()
        })();
        match r {
            Ok(()) => return,
            Err(Restart) => tx.restart(),
        }
    }
}

fn worker(g: &Globals, accounts: &[AtomicU64], seed: u64, d: Duration) -> u64 {
    let mut x = seed;
    let mut done = 0u64;
    let start = Instant::now();
    while start.elapsed() < d {
        for _ in 0..1024 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % ACCOUNTS as u64) as usize;
            let j = (i + 1 + ((x >> 20) % (ACCOUNTS as u64 - 1)) as usize) % ACCOUNTS;
            transfer(g, accounts, i, j, x >> 60);
            done += 1;
        }
    }
    done
}

#[cfg(loom)]
fn main() {} // loom atomics only work inside a loom model

#[cfg(not(loom))]
fn main() {
    let g = Globals::new();
    let accounts: Vec<AtomicU64> = (0..ACCOUNTS).map(|_| AtomicU64::new(INITIAL)).collect();
    let d = Duration::from_millis(200);
    worker(&g, &accounts, 1, Duration::from_millis(100)); // warm up
    for threads in [1u64, 2] {
        // Five rounds; the median resists the noise of a shared machine.
        let mut rates: Vec<f64> = (0..5)
            .map(|round| {
                let start = Instant::now();
                let total: u64 = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..threads)
                        .map(|t| {
                            let (g, accounts) = (&g, &accounts);
                            s.spawn(move || worker(g, accounts, 0x9E37_79B9 + 7 * round + t, d))
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum()
                });
                total as f64 / start.elapsed().as_secs_f64() / 1e6
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{threads} thread(s): median {:.1} M transfers/s (best {:.1})",
            rates[2], rates[4]
        );
    }
    let sum: u64 = accounts.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    assert_eq!(sum, ACCOUNTS as u64 * INITIAL);
}
