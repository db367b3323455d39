//! The no-HTM path, forced on any machine through the configuration: no
//! `xbegin` executes, `Mode::Hardware` is refused, and the locks still work.

use std::sync::Arc;

use hytm::{Config, ElidedMutex, ElidedRwLock, Mode};

#[test]
fn forced_unusable_detection_runs_everything_on_the_fallback() {
    // Hardware mode where RTM is (assumed) unusable: an error, not a downgrade.
    let err = Config::new()
        .mode(Mode::Hardware)
        .assume_no_htm(true)
        .install()
        .unwrap_err();
    assert_eq!(err.setting(), "Config::mode");
    assert_eq!(err.value(), "htm");
    assert!(err.to_string().contains("assume_no_htm"), "{err}");

    // Auto mode with detection forced off resolves to the fallback.
    Config::new()
        .assume_no_htm(true)
        .install()
        .expect("first install");
    assert_eq!(hytm::mode(), Mode::Fallback);
    assert!(
        hytm::mode_reason().contains("assume_no_htm"),
        "{}",
        hytm::mode_reason()
    );
    assert!(!hytm::in_transaction());
    // A second install is refused, before any detection: the
    // configuration is applied once.
    assert!(Config::new().install().is_err());
    // init() after installation is harmless.
    hytm::init().unwrap();

    let m = Arc::new(ElidedMutex::new(0u64));
    let rw = Arc::new(ElidedRwLock::new([0u64; 4]));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (m, rw) = (Arc::clone(&m), Arc::clone(&rw));
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    *m.lock() += 1;
                    assert!(!hytm::in_transaction());
                    if i % 4 == 0 {
                        let mut w = rw.write();
                        w[t] += 1;
                        w[(t + 1) % 4] += 1;
                    } else {
                        let r = rw.read();
                        assert_eq!(r.iter().sum::<u64>() % 2, 0, "a reader saw half a write");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 20_000);
    assert_eq!(rw.read().iter().sum::<u64>(), 2 * 4 * 1250);

    // Nothing ever started a hardware transaction.
    let total = hytm::stats::snapshot().total();
    assert_eq!(total.attempts, 0, "hardware begins in fallback mode");
    assert_eq!(total.hw_commits, 0);
}
