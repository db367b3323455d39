//! The runtime's random draws (abort injection, backoff jitter): a small
//! seeded generator per thread.
//!
//! `rand_pcg`'s `Pcg64Mcg` (a 128-bit multiplicative congruential generator
//! with an XSL-RR output, from the `rand` project) in a thread-local. It was
//! chosen over `rand`'s `SmallRng` (Xoshiro256++) by instruction count under
//! callgrind, per draw including the thread-local access: an `f64` draw 20
//! instructions (SmallRng 25, fastrand before it 27), a `u32` draw 17
//! (SmallRng 23, fastrand 14). Not for cryptography; nothing here needs it.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::{Rng, RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

thread_local! {
    static RNG: UnsafeCell<Pcg64Mcg> = UnsafeCell::new(Pcg64Mcg::seed_from_u64(seed()));
}

/// A different seed for each thread: a Weyl sequence over the threads that
/// draw, mixed with the thread-local's address and the process id, so that
/// threads (and processes) do not back off in step.
#[cold]
fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let local = 0u8;
    // Relaxed: any distinct values will do.
    NEXT.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        ^ (std::ptr::addr_of!(local) as u64).rotate_left(32)
        ^ u64::from(std::process::id())
}

/// A uniform `u32`.
#[inline]
pub(crate) fn u32() -> u32 {
    // SAFETY: the generator is this thread's alone, and `next_u32` does not
    // call back into this module, so no other reference to it exists while
    // this one lives.
    RNG.with(|r| unsafe { (*r.get()).next_u32() })
}

/// A uniform `f64` in `[0, 1)`.
#[inline]
pub(crate) fn f64() -> f64 {
    // SAFETY: as in `u32`.
    RNG.with(|r| unsafe { (*r.get()).random::<f64>() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_are_uniform_enough_and_threads_differ() {
        // Miri runs this too: fewer draws there, wider margins (about 6
        // standard deviations either way).
        let n: u32 = if cfg!(miri) { 2_000 } else { 100_000 };
        let mean = (0..n).map(|_| super::f64()).sum::<f64>() / f64::from(n);
        let margin = 6.0 * 0.289 / f64::from(n).sqrt();
        assert!((mean - 0.5).abs() < margin, "{mean}");
        assert!((0..1000).all(|_| (0.0..1.0).contains(&super::f64())));
        let high = (0..n).filter(|_| super::u32() >= 1 << 31).count() as f64;
        let half = f64::from(n) / 2.0;
        assert!((high - half).abs() < 6.0 * half.sqrt(), "{high} of {n}");
        let first = || std::thread::spawn(|| (0..4).map(|_| super::u32()).collect::<Vec<_>>());
        let (a, b) = (first().join().unwrap(), first().join().unwrap());
        assert_ne!(a, b, "two threads drew the same sequence");
    }
}
