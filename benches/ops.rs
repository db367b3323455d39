//! Per-operation costs under criterion: one uncontended elided section
//! (against parking_lot's and std's mutex), one `atomic` bank transfer on
//! each path (against a parking_lot mutex around the same accounts), and
//! the raw NOrec engine of `hytm-fallback` driven by hand, with no
//! dispatch.
//!
//! `cargo bench --bench ops` (criterion's reports land in
//! `target/criterion`). The mode is the process's (`HYTM_MODE`); run it
//! again with `HYTM_MODE=fallback` to measure the forced fallback on an RTM
//! machine. The throughput tables with peers in other processes are the
//! `locks` and `tm` benches.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hytm::{FallbackKind, Policy, Site, TCell};
use hytm_fallback::{AtomicU64, Globals, Restart, SoftTx};

const ACCOUNTS: usize = 1024;

/// Account pairs from a xorshift, so every peer sees the same sequence.
struct Pairs(u64);

impl Pairs {
    fn new() -> Pairs {
        Pairs(0x9E37_79B9_7F4A_7C15)
    }

    #[inline]
    fn next(&mut self) -> (usize, usize) {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        let a = (x % ACCOUNTS as u64) as usize;
        (
            a,
            (a + 1 + ((x >> 24) % (ACCOUNTS as u64 - 1)) as usize) % ACCOUNTS,
        )
    }
}

fn mode() -> String {
    format!("{}", hytm::mode())
}

fn uncontended_section(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended section");
    let hytm_lock = hytm::ElidedMutex::new(0u64);
    g.bench_function(format!("hytm ElidedMutex ({})", mode()), |b| {
        b.iter(|| *black_box(&hytm_lock).lock() += 1)
    });
    let pl = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot Mutex", |b| {
        b.iter(|| *black_box(&pl).lock() += 1)
    });
    let std_lock = std::sync::Mutex::new(0u64);
    g.bench_function("std Mutex", |b| {
        b.iter(|| *black_box(&std_lock).lock().unwrap() += 1)
    });
    g.finish();
}

static AUTO: Site = Site::new("ops bench auto");
static STM_PATH: Site = Site::with_policy("ops bench stm", Policy::DEFAULT.hardware(false));
static LOCK_PATH: Site = Site::with_policy(
    "ops bench lock",
    Policy::DEFAULT
        .hardware(false)
        .fallback(FallbackKind::GlobalLock),
);

fn atomic_transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("atomic transfer");
    let bank: Vec<TCell<i64>> = (0..ACCOUNTS).map(|_| TCell::new(1000)).collect();
    let auto = format!("hytm auto ({})", mode());
    for (name, site) in [
        (auto.as_str(), &AUTO),
        ("hytm STM path", &STM_PATH),
        ("hytm global-lock path", &LOCK_PATH),
    ] {
        let mut pairs = Pairs::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                let (a, z) = pairs.next();
                site.atomic(|tx| {
                    let x = tx.read(&bank[a])?;
                    tx.write(&bank[a], x - 1)?;
                    let y = tx.read(&bank[z])?;
                    tx.write(&bank[z], y + 1)
                })
            })
        });
    }
    let locked = parking_lot::Mutex::new(vec![1000i64; ACCOUNTS]);
    let mut pairs = Pairs::new();
    g.bench_function("parking_lot Mutex", |b| {
        b.iter(|| {
            let (a, z) = pairs.next();
            let mut v = locked.lock();
            v[a] -= 1;
            v[z] += 1;
        })
    });
    g.finish();
    let total: i64 = bank.iter().map(TCell::load).sum();
    assert_eq!(total, 1000 * ACCOUNTS as i64, "a transfer was lost");
}

fn raw_norec(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw NOrec engine");
    let globals = Globals::new();
    let accounts: Vec<AtomicU64> = (0..ACCOUNTS).map(|_| AtomicU64::new(1000)).collect();
    let mut pairs = Pairs::new();
    g.bench_function("SoftTx bank transfer", |b| {
        b.iter(|| {
            let (i, j) = pairs.next();
            let mut tx = SoftTx::begin_without_hardware(&globals);
            loop {
                let r: Result<(), Restart> = (|| {
                    let a = tx.read(&accounts[i])?;
                    let b = tx.read(&accounts[j])?;
                    let n = a.min(1);
                    tx.write(&accounts[i], a - n);
                    tx.write(&accounts[j], b + n);
                    tx.commit()
                })();
                match r {
                    Ok(()) => break,
                    Err(Restart) => tx.restart(),
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, uncontended_section, atomic_transfer, raw_norec);
criterion_main!(benches);
