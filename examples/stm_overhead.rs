//! Measures the hytm layer's overhead over the raw NOrec engine on one thread.
use hytm::{Policy, Site, TCell};
use hytm_fallback::{Globals, Restart, SoftTx};
use std::sync::atomic::AtomicU64;
static S: Site = Site::with_policy("overhead", Policy::DEFAULT.hardware(false));
static G: Globals = Globals::new();
fn main() {
    let n = 10_000_000u64;
    let bank: Vec<TCell<i64>> = (0..1024).map(|_| TCell::new(1000)).collect();
    let raw: Vec<AtomicU64> = (0..1024).map(|_| AtomicU64::new(1000)).collect();
    for _ in 0..8 {
        let mut x = 1u64;
        let t = std::time::Instant::now();
        for _ in 0..n {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            let (a, b) = ((x % 1024) as usize, ((x >> 24) % 1024) as usize);
            let mut tx = SoftTx::begin_without_hardware(&G);
            loop {
                let r: Result<(), Restart> = (|| {
                    let v = tx.read(&raw[a])?; tx.write(&raw[a], v - 1);
                    let w = tx.read(&raw[b])?; tx.write(&raw[b], w + 1);
                    tx.commit()
                })();
                if r.is_ok() { break } tx.restart();
            }
        }
        let raw_ns = t.elapsed().as_nanos() as f64 / n as f64;
        let t = std::time::Instant::now();
        for _ in 0..n {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            let (a, b) = ((x % 1024) as usize, ((x >> 24) % 1024) as usize);
            S.atomic(|tx| { let v = tx.read(&bank[a])?; tx.write(&bank[a], v - 1)?; let w = tx.read(&bank[b])?; tx.write(&bank[b], w + 1) });
        }
        let hy_ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("raw engine {raw_ns:.1} ns/tx, hytm atomic {hy_ns:.1} ns/tx");
    }
}
