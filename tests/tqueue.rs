//! `TQueue`: FIFO order across a producer and a consumer that waits in
//! `pop`, operations composed in larger transactions (a move between two
//! queues that cancels), on every path, and no value leaked or dropped
//! twice.

use hytm::TQueue;

mod tvar_cases;

#[test]
fn a_consumer_pops_what_a_producer_pushed_in_order() {
    tvar_cases::a_consumer_pops_what_a_producer_pushed_in_order();
}

#[test]
fn a_move_between_queues_commits_or_cancels_whole() {
    tvar_cases::a_move_between_queues_commits_or_cancels_whole();
}

#[test]
fn a_long_queue_drops_without_recursion() {
    let q = TQueue::new();
    for i in 0..100_000u32 {
        hytm::atomic(|tx| q.push(tx, i));
    }
    assert_eq!(hytm::atomic(|tx| q.pop(tx)), 0);
    drop(q);
}
