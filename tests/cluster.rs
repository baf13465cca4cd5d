//! Several hub nodes on one PostgreSQL database: three nodes, a receiver failing a random
//! 30 % of requests, one node SIGKILLed mid-run. Every accepted event reaches its webhook,
//! per lane the first arrivals are in order, no lane ever has two attempts at the receiver at
//! once, and the surviving nodes share the work. Runs when the tests run on PostgreSQL
//! (`A2A_PUSH_HUB_TEST_POSTGRES_URL`).

use crate::common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HubProcess, Receiver, Reply, http_client, wait_until};
use serde_json::{Value, json};

const TASKS: usize = 60;
const EVENTS_PER_TASK: usize = 10;

/// (round, group, events as (task, unique number)).
type Batch = (usize, usize, Vec<(usize, u64)>);
/// Every answer of the receiver takes this long, so two attempts of one lane in flight at
/// once would arrive closer together than this.
const ANSWER_DELAY: Duration = Duration::from_millis(15);

fn node(data_dir: &std::path::Path) -> HubProcess {
    let mut command = common::hub_command(data_dir);
    common::crash_test_settings(&mut command);
    HubProcess::spawn(command).expect("a node starts")
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn three_nodes_share_the_lanes_and_one_dying_loses_nothing() {
    common::require_postgres("three nodes on one database");
    let receiver = Receiver::start().await;
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(
        std::env::var("CLUSTER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..)),
    )));
    let coin = rng.clone();
    receiver.script(move |_| {
        let status = if coin.lock().unwrap().f64() < 0.3 {
            503
        } else {
            200
        };
        Reply::status(status).delay(ANSWER_DELAY)
    });
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let http = http_client();
    let mut nodes = vec![node(&data_dir), node(&data_dir), node(&data_dir)];

    for task in 0..TASKS {
        let task_id = format!("task-{task}");
        let url = receiver.url(&format!("/{task_id}"));
        common::create_config_at(&http, nodes[task % 3].public, &task_id, "c", &url).await;
    }

    // In the first round the events of the tasks ≡ g (mod 3) go to node g, so that each node
    // takes the lanes of a third of the tasks; later rounds go to the next node each time, so
    // nodes accept events of lanes another node holds (which that node is woken for). Halfway
    // through, the last node dies with its lanes leased and attempts in flight.
    let mut batches: Vec<Batch> = Vec::new();
    for round in 0..EVENTS_PER_TASK {
        for group in 0..3 {
            let batch = (0..TASKS)
                .filter(|task| task % 3 == group)
                .map(|task| (task, (round * TASKS + task) as u64))
                .collect();
            batches.push((round, group, batch));
        }
    }
    let kill_at = batches.len() / 2;
    let mut attempted = HashSet::new();
    let mut acked = HashSet::new();
    for (index, (round, group, batch)) in batches.iter().enumerate() {
        if index == kill_at {
            let mut dead = nodes.pop().unwrap();
            dead.child.kill().unwrap();
            dead.child.wait().unwrap();
        }
        let body: Vec<Value> = batch
            .iter()
            .map(|(task, n)| {
                json!({"statusUpdate": {"taskId": format!("task-{task}"), "contextId": "c",
                "status": {"state": "TASK_STATE_WORKING"}, "metadata": {"n": n}}})
            })
            .collect();
        attempted.extend(batch.iter().map(|(_, n)| *n));
        let node = &nodes[(group + round) % nodes.len()];
        let response = http
            .post(format!("http://{}/api/v1/events:batch", node.admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "a live node accepts");
        acked.extend(batch.iter().map(|(_, n)| *n));
    }

    let arrived_numbers = |receiver: &Receiver| -> HashSet<u64> {
        common::event_numbers(&receiver.received())
            .into_iter()
            .collect()
    };
    wait_until(
        Duration::from_secs(90),
        "every accepted event to arrive",
        || {
            let arrived = arrived_numbers(&receiver);
            let missing = acked.iter().filter(|n| !arrived.contains(n)).count();
            async move { (missing == 0).then_some(()) }
        },
    )
    .await;

    let received = receiver.received();
    assert!(arrived_numbers(&receiver).is_subset(&attempted));
    let repeats = common::assert_first_arrivals_in_order(&received);
    let mut arrivals: HashMap<String, Vec<std::time::Instant>> = HashMap::new();
    for request in &received {
        arrivals
            .entry(request.path.clone())
            .or_default()
            .push(request.at);
    }
    for (lane, times) in &arrivals {
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(
                gap >= ANSWER_DELAY,
                "{lane}: a request arrived {gap:?} after the previous one, before that one was answered: two attempts in flight at once"
            );
        }
    }
    const DELIVERED: &str = "a2a_push_hub_deliveries_total{outcome=\"delivered\"}";
    let (first, second) = (
        metric(&http, &nodes[0], DELIVERED).await,
        metric(&http, &nodes[1], DELIVERED).await,
    );
    assert!(
        first > 0.0 && second > 0.0,
        "both surviving nodes delivered: {first} and {second}"
    );
    println!(
        "cluster: {} events accepted, {} requests ({} repeats), survivors delivered {first} and {second}",
        acked.len(),
        received.len(),
        repeats
    );
}

async fn jwks_kids(http: &reqwest::Client, node: &HubProcess) -> BTreeSet<String> {
    let document: Value = http
        .get(format!("http://{}/.well-known/jwks.json", node.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    document["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn nodes_started_together_agree_on_their_keys_and_a_rotation_reaches_every_node() {
    common::require_postgres("three nodes on one database");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    // Started together on an empty database: each may generate keys before it sees the others'.
    let spawning: Vec<_> = (0..3)
        .map(|_| {
            let data_dir = data_dir.clone();
            std::thread::spawn(move || node(&data_dir))
        })
        .collect();
    let nodes: Vec<HubProcess> = spawning.into_iter().map(|t| t.join().unwrap()).collect();
    let http = http_client();
    let agreed = wait_until(
        Duration::from_secs(30),
        "the same JWKS on every node",
        || {
            let (http, nodes) = (&http, &nodes);
            async move {
                let mut sets = Vec::new();
                for node in nodes {
                    sets.push(jwks_kids(http, node).await);
                }
                sets.windows(2)
                    .all(|w| w[0] == w[1])
                    .then(|| sets.remove(0))
            }
        },
    )
    .await;
    assert!(agreed.len() >= 2, "{agreed:?}");

    let rotated: Value = http
        .post(format!("http://{}/api/v1/keys:rotate", nodes[0].admin))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_kids: BTreeSet<String> = rotated["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("{rotated}"))
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_string())
        .filter(|kid| !agreed.contains(kid))
        .collect();
    assert_eq!(new_kids.len(), 2, "{rotated}");
    for node in &nodes[1..] {
        wait_until(
            Duration::from_secs(30),
            "the rotated keys in another node's JWKS",
            || {
                let (http, new_kids) = (&http, &new_kids);
                async move {
                    jwks_kids(http, node)
                        .await
                        .is_superset(new_kids)
                        .then_some(())
                }
            },
        )
        .await;
    }
}

/// A gauge or counter of a node's `/metrics`, 0 when absent.
async fn metric(http: &reqwest::Client, node: &HubProcess, name: &str) -> f64 {
    let text = http
        .get(format!("http://{}/metrics", node.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    common::metric_value(&text, name)
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn a_circuit_one_node_opens_spares_the_origin_on_every_node() {
    common::require_postgres("three nodes on one database");
    const COOLDOWN: Duration = Duration::from_secs(5);
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let spawn = || {
        let mut command = common::hub_command(&data_dir);
        command
            .env("A2A_PUSH_HUB_DELIVERY__CIRCUIT_THRESHOLD", "3")
            .env("A2A_PUSH_HUB_DELIVERY__CIRCUIT_COOLDOWN", "5s")
            .env(
                "A2A_PUSH_HUB_DELIVERY__RETRY_SCHEDULE",
                "[\"100ms\",\"100ms\",\"100ms\",\"100ms\"]",
            )
            .env("A2A_PUSH_HUB_DELIVERY__JITTER", "0");
        HubProcess::spawn(command).expect("a node starts")
    };
    let (first, second) = (spawn(), spawn());
    let http = http_client();
    for (node, task) in [(&first, "a"), (&second, "b")] {
        common::create_config_at(
            &http,
            node.public,
            task,
            "c",
            &receiver.url(&format!("/{task}")),
        )
        .await;
    }
    let publish = |node: &HubProcess, task: &str| {
        let request = http
            .post(format!("http://{}/api/v1/events", node.admin))
            .header("content-type", "application/json")
            .body(common::status_event(task, "TASK_STATE_WORKING").to_string());
        async move { assert_eq!(request.send().await.unwrap().status(), 202) }
    };
    // Three failures at the first node open its circuit for the receiver's origin.
    publish(&first, "a").await;
    let failures = receiver.wait_for(3, Duration::from_secs(10)).await;
    let opened_at = failures[2].at;
    // The second node learns it from the store.
    wait_until(
        Duration::from_secs(10),
        "the second node to open the circuit too",
        || {
            let (http, second) = (&http, &second);
            async move {
                (metric(http, second, "a2a_push_hub_circuits_open").await >= 1.0).then_some(())
            }
        },
    )
    .await;
    publish(&second, "b").await;
    let b_first = wait_until(Duration::from_secs(20), "the second node's probe", || {
        let found = receiver
            .received()
            .into_iter()
            .find(|r| r.path == "/b")
            .map(|r| r.at);
        async move { found }
    })
    .await;
    assert!(
        b_first.duration_since(opened_at) >= COOLDOWN - Duration::from_millis(300),
        "the second node waited for the circuit the first one opened: its first request came {:?} after the circuit opened",
        b_first.duration_since(opened_at)
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn an_sse_listener_on_one_node_hears_of_events_another_node_accepted() {
    common::require_postgres("SSE across nodes");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let node_on =
        |store: std::path::PathBuf| common::TestHub::start_with(move |s| s.store.path = store);
    let (listening, accepting) = (node_on(store.clone()).await, node_on(store).await);
    let created = common::create_subscription(&listening, json!({"token": "t"})).await;
    let id = created["id"].as_str().unwrap();
    let stream_url = format!("{}/api/v1/subscriptions/{id}/events", listening.admin);
    let mut stream = common::SseReader::open(&listening.http, &stream_url, None).await;
    let event = common::status_event("elsewhere", "TASK_STATE_WORKING");
    let (status, _) = common::push(
        &accepting.http,
        &format!("{}/inbound/{id}", accepting.public),
        &[("x-a2a-notification-token", "t")],
        event.to_string(),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (sequence, heard) = stream.next(Duration::from_secs(10)).await;
    assert_eq!(sequence, "1");
    assert_eq!(heard["taskId"], "elsewhere");
    assert_eq!(heard["event"], event);
    listening.stop().await;
    accepting.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn a_follow_moves_to_another_node_when_its_node_stops() {
    common::require_postgres("follows across nodes");
    let agent = common::SilentFirstAgent::start(vec![json!(
        {"statusUpdate": {"taskId": "t-new", "contextId": "c", "status": {"state": "TASK_STATE_COMPLETED"}}}
    )])
    .await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = || {
        let (upstream, store) = (agent.agent.url("/"), dir.path().join("store"));
        common::TestHub::start_with(move |s| {
            common::fast_delivery(s);
            s.gateway.upstream = upstream;
            s.store.path = store;
            s.delivery.timeout = a2a_push_hub::config::HumanDuration(Duration::from_secs(1));
            s.store.lane_lease = a2a_push_hub::config::HumanDuration(Duration::from_secs(3));
        })
    };
    let (first, second) = (node().await, node().await);
    let send = common::send_with_inline_config(&receiver.url("/hook"));
    let (_, answer) = first.rpc_raw(send.to_string(), &[]).await;
    assert_eq!(answer["result"]["task"]["id"], "t-new");
    wait_until(
        Duration::from_secs(10),
        "the first node to follow the task",
        || async { (agent.subscribed() == 1).then_some(()) },
    )
    .await;
    // Two renewals of the second node's keeper after the follow started: it must leave a
    // live follow alone.
    let renewals = || async {
        common::metric_value(
            &second.metrics().await,
            "a2a_push_hub_follow_renewals_total",
        )
    };
    let seen = renewals().await;
    wait_until(
        Duration::from_secs(10),
        "two renewals of the second node's keeper",
        || async { (renewals().await >= seen + 2.0).then_some(()) },
    )
    .await;
    assert_eq!(agent.subscribed(), 1);

    first.stop().await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        got[0].json()["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED",
        "the second node followed the task once the first stopped"
    );
    assert_eq!(agent.subscribed(), 2);
    second.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn two_nodes_together_keep_an_origin_within_its_rate_cap() {
    common::require_postgres("two nodes on one database");
    const RATE: f64 = 20.0;
    const TASKS: usize = 80;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("store");
    let spawn = || {
        let mut command = common::hub_command(&data_dir);
        common::crash_test_settings(&mut command);
        command.env("A2A_PUSH_HUB_DELIVERY__MAX_RATE_PER_ORIGIN", "20");
        HubProcess::spawn(command).expect("a node starts")
    };
    let nodes = [spawn(), spawn()];
    let http = http_client();
    for node in &nodes {
        wait_until(
            Duration::from_secs(10),
            "each node to count two nodes",
            || async { (metric(&http, node, "a2a_push_hub_nodes").await == 2.0).then_some(()) },
        )
        .await;
    }
    for task in 0..TASKS {
        let url = receiver.url("/hook");
        common::create_config_at(&http, nodes[0].public, &format!("r{task}"), "c", &url).await;
    }
    // Half the events accepted at each node: each delivers its own share of the lanes.
    for (half, node) in nodes.iter().enumerate() {
        let body: Vec<Value> = (half * TASKS / 2..(half + 1) * TASKS / 2)
            .map(|task| common::status_event(&format!("r{task}"), "TASK_STATE_WORKING"))
            .collect();
        let response = http
            .post(format!("http://{}/api/v1/events:batch", node.admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let mut arrivals: Vec<std::time::Instant> = receiver
        .wait_for(TASKS, Duration::from_secs(30))
        .await
        .iter()
        .map(|r| r.at)
        .collect();
    arrivals.sort();
    // Each node bursts a tenth of its share (at least 1), then takes half the rate.
    common::assert_rate_capped(&arrivals, RATE, 2, 0.3);
}
