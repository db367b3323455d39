//! The RTM primitives: hardware-only tests. Where RTM is not usable each
//! test is skipped with its reason, and the run says so: this file has its
//! own small harness (`harness = false`), so that `cargo test --test rtm`
//! reports skipped tests as ignored, never as passed, and ends with
//! `hardware tests: N ran, M skipped: <why>`. Under the HTM model
//! (`--cfg hytm_model`) the tests of the instructions' semantics run on the
//! model; those whose subject is the silicon itself (system calls, real
//! capacity, rolling back plain memory) stay RTM-only and say so.
//!
//! Arguments: substrings to select tests by name (`--exact` for whole
//! names), `--skip <substring>`, `--list`; libtest's other flags (such as
//! `--nocapture`) are accepted and have no effect.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;

use hytm::rtm::{AbortCause, AbortStatus, Rtm};

const TESTS: &[(&str, fn())] = &[
    ("explicit_code_round_trips", explicit_code_round_trips),
    ("inner_abort_carries_nested", inner_abort_carries_nested),
    ("a_syscall_aborts", a_syscall_aborts),
    (
        "a_write_set_far_over_l1_aborts_with_capacity",
        a_write_set_far_over_l1_aborts_with_capacity,
    ),
    (
        "writes_of_an_aborted_transaction_vanish",
        writes_of_an_aborted_transaction_vanish,
    ),
    ("xtest_sees_the_transaction", xtest_sees_the_transaction),
];

thread_local! {
    /// Why the running test skipped, if it did.
    static SKIPPED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records and prints (as `skip <test>: <why>`, the line ci/test.sh counts)
/// that `test` cannot run here.
fn skip(test: &str, why: String) {
    println!("skip {test}: {why}");
    SKIPPED.with(|s| *s.borrow_mut() = Some(why));
}

fn rtm_or_skip(test: &str) -> Option<Rtm> {
    let rtm = Rtm::get();
    if rtm.is_none() {
        skip(
            test,
            format!("RTM not usable here: {}", hytm::htm().reason()),
        );
    }
    rtm
}

/// For tests of what only real silicon does.
fn silicon_or_skip(test: &str) -> Option<Rtm> {
    if hytm::rtm::MODEL {
        skip(
            test,
            "a property of the silicon, which the HTM model does not simulate".into(),
        );
        return None;
    }
    rtm_or_skip(test)
}

fn main() -> ExitCode {
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let (mut exact, mut list) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            // libtest flags that take a value: accepted, no effect.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                args.next();
            }
            a if a.starts_with('-') => {}
            _ => filters.push(arg),
        }
    }
    let matches = |name: &str, pat: &String| {
        if exact {
            name == pat
        } else {
            name.contains(pat.as_str())
        }
    };
    let selected: Vec<&(&str, fn())> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|(name, _)| !skips.iter().any(|s| name.contains(s.as_str())))
        .collect();
    if list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        println!("\n{} tests, 0 benchmarks", selected.len());
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} tests", selected.len());
    let (mut passed, mut failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (name, test) in &selected {
        SKIPPED.with(|s| s.borrow_mut().take());
        let result = catch_unwind(AssertUnwindSafe(test));
        match (result, SKIPPED.with(|s| s.borrow_mut().take())) {
            (Ok(()), Some(why)) => {
                println!("test {name} ... ignored, {why}");
                skipped.push(why);
            }
            (Ok(()), None) => {
                println!("test {name} ... ok");
                passed.push(*name);
            }
            (Err(_), _) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; {} ignored; 0 measured; {} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        passed.len(),
        failed.len(),
        skipped.len(),
        TESTS.len() - selected.len()
    );
    let mut reasons = skipped.clone();
    reasons.sort();
    reasons.dedup();
    let ran = passed.len() + failed.len();
    let mut summary = format!("hardware tests: {ran} ran");
    if ran > 0 && hytm::rtm::MODEL {
        summary.push_str(" on the HTM model");
    }
    summary.push_str(&format!(", {} skipped", skipped.len()));
    if !reasons.is_empty() {
        summary.push_str(&format!(": {}", reasons.join("; ")));
    }
    println!("{summary}");
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `body` in a transaction until it commits or `tries` attempts abort;
/// returns the last abort status, or `None` if it committed.
fn run(rtm: Rtm, tries: u32, mut body: impl FnMut()) -> Option<AbortStatus> {
    let mut last = None;
    for _ in 0..tries {
        match rtm.transaction(&mut body) {
            Ok(()) => return None,
            Err(s) => last = Some(s),
        }
    }
    last
}

fn explicit_code_round_trips() {
    let Some(rtm) = rtm_or_skip("explicit_code_round_trips") else {
        return;
    };
    let mut seen = None;
    for _ in 0..100 {
        match rtm.transaction(|| rtm.abort::<0x5a>()) {
            Ok(()) => panic!("xabort returned inside a transaction"),
            Err(s) if s.is_explicit() => {
                seen = Some(s);
                break;
            }
            Err(_) => continue, // a hypervisor status-0 abort; try again
        }
    }
    let s = seen.expect("no explicit abort in 100 tries");
    assert_eq!(s.explicit_code(), Some(0x5a));
    assert_eq!(s.cause(), AbortCause::Explicit);
}

fn inner_abort_carries_nested() {
    let Some(rtm) = rtm_or_skip("inner_abort_carries_nested") else {
        return;
    };
    let mut seen = None;
    for _ in 0..100 {
        let outer = rtm.transaction(|| {
            // The inner level's abort resumes at the outer `xbegin` (under
            // the model, unwinds to the outer `transaction`).
            let _ = rtm.transaction(|| rtm.abort::<0x11>());
        });
        match outer {
            Ok(()) => panic!("an inner abort left the outer transaction running"),
            Err(s) if s.is_explicit() => {
                seen = Some(s);
                break;
            }
            Err(_) => continue,
        }
    }
    let s = seen.expect("no explicit abort in 100 tries");
    assert!(s.is_nested(), "{s:?}");
    assert_eq!(s.explicit_code(), Some(0x11));
}

fn a_syscall_aborts() {
    let Some(rtm) = silicon_or_skip("a_syscall_aborts") else {
        return;
    };
    let s = run(rtm, 5, || {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    })
    .expect("a transaction with a syscall committed");
    assert!(!s.is_explicit(), "{s:?}");
}

fn a_write_set_far_over_l1_aborts_with_capacity() {
    let Some(rtm) = silicon_or_skip("a_write_set_far_over_l1_aborts_with_capacity") else {
        return;
    };
    let mut buf = vec![0u8; 4 << 20];
    buf.iter_mut().step_by(4096).for_each(|b| *b = 1); // pre-fault
    let mut capacity = false;
    for _ in 0..20 {
        if let Some(s) = run(rtm, 1, || {
            for line in buf.chunks_mut(64) {
                line[0] = line[0].wrapping_add(1);
            }
        }) {
            capacity |= s.is_capacity();
        } else {
            panic!("a 4 MiB write set committed");
        }
    }
    assert!(capacity, "no CAPACITY abort in 20 tries");
}

fn writes_of_an_aborted_transaction_vanish() {
    // Plain memory: the model rolls back transactional words only.
    let Some(rtm) = silicon_or_skip("writes_of_an_aborted_transaction_vanish") else {
        return;
    };
    let mut data = vec![7u64; 64];
    std::hint::black_box(&mut data);
    let mut aborted = 0;
    for _ in 0..100 {
        let r = rtm.transaction(|| {
            for d in data.iter_mut() {
                *d = 99;
            }
            rtm.abort::<0x22>();
        });
        if r.is_err() {
            aborted += 1;
        }
    }
    assert_eq!(aborted, 100);
    assert!(data.iter().all(|&d| d == 7), "an aborted write survived");
}

fn xtest_sees_the_transaction() {
    let Some(rtm) = rtm_or_skip("xtest_sees_the_transaction") else {
        return;
    };
    assert!(!rtm.test());
    let mut inside = false;
    let s = run(rtm, 100, || inside = rtm.test());
    assert!(s.is_none(), "{s:?}");
    assert!(inside);
}
