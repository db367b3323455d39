//! The elided locks' lock_api surface with aborts of every cause injected
//! (and a small rollback share), on any machine: the retry, wait and
//! fallback decisions run under every operation.

use std::sync::Once;

use hytm::rtm::AbortCause;
use hytm::{Config, Policy};

mod lock_api_cases;
use lock_api_cases as cases;

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut c = Config::new().policy(Policy::default().adaptive(false));
        for cause in AbortCause::ALL {
            c = c.inject(cause, 0.05);
        }
        c.inject_rollback(0.05).install().unwrap();
    });
}

#[test]
fn fair_unlock_and_bump() {
    setup();
    cases::fair_unlock_and_bump();
}

#[test]
fn timed_acquisition_waits_then_gives_up() {
    setup();
    cases::timed_acquisition_waits_then_gives_up();
}

#[test]
fn upgradable_reads_upgrade_and_exclude_each_other() {
    setup();
    cases::upgradable_reads_upgrade_and_exclude_each_other();
}

#[test]
fn condvar_producer_consumer() {
    setup();
    cases::condvar_producer_consumer();
}

#[test]
fn condvar_timeouts_and_notify_inside_a_section() {
    setup();
    cases::condvar_timeouts_and_notify_inside_a_section();
}

#[test]
fn arc_guards_and_sync_guards() {
    setup();
    cases::arc_guards_and_sync_guards();
}
