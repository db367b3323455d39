//! The elided locks' lock_api surface in whatever mode the environment
//! selects (auto, `HYTM_MODE=fallback`, and the HTM model in ci/test.sh).

mod lock_api_cases;
use lock_api_cases as cases;

#[test]
fn fair_unlock_and_bump() {
    cases::fair_unlock_and_bump();
}

#[test]
fn timed_acquisition_waits_then_gives_up() {
    cases::timed_acquisition_waits_then_gives_up();
}

#[test]
fn upgradable_reads_upgrade_and_exclude_each_other() {
    cases::upgradable_reads_upgrade_and_exclude_each_other();
}

#[test]
fn condvar_producer_consumer() {
    cases::condvar_producer_consumer();
}

#[test]
fn condvar_timeouts_and_notify_inside_a_section() {
    cases::condvar_timeouts_and_notify_inside_a_section();
}

#[test]
fn arc_guards_and_sync_guards() {
    cases::arc_guards_and_sync_guards();
}
