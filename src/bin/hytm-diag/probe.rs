//! `hytm-diag probe`: what RTM can do here. Runs only where RTM is usable.

use std::hint::black_box;
use std::time::Instant;

use hytm::rtm::{AbortStatus, Rtm};

use crate::{Lines, Output};

/// Environment variable that turns this process into the vDSO probe child.
pub const VDSO_CHILD: &str = "HYTM_DIAG_VDSO_CHILD";
const LINE: usize = 64;
const PAGE: usize = 4096;
/// Share of commits that counts a footprint as fitting.
const FITS: f64 = 0.9;

pub fn run() -> Output {
    if hytm::rtm::MODEL {
        // Latency, capacity and abort sources are properties of the silicon:
        // on the model they would be figures of a simulation.
        let note = "the HTM model (--cfg hytm_model) simulates RTM; latency, capacity and abort sources are measured on real RTM only";
        let mut l = Lines::default();
        l.add("probe", format!("skipped: {note}"));
        return Output {
            text: l.into_string(),
            json: serde_json::json!({ "available": false, "reason": note }),
        };
    }
    let Some(rtm) = Rtm::get() else {
        let note = crate::no_rtm_note();
        let mut l = Lines::default();
        l.add("probe", format!("skipped: {note}"));
        return Output {
            text: l.into_string(),
            json: serde_json::json!({ "available": false, "reason": note }),
        };
    };
    let mut l = Lines::default();

    eprintln!("probe: latency...");
    let lat = latency(rtm);
    l.add(
        "empty tx",
        format!("{:.1} ns (xbegin + xend)", lat.empty_tx),
    );
    l.add(
        "lock+unlock",
        format!("{:.1} ns (parking_lot, uncontended)", lat.lock),
    );
    l.add(
        "elided section",
        format!("{:.1} ns (ElidedMutex, uncontended)", lat.elided),
    );

    let buf = prefaulted(16 << 20);
    let mut capacity = serde_json::Map::new();
    for (name, write, stride) in [
        ("write set", true, LINE),
        ("write set 4K", true, PAGE),
        ("read set", false, LINE),
        ("read set 4K", false, PAGE),
    ] {
        eprintln!("probe: capacity, {name}...");
        let lines = capacity_lines(rtm, &buf, write, stride);
        let desc = if stride == LINE {
            format!("{lines} lines ({} KiB), contiguous", lines * LINE / 1024)
        } else {
            format!("{lines} lines, 4 KiB apart (one L1 set)")
        };
        l.add(name, desc);
        capacity.insert(name.replace(' ', "_"), lines.into());
    }

    eprintln!("probe: abort sources...");
    let sources = abort_sources(rtm);
    l.raw("abort sources:\n");
    for (name, outcome) in &sources {
        l.add(&format!("  {name}"), outcome_text(*outcome));
    }

    eprintln!("probe: status-0 aborts against duration (a few seconds)...");
    let by_duration = status0_by_duration(rtm);
    l.raw("status-0 aborts by transaction duration:\n");
    for d in &by_duration {
        l.add(
            &format!("  {} us", d.micros),
            format!(
                "{:.1}% status 0, {:.1}% committed ({} attempts)",
                100.0 * d.status0 as f64 / d.attempts as f64,
                100.0 * d.commits as f64 / d.attempts as f64,
                d.attempts
            ),
        );
    }

    let json = serde_json::json!({
        "available": true,
        "latency_ns": { "empty_tx": lat.empty_tx, "lock_unlock": lat.lock, "elided_section": lat.elided },
        "capacity_lines": capacity,
        "abort_sources": sources.iter().map(|(n, o)| (n.to_string(), outcome_json(*o))).collect::<serde_json::Map<_, _>>(),
        "status0_by_duration": by_duration.iter().map(|d| serde_json::json!({
            "micros": d.micros, "attempts": d.attempts, "status0": d.status0, "commits": d.commits,
        })).collect::<Vec<_>>(),
    });
    Output {
        text: l.into_string(),
        json,
    }
}

struct Latency {
    empty_tx: f64,
    lock: f64,
    elided: f64,
}

fn per_op_ns(n: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn latency(rtm: Rtm) -> Latency {
    const N: u32 = 200_000;
    let empty_tx = per_op_ns(N, || {
        if rtm.begin().is_ok() {
            // SAFETY: begin returned Ok: inside a transaction.
            unsafe { rtm.end() };
        }
    });
    let m = parking_lot::Mutex::new(0u64);
    let lock = per_op_ns(N, || *m.lock() += 1);
    let e = hytm::ElidedMutex::new(0u64).named("hytm-diag probe");
    let elided = per_op_ns(N, || *e.lock() += 1);
    Latency {
        empty_tx,
        lock,
        elided,
    }
}

fn prefaulted(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for i in (0..bytes).step_by(PAGE) {
        v[i] = 1;
    }
    v
}

/// Runs `f` in one transaction; `Ok` if it committed.
fn in_tx(rtm: Rtm, f: impl FnOnce()) -> Result<(), AbortStatus> {
    rtm.begin()?;
    f();
    // SAFETY: begin returned Ok and an abort would have returned Err there.
    unsafe { rtm.end() };
    Ok(())
}

/// Share of `tries` transactions touching `lines` lines `stride` apart that
/// commit.
fn commit_share(rtm: Rtm, buf: &[u8], lines: usize, stride: usize, write: bool) -> f64 {
    const TRIES: u32 = 20;
    let ptr = buf.as_ptr() as *mut u8;
    let mut commits = 0;
    for _ in 0..TRIES {
        // Warm the lines outside, so only the footprint decides.
        let mut sum = 0u8;
        for i in 0..lines {
            sum = sum.wrapping_add(buf[i * stride]);
        }
        black_box(sum);
        let ok = in_tx(rtm, || {
            let mut sum = 0u8;
            for i in 0..lines {
                // SAFETY: i * stride < buf.len() (checked by the caller's
                // size limits); volatile so every line is really touched.
                unsafe {
                    let p = ptr.add(i * stride);
                    if write {
                        p.write_volatile(p.read_volatile().wrapping_add(0));
                    } else {
                        sum = sum.wrapping_add(p.read_volatile());
                    }
                }
            }
            black_box(sum);
        });
        commits += u32::from(ok.is_ok());
    }
    f64::from(commits) / f64::from(TRIES)
}

/// Largest footprint (in lines) that commits at least `FITS` of the time.
fn capacity_lines(rtm: Rtm, buf: &[u8], write: bool, stride: usize) -> usize {
    let max_lines = buf.len() / stride;
    let mut sizes: Vec<usize> = (2..=20)
        .flat_map(|k| [1usize << k, 3usize << (k - 1)])
        .filter(|&n| n <= max_lines)
        .collect();
    sizes.sort_unstable();
    let mut best = 0;
    let mut misses = 0;
    for n in sizes {
        if commit_share(rtm, buf, n, stride, write) >= FITS {
            best = n;
            misses = 0;
        } else {
            misses += 1;
            if misses >= 2 {
                break;
            }
        }
    }
    best
}

#[derive(Clone, Copy)]
enum Outcome {
    Committed,
    Aborted(AbortStatus),
    NotRun(&'static str),
}

fn outcome_text(o: Outcome) -> String {
    match o {
        Outcome::Committed => "commits".into(),
        Outcome::Aborted(s) => format!("aborts: {s} (raw {:#x})", s.raw()),
        Outcome::NotRun(why) => format!("not measured: {why}"),
    }
}

fn outcome_json(o: Outcome) -> serde_json::Value {
    match o {
        Outcome::Committed => serde_json::json!({ "commits": true }),
        Outcome::Aborted(s) => {
            serde_json::json!({ "commits": false, "status": s.to_string(), "raw": s.raw(), "cause": s.cause().name() })
        }
        Outcome::NotRun(why) => serde_json::json!({ "measured": false, "reason": why }),
    }
}

/// Tries `f` in a transaction up to 5 times (a hypervisor interrupt can
/// abort any one); reports a commit, or the last abort status.
fn classify(rtm: Rtm, mut f: impl FnMut()) -> Outcome {
    let mut last = None;
    for _ in 0..5 {
        match in_tx(rtm, &mut f) {
            Ok(()) => return Outcome::Committed,
            Err(s) => last = Some(s),
        }
    }
    last.map_or(Outcome::Committed, Outcome::Aborted)
}

fn abort_sources(rtm: Rtm) -> Vec<(&'static str, Outcome)> {
    let mut out = Vec::new();
    out.push((
        "syscall",
        classify(rtm, || {
            // SAFETY: getppid has no preconditions.
            black_box(unsafe { libc::getppid() });
        }),
    ));
    out.push(("first touch of a page", first_touch(rtm)));
    out.push((
        "heap growth",
        classify(rtm, || {
            // 64 MiB is above glibc's mmap threshold: a fresh mapping.
            let v: Vec<u8> = Vec::with_capacity(64 << 20);
            black_box(&v);
        }),
    ));
    out.push(("pause", classify(rtm, std::hint::spin_loop)));
    #[cfg(target_arch = "x86_64")]
    out.push((
        "cpuid",
        classify(rtm, || {
            black_box(core::arch::x86_64::__cpuid(0));
        }),
    ));
    out.push(("vDSO clock, first use", vdso_first_use()));
    let _ = Instant::now();
    out.push((
        "vDSO clock, warm",
        classify(rtm, || {
            black_box(Instant::now());
        }),
    ));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    out.push((
        "panic",
        classify(rtm, || {
            let _ = black_box(std::panic::catch_unwind(|| panic!("probe")));
        }),
    ));
    std::panic::set_hook(hook);
    out
}

/// A fresh anonymous page per try: its first touch faults, which no retry
/// fixes (the fault is serviced only outside the transaction).
fn first_touch(rtm: Rtm) -> Outcome {
    let mut last = None;
    for _ in 0..5 {
        // SAFETY: an anonymous private mapping; checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Outcome::NotRun("mmap failed");
        }
        let r = in_tx(rtm, || {
            // SAFETY: p is a fresh writable page.
            unsafe { (p as *mut u8).write_volatile(1) };
        });
        // SAFETY: p was mapped above with this length.
        unsafe { libc::munmap(p, PAGE) };
        match r {
            Ok(()) => return Outcome::Committed,
            Err(s) => last = Some(s),
        }
    }
    last.map_or(Outcome::Committed, Outcome::Aborted)
}

/// `Instant::now()` before its first call in a process: measured in a child
/// process, since this one has used the clock already.
fn vdso_first_use() -> Outcome {
    let Ok(exe) = std::env::current_exe() else {
        return Outcome::NotRun("cannot find own executable");
    };
    let Ok(out) = std::process::Command::new(exe)
        .env(VDSO_CHILD, "1")
        .output()
    else {
        return Outcome::NotRun("cannot run the child process");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<i64>() {
        Ok(-1) => Outcome::Committed,
        Ok(raw) => Outcome::Aborted(AbortStatus::from_raw(raw as u32)),
        Err(_) => Outcome::NotRun("the child process reported nothing"),
    }
}

/// The child side of [`vdso_first_use`]: runs before anything else in the
/// process touches the clock; prints -1 for a commit, else the raw status.
pub fn vdso_child() {
    let Some(rtm) = Rtm::get() else {
        println!("x");
        return;
    };
    // One try only: a retry would find the vDSO page mapped by the first.
    match in_tx(rtm, || {
        black_box(Instant::now());
    }) {
        Ok(()) => println!("-1"),
        Err(s) => println!("{}", s.raw()),
    }
}

struct DurationRow {
    micros: u64,
    attempts: u32,
    status0: u32,
    commits: u32,
}

/// Status-0 aborts (interrupts, VM exits) against transaction duration: a
/// transaction that spins in registers for a given time.
fn status0_by_duration(rtm: Rtm) -> Vec<DurationRow> {
    let spin = |n: u64| {
        let mut x = 1u64;
        for i in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(black_box(i));
        }
        black_box(x);
    };
    // Calibrate iterations per microsecond outside any transaction.
    let n = 10_000_000;
    let t = Instant::now();
    spin(n);
    let per_us = (n as f64 / t.elapsed().as_secs_f64() / 1e6).max(1.0);
    [
        (1u64, 400u32),
        (10, 400),
        (100, 200),
        (1000, 100),
        (10_000, 30),
    ]
    .into_iter()
    .map(|(micros, attempts)| {
        let iters = (micros as f64 * per_us) as u64;
        let mut row = DurationRow {
            micros,
            attempts,
            status0: 0,
            commits: 0,
        };
        for _ in 0..attempts {
            match in_tx(rtm, || spin(iters)) {
                Ok(()) => row.commits += 1,
                Err(s) if s.is_unexplained() => row.status0 += 1,
                Err(_) => {}
            }
        }
        row
    })
    .collect()
}
