//! The RTM primitives. Each test prints a skip line where RTM is not
//! usable. Under the HTM model (`--cfg hytm_model`) the tests of the
//! instructions' semantics run on the model; those whose subject is the
//! silicon itself (system calls, real capacity, rolling back plain memory)
//! stay RTM-only and say so.

use hytm::rtm::{AbortCause, AbortStatus, Rtm};

fn rtm_or_skip(test: &str) -> Option<Rtm> {
    let rtm = Rtm::get();
    if rtm.is_none() {
        println!("skip {test}: RTM not usable here: {}", hytm::htm().reason());
    }
    rtm
}

/// For tests of what only real silicon does.
fn silicon_or_skip(test: &str) -> Option<Rtm> {
    if hytm::rtm::MODEL {
        println!("skip {test}: a property of the silicon, which the HTM model does not simulate");
        return None;
    }
    rtm_or_skip(test)
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

#[test]
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

#[test]
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

#[test]
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

#[test]
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

#[test]
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

#[test]
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
