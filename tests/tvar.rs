//! `TVar`: values on every path (hardware where RTM or the HTM model is
//! there, NOrec STM, the global-lock fallback), with no leak and no double
//! free after commits, cancels, nested cancels, panics, restarts and
//! retries. The same cases run under injection in `tests/tvar_inject.rs`.

mod tvar_cases;

#[test]
fn strings_and_vecs_on_every_path() {
    tvar_cases::strings_and_vecs_on_every_path();
}

#[test]
fn readers_see_the_invariant_under_two_writers() {
    tvar_cases::readers_see_the_invariant_under_two_writers();
}

#[test]
fn a_cancel_frees_what_it_set() {
    tvar_cases::a_cancel_frees_what_it_set();
}

#[test]
fn a_nested_cancel_frees_only_what_it_set() {
    tvar_cases::a_nested_cancel_frees_only_what_it_set();
}

#[test]
fn a_value_set_twice_is_freed_at_once() {
    tvar_cases::a_value_set_twice_is_freed_at_once();
}

#[test]
fn a_panic_frees_what_it_set() {
    tvar_cases::a_panic_frees_what_it_set();
}

#[test]
fn restarts_and_retries_free_what_they_set() {
    tvar_cases::restarts_and_retries_free_what_they_set();
}

#[test]
fn a_var_dropped_inside_a_transaction_leaves_it() {
    tvar_cases::a_var_dropped_inside_a_transaction_leaves_it();
}

#[test]
fn owners_api() {
    tvar_cases::owners_api();
}
