//! Tests of the striped protocol of software-only domains (ownership
//! records and a version clock), one interleaving at a time on one thread.
//! The multi-thread suites (`bank.rs`, `serial.rs`) run on both protocols.
#![cfg(not(loom))] // loom builds run tests/loom.rs only

mod common;

use common::domain;
use hytm_fallback::AtomicU64;
use hytm_fallback::{Globals, Restart, SerialTx, SoftTx};
use std::sync::atomic::Ordering::Relaxed;

fn begin<'g, 'env>(g: &'g Globals) -> SoftTx<'g, 'env> {
    SoftTx::begin_without_hardware(g)
}

#[test]
fn a_domain_is_striped_from_its_first_transaction_without_hardware() {
    let g = domain(false);
    assert!(!g.is_striped());
    let tx = begin(&g);
    assert!(g.is_striped());
    assert_eq!(
        g.sw_active().load(Relaxed),
        0,
        "nobody reads sw_active here"
    );
    drop(tx);
}

#[test]
fn a_transaction_reads_its_own_writes() {
    let g = domain(false);
    // 130 consecutive words: words 64 apart share a write-set filter bit,
    // so the read of an unwritten word may look into the write set first,
    // and 40 writes take the write set past its linear scan to its index.
    let w: Vec<AtomicU64> = (0..130).map(AtomicU64::new).collect();
    let mut tx = begin(&g);
    assert_eq!(tx.read(&w[0]), Ok(0));
    tx.write(&w[0], 1000);
    assert_eq!(tx.read(&w[0]), Ok(1000));
    assert_eq!(
        tx.read(&w[64]),
        Ok(64),
        "shares w[0]'s filter bit, unwritten"
    );
    tx.write(&w[64], 1064);
    assert_eq!(tx.read(&w[64]), Ok(1064));
    assert_eq!(tx.read(&w[128]), Ok(128), "shares the bit, unwritten");
    for (i, x) in w.iter().enumerate().skip(1).take(40) {
        tx.write(x, 1000 + i as u64);
    }
    for (i, x) in w.iter().enumerate().take(80) {
        let want = if i <= 40 || i == 64 {
            1000 + i as u64
        } else {
            i as u64
        };
        assert_eq!(tx.read(x), Ok(want), "word {i}");
    }
    assert_eq!(
        w[1].load(Relaxed),
        1,
        "nothing reaches memory before commit"
    );
    tx.commit().unwrap();
    assert_eq!(w[1].load(Relaxed), 1001);
    assert_eq!(w[64].load(Relaxed), 1064);
    assert_eq!(w[128].load(Relaxed), 128);
}

#[test]
fn a_commit_validates_its_reads_against_commits_since_its_snapshot() {
    // The broken-validation catch: t1 read x, t2 then committed x; t1's
    // commit (which writes only y) must fail and write nothing.
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut t1 = begin(&g);
    assert_eq!(t1.read(&x), Ok(0));
    let mut t2 = begin(&g);
    t2.write(&x, 1);
    t2.commit().unwrap();
    t1.write(&y, 1);
    assert_eq!(
        t1.commit(),
        Err(Restart),
        "t1 committed on a stale read of x"
    );
    assert_eq!(y.load(Relaxed), 0);
    // Rerun: reads the new x and commits.
    t1.restart();
    let v = t1.read(&x).unwrap();
    t1.write(&y, v + 1);
    t1.commit().unwrap();
    assert_eq!((x.load(Relaxed), y.load(Relaxed)), (1, 2));
}

#[test]
fn a_read_newer_than_the_snapshot_extends_it_when_earlier_reads_are_current() {
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut t1 = begin(&g);
    assert_eq!(t1.read(&y), Ok(0));
    let mut t2 = begin(&g);
    t2.write(&x, 5);
    t2.commit().unwrap();
    // x is newer than t1's snapshot, y is unchanged: t1 moves on.
    assert_eq!(t1.read(&x), Ok(5));
    t1.write(&y, 1);
    t1.commit().unwrap();
}

#[test]
fn a_read_newer_than_the_snapshot_fails_when_an_earlier_read_changed() {
    // Opacity: t1 read x = 0; t2 moved 1 from x to y. Returning the new y
    // beside the old x would show t1 a total that never existed.
    let g = domain(true);
    let (x, y) = (AtomicU64::new(1), AtomicU64::new(0));
    let mut t1 = begin(&g);
    assert_eq!(t1.read(&x), Ok(1));
    let mut t2 = begin(&g);
    t2.write(&x, 0);
    t2.write(&y, 1);
    t2.commit().unwrap();
    assert_eq!(t1.read(&y), Err(Restart));
    assert!(t1.is_doomed());
    assert_eq!(t1.commit(), Err(Restart), "a doomed transaction committed");
}

#[test]
fn a_doomed_transaction_reads_nothing_written_since_its_snapshot() {
    let g = domain(true);
    let (x, y, z) = (AtomicU64::new(1), AtomicU64::new(0), AtomicU64::new(0));
    let mut t1 = begin(&g);
    t1.read(&x).unwrap();
    let mut t2 = begin(&g);
    t2.write(&x, 0);
    t2.write(&y, 1);
    t2.write(&z, 1);
    t2.commit().unwrap();
    assert_eq!(t1.read(&y), Err(Restart));
    // The body swallowed the error and reads on: still refused.
    assert_eq!(t1.read(&z), Err(Restart));
}

#[test]
fn a_failed_commit_leaves_the_records_and_the_clock_free() {
    // After t1's commit fails validation, nothing of it may be left: the
    // clock free and even, the records of the words it meant to write
    // unmarked, so a reader and a writer of those words go straight
    // through.
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut t1 = begin(&g);
    let v = t1.read(&x).unwrap();
    t1.write(&x, v + 10);
    t1.write(&y, 10);
    let mut t2 = begin(&g);
    t2.write(&x, 1);
    t2.commit().unwrap();
    assert_eq!(t1.commit(), Err(Restart));
    drop(t1);
    let mut t3 = begin(&g);
    assert_eq!(g.seq().load(Relaxed) % 2, 0, "the clock was left taken");
    assert_eq!(t3.read(&y), Ok(0), "y's record was left marked");
    t3.write(&y, 3);
    assert_eq!(t3.commit(), Ok(()));
    assert_eq!(g.load_committed(&y, || false), 3);
}

#[test]
fn a_commit_releases_the_records_it_locked() {
    // The broken-release catch: after a commit, its records hold the new
    // version, unlocked, so a later transaction reads (and writes) its
    // words at once, and an outside load returns the new value.
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut w = begin(&g);
    w.write(&x, 5);
    w.write(&y, 6);
    w.commit().unwrap();
    drop(w);
    let mut r = begin(&g);
    assert_eq!(r.read(&x), Ok(5), "x's record was left locked");
    assert_eq!(r.read(&y), Ok(6), "y's record was left locked");
    r.write(&x, 7);
    r.commit().unwrap();
    assert_eq!(g.load_committed(&x, || false), 7);
}

#[test]
fn a_commit_gives_its_records_a_newer_version() {
    // A transaction that began before a commit and reads one of its words
    // afterwards must notice (extend), not take it as old.
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut old = begin(&g);
    old.read(&y).unwrap();
    let mut w = begin(&g);
    w.write(&x, 7);
    w.write(&y, 7);
    w.commit().unwrap();
    assert_eq!(old.read(&x), Err(Restart), "x's new value looked old");
}

#[test]
fn words_written_together_in_one_stripe_commit_together() {
    // Adjacent words of one transaction (several per stripe under Miri),
    // and one word written twice.
    let g = domain(true);
    let words: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
    let mut tx = begin(&g);
    for (i, w) in words.iter().enumerate() {
        let v = tx.read(w).unwrap();
        tx.write(w, v + i as u64);
        tx.write(w, v + i as u64 + 1);
    }
    tx.commit().unwrap();
    for (i, w) in words.iter().enumerate() {
        assert_eq!(w.load(Relaxed), i as u64 + 1);
    }
}

#[test]
fn a_serial_transaction_marks_what_it_writes_until_it_ends() {
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut reader = begin(&g);
    reader.read(&y).unwrap();
    {
        let mut s = SerialTx::begin_without_hardware(&g);
        s.write(&x, 9);
        // In place, but not committed: an outside read still sees 0.
        assert_eq!(x.load(Relaxed), 9);
        std::thread::scope(|sc| {
            let h = sc.spawn(|| g.load_committed(&x, || false));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!h.is_finished(), "a load read an uncommitted serial write");
            drop(s); // not committed: undone, then released
            assert_eq!(h.join().unwrap(), 0);
        });
    }
    // The rolled-back serial transaction still marked x's record with a
    // newer version: harmless, the reader extends (y is unchanged).
    assert_eq!(reader.read(&x), Ok(0));
    reader.commit().unwrap();
}

#[test]
fn a_retry_waits_on_records_and_wakes_on_a_commit() {
    let g = domain(true);
    let x = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut tx = begin(&g);
            loop {
                let v = tx.read(&x).unwrap();
                if v != 0 {
                    tx.commit().unwrap();
                    return v;
                }
                tx.wait_for_change();
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut w = begin(&g);
        w.write(&x, 4);
        w.commit().unwrap();
    });
    assert_eq!(x.load(Relaxed), 4);
}

#[test]
fn a_transaction_starts_at_its_threads_last_snapshot_and_extends_past_later_commits() {
    // The thread's next transaction takes the snapshot its last one ended
    // at, without reading the clock: a commit made since on another thread
    // is then newer than the snapshot, and reading one of its words extends
    // the snapshot (the earlier read is still current) and returns the new
    // value.
    let g = domain(true);
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut mine = begin(&g);
    mine.write(&y, 1);
    mine.commit().unwrap();
    drop(mine);
    let at_my_commit = g.seq().load(Relaxed);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut other = begin(&g);
            other.write(&x, 5);
            other.commit().unwrap();
        });
    });
    assert!(g.seq().load(Relaxed) > at_my_commit);
    let mut next = begin(&g);
    assert_eq!(next.read(&y), Ok(1));
    assert_eq!(next.read(&x), Ok(5), "the other thread's commit was missed");
    next.write(&y, 2);
    next.commit().unwrap();
    assert_eq!((x.load(Relaxed), y.load(Relaxed)), (5, 2));
}

#[test]
fn a_threads_last_snapshot_is_not_taken_into_another_domain() {
    // The thread's last snapshot belongs to its domain. Taken into a new
    // domain (its clock far below it), a reader there would accept a
    // commit made after its first read as older than its snapshot, and see
    // half of it: y before, x after.
    let old = Box::new(domain(true));
    let w = AtomicU64::new(0);
    for _ in 0..20 {
        let mut tx = begin(&old);
        tx.write(&w, 1);
        tx.commit().unwrap();
    }
    drop(old);
    // Likely at the old domain's address: the allocator reuses the block.
    let g = Box::new(domain(true));
    assert_a_reader_sees_no_half_commit(&g);
}

/// A reader reads `y`, then a commit writes `x` and `y`: the reader's read
/// of `x` must restart, or it sees `x` after the commit and `y` before it.
fn assert_a_reader_sees_no_half_commit(g: &Globals) {
    let (x, y) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut reader = begin(g);
    assert_eq!(reader.read(&y), Ok(0));
    let mut writer = begin(g);
    writer.write(&x, 1);
    writer.write(&y, 1);
    writer.commit().unwrap();
    assert_eq!(
        reader.read(&x),
        Err(Restart),
        "the reader saw x after a commit and y before it"
    );
}

#[test]
fn a_hybrid_transaction_leaves_no_snapshot_for_a_striped_domain() {
    // The thread's logs carry its last striped snapshot to its next
    // transaction. A transaction of a hybrid (NOrec) domain in between
    // ends with its own snapshot, a `seq` far above the striped clock:
    // taken for a striped snapshot, a reader would accept a commit made
    // after its first read as older than its snapshot, and see half of it.
    let g = domain(true);
    let v = AtomicU64::new(0);
    let mut first = begin(&g);
    first.write(&v, 1);
    first.commit().unwrap();
    drop(first);
    let hybrid = domain(false);
    let w = AtomicU64::new(0);
    for _ in 0..20 {
        let mut tx = SoftTx::begin(&hybrid);
        tx.write(&w, 1);
        tx.commit().unwrap();
    }
    assert!(hybrid.seq().load(Relaxed) > g.seq().load(Relaxed) + 8);
    assert_a_reader_sees_no_half_commit(&g);
}

#[test]
fn words_sharing_a_record_are_released_together() {
    // Two words whose records are one (the record table wraps around):
    // the commit that writes both must write both back before it releases
    // the record, or a reader sees one new and one old under one version.
    const WORDS: usize = if cfg!(miri) { 257 } else { (1 << 16) + 1 };
    const ROUNDS: u64 = if cfg!(miri) { 30 } else { 100_000 };
    let g = domain(true);
    let words: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let (a, b) = (&words[0], &words[WORDS - 1]);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=ROUNDS {
                let mut tx = begin(&g);
                tx.write(a, i);
                tx.write(b, i);
                tx.commit().unwrap();
            }
        });
        s.spawn(|| {
            let mut seen = 0;
            while seen < ROUNDS {
                let mut tx = begin(&g);
                let Ok(x) = tx.read(a) else { continue };
                let Ok(y) = tx.read(b) else { continue };
                assert_eq!(x, y, "a reader saw one word of a commit without the other");
                seen = x;
            }
        });
    });
}
