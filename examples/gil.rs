//! An interpreter-style global lock ("GIL") over many objects, where each
//! thread mostly touches its own objects: the workload a GIL makes serial
//! and lock elision can run in parallel.
//!
//! Runs the same interpreter loop once under `std::sync::Mutex` and once
//! under `hytm::ElidedMutex`, and prints throughput and the share of
//! sections that committed in hardware.
//!
//! ```sh
//! cargo run --release --example gil [threads] [millis]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An object of the interpreted program: a few fields on one cache line.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Object {
    refcount: u64,
    value: i64,
    calls: u64,
}

const OBJECTS_PER_THREAD: usize = 256;
/// Share of "bytecodes" that touch a shared object (a module global).
const SHARED_PERCENT: u64 = 2;

struct Heap {
    objects: Vec<Object>,
    globals: [Object; 4],
}

/// One interpreter step: a few reads and writes on objects, as a bytecode
/// that loads two objects, adds them and stores the result would do.
#[inline]
fn step(heap: &mut Heap, thread: usize, r: u64) {
    let base = thread * OBJECTS_PER_THREAD;
    let a = base + (r % OBJECTS_PER_THREAD as u64) as usize;
    let b = base + ((r >> 16) % OBJECTS_PER_THREAD as u64) as usize;
    heap.objects[a].refcount += 1;
    heap.objects[b].refcount += 1;
    let v = heap.objects[a].value.wrapping_add(heap.objects[b].value);
    heap.objects[a].value = v;
    heap.objects[a].calls += 1;
    heap.objects[a].refcount -= 1;
    heap.objects[b].refcount -= 1;
    if (r >> 32) % 100 < SHARED_PERCENT {
        heap.globals[(r >> 40) as usize % 4].calls += 1;
    }
}

fn run<L: Sync>(
    name: &str,
    threads: usize,
    dur: Duration,
    lock: &L,
    with: impl Fn(&L, &mut dyn FnMut(&mut Heap)) + Sync,
) -> f64 {
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, ops, with) = (&stop, &ops, &with);
            s.spawn(move || {
                let mut r = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        with(lock, &mut |heap| step(heap, t, r));
                    }
                    n += 256;
                }
                ops.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
    });
    let mops = ops.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64() / 1e6;
    println!("{name:<22} {mops:>8.2} M steps/s");
    mops
}

fn heap(threads: usize) -> Heap {
    Heap {
        objects: vec![Object::default(); threads * OBJECTS_PER_THREAD],
        globals: [Object::default(); 4],
    }
}

fn calls(h: &Heap) -> u64 {
    h.objects.iter().map(|o| o.calls).sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let millis: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dur = Duration::from_millis(millis);
    println!(
        "GIL over {} objects, {threads} threads, {millis} ms each; hytm mode: {} ({})",
        threads * OBJECTS_PER_THREAD,
        hytm::mode(),
        hytm::mode_reason()
    );

    let gil = std::sync::Mutex::new(heap(threads));
    let std_mops = run("std::sync::Mutex", threads, dur, &gil, |l, f| {
        f(&mut l.lock().unwrap())
    });
    let h = gil.into_inner().unwrap();
    assert!(h.objects.iter().all(|o| o.refcount == 0));

    let gil = hytm::ElidedMutex::new(heap(threads)).named("gil");
    let hytm_mops = run("hytm::ElidedMutex", threads, dur, &gil, |l, f| {
        f(&mut l.lock())
    });
    let h = gil.into_inner();
    assert!(
        h.objects.iter().all(|o| o.refcount == 0),
        "a refcount was lost"
    );
    assert!(calls(&h) > 0);

    let report = hytm::stats::snapshot();
    let share = report.site("gil").map_or(0.0, |s| s.hw_commit_share());
    println!(
        "ElidedMutex / std::sync::Mutex: {:.2}x; sections committed in hardware: {:.1}%",
        hytm_mops / std_mops,
        100.0 * share
    );
}
