//! The `TVar` cases of `tests/tvar.rs` under injected aborts and rollbacks
//! (as `HYTM_INJECT=conflict:0.3,rollback:0.1`): every value set by an
//! attempt that is rolled back is freed, none twice, and readers still see
//! their invariant; `TQueue` keeps its order and loses nothing.

use std::sync::Once;

use hytm::rtm::AbortCause;
use hytm::Config;

mod tvar_cases;

fn inject() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // From the environment, so that the fallback suite's
        // HYTM_MODE=fallback holds here too; the injection is added to it.
        Config::from_env()
            .expect("HYTM_* variables")
            .inject(AbortCause::Conflict, 0.3)
            .inject_rollback(0.1)
            .policy(hytm::Policy::default().adaptive(false))
            .install()
            .unwrap();
    });
}

#[test]
fn strings_and_vecs_on_every_path() {
    inject();
    tvar_cases::strings_and_vecs_on_every_path();
}

#[test]
fn readers_see_the_invariant_under_two_writers() {
    inject();
    tvar_cases::readers_see_the_invariant_under_two_writers();
}

#[test]
fn a_cancel_frees_what_it_set() {
    inject();
    tvar_cases::a_cancel_frees_what_it_set();
}

#[test]
fn a_nested_cancel_frees_only_what_it_set() {
    inject();
    tvar_cases::a_nested_cancel_frees_only_what_it_set();
}

#[test]
fn a_panic_frees_what_it_set() {
    inject();
    tvar_cases::a_panic_frees_what_it_set();
}

#[test]
fn restarts_and_retries_free_what_they_set() {
    inject();
    tvar_cases::restarts_and_retries_free_what_they_set();
}

#[test]
fn a_var_dropped_inside_a_transaction_leaves_it() {
    inject();
    tvar_cases::a_var_dropped_inside_a_transaction_leaves_it();
}

#[test]
fn a_consumer_pops_what_a_producer_pushed_in_order() {
    inject();
    tvar_cases::a_consumer_pops_what_a_producer_pushed_in_order();
}

#[test]
fn a_move_between_queues_commits_or_cancels_whole() {
    inject();
    tvar_cases::a_move_between_queues_commits_or_cancels_whole();
}
