//! The HTM model (`--cfg hytm_model`): RTM's semantics simulated in software,
//! so that hytm's hardware paths run on machines without TSX.
//!
//! This module is the model's core; `hytm`'s `src/rtm.rs` is its front end
//! (the third backend beside the `asm!` one and the stub). It lives here,
//! beside the atomics shim, because strong isolation needs both: every
//! operation on a shim [`AtomicU64`](crate::AtomicU64) (a `TCell` word,
//! `seq`, `sw_active`) comes through [`load`], [`store`] and [`rmw`].
//!
//! # What is modelled
//!
//! - **Transactions per thread**, flat nesting up to [`MAX_DEPTH`] levels;
//!   [`test`] is `xtest`.
//! - **Transactional words**: inside a transaction a shim load is logged
//!   with its value, a shim store is buffered (later loads read it back),
//!   and every operation revalidates the read log by value, so a model
//!   transaction never runs on an inconsistent view (real RTM aborts at
//!   once on a conflict, so its zombies never run either). The outermost
//!   [`end`] validates and writes the buffer back atomically.
//! - **Strong isolation**: outside transactions, every shim store, CAS and
//!   read-modify-write takes the model lock, the same lock under which
//!   transactions validate and commit; loads wait out a commit's
//!   write-back. A software commit between a model transaction's read and
//!   its commit therefore aborts it with CONFLICT, as another core's store
//!   to a line in the read set aborts a real one.
//! - **Status words** as the SDM encodes them: EXPLICIT with the code in
//!   bits 31:24, CONFLICT|RETRY, CAPACITY, NESTED on every abort taken
//!   below the outermost level.
//! - **Capacity**: more than [`capacity`]`().1` distinct 64-byte lines
//!   written, or `.0` read, aborts with CAPACITY (768 and 2,000 by
//!   default, near a Skylake-class L1 and read-set tracker).
//!
//! # How an abort is delivered
//!
//! Real RTM resumes at `xbegin` with the status. The model cannot, so code
//! that runs a transaction wraps it in [`catch`], and an abort unwinds to
//! it (with [`std::panic::resume_unwind`], which runs no panic hook),
//! discarding the buffered writes.
//!
//! An elided critical section is not a closure: `lock()` returns inside the
//! transaction and the section runs in the caller's frame, touching its data
//! with plain loads and stores the model cannot buffer. Such a section is
//! *isolated* instead ([`isolate_lock`]): it holds its lock's isolation
//! (shared for a read section, exclusive otherwise) from its subscription to
//! the end of its transaction, and every real acquisition of an elided lock
//! takes the same isolation around the acquisition ([`with_isolation`]), so
//! no real holder overlaps a section that elided the same lock. Once such a
//! transaction touches transactional words it also holds the model lock to
//! its end, so that no commit invalidates what it read. An abort delivered
//! inside an isolated section (an explicit `xabort`, capacity) cannot
//! return to `xbegin`: the model *promotes* the section instead. It takes
//! for real every lock the transaction elided (free: nobody could acquire
//! them meanwhile, but for real readers beside a read section), writes back
//! the buffered words, and leaves the transaction; the section goes on under
//! the real locks, an execution real locking allows.
//!
//! # What it cannot show
//!
//! Real capacity (it counts lines of transactional words only), status-0
//! aborts from interrupts, page faults and system calls, timing, and
//! conflicts on memory that is not a shim word (an elided section's data is
//! protected by isolation instead). Plain memory written inside a
//! transaction is not rolled back by an abort. An abort after an elided
//! section wrote in place *inside an `atomic` transaction* cannot be
//! modelled (those writes cannot be undone and there is no lock to
//! promote to): the model panics with a message saying so.
//!
//! Isolation is a lock where real RTM has none: a section (or a transaction
//! holding the model lock) that waits for another thread which needs the
//! same isolation (or the model lock) waits forever under the model, where
//! on hardware both would run and one would abort. Programs that would also
//! deadlock with real locks (`HYTM_MODE=fallback`) are the usual case; two
//! sections that touched transactional words and take each other's locks in
//! opposite orders are the one the model adds.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64 as StdAtomicU64, AtomicUsize, Ordering};

/// Deepest nesting the model accepts; one level more aborts (as
/// `MAX_RTM_NEST_COUNT`, 7 on the parts shipped so far).
pub const MAX_DEPTH: u32 = 7;

/// Status bits (Intel SDM vol. 1, 16.3.5).
pub mod status {
    /// `xabort`; the code is in bits 31:24.
    pub const EXPLICIT: u32 = 1 << 0;
    /// A retry may succeed.
    pub const RETRY: u32 = 1 << 1;
    /// A data conflict.
    pub const CONFLICT: u32 = 1 << 2;
    /// The footprint overflowed.
    pub const CAPACITY: u32 = 1 << 3;
    /// Aborted below the outermost level.
    pub const NESTED: u32 = 1 << 5;
}

/// Bytes per cache line, for the capacity count.
const LINE: usize = 64;

static READ_LINES: AtomicUsize = AtomicUsize::new(2000);
static WRITE_LINES: AtomicUsize = AtomicUsize::new(768);

/// Sets the capacity limits in distinct 64-byte lines of transactional
/// words: `(read, write)`. Process-wide; for tests.
pub fn set_capacity(read_lines: usize, write_lines: usize) {
    // Relaxed: a limit read by later transactions; no data depends on it.
    READ_LINES.store(read_lines, Ordering::Relaxed);
    WRITE_LINES.store(write_lines, Ordering::Relaxed);
}

/// The capacity limits: `(read, write)` lines.
pub fn capacity() -> (usize, usize) {
    // Relaxed: as in `set_capacity`.
    (
        READ_LINES.load(Ordering::Relaxed),
        WRITE_LINES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------
// The model lock (reentrant per thread) and the write-back sequence.

/// The thread holding the model lock (its token), 0 when free.
static OWNER: AtomicUsize = AtomicUsize::new(0);
/// Odd while a commit writes its buffer back: non-transactional loads wait.
static WRITE_BACK: StdAtomicU64 = StdAtomicU64::new(0);

thread_local! {
    static TOKEN: u8 = const { 0 };
    /// How many times this thread holds the model lock. Apart from `STATE`
    /// and without drop glue, so it outlives thread teardown: the software
    /// path's stores in other thread-locals' destructors still take the lock.
    static LOCK_COUNT: Cell<u32> = const { Cell::new(0) };
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// How many times this thread holds the model lock.
fn held() -> u32 {
    LOCK_COUNT.with(Cell::get)
}

fn lock() {
    let me = token();
    // Acquire/Relaxed: a spin lock; Acquire orders what the previous holder
    // did before our critical section.
    if OWNER.load(Ordering::Relaxed) != me {
        let mut spins = 0u32;
        while OWNER
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
    LOCK_COUNT.with(|c| c.set(c.get() + 1));
}

fn unlock() {
    let last = LOCK_COUNT.with(|c| {
        c.set(c.get() - 1);
        c.get() == 0
    });
    if last {
        // Release: publishes the critical section to the next holder.
        OWNER.store(0, Ordering::Release);
    }
}

/// Runs `f` holding the model lock (the non-transactional shim operations).
fn with_lock<R>(f: impl FnOnce() -> R) -> R {
    lock();
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            unlock();
        }
    }
    let _u = Unlock;
    f()
}

// ---------------------------------------------------------------------------
// Per-lock isolation of elided sections.

/// How long to wait for a lock's isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Until it is free.
    Block,
    /// Not at all.
    Try,
}

/// Isolation of each elided lock (by address): how many shared holders, and
/// whether an exclusive one. A section holds its lock's isolation from its
/// subscription to the end of its transaction; a real acquisition holds it
/// around the acquisition only. So no real holder overlaps a section, and
/// readers' sections (shared) run beside each other and beside real readers.
static ISOLATION: std::sync::Mutex<Vec<(usize, u32, bool)>> = std::sync::Mutex::new(Vec::new());
static ISOLATION_FREED: std::sync::Condvar = std::sync::Condvar::new();

fn isolation_try(addr: usize, exclusive: bool) -> bool {
    let mut table = ISOLATION.lock().unwrap_or_else(|e| e.into_inner());
    let i = match table.iter().position(|e| e.0 == addr) {
        Some(i) => i,
        None => {
            table.push((addr, 0, false));
            table.len() - 1
        }
    };
    let (_, shared, excl) = &mut table[i];
    if *excl || (exclusive && *shared > 0) {
        return false;
    }
    if exclusive {
        *excl = true;
    } else {
        *shared += 1;
    }
    true
}

fn isolation_acquire(addr: usize, exclusive: bool, wait: Wait) -> bool {
    loop {
        if isolation_try(addr, exclusive) {
            return true;
        }
        if wait == Wait::Try {
            return false;
        }
        let table = ISOLATION.lock().unwrap_or_else(|e| e.into_inner());
        // A bounded wait: a release notifies, and the timeout covers a
        // release that raced with this check.
        let _ = ISOLATION_FREED.wait_timeout(table, std::time::Duration::from_millis(1));
    }
}

/// Turns the caller's shared isolation of `addr` into an exclusive one, if
/// nobody else shares it.
fn isolation_upgrade(addr: usize) -> bool {
    let mut table = ISOLATION.lock().unwrap_or_else(|e| e.into_inner());
    match table.iter_mut().find(|e| e.0 == addr) {
        Some(e) if e.1 == 1 && !e.2 => {
            *e = (addr, 0, true);
            true
        }
        _ => false,
    }
}

fn isolation_release(addr: usize, exclusive: bool) {
    let mut table = ISOLATION.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = table.iter().position(|e| e.0 == addr) {
        if exclusive {
            table[i].2 = false;
        } else {
            table[i].1 -= 1;
        }
        if table[i].1 == 0 && !table[i].2 {
            table.swap_remove(i);
        }
    }
    drop(table);
    ISOLATION_FREED.notify_all();
}

/// Runs a real acquisition of the elided lock at `addr` under that lock's
/// isolation (shared or exclusive as the acquisition), so that it never
/// overlaps a section that elided the same lock. `None` from `f`, or a
/// section holding the isolation with `Wait::Try`, gives `None`.
pub fn with_isolation<G>(
    addr: usize,
    exclusive: bool,
    wait: Wait,
    f: impl FnOnce() -> Option<G>,
) -> Option<G> {
    if !isolation_acquire(addr, exclusive, wait) {
        return None;
    }
    let g = f();
    isolation_release(addr, exclusive);
    g
}

// ---------------------------------------------------------------------------
// Per-thread transaction state.

/// What a catch frame stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// An attempt site: the outermost `xbegin` of a transaction whose whole
    /// body runs inside the frame (`atomic`), or the subscription of an
    /// elided section.
    Attempt,
    /// A flat-nested `atomic` inside a transaction: it catches an abort only
    /// when the transaction was promoted (the enclosing section now holds
    /// its real locks) and reruns outside it.
    Nested,
}

#[derive(Debug)]
enum FrameEntry {
    Catch {
        kind: Frame,
        generation: u64,
        dirty: bool,
        savepoint: usize,
    },
    /// An elided section's code: no frame can resume it.
    Section { generation: u64 },
}

/// Takes the real lock of the section a key names, for a promotion.
pub type Take = unsafe fn(usize) -> Box<dyn Any>;

struct Level {
    key: usize,
    take: Take,
}

#[derive(Default)]
struct State {
    depth: u32,
    /// Increases with every outermost begin, so frames of an earlier
    /// transaction are told apart.
    generation: u64,
    reads: Vec<(usize, u64)>,
    writes: Vec<(usize, u64)>,
    read_lines: HashSet<usize>,
    write_lines: HashSet<usize>,
    /// Holds the model lock until it ends (a transaction with elided
    /// sections that touched transactional words: nothing may invalidate
    /// what it read, since its in-place writes cannot be rolled back).
    isolated: bool,
    /// Lock isolations its sections hold: (address, exclusive).
    isolations: Vec<(usize, bool)>,
    /// An elided section of this transaction has run (and may have written
    /// plain memory in place).
    dirty: bool,
    frames: Vec<FrameEntry>,
    levels: Vec<Level>,
    /// Real lock guards taken by a promotion, by section key.
    promoted: Vec<(usize, Box<dyn Any>)>,
    /// An abort decided while a panic was unwinding: (status, target frame).
    pending: Option<(u32, Option<usize>)>,
}

impl State {
    fn clear_tx(&mut self) {
        for (addr, exclusive) in self.isolations.drain(..) {
            isolation_release(addr, exclusive);
        }
        self.depth = 0;
        self.reads.clear();
        self.writes.clear();
        self.read_lines.clear();
        self.write_lines.clear();
        self.dirty = false;
        self.levels.clear();
    }

    fn buffered(&self, addr: usize) -> Option<u64> {
        self.writes
            .iter()
            .rev()
            .find(|(a, _)| *a == addr)
            .map(|&(_, v)| v)
    }

    fn valid(&self) -> bool {
        self.reads.iter().all(|&(a, v)| {
            // SAFETY: `a` is the address of a shim word this transaction
            // read; the words hytm reads transactionally (TCells, `seq`,
            // `sw_active`) outlive every transaction that reads them.
            unsafe { (*(a as *const StdAtomicU64)).load(Ordering::SeqCst) == v }
        })
    }
}

/// The payload an abort unwinds with.
struct ModelAbort {
    status: u32,
    target: usize,
}

/// Whether this thread is inside a model transaction (`xtest`).
#[inline]
pub fn test() -> bool {
    // try_with: in thread-local destructors (a lock taken in one) the state
    // may be gone, and no transaction runs there.
    STATE.try_with(|s| s.borrow().depth > 0).unwrap_or(false)
}

/// `xbegin`: starts a transaction or nests one level deeper. A level past
/// [`MAX_DEPTH`] aborts the transaction. Returns `false`, starting nothing,
/// where the model cannot run a transaction: in a thread-local destructor
/// after its state was torn down (the caller reports a status-0 abort, as
/// an interrupt would be).
#[must_use]
pub fn begin() -> bool {
    let overflow = STATE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.depth == 0 {
            s.generation += 1;
            s.depth = 1;
            s.isolated = false;
            s.pending = None;
            false
        } else if s.depth == MAX_DEPTH {
            true
        } else {
            s.depth += 1;
            false
        }
    });
    match overflow {
        Ok(true) => {
            abort(status::NESTED);
            true
        }
        Ok(false) => true,
        Err(_) => false,
    }
}

/// `xend`: leaves one level; the outermost validates and writes back.
///
/// # Panics
///
/// Outside a transaction (`xend` raises `#GP` there).
pub fn end() {
    let outermost = STATE.with(|s| {
        let mut s = s.borrow_mut();
        assert!(
            s.depth > 0,
            "hytm model: xend outside a transaction (#GP on hardware)"
        );
        if s.depth > 1 {
            s.depth -= 1;
            false
        } else {
            true
        }
    });
    if outermost {
        commit();
    }
}

fn commit() {
    lock();
    let ok = STATE.with(|s| {
        let mut s = s.borrow_mut();
        if !s.isolated && !s.valid() {
            return false;
        }
        write_back(&s.writes);
        let isolated = s.isolated;
        s.isolated = false;
        s.clear_tx();
        if isolated {
            // The isolation's own hold; ours is released below.
            LOCK_COUNT.with(|c| c.set(c.get() - 1));
        }
        true
    });
    unlock();
    if !ok {
        abort(status::CONFLICT | status::RETRY);
    }
}

/// Writes buffered words back, inside the write-back sequence; the model
/// lock is held.
fn write_back(writes: &[(usize, u64)]) {
    if writes.is_empty() {
        return;
    }
    // SeqCst throughout: the model is for correctness, not speed.
    WRITE_BACK.fetch_add(1, Ordering::SeqCst);
    for &(a, v) in writes {
        // SAFETY: `a` is a live shim word this transaction wrote (see
        // `State::valid`).
        unsafe { (*(a as *const StdAtomicU64)).store(v, Ordering::SeqCst) };
    }
    WRITE_BACK.fetch_add(1, Ordering::SeqCst);
}

/// `xabort` (and every abort the model raises). Outside a transaction it
/// does nothing, as `xabort` does.
pub fn abort(raw: u32) {
    if !test() {
        return;
    }
    let status = STATE.with(|s| {
        if s.borrow().depth > 1 {
            raw | status::NESTED
        } else {
            raw
        }
    });
    match decide(status) {
        Delivery::Unwind(target) => {
            if std::thread::panicking() {
                STATE.with(|s| s.borrow_mut().pending = Some((status, Some(target))));
            } else {
                panic::resume_unwind(Box::new(ModelAbort { status, target }));
            }
        }
        Delivery::Continue => {
            if std::thread::panicking() {
                STATE.with(|s| s.borrow_mut().pending = Some((status, None)));
            }
        }
    }
}

enum Delivery {
    /// Unwind to this frame (an index into `frames`).
    Unwind(usize),
    /// The section was promoted; `xabort` returns into it.
    Continue,
}

/// What an abort does, and the state change that goes with it: discard the
/// transaction, or promote its sections.
fn decide(status: u32) -> Delivery {
    let (dirty, target) = STATE.with(|s| {
        let s = s.borrow();
        let generation = s.generation;
        let catches = s.frames.iter().enumerate().filter_map(|(i, f)| match f {
            FrameEntry::Catch {
                kind,
                generation: g,
                dirty,
                ..
            } if *g == generation => Some((i, *kind, *dirty)),
            _ => None,
        });
        if !s.dirty {
            // Nothing was written in place: roll back to the outermost
            // attempt (an abort at any depth resumes at the outermost
            // `xbegin`).
            let target = catches
                .filter(|&(_, kind, _)| kind == Frame::Attempt)
                .map(|(i, _, _)| i)
                .next();
            (false, target)
        } else {
            let atomic_outside = catches
                .clone()
                .any(|(_, kind, dirty)| kind == Frame::Attempt && !dirty);
            if atomic_outside {
                drop(s);
                limitation(status);
            }
            // The innermost frame, if it is a catch inside the sections.
            let top = s
                .frames
                .iter()
                .enumerate()
                .rev()
                .find_map(|(i, f)| match f {
                    FrameEntry::Catch { generation: g, .. }
                    | FrameEntry::Section { generation: g }
                        if *g == generation =>
                    {
                        Some((i, matches!(f, FrameEntry::Catch { .. })))
                    }
                    _ => None,
                });
            (true, top.filter(|&(_, catch)| catch).map(|(i, _)| i))
        }
    });
    if !dirty {
        let Some(target) = target else {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                release_isolation(&mut s);
                s.clear_tx();
            });
            panic!(
                "hytm model: abort ({status:#010x}) with no frame to resume: under the HTM \
                 model, run raw transactions with Rtm::transaction, not Rtm::begin"
            );
        };
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            release_isolation(&mut s);
            s.clear_tx();
        });
        Delivery::Unwind(target)
    } else {
        promote(target);
        match target {
            Some(t) => Delivery::Unwind(t),
            None => Delivery::Continue,
        }
    }
}

#[cold]
fn limitation(status: u32) -> ! {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        release_isolation(&mut s);
        s.clear_tx();
    });
    panic!(
        "hytm model: abort ({status:#010x}) after an elided section wrote in place inside \
         this atomic transaction; real RTM would roll those writes back, the model cannot"
    );
}

fn release_isolation(s: &mut State) {
    if s.isolated {
        s.isolated = false;
        if LOCK_COUNT.with(|c| {
            c.set(c.get() - 1);
            c.get() == 0
        }) {
            // Release: as in `unlock`.
            OWNER.store(0, Ordering::Release);
        }
    }
}

/// Promotes an isolated transaction: takes the real locks of its open
/// sections, writes back what was buffered before `target`'s savepoint (the
/// aborted nested `atomic`'s own writes are dropped: it reruns), and leaves
/// the transaction.
fn promote(target: Option<usize>) {
    let levels: Vec<(usize, Take)> =
        STATE.with(|s| s.borrow().levels.iter().map(|l| (l.key, l.take)).collect());
    let mut taken = Vec::with_capacity(levels.len());
    for (key, take) in levels {
        // SAFETY: `take` was registered with `key` by the section that is
        // still open (its guard is alive), so the lock it names is alive.
        taken.push((key, unsafe { take(key) }));
    }
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let savepoint = match target.and_then(|t| s.frames.get(t)) {
            Some(FrameEntry::Catch { savepoint, .. }) => *savepoint,
            _ => s.writes.len(),
        };
        let writes: Vec<_> = s.writes[..savepoint].to_vec();
        write_back(&writes);
        s.promoted.extend(taken);
        release_isolation(&mut s);
        s.clear_tx();
    });
}

/// Runs `f` under a catch frame: an abort of the transaction aimed at this
/// frame comes back as `Err(status)`; any other unwind goes on.
///
/// # Errors
///
/// The abort status.
pub fn catch<R>(kind: Frame, f: impl FnOnce() -> R) -> Result<R, u32> {
    let index = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let entry = FrameEntry::Catch {
            kind,
            generation: s.generation,
            dirty: s.dirty,
            savepoint: s.writes.len(),
        };
        s.frames.push(entry);
        s.frames.len() - 1
    });
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    STATE.with(|s| s.borrow_mut().frames.truncate(index));
    let payload = match r {
        Ok(v) => return Ok(v),
        Err(payload) => payload,
    };
    let payload = match payload.downcast::<ModelAbort>() {
        Ok(a) if a.target == index => return Err(a.status),
        Ok(a) => panic::resume_unwind(a),
        Err(payload) => payload,
    };
    // A real panic. If an abort was decided while it unwound, the
    // transaction (and with it the panic) never happened.
    let pending = STATE.with(|s| s.borrow().pending);
    match pending {
        Some((status, Some(t))) if t == index => {
            STATE.with(|s| s.borrow_mut().pending = None);
            Err(status)
        }
        Some((_, Some(t))) if t < index => panic::resume_unwind(payload),
        // The body panicked inside the transaction with no abort on the
        // way: the first panic aborts real RTM (status 0).
        _ if test() => match decide(0) {
            Delivery::Unwind(t) if t == index => Err(0),
            Delivery::Unwind(t) => {
                STATE.with(|s| s.borrow_mut().pending = Some((0, Some(t))));
                panic::resume_unwind(payload)
            }
            Delivery::Continue => panic::resume_unwind(payload),
        },
        _ => panic::resume_unwind(payload),
    }
}

/// Isolates the section of the elided lock at `addr` (shared or
/// exclusive): called before it reads its lock word, held until the
/// transaction ends. Returns `false` if `wait` is `Try` and another section
/// or a real acquisition holds the isolation (the caller treats the lock as
/// busy).
pub fn isolate_lock(addr: usize, exclusive: bool, wait: Wait) -> bool {
    if !test() {
        return true;
    }
    let held = STATE.with(|s| {
        s.borrow()
            .isolations
            .iter()
            .find(|&&(a, _)| a == addr)
            .map(|&(_, e)| e)
    });
    match held {
        Some(e) if e || !exclusive => return true,
        // Held shared by this transaction alone: strengthen it in place (a
        // read section that then takes an upgradable read or a write of
        // the same lock in the same transaction).
        Some(_) if isolation_upgrade(addr) => {
            STATE.with(|s| {
                for iso in s.borrow_mut().isolations.iter_mut() {
                    if iso.0 == addr {
                        iso.1 = true;
                    }
                }
            });
            return true;
        }
        Some(_) => return false,
        None => {}
    }
    if !isolation_acquire(addr, exclusive, wait) {
        return false;
    }
    STATE.with(|s| s.borrow_mut().isolations.push((addr, exclusive)));
    true
}

/// Before a transactional word is accessed inside a transaction that has
/// elided sections (whose in-place writes cannot be rolled back): take the
/// model lock until the transaction ends, so that nothing invalidates what
/// it reads from here on, after checking that what it read so far is still
/// current. Returns `false` (the caller aborts) if it is not.
fn isolate_words(s: &mut State) -> bool {
    if s.isolated || !s.dirty {
        return true;
    }
    // The model lock, held on until the transaction ends (its count does
    // not depend on the state borrowed here).
    lock();
    if !s.valid() {
        unlock();
        return false;
    }
    s.isolated = true;
    true
}

/// An elided section has subscribed: from here on it may write in place.
/// `take(key)` takes its real lock if the section is promoted.
pub fn enter_section(key: usize, take: Take) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.dirty = true;
        s.levels.push(Level { key, take });
        let generation = s.generation;
        s.frames.push(FrameEntry::Section { generation });
    });
}

/// An elided section ends. `Some(guard)` if it was promoted: the caller
/// releases the real lock with that guard instead of ending a transaction.
pub fn exit_section(key: usize) -> Option<Box<dyn Any>> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(i) = s
            .frames
            .iter()
            .rposition(|f| matches!(f, FrameEntry::Section { .. }))
        {
            s.frames.remove(i);
        }
        if let Some(i) = s.promoted.iter().rposition(|(k, _)| *k == key) {
            return Some(s.promoted.remove(i).1);
        }
        if let Some(i) = s.levels.iter().rposition(|l| l.key == key) {
            s.levels.remove(i);
        }
        None
    })
}

/// Takes the real guard of `key`'s section if an abort promoted it (the
/// section goes on under the real lock; its guard must say so before it
/// changes mode, waits on a condition variable or is released). `None`,
/// changing nothing, if the section was not promoted.
pub fn take_promoted(key: usize) -> Option<Box<dyn Any>> {
    STATE
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let i = s.promoted.iter().rposition(|(k, _)| *k == key)?;
            let guard = s.promoted.remove(i).1;
            if let Some(f) = s
                .frames
                .iter()
                .rposition(|f| matches!(f, FrameEntry::Section { .. }))
            {
                s.frames.remove(f);
            }
            Some(guard)
        })
        .ok()
        .flatten()
}

/// A section changed mode inside its transaction (an upgrade or a
/// downgrade): a promotion now takes the real lock in the new mode.
pub fn rekey_section(old: usize, new: usize) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if let Some(l) = s.levels.iter_mut().rev().find(|l| l.key == old) {
            l.key = new;
        }
    })
}

/// Whether an abort now could still roll everything back (no elided section
/// wrote in place). Injected rollbacks are skipped where it could not.
pub fn can_roll_back() -> bool {
    STATE.with(|s| !s.borrow().dirty)
}

// ---------------------------------------------------------------------------
// The shim's operations.

fn line(addr: usize) -> usize {
    addr / LINE
}

/// A shim load.
pub fn load(w: &StdAtomicU64, order: Ordering) -> u64 {
    if test() {
        return tx_read(w);
    }
    loop {
        let before = WRITE_BACK.load(Ordering::SeqCst);
        if before & 1 == 1 {
            std::thread::yield_now();
            continue;
        }
        let v = w.load(order);
        if WRITE_BACK.load(Ordering::SeqCst) == before {
            return v;
        }
    }
}

/// What every transactional operation checks first (the model lock is
/// held): a transaction with elided sections isolates its words; any other
/// revalidates its read log, so it never runs on an inconsistent view. The
/// value read next is then current too (the model lock is held).
fn revalidate(s: &mut State) -> Result<(), u32> {
    if !isolate_words(s) || (!s.isolated && !s.valid()) {
        return Err(status::CONFLICT | status::RETRY);
    }
    Ok(())
}

fn tx_read(w: &StdAtomicU64) -> u64 {
    let addr = w as *const StdAtomicU64 as usize;
    lock();
    let r = STATE.with(|s| {
        let mut s = s.borrow_mut();
        revalidate(&mut s)?;
        if let Some(v) = s.buffered(addr) {
            return Ok(v);
        }
        let v = w.load(Ordering::SeqCst);
        if s.read_lines.insert(line(addr)) && s.read_lines.len() > capacity().0 {
            return Err(status::CAPACITY);
        }
        s.reads.push((addr, v));
        Ok(v)
    });
    unlock();
    r.unwrap_or_else(|status| {
        abort(status);
        // The abort returned: the section was promoted (or a panic is
        // unwinding), so the transaction is over; read for real.
        load(w, Ordering::SeqCst)
    })
}

fn tx_write(w: &StdAtomicU64, v: u64) {
    let addr = w as *const StdAtomicU64 as usize;
    lock();
    let r = STATE.with(|s| {
        let mut s = s.borrow_mut();
        revalidate(&mut s)?;
        if s.write_lines.insert(line(addr)) && s.write_lines.len() > capacity().1 {
            return Err(status::CAPACITY);
        }
        s.writes.push((addr, v));
        Ok(())
    });
    unlock();
    if let Err(status) = r {
        abort(status);
        // As in `tx_read`: the transaction is over; write for real.
        store(w, v, Ordering::SeqCst);
    }
}

/// A shim store.
pub fn store(w: &StdAtomicU64, v: u64, order: Ordering) {
    if test() {
        return tx_write(w, v);
    }
    with_lock(|| w.store(v, order));
}

/// A shim read-modify-write (CAS, fetch_add, ...): `f` maps the current
/// value to the new one, or `None` to leave it. Returns the value seen.
pub fn rmw(w: &StdAtomicU64, f: impl FnOnce(u64) -> Option<u64>) -> u64 {
    if test() {
        let old = tx_read(w);
        if let Some(new) = f(old) {
            tx_write(w, new);
        }
        return old;
    }
    with_lock(|| {
        let old = w.load(Ordering::SeqCst);
        if let Some(new) = f(old) {
            w.store(new, Ordering::SeqCst);
        }
        old
    })
}

/// How many model locks this thread holds (for tests of the model itself).
pub fn lock_depth() -> u32 {
    held()
}
