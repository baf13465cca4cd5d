//! The store under the API, on whichever store the tests run on: a lane and a task longer
//! than one read of the database, resumed in order after a restart; and, on PostgreSQL, a
//! database that becomes unreachable: the event API answers 503 (never 202) and nothing it
//! refused is ever delivered; TLS to the database, verified against the CA named in the URL.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HubProcess, Receiver, Reply, TestHub, fast_delivery, status_event, wait_until};
use reqwest::StatusCode;
use serde_json::Value;

fn numbered(task: &str, n: u64) -> Value {
    let mut event = status_event(task, "TASK_STATE_WORKING");
    event["statusUpdate"]["metadata"] = serde_json::json!({"n": n});
    event
}

fn numbers(receiver: &Receiver) -> Vec<u64> {
    common::event_numbers(&receiver.received())
}

#[tokio::test]
async fn a_long_lane_is_counted_and_resumed_in_order_after_a_restart() {
    const EVENTS: u64 = 600;
    let receiver = Receiver::start().await;
    receiver.script(|_| Reply::status(503));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let settings_store = store.clone();
    let hub = TestHub::start_with(move |s| {
        s.store.path = settings_store;
        // The first attempt fails; the next comes after the restart.
        s.delivery.retry_schedule =
            vec![a2a_push_hub::config::HumanDuration(Duration::from_secs(2))];
    })
    .await;
    hub.create_config("long", &receiver.url("/long")).await;
    for chunk in (1..=EVENTS).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<Value> = chunk.iter().map(|n| numbered("long", *n)).collect();
        let (status, _, body) = hub
            .admin_post("/api/v1/events:batch", Value::Array(batch).to_string())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // The head failed once and waits; the other 599 wait behind it.
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let (status, view) = hub.admin_get("/api/v1/tasks/long").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["deliveries"]["pending"], EVENTS, "{view}");
    hub.stop().await;

    receiver.script(|_| Reply::ok());
    let restarted = std::time::Instant::now();
    let restarted_store = store.clone();
    let hub = TestHub::start_with(move |s| {
        s.store.path = restarted_store;
        fast_delivery(s);
    })
    .await;
    let after_restart = |receiver: &Receiver| -> Vec<u64> {
        let received: Vec<_> = receiver
            .received()
            .into_iter()
            .filter(|r| r.at >= restarted)
            .collect();
        common::event_numbers(&received)
    };
    wait_until(Duration::from_secs(60), "all 600 delivered", || {
        let count = after_restart(&receiver).len() as u64;
        async move { (count >= EVENTS).then_some(()) }
    })
    .await;
    assert_eq!(
        after_restart(&receiver),
        (1..=EVENTS).collect::<Vec<_>>(),
        "after the restart, every event once, in order"
    );
    hub.stop().await;
}

/// A TCP forwarder to the database that can be cut (open connections dropped, new ones
/// closed at once) and restored.
struct Cable {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cable {
    async fn to(target: String) -> Cable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (accept_up, accept_links) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                accept_links.lock().unwrap().push(link);
            }
        });
        Cable { addr, up, links }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn an_unreachable_database_gets_503_and_nothing_refused_is_delivered() {
    common::require_postgres("an unreachable database");
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut url = url::Url::parse(&common::postgres_store_for(&store).unwrap()).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let cable = Cable::to(target).await;
    url.set_port(Some(cable.addr.port())).unwrap();
    let hub = TestHub::start_with(move |s| {
        s.store.path = store;
        s.store.url = a2a_push_hub::config::Secret::new(url.to_string());
        s.store.connect_timeout = a2a_push_hub::config::HumanDuration(Duration::from_secs(1));
        fast_delivery(s);
    })
    .await;
    hub.create_config("t", &receiver.url("/t")).await;
    let mut accepted = BTreeSet::new();
    let publish = |n: u64| {
        let hub = &hub;
        async move {
            hub.admin_post("/api/v1/events", numbered("t", n).to_string())
                .await
        }
    };
    let (status, _, _) = publish(1).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    accepted.insert(1);
    receiver.wait_for(1, Duration::from_secs(10)).await;

    cable.cut();
    for n in 2..=4 {
        let (status, content_type, body) = publish(n).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(content_type, "application/problem+json");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("nothing was accepted"),
            "{body}"
        );
    }

    cable.restore();
    let mut next = 5;
    let back = wait_until(
        Duration::from_secs(20),
        "a 202 once the database is back",
        || {
            next += 1;
            let this = next;
            let publish = &publish;
            async move {
                let (status, _, _) = publish(this).await;
                (status == StatusCode::ACCEPTED).then_some(this)
            }
        },
    )
    .await;
    accepted.insert(back);
    // A refused event stored by mistake would sit earlier in the lane than `back`, so it would
    // arrive before it: once `back` arrived, everything that ever will has.
    wait_until(Duration::from_secs(20), "the accepted events", || {
        let arrived: BTreeSet<u64> = numbers(&receiver).into_iter().collect();
        let done = accepted.is_subset(&arrived);
        async move { done.then_some(()) }
    })
    .await;
    let arrived: BTreeSet<u64> = numbers(&receiver).into_iter().collect();
    assert_eq!(arrived, accepted, "only accepted events arrive");
    hub.stop().await;
}

fn migrate(store_url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args(["migrate"])
        .env("A2A_PUSH_HUB_STORE__URL", store_url)
        .output()
        .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn migrate_brings_the_schema_up_once_and_a_newer_schema_is_refused() {
    common::require_postgres("migrations");
    let dir = tempfile::tempdir().unwrap();
    let url = common::postgres_store_for(&dir.path().join("store")).unwrap();
    for _ in 0..2 {
        let output = migrate(&url);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!(
                "the database schema is at version {}",
                a2a_push_hub::internals::postgres_schema::schema_version()
            )
        );
    }
    let bump = url.clone();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&bump, postgres::NoTls).unwrap();
        client
            .execute(
                "INSERT INTO hub_schema_migrations (version) VALUES (999)",
                &[],
            )
            .unwrap();
    })
    .join()
    .unwrap();
    let output = migrate(&url);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("version 999, newer than this hub knows"),
        "{stderr}"
    );
    let mut command = common::hub_command(&dir.path().join("store"));
    command.env("A2A_PUSH_HUB_STORE__URL", &url);
    let refused = HubProcess::spawn(command)
        .err()
        .expect("serve refuses it too");
    assert!(refused.contains("newer than this hub knows"), "{refused}");
}

/// The CA of the test database's TLS certificate (`scripts/throwaway-postgres.sh` makes one).
const POSTGRES_CA_VAR: &str = "A2A_PUSH_HUB_TEST_POSTGRES_CA";

/// Connections of hubs to the test database that are encrypted, counted over a plain one.
fn encrypted_hub_connections() -> i64 {
    let url = std::env::var(common::POSTGRES_URL_VAR).unwrap();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let count: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE s.ssl AND a.application_name = 'a2a-push-hub'",
                &[],
            )
            .unwrap()
            .get(0);
        count
    })
    .join()
    .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set A2A_PUSH_HUB_TEST_POSTGRES_URL (scripts/throwaway-postgres.sh) and run with --ignored"]
async fn tls_to_the_database_is_verified_against_the_ca_the_url_names() {
    common::require_postgres("TLS to PostgreSQL");
    let ca = std::env::var(POSTGRES_CA_VAR)
        .ok()
        .filter(|ca| !ca.is_empty())
        .unwrap_or_else(|| panic!("TLS to PostgreSQL needs {POSTGRES_CA_VAR}"));
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let url = common::postgres_store_for(&store).unwrap();
    let with = |options: &str| {
        let joint = if url.contains('?') { '&' } else { '?' };
        format!("{url}{joint}{options}")
    };

    let verified = with(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let hub_store = store.clone();
    let hub = TestHub::start_with(move |s| {
        s.store.path = hub_store;
        s.store.url = a2a_push_hub::config::Secret::new(verified);
        fast_delivery(s);
    })
    .await;
    hub.create_config("t", &receiver.url("/t")).await;
    hub.publish(status_event("t", "TASK_STATE_WORKING")).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(
        encrypted_hub_connections() > 0,
        "the hub's connections to the database are encrypted"
    );
    hub.stop().await;

    // The server's certificate is signed by a CA this system does not trust: without
    // sslrootcert the hub refuses the database and says what to add.
    let mut settings = common::test_settings(&dir);
    settings.store.path = store;
    settings.store.url = a2a_push_hub::config::Secret::new(with("sslmode=require"));
    settings.store.connect_timeout = a2a_push_hub::config::HumanDuration(Duration::from_secs(5));
    let error = a2a_push_hub::Hub::builder(settings)
        .start()
        .await
        .err()
        .expect("an unverified server is refused")
        .to_string();
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("sslrootcert"), "{error}");
    assert!(
        !error.contains("postgres://"),
        "the URL is never repeated: {error}"
    );
}
