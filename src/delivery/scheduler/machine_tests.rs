//! The scheduler machine's invariants (`machine.rs`), in simulated time: no sleeps, no I/O.

use std::time::Duration;

use super::super::attempt::{Answered, LaneStep};
use super::super::backpressure::Lag;
use super::super::circuit::CircuitSettings;
use super::machine::*;
use crate::store::{LaneId, PendingDelivery};

const CIRCUIT: CircuitSettings = CircuitSettings {
    threshold: 2,
    cooldown: Duration::from_secs(10),
    max_cooldown: Duration::from_secs(60),
};

fn machine(max_in_flight: usize, per_origin: usize) -> Machine {
    Machine::new(MachineLimits {
        max_in_flight,
        max_in_flight_per_origin: per_origin,
        max_rate_per_origin: 0.0,
        circuit: CIRCUIT,
    })
}

/// Attempts started per simulated second over `seconds`, every attempt answered at once;
/// the machine is woken whenever it asks (`next_wake`).
fn starts_per_second(m: &mut Machine, seconds: u64) -> Vec<usize> {
    starts_per_second_from(m, 0, seconds)
}

fn starts_per_second_from(m: &mut Machine, from: u64, seconds: u64) -> Vec<usize> {
    let mut per_second = vec![0; seconds as usize];
    let mut now = from;
    while now < from + seconds * 1000 {
        for start in m.tick(now, true) {
            per_second[((now - from) / 1000) as usize] += 1;
            complete(m, &start, DELIVERED, LaneStep::Advance, now);
        }
        now = m.next_wake().map_or(now + 1, |wake| wake.max(now + 1));
    }
    per_second
}

/// Delivery `seq` of task `task`'s config `c` to `host`, due at `due`.
fn pending(host: &str, task: &str, seq: u64, due: u64) -> PendingDelivery {
    PendingDelivery {
        tenant: String::new(),
        task_id: task.to_string(),
        config_id: "c".to_string(),
        delivery_id: format!("{task}-{seq}"),
        sequence: seq,
        next_attempt_at_ms: due,
        url: format!("https://{host}/hook"),
        again: false,
    }
}

fn ids(starts: &[Start]) -> Vec<&str> {
    starts.iter().map(|s| s.delivery_id.as_str()).collect()
}

const DELIVERED: Answered = Answered {
    healthy: Some(true),
    lane_free: true,
};
const FAILED: Answered = Answered {
    healthy: Some(false),
    lane_free: false,
};

/// The attempt read its delivery and sends at once.
fn send(m: &mut Machine, start: &Start) {
    assert_eq!(
        m.on_ready(start.attempt, 0),
        Some(true),
        "{start:?} may send"
    );
}

/// Runs one attempt to its end: sent, answered, then finished with `step`.
fn complete(m: &mut Machine, start: &Start, answer: Answered, step: LaneStep, now: u64) {
    send(m, start);
    m.on_answered(start.attempt, answer, now);
    m.on_finished(start.attempt, step, now);
}

#[test]
fn a_lane_attempts_its_head_alone_and_in_sequence_order() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t", 2, 0), pending("a", "t", 3, 0)]);
    m.on_enqueue(vec![pending("a", "t", 1, 0)]);
    let first = m.tick(0, true);
    assert_eq!(ids(&first), ["t-1"], "only the lowest sequence, once");
    assert!(m.tick(0, true).is_empty(), "never two attempts of one lane");
    m.on_enqueue(vec![pending("a", "t", 0, 0)]);
    assert!(
        m.tick(0, true).is_empty(),
        "not even of a lower sequence found meanwhile"
    );
    complete(&mut m, &first[0], DELIVERED, LaneStep::Advance, 1);
    let next = m.tick(1, true);
    assert_eq!(ids(&next), ["t-0"], "then the lowest pending sequence");
    complete(&mut m, &next[0], DELIVERED, LaneStep::Advance, 2);
    assert_eq!(ids(&m.tick(2, true)), ["t-2"]);
    assert_eq!(m.stats(2).pending, 2);
}

#[test]
fn a_delivered_head_frees_its_lane_at_the_answer_and_is_not_queued_again_meanwhile() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t", 1, 0), pending("a", "t", 2, 0)]);
    let first = m.tick(0, true);
    send(&mut m, &first[0]);
    m.on_answered(first[0].attempt, DELIVERED, 5);
    let second = m.tick(5, true);
    assert_eq!(
        ids(&second),
        ["t-2"],
        "the lane moved on while t-1 is recorded"
    );
    // The store still lists t-1 as pending until its outcome is durable.
    m.on_enqueue(vec![pending("a", "t", 1, 0)]);
    m.on_finished(first[0].attempt, LaneStep::Advance, 6);
    complete(&mut m, &second[0], DELIVERED, LaneStep::Advance, 7);
    assert!(m.tick(8, true).is_empty(), "t-1 is not sent twice");
    assert_eq!(m.stats(8).pending, 0);
}

#[test]
fn an_outcome_that_could_not_be_recorded_sends_the_delivery_again() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t", 1, 0)]);
    let first = m.tick(0, true);
    send(&mut m, &first[0]);
    m.on_answered(first[0].attempt, DELIVERED, 1);
    m.on_finished(first[0].attempt, LaneStep::RetryAt(1_000), 2);
    assert!(m.tick(999, true).is_empty());
    assert_eq!(ids(&m.tick(1_000, true)), ["t-1"]);
}

#[test]
fn a_retry_waits_for_its_due_time_and_holds_the_lane_meanwhile() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t", 1, 0), pending("a", "t", 2, 0)]);
    let first = m.tick(0, true);
    complete(&mut m, &first[0], FAILED, LaneStep::RetryAt(5_000), 100);
    assert_eq!(m.next_wake(), Some(5_000));
    assert!(
        m.tick(4_999, true).is_empty(),
        "not before it is due, nor its successor"
    );
    assert_eq!(m.stats(4_999).due, 0);
    assert_eq!(ids(&m.tick(5_000, true)), ["t-1"]);
}

#[test]
fn the_global_limit_bounds_attempts_and_a_finished_one_lets_the_next_start() {
    let mut m = machine(2, 10);
    m.on_enqueue(vec![
        pending("a", "t1", 1, 0),
        pending("b", "t2", 1, 0),
        pending("c", "t3", 1, 0),
    ]);
    let started = m.tick(0, true);
    assert_eq!(started.len(), 2);
    assert_eq!(
        m.next_wake(),
        None,
        "nothing to wake for while every slot is taken"
    );
    assert_eq!(m.stats(0).due, 1);
    complete(&mut m, &started[0], DELIVERED, LaneStep::Advance, 1);
    assert_eq!(m.tick(1, true).len(), 1);
}

#[test]
fn an_origin_limit_parks_its_other_lanes_until_the_answer() {
    let mut m = machine(10, 1);
    m.on_enqueue(vec![
        pending("a", "t1", 1, 0),
        pending("a", "t2", 1, 0),
        pending("a", "t3", 1, 0),
        pending("b", "t4", 1, 0),
    ]);
    let started = m.tick(0, true);
    assert_eq!(started.len(), 2, "one per origin: {:?}", ids(&started));
    let on_a = started
        .iter()
        .find(|s| s.delivery_id != "t4-1")
        .unwrap()
        .clone();
    send(&mut m, &on_a);
    // While it holds the request slot, the next one reads its delivery, then waits.
    let reading = m.tick(0, true);
    assert_eq!(reading.len(), 1, "one more reading: {:?}", ids(&reading));
    assert_eq!(m.on_ready(reading[0].attempt, 0), None, "no slot free");
    assert!(m.tick(0, true).is_empty(), "one reading or waiting at most");
    // The origin's slot is back once the receiver answered, before the outcome is recorded,
    // and goes to the one waiting.
    m.on_answered(on_a.attempt, DELIVERED, 1);
    assert_eq!(m.take_clearances(), [(reading[0].attempt, true)]);
    assert!(m.take_clearances().is_empty());
    let next = m.tick(1, true);
    assert_eq!(next.len(), 1, "the last lane of the origin reads");
    assert!(![&on_a.delivery_id, &reading[0].delivery_id].contains(&&next[0].delivery_id));
    assert_eq!(m.origin_queues(&["https://a".to_string()])[0].in_flight, 1);
}

#[test]
fn attempts_waiting_for_a_slot_do_not_send_once_the_circuit_opened() {
    let mut m = machine(10, 1);
    m.on_enqueue(vec![
        pending("a", "t1", 1, 0),
        pending("a", "t2", 1, 0),
        pending("a", "t3", 1, 0),
    ]);
    let first = m.tick(0, true);
    send(&mut m, &first[0]);
    let second = m.tick(0, true);
    assert_eq!(m.on_ready(second[0].attempt, 0), None);
    // Another node found the origin failing.
    m.open_circuits(vec![("https://a".to_string(), 5_000)], 1);
    assert_eq!(m.take_clearances(), [(second[0].attempt, false)]);
    m.on_finished(second[0].attempt, LaneStep::RetryAt(1), 1);
    m.on_answered(first[0].attempt, FAILED, 2);
    m.on_finished(first[0].attempt, LaneStep::RetryAt(1_000), 2);
    assert!(m.tick(4_999, true).is_empty(), "the circuit is open");
    let probe = m.tick(5_000, true);
    assert_eq!(probe.len(), 1, "one probe: {:?}", ids(&probe));
    send(&mut m, &probe[0]);
    assert!(
        m.tick(5_000, true).is_empty(),
        "the rest wait for the probe"
    );
}

#[test]
fn only_the_probe_ending_without_an_answer_lets_another_probe_go() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("a", "t2", 1, 0)]);
    let started = m.tick(0, true);
    for start in &started {
        send(&mut m, start);
    }
    // Another node found the origin failing while both requests are open; a lane that comes
    // due at the cool-down's end is its probe.
    m.open_circuits(vec![("https://a".to_string(), 1_000)], 1);
    m.on_enqueue(vec![pending("a", "t3", 1, 1_000)]);
    let probe = m.tick(1_000, true);
    assert_eq!(ids(&probe), ["t3-1"]);
    let never_left = Answered {
        healthy: None,
        lane_free: false,
    };
    m.on_answered(started[0].attempt, never_left, 1_001);
    m.on_finished(started[0].attempt, LaneStep::RetryAt(2_000), 1_001);
    assert!(
        m.tick(2_000, true).is_empty(),
        "the probe in flight still decides"
    );
    complete(&mut m, &probe[0], DELIVERED, LaneStep::Advance, 2_001);
    assert_eq!(ids(&m.tick(2_001, true)), ["t1-1"], "closed: the lane goes");
}

#[test]
fn an_attempt_ready_after_the_circuit_opened_does_not_send() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("a", "t2", 1, 0)]);
    let started = m.tick(0, true);
    assert_eq!(started.len(), 2);
    m.open_circuits(vec![("https://a".to_string(), 5_000)], 1);
    assert_eq!(m.on_ready(started[0].attempt, 0), Some(false));
    m.on_finished(started[0].attempt, LaneStep::RetryAt(1), 1);
    m.on_finished(started[1].attempt, LaneStep::Advance, 1);
    assert!(m.tick(1, true).is_empty(), "its lane waits for the circuit");
    assert_eq!(ids(&m.tick(5_000, true)), ["t1-1"]);
}

#[test]
fn failures_open_the_circuit_which_parks_the_origin_until_one_probe_decides() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("a", "t2", 1, 0)]);
    let started = m.tick(0, true);
    assert_eq!(started.len(), 2);
    complete(&mut m, &started[0], FAILED, LaneStep::RetryAt(1_000), 500);
    complete(&mut m, &started[1], FAILED, LaneStep::RetryAt(1_000), 500);
    assert_eq!(
        m.take_circuit_changes(),
        [("https://a".to_string(), Some(10_500))],
        "the second failure opens it for the cool-down"
    );
    assert_eq!(m.stats(600).open_circuits, 1);
    assert!(
        m.tick(1_000, true).is_empty(),
        "due, but the circuit is open"
    );
    assert!(m.tick(10_499, true).is_empty());
    let probe = m.tick(10_500, true);
    assert_eq!(probe.len(), 1, "one probe after the cool-down");
    assert!(
        m.tick(10_600, true).is_empty(),
        "the other lane waits for the probe"
    );
    complete(&mut m, &probe[0], DELIVERED, LaneStep::Advance, 10_700);
    assert_eq!(m.take_circuit_changes(), [("https://a".to_string(), None)]);
    assert_eq!(m.tick(10_700, true).len(), 1, "closed: the other lane goes");
    assert_eq!(m.stats(10_700).open_circuits, 0);
}

#[test]
fn a_circuit_another_node_opened_parks_this_nodes_lanes_too() {
    let mut m = machine(10, 10);
    m.open_circuits(vec![("https://a".to_string(), 2_000)], 0);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("b", "t2", 1, 0)]);
    assert_eq!(ids(&m.tick(0, true)), ["t2-1"]);
    assert_eq!(ids(&m.tick(2_000, true)), ["t1-1"]);
    assert!(m.take_circuit_changes().is_empty(), "not announced back");
}

#[test]
fn without_valid_leases_nothing_starts_and_due_lanes_look_again_shortly() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![pending("a", "t", 1, 0)]);
    assert!(m.tick(0, false).is_empty());
    assert_eq!(m.next_wake(), Some(LEASE_WAIT_MS));
    assert_eq!(ids(&m.tick(LEASE_WAIT_MS, true)), ["t-1"]);
}

#[test]
fn a_closed_config_ends_its_lane_and_a_forgotten_lane_is_dropped() {
    let mut m = machine(10, 10);
    m.on_enqueue(vec![
        pending("a", "t1", 1, 0),
        pending("a", "t1", 2, 0),
        pending("a", "t2", 1, 0),
        pending("a", "t2", 2, 0),
    ]);
    let started = m.tick(0, true);
    let t1 = started.iter().find(|s| s.delivery_id == "t1-1").unwrap();
    complete(&mut m, t1, FAILED, LaneStep::Close, 1);
    assert_eq!(m.stats(1).pending, 2, "t1's lane is over");
    let t2_lane = LaneId {
        tenant: String::new(),
        task_id: "t2".to_string(),
        config_id: "c".to_string(),
    };
    assert_eq!(m.lane_ids(), std::slice::from_ref(&t2_lane));
    m.forget(vec![t2_lane]);
    assert_eq!(m.stats(1).pending, 0);
    assert!(m.lane_ids().is_empty());
    let t2 = started.iter().find(|s| s.delivery_id == "t2-1").unwrap();
    complete(&mut m, t2, DELIVERED, LaneStep::Advance, 2);
    assert!(
        m.tick(3, true).is_empty(),
        "what it decided left with the lane"
    );
}

#[test]
fn an_attempt_that_never_reached_the_receiver_gives_its_origin_slot_back() {
    let mut m = machine(10, 1);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("a", "t2", 1, 0)]);
    let first = m.tick(0, true);
    assert_eq!(first.len(), 1);
    m.on_finished(first[0].attempt, LaneStep::RetryAt(60_000), 1);
    assert_eq!(
        m.tick(1, true).len(),
        1,
        "the other lane of the origin goes"
    );
    assert_eq!(m.stats(1).open_circuits, 0, "inconclusive: not a failure");
}

#[test]
fn stats_say_how_late_the_oldest_due_head_is() {
    let mut m = machine(1, 1);
    m.on_enqueue(vec![pending("a", "t1", 1, 100), pending("b", "t2", 1, 300)]);
    assert_eq!(m.tick(1_000, true).len(), 1);
    let stats = m.stats(1_000);
    assert_eq!((stats.pending, stats.in_flight, stats.due), (2, 1, 1));
    assert_eq!(stats.oldest_due_age_ms, 700);
}

#[test]
fn an_origin_gets_no_more_attempts_per_second_than_its_rate_allows() {
    let mut m = Machine::new(MachineLimits {
        max_in_flight: 100,
        max_in_flight_per_origin: 100,
        max_rate_per_origin: 20.0,
        circuit: CIRCUIT,
    });
    let backlog: Vec<PendingDelivery> = (0..50)
        .flat_map(|task| (1..=10).map(move |seq| pending("a", &format!("t{task}"), seq, 0)))
        .collect();
    m.on_enqueue(backlog);
    m.on_enqueue(vec![pending("b", "other", 1, 0)]);
    let per_second = starts_per_second(&mut m, 5);
    // A burst of a tenth of a second's worth (2) and the rate; the other origin's one
    // delivery is not held up by it.
    assert_eq!(per_second, [1 + 2 + 19, 20, 20, 20, 20]);

    // Two nodes share the store: each takes half the rate.
    m.set_nodes(2, 5_000);
    let per_second = starts_per_second_from(&mut m, 5_000, 3);
    assert!(
        per_second.iter().all(|&n| (10..=11).contains(&n)),
        "{per_second:?}"
    );
}

#[test]
fn one_lane_delivering_one_at_a_time_is_capped_too() {
    // Its origin is idle between attempts; forgetting it then must not refill its bucket.
    let mut m = Machine::new(MachineLimits {
        max_in_flight: 10,
        max_in_flight_per_origin: 10,
        max_rate_per_origin: 20.0,
        circuit: CIRCUIT,
    });
    m.on_enqueue((1..=100).map(|seq| pending("a", "t", seq, 0)).collect());
    assert_eq!(starts_per_second(&mut m, 3), [2 + 19, 20, 20]);
}

/// Starts and delivers the attempts at time 0 one by one, each alone: they must be `expected`.
fn delivers_one_by_one(m: &mut Machine, expected: &[&str]) {
    for expected in expected {
        let started = m.tick(0, true);
        assert_eq!(ids(&started), [*expected]);
        complete(m, &started[0], DELIVERED, LaneStep::Advance, 0);
    }
}

/// The machine of a node sharing its store, which takes offers (`on_offer`).
fn shared_machine() -> Machine {
    machine(10, 10).keeping_tails()
}

/// The lane of `task`'s config `c` (the cluster's tests use it too).
pub(crate) fn lane(task: &str) -> LaneId {
    LaneId {
        tenant: String::new(),
        task_id: task.to_string(),
        config_id: "c".to_string(),
    }
}

#[test]
fn an_offer_that_goes_on_from_a_read_lane_is_queued_without_a_read() {
    let mut m = shared_machine();
    // The lane was read: it has every pending delivery up to 2.
    m.on_enqueue(vec![pending("a", "t", 1, 0), pending("a", "t", 2, 0)]);
    let to_read = m.on_offer(vec![pending("a", "t", 4, 0), pending("a", "t", 3, 0)], &[]);
    assert!(to_read.is_empty(), "3 and 4 go on from 2");
    delivers_one_by_one(&mut m, &["t-1", "t-2", "t-3", "t-4"]);
    // The lane emptied; its tail is remembered.
    assert!(m.lane_ids().is_empty());
    assert!(m.on_offer(vec![pending("a", "t", 5, 0)], &[]).is_empty());
    assert_eq!(ids(&m.tick(1, true)), ["t-5"]);
}

#[test]
fn an_offer_that_skips_a_sequence_or_comes_back_to_an_old_one_asks_for_a_read() {
    let mut m = shared_machine();
    m.on_enqueue(vec![pending("a", "t", 1, 0)]);
    // 2 may be another node's, its wake-up still on the way.
    assert_eq!(m.on_offer(vec![pending("a", "t", 3, 0)], &[]), [lane("t")]);
    // 1 again: a replay, or a config enabled again.
    let replayed = PendingDelivery {
        again: true,
        ..pending("a", "t", 1, 0)
    };
    assert_eq!(m.on_offer(vec![replayed], &[]), [lane("t")]);
    assert_eq!(m.stats(0).pending, 1, "nothing offered was queued");
    // A lane this node never read.
    assert_eq!(m.on_offer(vec![pending("a", "u", 1, 0)], &[]), [lane("u")]);
}

#[test]
fn a_lane_taken_anew_closed_or_forgotten_is_read_again() {
    let mut m = shared_machine();
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("a", "t2", 1, 0)]);
    m.on_enqueue(vec![pending("a", "t3", 1, 0)]);
    // t1: another node held it meanwhile.
    assert_eq!(
        m.on_offer(vec![pending("a", "t1", 2, 0)], &[lane("t1")]),
        [lane("t1")]
    );
    // t2: its config was suspended; the store keeps what the lane had.
    let started = m.tick(0, true);
    let t2 = started.iter().find(|s| s.delivery_id == "t2-1").unwrap();
    complete(&mut m, t2, FAILED, LaneStep::Close, 1);
    assert_eq!(
        m.on_offer(vec![pending("a", "t2", 2, 0)], &[]),
        [lane("t2")]
    );
    // t3: its lease was lost, after the lane emptied.
    let t3 = started.iter().find(|s| s.delivery_id == "t3-1").unwrap();
    complete(&mut m, t3, DELIVERED, LaneStep::Advance, 1);
    m.forget(vec![lane("t3")]);
    assert_eq!(
        m.on_offer(vec![pending("a", "t3", 2, 0)], &[]),
        [lane("t3")]
    );
    // A read hands the lane everything pending; offers go on from there again.
    m.on_enqueue(vec![pending("a", "t3", 2, 0)]);
    assert!(m.on_offer(vec![pending("a", "t3", 3, 0)], &[]).is_empty());
}

#[test]
fn an_offer_a_read_got_ahead_of_is_not_read_again() {
    let mut m = shared_machine();
    // The read saw 1 to 3 committed before the offers of 2 and 3 came.
    m.on_enqueue(vec![
        pending("a", "t", 1, 0),
        pending("a", "t", 2, 0),
        pending("a", "t", 3, 0),
    ]);
    assert!(m.on_offer(vec![pending("a", "t", 2, 0)], &[]).is_empty());
    assert!(
        m.on_offer(vec![pending("a", "t", 3, 0), pending("a", "t", 4, 0)], &[])
            .is_empty(),
        "4 goes on from 3"
    );
    assert_eq!(m.stats(0).pending, 4, "each delivery queued once");
    delivers_one_by_one(&mut m, &["t-1", "t-2", "t-3", "t-4"]);
}

#[test]
fn an_origin_that_stopped_answering_holds_no_more_attempts_than_requests_open() {
    let mut m = machine(4, 2);
    m.on_enqueue(
        (1..=6)
            .map(|n| pending("hangs", &format!("h{n}"), 1, 0))
            .chain([pending("b", "b1", 1, 0)])
            .collect(),
    );
    let first = m.tick(0, true);
    assert_eq!(first.len(), 3, "two of the origin and b: {:?}", ids(&first));
    let (on_b, hanging): (Vec<_>, Vec<_>) = first.into_iter().partition(|s| s.origin.contains('b'));
    for start in &hanging {
        send(&mut m, start);
    }
    complete(&mut m, &on_b[0], DELIVERED, LaneStep::Advance, 0);
    // While its requests are open, two more of its attempts read ahead and wait.
    let ahead = m.tick(10, true);
    assert_eq!(ahead.len(), 2, "{:?}", ids(&ahead));
    for start in &ahead {
        assert_eq!(m.on_ready(start.attempt, 10), None, "no slot free");
    }
    assert_eq!(m.stats(10).in_flight, 4, "every attempt slot is taken");
    // Nothing answered for STALL_MS: the machine wakes even with every slot taken, and the
    // waiting attempts give their places back.
    assert_eq!(m.next_wake(), Some(STALL_MS));
    assert!(m.tick(STALL_MS - 1, true).is_empty());
    assert!(m.take_clearances().is_empty(), "not before STALL_MS");
    assert!(m.tick(STALL_MS, true).is_empty());
    let mut told = m.take_clearances();
    told.sort();
    assert_eq!(told, [(ahead[0].attempt, false), (ahead[1].attempt, false)]);
    for start in &ahead {
        m.on_finished(start.attempt, LaneStep::RetryAt(STALL_MS), STALL_MS);
    }
    // Its lanes park instead of reading again; another origin's delivery finds a slot.
    m.on_enqueue(vec![pending("b", "b2", 1, STALL_MS)]);
    let after = m.tick(STALL_MS, true);
    assert_eq!(ids(&after), ["b2-1"], "only the other origin starts");
    assert_eq!(m.stats(STALL_MS).in_flight, 3, "two requests open and b2");
    // An answer ends the stall: the origin reads ahead again.
    m.on_answered(hanging[0].attempt, FAILED, STALL_MS + 5);
    m.on_finished(hanging[0].attempt, LaneStep::RetryAt(60_000), STALL_MS + 5);
    let again = m.tick(STALL_MS + 5, true);
    assert!(!again.is_empty(), "the origin's lanes go again");
    assert!(again.iter().all(|s| s.origin.contains("hangs")));
}

#[test]
fn an_attempt_ready_at_a_stalled_origin_does_not_wait() {
    let mut m = machine(10, 1);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("a", "t2", 1, 0)]);
    let first = m.tick(0, true);
    send(&mut m, &first[0]);
    let reading = m.tick(0, true);
    assert_eq!(reading.len(), 1, "one reads ahead");
    assert_eq!(
        m.on_ready(reading[0].attempt, STALL_MS),
        Some(false),
        "its read took until the origin stalled"
    );
}

#[test]
fn an_origin_answering_slowly_but_steadily_keeps_reading_ahead() {
    let mut m = machine(10, 1);
    m.on_enqueue(
        (1..=4)
            .map(|n| pending("a", &format!("t{n}"), 1, 0))
            .collect(),
    );
    let mut sending = m.tick(0, true).remove(0);
    send(&mut m, &sending);
    let mut now = 0;
    for _ in 0..3 {
        let reading = m.tick(now, true);
        assert_eq!(reading.len(), 1, "one reads ahead at {now}");
        assert_eq!(m.on_ready(reading[0].attempt, now), None);
        // Each request takes most of STALL_MS.
        now += STALL_MS - 1;
        assert!(m.tick(now, true).is_empty());
        assert!(m.take_clearances().is_empty(), "still waiting at {now}");
        m.on_answered(sending.attempt, DELIVERED, now);
        assert_eq!(m.take_clearances(), [(reading[0].attempt, true)]);
        m.on_finished(sending.attempt, LaneStep::Advance, now);
        sending = reading[0].clone();
    }
}

#[test]
fn lag_says_since_when_lanes_wait_for_an_origin_that_answers_well() {
    let mut m = machine(10, 1);
    m.on_enqueue(vec![
        pending("a", "t1", 1, 0),
        pending("a", "t2", 1, 0),
        pending("a", "t3", 1, 100),
    ]);
    let first = m.tick(0, true);
    assert_eq!(first.len(), 1, "one reads; t2 parks");
    assert!(m.tick(100, true).is_empty(), "t3 parks too");
    assert_eq!(
        m.lag(150),
        Lag {
            all_since: None,
            origins: vec![("https://a".to_string(), 0)],
        },
        "t2, parked first, is due since 0"
    );
    // A failure: its backlog is the retry schedule's, not its publishers'.
    complete(&mut m, &first[0], FAILED, LaneStep::RetryAt(10_000), 200);
    let next = m.tick(200, true);
    assert_eq!(m.lag(300).origins, [], "a failing origin slows nobody");
    complete(&mut m, &next[0], DELIVERED, LaneStep::Advance, 300);
    m.on_enqueue(vec![pending("a", "t4", 1, 300)]);
    assert_eq!(m.tick(300, true).len(), 1, "t3 reads, t4 parks");
    assert_eq!(
        m.lag(400).origins,
        [("https://a".to_string(), 300)],
        "answering well again"
    );
}

#[test]
fn lag_says_since_when_a_lane_waits_for_an_attempt_slot_while_all_are_taken() {
    let mut m = machine(1, 10);
    m.on_enqueue(vec![pending("a", "t1", 1, 0), pending("b", "t2", 1, 50)]);
    let first = m.tick(50, true);
    assert_eq!(first.len(), 1);
    assert_eq!(
        m.lag(80),
        Lag {
            all_since: Some(if first[0].origin.contains('a') { 50 } else { 0 }),
            origins: vec![],
        }
    );
    complete(&mut m, &first[0], DELIVERED, LaneStep::Advance, 90);
    let second = m.tick(90, true);
    assert_eq!(second.len(), 1);
    m.on_finished(second[0].attempt, LaneStep::Advance, 95);
    assert_eq!(m.lag(100), Lag::default(), "caught up");
}
