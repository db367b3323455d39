//! The per-thread pool of log buffers gives back everything it holds when
//! its thread ends (counted with a counting allocator; the tests take
//! `ONE_AT_A_TIME`, so that no other test allocates while one counts).
#![cfg(not(loom))] // loom builds run tests/loom.rs only

use hytm_fallback::{AtomicU64, Globals, SoftTx};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

struct Counting;

/// Bytes allocated and not yet freed by threads that count (`COUNTED`):
/// the threads the tests spawn, so that the test harness's own
/// allocations on other threads do not show.
static LIVE: AtomicI64 = AtomicI64::new(0);

std::thread_local! {
    /// Whether this thread's allocations count (a constant thread-local
    /// without drop glue: usable inside the allocator, even while the
    /// thread's locals are torn down).
    static COUNTED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(core::cell::Cell::get).unwrap_or(false)
}

// SAFETY: forwards to the system allocator, counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(layout.size() as i64, Relaxed);
        }
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE.fetch_sub(layout.size() as i64, Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Held by each test while it counts.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a thread that runs `body` and ends leaves allocated, net, of what
/// it allocated and freed itself. A thread also frees what its parent
/// allocated for it (its closure), so a test compares two threads of the
/// same shape: one with transactions, one without.
fn left_by_thread(body: fn()) -> i64 {
    let before = LIVE.load(Relaxed);
    let t = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        body();
    });
    // `join` returns once the thread's locals are torn down.
    t.join().unwrap();
    LIVE.load(Relaxed) - before
}

static NOREC: Globals = Globals::new();
static STRIPED: Globals = Globals::new();
static WORDS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Three transactions over 64 words (the logs grow, and go back to the
/// thread's pool after each), each with a nested one (which takes logs of
/// its own).
fn transactions(g: &'static Globals, hardware: bool) {
    for _ in 0..3 {
        let mut tx = SoftTx::begin_for(g, hardware);
        for w in &WORDS {
            let v = tx.read(w).unwrap();
            tx.write(w, v + 1);
        }
        drop(SoftTx::begin_for(g, hardware));
        tx.commit().unwrap();
    }
}

#[test]
fn a_threads_spare_logs_are_freed_when_it_ends() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The striped domain's records are allocated here, not by the thread.
    drop(SoftTx::begin_without_hardware(&STRIPED));
    let control = left_by_thread(|| {});
    assert_eq!(
        left_by_thread(|| transactions(&NOREC, true)),
        control,
        "the ended thread's logs were not freed (NOrec)"
    );
    assert_eq!(
        left_by_thread(|| transactions(&STRIPED, false)),
        control,
        "the ended thread's logs were not freed (striped)"
    );
}

#[test]
fn a_transaction_run_while_the_thread_ends_frees_its_logs() {
    // A thread-local whose destructor runs a transaction, registered
    // before the pool's owner: thread-local destructors run in reverse
    // order, so the owner has freed the spare logs and closed the pool
    // when it runs. Its logs must be freed at once, not parked in a pool
    // nobody will empty.
    static W: AtomicU64 = AtomicU64::new(0);
    struct EndsWithATransaction;
    impl Drop for EndsWithATransaction {
        fn drop(&mut self) {
            for _ in 0..2 {
                let mut tx = SoftTx::begin_without_hardware(&STRIPED);
                let v = tx.read(&W).unwrap();
                tx.write(&W, v + 1);
                tx.commit().unwrap();
            }
        }
    }
    std::thread_local! {
        static LAST: EndsWithATransaction = const { EndsWithATransaction };
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    drop(SoftTx::begin_without_hardware(&STRIPED));
    let control = left_by_thread(|| LAST.with(|_| {}));
    let before = W.load(Relaxed);
    let left = left_by_thread(|| {
        LAST.with(|_| {});
        let mut tx = SoftTx::begin_without_hardware(&STRIPED);
        tx.write(&W, 100);
        tx.commit().unwrap();
    });
    assert_eq!(
        W.load(Relaxed),
        100 + 2,
        "the destructor's transactions ran"
    );
    assert!(before <= 2);
    assert_eq!(
        left, control,
        "logs given back while the thread ended were not freed"
    );
}
