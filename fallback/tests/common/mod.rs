//! Shared test helpers: one body run on either transaction kind, and the
//! retry loop with escalation to the serial mode that a dispatcher would use.

#![allow(dead_code)] // each test binary uses a different subset

use hytm_fallback::AtomicU64;
use hytm_fallback::{Globals, Restart, SerialTx, SoftTx};

/// The operations a transaction body needs, on either path.
pub trait Ops<'env> {
    fn rd(&mut self, w: &'env AtomicU64) -> Result<u64, Restart>;
    fn wr(&mut self, w: &'env AtomicU64, v: u64);
}

impl<'env> Ops<'env> for SoftTx<'_, 'env> {
    fn rd(&mut self, w: &'env AtomicU64) -> Result<u64, Restart> {
        self.read(w)
    }
    fn wr(&mut self, w: &'env AtomicU64, v: u64) {
        self.write(w, v)
    }
}

impl<'env> Ops<'env> for SerialTx<'_, 'env> {
    fn rd(&mut self, w: &'env AtomicU64) -> Result<u64, Restart> {
        Ok(self.read(w))
    }
    fn wr(&mut self, w: &'env AtomicU64, v: u64) {
        self.write(w, v)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<R> {
    pub value: R,
    pub restarts: u32,
    pub serial: bool,
}

/// Runs `f` as a software transaction, restarting on conflict; after
/// `max_restarts` restarts, runs it once more as a serial transaction.
pub fn atomically<'env, R>(
    g: &Globals,
    max_restarts: u32,
    mut f: impl FnMut(&mut dyn Ops<'env>) -> Result<R, Restart>,
) -> Outcome<R> {
    let restarts;
    {
        let mut tx = begin(g);
        loop {
            match f(&mut tx).and_then(|r| tx.commit().map(|()| r)) {
                Ok(value) => {
                    return Outcome {
                        value,
                        restarts: tx.restarts(),
                        serial: false,
                    }
                }
                Err(Restart) if tx.restarts() < max_restarts => tx.restart(),
                Err(Restart) => {
                    restarts = tx.restarts();
                    break;
                }
            }
        }
    }
    let mut tx = SerialTx::begin_for(g, !g.is_striped());
    let value = f(&mut tx).expect("a serial transaction never restarts");
    tx.commit();
    Outcome {
        value,
        restarts,
        serial: true,
    }
}

/// Small xorshift PRNG: tests need no `rand`.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `normal` iterations natively, `miri` under Miri (which is ~1000x slower).
pub const fn iters(normal: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        normal
    }
}

/// Runs `f` once as a serial transaction.
pub fn serially<'env, R>(
    g: &Globals,
    mut f: impl FnMut(&mut dyn Ops<'env>) -> Result<R, Restart>,
) -> R {
    let mut tx = SerialTx::begin_for(g, !g.is_striped());
    let value = f(&mut tx).expect("a serial transaction never restarts");
    tx.commit();
    value
}

/// Pins a transaction body's type, so one closure can be given to both
/// `atomically` and `serially` (a closure parameter annotated with
/// `dyn Ops<'_>` would be higher-ranked and demand `'static` words).
pub fn body<'env, R, F>(f: F) -> F
where
    F: FnMut(&mut dyn Ops<'env>) -> Result<R, Restart>,
{
    f
}

/// A software transaction of `g`'s protocol (see `domain`).
pub fn begin<'g, 'env>(g: &'g Globals) -> SoftTx<'g, 'env> {
    SoftTx::begin_for(g, !g.is_striped())
}

/// A fresh domain: hybrid (NOrec, transactions announce themselves for
/// hardware ones) or software-only (the striped protocol), as its first
/// transaction decides.
pub fn domain(striped: bool) -> Globals {
    let g = Globals::new();
    if striped {
        drop(SoftTx::begin_without_hardware(&g));
    }
    g
}

/// Runs a test body on both protocols: `name::norec` and `name::striped`.
#[macro_export]
macro_rules! on_both_protocols {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn norec() {
                super::$name($crate::common::domain(false));
            }
            #[test]
            fn striped() {
                super::$name($crate::common::domain(true));
            }
        }
    )*};
}
