//! The per-thread pool of log buffers gives back everything it holds when
//! its thread ends (counted with a counting allocator: this test binary
//! has no other allocating tests running beside it).
#![cfg(not(loom))] // loom builds run tests/loom.rs only

use hytm_fallback::{AtomicU64, Globals, SoftTx};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

struct Counting;

/// Bytes allocated and not yet freed, by every thread.
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator, counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_threads_spare_logs_are_freed_when_it_ends() {
    for striped in [false, true] {
        let g = Globals::new();
        let words: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
        if striped {
            // The domain's records are allocated once, here, not by the
            // thread below.
            drop(SoftTx::begin_without_hardware(&g));
        }
        let before = LIVE.load(Relaxed);
        std::thread::scope(|s| {
            // Joined explicitly: the join waits for the thread's locals to
            // be torn down (the scope's own wait only for its closure).
            let t = s.spawn(|| {
                // Grown logs go back to the thread's pool after each
                // transaction, and a nested one takes its own.
                for _ in 0..3 {
                    let mut tx = SoftTx::begin_for(&g, !striped);
                    for w in &words {
                        let v = tx.read(w).unwrap();
                        tx.write(w, v + 1);
                    }
                    let inner = SoftTx::begin_for(&g, !striped);
                    drop(inner);
                    tx.commit().unwrap();
                }
            });
            t.join().unwrap();
        });
        assert_eq!(
            LIVE.load(Relaxed) - before,
            0,
            "the ended thread's logs were not freed (striped: {striped})"
        );
    }
}
