//! `TMap` under injected aborts and rollbacks (as
//! `HYTM_INJECT=conflict:0.3,rollback:0.1`, unless `HYTM_INJECT` says
//! otherwise; `HYTM_MODE` is honoured, so the suite's fallback run forces
//! software): a stress run of a `TMap<u64, String>` with two writers and a
//! reader checking an invariant inside transactions, on every path (the
//! mode's default, NOrec STM, the global-lock fallback; the hardware path
//! where RTM or the HTM model is there), with every value string's heap
//! buffer tracked by a counting allocator: none leaks, none is freed twice.
//! Then growth under concurrency, composition with `TCell`s and another map
//! in one transaction, and cancels that free what they allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Once};
use std::time::{Duration, Instant};

use hytm::rtm::AbortCause;
use hytm::{Config, FallbackKind, Policy, Site, TCell, TMap, TxError};

mod common;

static DEFAULT: Site = Site::new("tmap default");
static STM: Site = Site::with_policy("tmap stm", Policy::DEFAULT.hardware(false));
static LOCK: Site = Site::with_policy(
    "tmap lock",
    Policy::DEFAULT.fallback(FallbackKind::GlobalLock),
);

fn sites() -> [(&'static str, &'static Site); 3] {
    [("default", &DEFAULT), ("stm", &STM), ("lock", &LOCK)]
}

/// Installs the configuration: the environment's (so `HYTM_MODE` holds),
/// with conflicts injected at 0.3 and rollbacks at 0.1 unless
/// `HYTM_INJECT` sets injection itself.
fn inject() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut config = Config::from_env().expect("HYTM_* settings");
        if config.injections().is_empty() && config.rollback_probability() == 0.0 {
            config = config
                .inject(AbortCause::Conflict, 0.3)
                .inject_rollback(0.1);
        }
        config
            .policy(Policy::default().adaptive(false))
            .install()
            .expect("install the configuration");
    });
}

// ---------------------------------------------------------------------
// The counting allocator: it tracks the heap buffers of the stress run's
// value strings, which are exactly `VALUE_LEN` bytes long (made with that
// capacity, and `String::clone` allocates the length), a size with
// alignment 1 that nothing else in this binary allocates.

const VALUE_LEN: usize = 77;

/// Open addressing over the live buffers' addresses: 0 empty, 1 a free
/// slot that was used (the probe goes on past it).
const SLOTS: usize = 1 << 16;
const TOMB: usize = 1;
static LIVE: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// Frees of a tracked size whose address was not live: double frees.
static BAD_FREES: AtomicUsize = AtomicUsize::new(0);

fn slot(p: usize) -> usize {
    (p.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) % SLOTS
}

fn track(p: usize) {
    let mut i = slot(p);
    for _ in 0..SLOTS {
        let cur = LIVE[i].load(Ordering::Relaxed);
        if (cur == 0 || cur == TOMB)
            && LIVE[i]
                .compare_exchange(cur, p, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            LIVE_COUNT.fetch_add(1, Ordering::SeqCst);
            ALLOCATED.fetch_add(1, Ordering::SeqCst);
            return;
        }
        i = (i + 1) % SLOTS;
    }
    // Table full: count it as a leak-to-be (the test then fails).
    LIVE_COUNT.fetch_add(1, Ordering::SeqCst);
}

fn untrack(p: usize) {
    let mut i = slot(p);
    for _ in 0..SLOTS {
        match LIVE[i].load(Ordering::Acquire) {
            0 => break,
            cur if cur == p => {
                if LIVE[i]
                    .compare_exchange(p, TOMB, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    LIVE_COUNT.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                break;
            }
            _ => i = (i + 1) % SLOTS,
        }
    }
    BAD_FREES.fetch_add(1, Ordering::SeqCst);
}

fn tracked(layout: Layout) -> bool {
    layout.size() == VALUE_LEN && layout.align() == 1
}

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping touches only atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && tracked(layout) {
            track(p as usize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if tracked(layout) {
            untrack(p as usize);
        }
        // SAFETY: the caller's pointer and layout, from `alloc` above.
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if tracked(layout) {
                untrack(p as usize);
            }
            // SAFETY: `new_size` with the old alignment is the new layout
            // (the caller guarantees it is valid).
            if tracked(unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) }) {
                track(q as usize);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A value for `key`: `VALUE_LEN` bytes that say which key and version it
/// is, with a checksum, so that a torn or freed value is noticed.
fn value(key: u64, version: u64) -> String {
    let mut s = String::with_capacity(VALUE_LEN);
    write!(
        s,
        "k{key:08}v{version:012}c{:06}",
        (key * 31 + version) % 999_983
    )
    .unwrap();
    while s.len() < VALUE_LEN {
        s.push('.');
    }
    assert_eq!((s.len(), s.capacity()), (VALUE_LEN, VALUE_LEN));
    s
}

/// Checks a value's shape and returns its key.
fn key_of(s: &str) -> u64 {
    assert_eq!(s.len(), VALUE_LEN, "a value of the wrong length: {s:?}");
    let key: u64 = s[1..9].parse().expect("key");
    let version: u64 = s[10..22].parse().expect("version");
    let check: u64 = s[23..29].parse().expect("checksum");
    assert_eq!(
        check,
        (key * 31 + version) % 999_983,
        "a corrupted value {s:?}"
    );
    assert!(
        s[29..].bytes().all(|b| b == b'.'),
        "a corrupted value {s:?}"
    );
    key
}

/// Waits (bounded) for the epoch's deferred frees until `expected` value
/// buffers are live; returns how many are.
fn flush_epoch(expected: usize) -> usize {
    for _ in 0..20_000 {
        if LIVE_COUNT.load(Ordering::SeqCst) == expected {
            break;
        }
        crossbeam_epoch::pin().flush();
        std::thread::yield_now();
    }
    LIVE_COUNT.load(Ordering::SeqCst)
}

/// A small generator for the workload (not for anything else).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn stress_two_writers_and_a_reader_keep_the_invariant_and_free_everything() {
    inject();
    const KEYS: u64 = 384;
    const OPS: u32 = 8_000;
    // Bounded in time too: the HTM model under injection is slow.
    const BUDGET: Duration = Duration::from_secs(20);
    static HARDWARE: AtomicBool = AtomicBool::new(false);
    assert_eq!(LIVE_COUNT.load(Ordering::SeqCst), 0);
    for (name, site) in sites() {
        // Invariant: `count` is the number of entries and `sum` the sum of
        // their keys; every value is one of its key's values.
        let map: Arc<TMap<u64, String>> = Arc::new(TMap::new());
        let count = Arc::new(TCell::new(0u64));
        let sum = Arc::new(TCell::new(0u64));
        let done = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(3));
        let start = Instant::now();
        let check = {
            let (map, count, sum) = (Arc::clone(&map), Arc::clone(&count), Arc::clone(&sum));
            move || {
                let (n, c, s, entries) = site.atomic(|tx| {
                    let n = map.len(tx)?;
                    let c = tx.read(&count)?;
                    let s = tx.read(&sum)?;
                    Ok((n, c, s, map.entries(tx)?))
                });
                assert_eq!(n as u64, c, "{name}: len against the count");
                assert_eq!(entries.len() as u64, c, "{name}: entries against the count");
                let mut key_sum = 0;
                for (k, v) in &entries {
                    assert_eq!(key_of(v), *k, "{name}: a value under the wrong key");
                    key_sum += k;
                }
                assert_eq!(key_sum, s, "{name}: the keys' sum");
            }
        };
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (map, count, sum) = (Arc::clone(&map), Arc::clone(&count), Arc::clone(&sum));
                let barrier = Arc::clone(&barrier);
                let check = check.clone();
                std::thread::spawn(move || {
                    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (t + 1));
                    barrier.wait();
                    for i in 0..OPS {
                        if start.elapsed() > BUDGET {
                            break;
                        }
                        let r = rng.next();
                        let key = r % KEYS;
                        let version = u64::from(i) * 2 + t;
                        match (r >> 32) % 10 {
                            // Insert or replace.
                            0..=3 => site.atomic(|tx| {
                                if tx.is_hardware() {
                                    HARDWARE.store(true, Ordering::Relaxed);
                                }
                                match map.insert(tx, key, value(key, version))? {
                                    None => {
                                        tx.modify(&count, |c| c + 1)?;
                                        tx.modify(&sum, |s| s + key)?;
                                    }
                                    Some(old) => assert_eq!(key_of(&old), key),
                                }
                                Ok(())
                            }),
                            // Remove.
                            4..=6 => site.atomic(|tx| {
                                if let Some(old) = map.remove(tx, &key)? {
                                    assert_eq!(key_of(&old), key);
                                    tx.modify(&count, |c| c - 1)?;
                                    tx.modify(&sum, |s| s - key)?;
                                }
                                Ok(())
                            }),
                            // Replace only if present, reading it first.
                            7 => site.atomic(|tx| {
                                if let Some(old) = map.get(tx, &key)? {
                                    assert_eq!(key_of(&old), key);
                                    let prev = map.insert(tx, key, value(key, version))?;
                                    assert_eq!(prev.as_deref(), Some(old.as_str()));
                                }
                                Ok(())
                            }),
                            // Insert two and cancel: nothing changes, both
                            // values (and the buckets' copies) are freed.
                            8 => {
                                let r: Result<(), ()> = site.try_atomic(|tx| {
                                    map.insert(tx, key, value(key, version))?;
                                    map.insert(
                                        tx,
                                        (key + 1) % KEYS,
                                        value((key + 1) % KEYS, version),
                                    )?;
                                    tx.modify(&count, |c| c + 2)?;
                                    Err(TxError::Cancel(()))
                                });
                                assert_eq!(r, Err(()));
                            }
                            _ => check(),
                        }
                    }
                })
            })
            .collect();
        let reader = {
            let (done, barrier, check) = (Arc::clone(&done), Arc::clone(&barrier), check.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut checks = 0u32;
                while !done.load(Ordering::SeqCst) {
                    check();
                    checks += 1;
                }
                checks
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let checks = reader.join().unwrap();
        check();
        if name == "default" && hytm::mode() == hytm::Mode::Hardware {
            // RTM or the HTM model: the hardware path ran (at least once).
            assert!(HARDWARE.load(Ordering::Relaxed), "no hardware run");
        }
        let final_count = count.load();
        assert!(final_count > 0, "{name}: the map ended empty");
        // Every live value buffer is an entry of the map (the readers'
        // clones are gone; the replaced ones wait for the epoch).
        let live = flush_epoch(final_count as usize);
        assert_eq!(live as u64, final_count, "{name}: live value buffers");
        drop(check);
        let map =
            Arc::try_unwrap(map).unwrap_or_else(|_| panic!("{name}: the map is still shared"));
        drop(map);
        assert_eq!(flush_epoch(0), 0, "{name}: value buffers leaked");
        assert_eq!(BAD_FREES.load(Ordering::SeqCst), 0, "{name}: double frees");
        println!(
            "{name}: {final_count} entries at the end, {} value buffers allocated so far, {checks} reader checks, {:.1?}",
            ALLOCATED.load(Ordering::SeqCst),
            start.elapsed()
        );
    }
}

#[test]
fn it_grows_while_two_threads_insert() {
    inject();
    for (name, site) in sites() {
        let map: Arc<TMap<u64, u64>> = Arc::new(TMap::new());
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let map = Arc::clone(&map);
                std::thread::spawn(move || {
                    for k in 0..600u64 {
                        let key = k * 2 + t;
                        assert_eq!(site.atomic(|tx| map.insert(tx, key, key * 10)), None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(site.atomic(|tx| map.len(tx)), 1200, "{name}");
        for key in 0..1200u64 {
            assert_eq!(
                site.atomic(|tx| map.get(tx, &key)),
                Some(key * 10),
                "{name}"
            );
        }
        let mut all = site.atomic(|tx| map.entries(tx));
        all.sort_unstable();
        assert_eq!(all.len(), 1200, "{name}");
        assert!(all
            .iter()
            .enumerate()
            .all(|(i, &(k, v))| k == i as u64 && v == k * 10));
    }
}

/// A value that counts its creations and drops, for the cancel tests.
struct Counted(&'static Counters, u64);

struct Counters {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            created: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    fn live(&self) -> usize {
        self.created.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }

    fn assert_all_dropped(&self, case: &str) {
        for _ in 0..20_000 {
            if self.live() == 0 {
                return;
            }
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
        panic!("{case}: {} values still live", self.live());
    }
}

impl Counted {
    fn new(c: &'static Counters, v: u64) -> Counted {
        c.created.fetch_add(1, Ordering::SeqCst);
        Counted(c, v)
    }
}

impl Clone for Counted {
    fn clone(&self) -> Counted {
        Counted::new(self.0, self.1)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_transfer_between_maps_and_cells_commits_or_cancels_whole() {
    inject();
    static C: Counters = Counters::new();
    for (name, site) in sites() {
        let (from, to): (TMap<u32, Counted>, TMap<u32, Counted>) = (TMap::new(), TMap::new());
        let moved = TCell::new(0u32);
        site.atomic(|tx| {
            for k in 0..20 {
                from.insert(tx, k, Counted::new(&C, u64::from(k)))?;
            }
            Ok(())
        });
        // Move the even keys, counting in a cell; the odd moves cancel.
        for k in 0..20u32 {
            let r: Result<(), &str> = site.try_atomic(|tx| {
                let v = from.remove(tx, &k)?.expect("present");
                assert!(to.insert(tx, k, v)?.is_none());
                tx.modify(&moved, |m| m + 1)?;
                if k % 2 == 1 {
                    return Err(TxError::Cancel("odd"));
                }
                Ok(())
            });
            assert_eq!(r.is_err(), k % 2 == 1, "{name}");
        }
        let (f, t) = site.atomic(|tx| Ok((from.len(tx)?, to.len(tx)?)));
        assert_eq!((f, t, moved.load()), (10, 10, 10), "{name}");
        for k in 0..20u32 {
            let (in_from, in_to) =
                site.atomic(|tx| Ok((from.contains_key(tx, &k)?, to.contains_key(tx, &k)?)));
            assert_eq!((in_from, in_to), (k % 2 == 1, k % 2 == 0), "{name} key {k}");
        }
        assert_eq!(
            site.atomic(|tx| to.get_with(tx, &4, |v| v.map(|v| v.1))),
            Some(4)
        );
    }
    C.assert_all_dropped("a_transfer_between_maps_and_cells_commits_or_cancels_whole");
}

#[test]
fn cancels_nested_cancels_and_panics_free_what_they_allocated() {
    inject();
    static C: Counters = Counters::new();
    common::silence_panics_on_this_thread();
    for (name, site) in sites() {
        let map: TMap<u32, Counted> = TMap::new();
        site.atomic(|tx| map.insert(tx, 0, Counted::new(&C, 0)).map(drop));
        for round in 0..30u32 {
            // An outer insert kept, an inner one (growing the map: many
            // keys) cancelled.
            site.atomic(|tx| {
                map.insert(tx, 1000 + round, Counted::new(&C, 1))?;
                let inner: Result<(), ()> = hytm::try_atomic(|tx| {
                    for k in 0..40 {
                        map.insert(tx, k * 100 + 1, Counted::new(&C, 2))?;
                    }
                    Err(TxError::Cancel(()))
                });
                assert_eq!(inner, Err(()));
                Ok(())
            });
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            site.atomic(|tx| {
                map.insert(tx, 5, Counted::new(&C, 5))?;
                if map.contains_key(tx, &5)? {
                    panic!("in the body");
                }
                Ok(())
            })
        }));
        assert!(r.is_err(), "{name}");
        let mut keys: Vec<u32> = site
            .atomic(|tx| map.entries(tx))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort_unstable();
        let expected: Vec<u32> = std::iter::once(0).chain(1000..1030).collect();
        assert_eq!(keys, expected, "{name}");
    }
    C.assert_all_dropped("cancels_nested_cancels_and_panics_free_what_they_allocated");
}
