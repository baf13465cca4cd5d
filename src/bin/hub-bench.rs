//! hub-bench: measures the hub end to end against the loopback limit of the same run.
//!
//! `cargo run --release --bin hub-bench -- [--quick] [--scenarios a,b,c,d,e,f,g,h,i,j] [--store postgres://…] [--hub-log FILE]`
//!
//! With `--store`, each hub keeps its state in a schema of its own (`bench_…`, dropped at the
//! end) of that PostgreSQL database instead of the embedded store. With `--hub-log`, every
//! hub's log lines (JSON, info and up) are appended to FILE, to see what a run spent its time
//! on.
//!
//! Starts a sink (an HTTP server that timestamps arrivals) and the release hub binary beside
//! this one (real store on disk, signing on), drives the event API, and prints one JSON
//! document: per scenario the delivered rate at the sink, publish-to-arrival latency
//! (p50/p90/p99/max), the hub's peak RSS and CPU seconds, and a baseline — the same load
//! generator posting the same bodies straight to the sink — with the ratio hub ÷ baseline.
//! The one-request-per-event runs also report this process's own CPU per event (load
//! generator and sink), the share of the machine the hub did not have.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use a2a_push_hub::internals::postgres_schema;
use axum::body::Bytes;
use serde_json::{Value, json};

/// The PostgreSQL database of `--store`, and the schemas made in it.
static POSTGRES: OnceLock<(String, Mutex<Vec<String>>)> = OnceLock::new();
/// The file of `--hub-log`.
static HUB_LOG: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Runs a blocking schema statement on a thread of its own (the synchronous client runs its
/// own runtime).
fn on_own_thread(
    f: impl FnOnce() -> Result<(), a2a_push_hub::internals::StoreError> + Send + 'static,
) {
    std::thread::spawn(f)
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("--store: {e}"));
}

/// The store URL of a hub whose store folder is `dir`: a schema of its own, the same one
/// again for a hub restarted on that folder.
fn postgres_store_for(dir: &std::path::Path) -> Option<String> {
    let (url, schemas) = POSTGRES.get()?;
    let schema = postgres_schema::schema_for_folder("bench_", dir);
    let mut made = schemas.lock().unwrap();
    if !made.contains(&schema) {
        let (url, create) = (url.clone(), schema.clone());
        on_own_thread(move || postgres_schema::create_schema(&url, &create));
        made.push(schema.clone());
    }
    Some(postgres_schema::in_schema(url, &schema))
}

/// What the database has done so far, when the benchmark runs on PostgreSQL: CPU seconds of
/// the PostgreSQL processes on this machine (`None` when it runs elsewhere), WAL bytes written
/// and transactions committed.
fn database_usage() -> Option<(Option<f64>, i64, i64)> {
    let (url, _) = POSTGRES.get()?;
    let url = url.clone();
    let (wal, commits) = std::thread::spawn(move || postgres_schema::database_counters(&url))
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("--store: {e}"));
    // A backend's CPU moves to the postmaster's children's time when it exits.
    let mut ticks = 0.0;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        seen = true;
        ticks += cpu_ticks(&entry.path(), true);
    }
    Some((seen.then_some(ticks / 100.0), wal, commits))
}

/// The CPU clock ticks (1/100 s) a process in `/proc` has used — user and system — and, with
/// `children`, those of its children that have exited.
fn cpu_ticks(process: &std::path::Path, children: bool) -> f64 {
    let stat = std::fs::read_to_string(process.join("stat")).unwrap_or_default();
    // Fields 14 to 17 of proc(5), counted after the command name in parentheses.
    stat.rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(11)
        .take(if children { 4 } else { 2 })
        .filter_map(|v| v.parse::<f64>().ok())
        .sum()
}

/// The database's cost per event between two [`database_usage`] readings.
fn database_per_event(
    before: Option<(Option<f64>, i64, i64)>,
    after: Option<(Option<f64>, i64, i64)>,
    events: u64,
) -> Value {
    let (Some((cpu_before, wal_before, commits_before)), Some((cpu_after, wal, commits))) =
        (before, after)
    else {
        return Value::Null;
    };
    let per_event = |n: f64| (n / events as f64 * 10.0).round() / 10.0;
    json!({"cpu_us_per_event": cpu_before.zip(cpu_after).map(|(b, a)| per_event((a - b) * 1e6)),
        "wal_bytes_per_event": per_event((wal - wal_before) as f64),
        "commits_per_event": per_event((commits - commits_before) as f64)})
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Counts arrivals and their latency (publish time is in the event's metadata).
#[derive(Default)]
struct Sink {
    arrived: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl Sink {
    fn reset(&self) {
        self.arrived.store(0, Ordering::SeqCst);
        self.latencies_us.lock().unwrap().clear();
    }
}

/// A receiver that accepts requests and never answers: every delivery to it ends in the hub's
/// timeout.
async fn start_hanging_sink() -> SocketAddr {
    let app = axum::Router::new().fallback(std::future::pending::<axum::http::StatusCode>);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn start_sink() -> (Arc<Sink>, SocketAddr) {
    start_sink_at("127.0.0.1:0".parse().unwrap()).await
}

async fn start_sink_at(bind: SocketAddr) -> (Arc<Sink>, SocketAddr) {
    let sink = Arc::new(Sink::default());
    let state = sink.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let sink = state.clone();
        async move {
            let arrived = now_us();
            if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                let kind = event
                    .as_object()
                    .and_then(|o| o.values().next())
                    .cloned()
                    .unwrap_or_default();
                if let Some(sent) = kind["metadata"]["sentAtUs"].as_u64() {
                    sink.latencies_us
                        .lock()
                        .unwrap()
                        .push(arrived.saturating_sub(sent));
                }
            }
            sink.arrived.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (sink, addr)
}

struct Hub {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    _dir: Arc<tempfile::TempDir>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    fn start() -> Hub {
        Hub::start_in(Arc::new(tempfile::tempdir().unwrap()), &[])
    }

    /// Starts the hub on the store in `dir` (a restart when a hub ran there before), with extra
    /// settings as environment variables.
    fn start_in(dir: Arc<tempfile::TempDir>, settings: &[(&str, &str)]) -> Hub {
        let binary = std::env::current_exe()
            .unwrap()
            .with_file_name("a2a-push-hub");
        let mut child = Command::new(&binary)
            .args([
                "--log-format",
                "json",
                "serve",
                "--public-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path().join("store"))
            .env(
                "A2A_PUSH_HUB_SECURITY__ALLOWED_SUBNETS",
                "[\"127.0.0.0/8\"]",
            )
            .envs(settings.iter().copied())
            .envs(
                postgres_store_for(dir.path())
                    .map(|url| {
                        // A node killed in (d) gives its lanes up when its leases run out: the
                        // shortest lease the settings allow, with attempts of at most 2 s.
                        [
                            ("A2A_PUSH_HUB_STORE__URL", url),
                            ("A2A_PUSH_HUB_DELIVERY__TIMEOUT", "2s".to_string()),
                            ("A2A_PUSH_HUB_STORE__LANE_LEASE", "5s".to_string()),
                        ]
                        .to_vec()
                    })
                    .unwrap_or_default(),
            )
            .env("RUST_LOG", "warn,a2a_push_hub=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with cargo build --release)",
                    binary.display()
                )
            });
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (public, admin) = loop {
            let line = lines.next().expect("the hub logs its addresses").unwrap();
            let entry: Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["fields"]["message"] == "a2a-push-hub serving" {
                break (
                    entry["fields"]["public_addr"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap(),
                    entry["fields"]["admin_addr"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
            }
        };
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(Ok(mut log)) = HUB_LOG.get().map(Mutex::lock) {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        Hub {
            child,
            public,
            admin,
            _dir: dir,
        }
    }

    /// (peak RSS in MiB, CPU seconds) from /proc.
    fn usage(&self) -> (f64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let ticks = cpu_ticks(std::path::Path::new(&format!("/proc/{pid}")), false);
        (rss_kb / 1024.0, ticks / 100.0)
    }

    /// Bytes the hub has had written to storage so far (its store's pages and logs; zero when
    /// the kernel keeps no I/O accounting).
    fn written_bytes(&self) -> f64 {
        let io =
            std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).unwrap_or_default();
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// The store commits `hubs` have made so far, the seconds they took, and how many took more
/// than 25 ms (what a writer held up everything queued behind it for), from their metrics.
async fn commit_totals(http: &reqwest::Client, hubs: &[Hub]) -> (f64, f64, f64) {
    let mut totals = (0.0, 0.0, 0.0);
    for hub in hubs {
        let Ok(answer) = http
            .get(format!("http://{}/metrics", hub.admin))
            .send()
            .await
        else {
            continue;
        };
        let text = answer.text().await.unwrap_or_default();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let count = value("a2a_push_hub_store_commit_seconds_count ");
        totals.0 += count;
        totals.1 += value("a2a_push_hub_store_commit_seconds_sum ");
        totals.2 += count - value("a2a_push_hub_store_commit_seconds_bucket{le=\"0.025\"} ");
    }
    totals
}

/// What the hubs' stores have done so far: bytes written, commits made and the writer's
/// seconds, whose differences per event show what one event costs the store.
struct StoreWork {
    written: f64,
    commits: f64,
    commit_s: f64,
    slow_commits: f64,
}

impl StoreWork {
    async fn read(http: &reqwest::Client, hubs: &[Hub]) -> StoreWork {
        let (commits, commit_s, slow_commits) = commit_totals(http, hubs).await;
        StoreWork {
            written: hubs.iter().map(Hub::written_bytes).sum(),
            commits,
            commit_s,
            slow_commits,
        }
    }

    /// The store's work from `before` to `self`, per one of `events`.
    fn per_event(&self, before: &StoreWork, events: u64) -> Value {
        let events = events.max(1) as f64;
        json!({"hub_written_kib_per_event": ((self.written - before.written) / 1024.0 / events * 10.0).round() / 10.0,
            "store_commits_per_event": ((self.commits - before.commits) / events * 1000.0).round() / 1000.0,
            "store_writer_us_per_event": ((self.commit_s - before.commit_s) * 1e6 / events).round(),
            "store_commits_over_25ms": self.slow_commits - before.slow_commits})
    }
}

/// The CPU seconds this process (load generator and sink) has used so far.
fn own_cpu_s() -> f64 {
    cpu_ticks(std::path::Path::new("/proc/self"), false) / 100.0
}

/// The largest peak RSS of `hubs` (MiB) and their CPU seconds together.
fn usage(hubs: &[Hub]) -> (f64, f64) {
    hubs.iter()
        .map(Hub::usage)
        .fold((0.0, 0.0), |(rss, cpu), (r, c)| (rss.max(r), cpu + c))
}

/// `into` with `fields`' entries added (both JSON objects).
fn merge(into: &mut Value, fields: Value) {
    if let (Some(into), Value::Object(fields)) = (into.as_object_mut(), fields) {
        into.extend(fields);
    }
}

fn event(task: &str, n: usize) -> Value {
    json!({"statusUpdate": {"taskId": task, "contextId": "bench", "status": {"state": "TASK_STATE_WORKING"},
        "metadata": {"n": n, "sentAtUs": now_us(), "pad": "x".repeat(200)}}})
}

fn percentiles(latencies: &mut [u64]) -> Value {
    latencies.sort_unstable();
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    json!({"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": latencies.last().copied().unwrap_or(0) as f64 / 1000.0})
}

async fn wait_for(sink: &Sink, count: u64, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while sink.arrived.load(Ordering::SeqCst) < count {
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn register(
    http: &reqwest::Client,
    hub: &Hub,
    tasks: &[String],
    configs_per_task: usize,
    sink: SocketAddr,
) {
    let pairs: Vec<(String, usize)> = tasks
        .iter()
        .flat_map(|t| (0..configs_per_task).map(move |c| (t.clone(), c)))
        .collect();
    let chunks: Vec<Vec<(String, usize)>> = pairs
        .chunks(pairs.len().div_ceil(16).max(1))
        .map(|c| c.to_vec())
        .collect();
    let mut workers = Vec::new();
    for chunk in chunks {
        let (http, url) = (http.clone(), format!("http://{}/", hub.public));
        workers.push(tokio::spawn(async move {
            for (task, config) in chunk {
                let request = json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig",
                    "params": {"taskId": task, "id": format!("c{config}-{}", sink.port()), "url": format!("http://{sink}/hook/{task}/{config}")}});
                let answer: Value = http
                    .post(&url)
                    .json(&request)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(
                    answer.get("result").is_some(),
                    "the hub refused a config the benchmark needs: {answer}"
                );
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

/// Where one event's request goes: its URL and the headers it carries.
type Target = Arc<dyn Fn(&str) -> (String, Vec<(&'static str, String)>) + Send + Sync>;

/// The same URL for every event, no extra header.
fn to_url(url: String) -> Target {
    Arc::new(move |_| (url.clone(), Vec::new()))
}

/// Posts `events` to `url` in batches (`batch` > 1: the hub's batch API) with `concurrency`
/// workers; returns when all were accepted, with each request's time to its answer, µs.
async fn publish(
    http: &reqwest::Client,
    url: &str,
    events: Vec<(String, usize)>,
    batch: usize,
    concurrency: usize,
) -> Vec<u64> {
    publish_to(http, to_url(url.to_string()), events, batch, concurrency).await
}

/// [`publish`] with each request sent where `target` says for its (first) event's task.
async fn publish_to(
    http: &reqwest::Client,
    target: Target,
    events: Vec<(String, usize)>,
    batch: usize,
    concurrency: usize,
) -> Vec<u64> {
    let queue = Arc::new(Mutex::new(
        events.chunks(batch).map(|c| c.to_vec()).collect::<Vec<_>>(),
    ));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, target, queue) = (http.clone(), target.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut took = Vec::new();
            loop {
                let Some(chunk) = queue.lock().unwrap().pop() else {
                    return took;
                };
                let body = if batch > 1 {
                    Value::Array(chunk.iter().map(|(t, n)| event(t, *n)).collect())
                } else {
                    event(&chunk[0].0, chunk[0].1)
                };
                let (url, headers) = target(&chunk[0].0);
                let mut request = http.post(&url).json(&body);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let posted = Instant::now();
                let response = request.send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                took.push(posted.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut took = Vec::new();
    for worker in workers {
        took.extend(worker.await.unwrap());
    }
    took
}

/// The same bodies straight to the sink: the loopback limit of this machine, this run.
async fn baseline(
    http: &reqwest::Client,
    sink: &Sink,
    sink_addr: SocketAddr,
    events: Vec<(String, usize)>,
) -> Value {
    sink.reset();
    let count = events.len() as u64;
    let own_cpu_before = own_cpu_s();
    let started = Instant::now();
    publish(http, &format!("http://{sink_addr}/direct"), events, 1, 64).await;
    wait_for(sink, count, Duration::from_secs(120)).await;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    let own_cpu = own_cpu_s() - own_cpu_before;
    json!({"delivered_per_s": rate.round(), "latency": percentiles(&mut sink.latencies_us.lock().unwrap()),
        "load_generator_cpu_us_per_event": (own_cpu * 1e6 / count as f64).round()})
}

async fn throughput(
    name: &str,
    http: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_addr: SocketAddr,
    tasks: usize,
    configs: usize,
    events_per_task: usize,
) -> Value {
    // Fan-out registers more configs per task than the default limit allows.
    let most_configs = configs.max(10).to_string();
    let settings = [(
        "A2A_PUSH_HUB_LIMITS__MAX_CONFIGS_PER_TASK",
        most_configs.as_str(),
    )];
    let hub = Hub::start_in(Arc::new(tempfile::tempdir().unwrap()), &settings);
    let task_ids: Vec<String> = (0..tasks).map(|t| format!("{name}-{t}")).collect();
    register(http, &hub, &task_ids, configs, sink_addr).await;
    let events: Vec<(String, usize)> = (0..events_per_task)
        .flat_map(|n| task_ids.iter().map(move |t| (t.clone(), n)))
        .collect();
    let deliveries = (events.len() * configs) as u64;
    sink.reset();
    let (_, cpu_before) = hub.usage();
    let store_before = StoreWork::read(http, std::slice::from_ref(&hub)).await;
    let started = Instant::now();
    publish(
        http,
        &format!("http://{}/api/v1/events:batch", hub.admin),
        events.clone(),
        500,
        4,
    )
    .await;
    let complete = wait_for(sink, deliveries, Duration::from_secs(300)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (rss, cpu_after) = hub.usage();
    let rate = sink.arrived.load(Ordering::SeqCst) as f64 / elapsed;
    let mut hub_result = json!({"deliveries": deliveries, "complete": complete, "delivered_per_s": rate.round(),
        "latency": percentiles(&mut sink.latencies_us.lock().unwrap()), "hub_peak_rss_mib": rss, "hub_cpu_s": cpu_after - cpu_before});
    // Per delivery: a fan-out's event is counted once per config.
    let store_work = StoreWork::read(http, std::slice::from_ref(&hub))
        .await
        .per_event(&store_before, deliveries);
    merge(&mut hub_result, store_work);
    drop(hub);
    // As many direct posts as the hub made deliveries (at most 50,000), with the same bodies.
    let direct = events
        .iter()
        .cycle()
        .take(deliveries.min(50_000) as usize)
        .cloned()
        .collect();
    let base = baseline(http, sink, sink_addr, direct).await;
    let ratio = rate / base["delivered_per_s"].as_f64().unwrap_or(1.0);
    json!({"hub": hub_result, "baseline": base, "hub_over_baseline": (ratio * 1000.0).round() / 1000.0})
}

/// (f): one event per request, as agent frameworks publish, from `clients` concurrent
/// keep-alive clients: the rate the hub accepts at, the rate it delivers at, and how long each
/// publish waited for its durable commit. (j), PostgreSQL only: the same on `nodes` hub nodes
/// sharing one database, each task's events published to one of them (by task, as a load
/// balancer with affinity would).
async fn single_events(
    http: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_addr: SocketAddr,
    (tasks, events_per_task): (usize, usize),
    clients: usize,
    nodes: usize,
) -> Value {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let hubs: Vec<Hub> = (0..nodes)
        .map(|_| Hub::start_in(dir.clone(), &[]))
        .collect();
    let task_ids: Vec<String> = (0..tasks).map(|t| format!("single-{t}")).collect();
    register(http, &hubs[0], &task_ids, 1, sink_addr).await;
    let urls: Vec<String> = hubs
        .iter()
        .map(|hub| format!("http://{}/api/v1/events", hub.admin))
        .collect();
    let target: Target = Arc::new(move |task| {
        let number: usize = task
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (urls[number % urls.len()].clone(), Vec::new())
    });
    let run = Run::new(&task_ids, events_per_task, clients);
    run.measure(http, sink, sink_addr, hubs, target).await
}

/// (h): a peer agent pushing to the hub's inbound intake, one subscription per task (token
/// checked), every accepted push forwarded to a webhook.
async fn inbound_forward(
    http: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_addr: SocketAddr,
    tasks: usize,
    events_per_task: usize,
    clients: usize,
) -> Value {
    // The intake's per-subscription rate limit is for misbehaving peers, not this load.
    let hub = Hub::start_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &[
            ("A2A_PUSH_HUB_INBOUND__RATE_LIMIT_PER_SECOND", "100000"),
            ("A2A_PUSH_HUB_INBOUND__RATE_LIMIT_BURST", "100000"),
        ],
    );
    let task_ids: Vec<String> = (0..tasks).map(|t| format!("inbound-{t}")).collect();
    let mut intakes = std::collections::HashMap::new();
    for task in &task_ids {
        let answer: Value = http
            .post(format!("http://{}/api/v1/subscriptions", hub.admin))
            .json(&json!({"taskId": task, "token": format!("token-{task}"),
                "forwardTo": format!("http://{sink_addr}/forward/{task}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = answer["url"]
            .as_str()
            .unwrap_or_else(|| panic!("the hub refused a subscription: {answer}"));
        intakes.insert(task.clone(), url.to_string());
    }
    let target: Target = Arc::new(move |task| {
        let token = format!("token-{task}");
        (
            intakes[task].clone(),
            vec![("x-a2a-notification-token", token)],
        )
    });
    let run = Run::new(&task_ids, events_per_task, clients);
    run.measure(http, sink, sink_addr, vec![hub], target).await
}

/// An A2A agent that pushes: `SendMessage` starts the task its message id names and keeps the
/// push config it was given (in gateway mode, the hub's intake) for the benchmark to push to.
async fn start_pushing_agent() -> (
    SocketAddr,
    Arc<Mutex<std::collections::HashMap<String, (String, String)>>>,
) {
    let configs = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let kept = configs.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let card = json!({"name": "bench agent", "capabilities": {"streaming": false, "pushNotifications": true},
        "supportedInterfaces": [{"url": format!("http://{addr}/"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}]});
    let app = axum::Router::new()
        .route(
            "/.well-known/agent-card.json",
            axum::routing::get(move || async move { axum::Json(card) }),
        )
        .fallback(move |axum::Json(request): axum::Json<Value>| async move {
            let params = &request["params"];
            let result = match request["method"].as_str().unwrap_or_default() {
                "SendMessage" => {
                    let task = params["message"]["messageId"].as_str().unwrap_or_default();
                    let push = &params["configuration"]["taskPushNotificationConfig"];
                    let config = (push["url"].as_str().unwrap_or_default().to_string(),
                        push["token"].as_str().unwrap_or_default().to_string());
                    kept.lock().unwrap().insert(task.to_string(), config);
                    json!({"task": {"id": task, "contextId": "bench", "status": {"state": "TASK_STATE_SUBMITTED"}}})
                }
                _ => params.clone(),
            };
            axum::Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, configs)
}

/// (i): the hub as a gateway in front of an agent: each client's `SendMessage` with an inline
/// push config goes through the hub, which hands the agent its intake instead; the agent then
/// pushes every task update there, one request each, and the hub delivers them to the
/// client's webhook.
async fn gateway_pushes(
    http: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_addr: SocketAddr,
    tasks: usize,
    events_per_task: usize,
    clients: usize,
) -> Value {
    let (agent, configs) = start_pushing_agent().await;
    let upstream = format!("http://{agent}/");
    let hub = Hub::start_in(
        Arc::new(tempfile::tempdir().unwrap()),
        &[("A2A_PUSH_HUB_GATEWAY__UPSTREAM", upstream.as_str())],
    );
    let task_ids: Vec<String> = (0..tasks).map(|t| format!("gateway-{t}")).collect();
    for task in &task_ids {
        let send = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {
            "message": {"messageId": task, "role": "ROLE_USER", "parts": [{"text": "work"}]},
            "configuration": {"returnImmediately": true,
                "taskPushNotificationConfig": {"url": format!("http://{sink_addr}/client/{task}")}}}});
        let answer: Value = http
            .post(format!("http://{}/", hub.public))
            .header("A2A-Version", "1.0")
            .json(&send)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"]["task"]["id"], *task, "{answer}");
    }
    let intakes = configs.lock().unwrap().clone();
    let target: Target = Arc::new(move |task| {
        let (url, token) = intakes[task].clone();
        (url, vec![("x-a2a-notification-token", token)])
    });
    let run = Run::new(&task_ids, events_per_task, clients);
    run.measure(http, sink, sink_addr, vec![hub], target).await
}

/// One event per request from concurrent keep-alive clients, the events of all tasks
/// interleaved.
struct Run {
    events: Vec<(String, usize)>,
    clients: usize,
}

impl Run {
    fn new(task_ids: &[String], events_per_task: usize, clients: usize) -> Run {
        let events = (0..events_per_task)
            .flat_map(|n| task_ids.iter().map(move |t| (t.clone(), n)))
            .collect();
        Run { events, clients }
    }

    /// Sends the events to `target` and waits for them at the sink: accepted and delivered
    /// rates, accept and publish-to-arrival latency, the hub's CPU per event — then the
    /// baseline, the same bodies straight to the sink.
    async fn measure(
        self,
        http: &reqwest::Client,
        sink: &Arc<Sink>,
        sink_addr: SocketAddr,
        hubs: Vec<Hub>,
        target: Target,
    ) -> Value {
        let count = self.events.len() as u64;
        sink.reset();
        let (_, cpu_before) = usage(&hubs);
        let store_before = StoreWork::read(http, &hubs).await;
        let database_before = database_usage();
        let own_cpu_before = own_cpu_s();
        let started = Instant::now();
        let accept_us = publish_to(http, target, self.events.clone(), 1, self.clients).await;
        let accepted_s = started.elapsed().as_secs_f64();
        let complete = wait_for(sink, count, Duration::from_secs(300)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let (rss, cpu_after) = usage(&hubs);
        let own_cpu = own_cpu_s() - own_cpu_before;
        let store_work = StoreWork::read(http, &hubs)
            .await
            .per_event(&store_before, count);
        let arrived = sink.arrived.load(Ordering::SeqCst) as f64;
        let mut hub_result = json!({"events": count, "clients": self.clients, "complete": complete,
            "accepted_per_s": (count as f64 / accepted_s).round(), "delivered_per_s": (arrived / elapsed).round(),
            "accept_latency": percentiles(&mut accept_us.clone()),
            "latency": percentiles(&mut sink.latencies_us.lock().unwrap()), "hub_peak_rss_mib": rss,
            "hub_cpu_s": cpu_after - cpu_before, "hub_cpu_us_per_event": ((cpu_after - cpu_before) * 1e6 / count as f64).round(),
            "load_generator_cpu_us_per_event": (own_cpu * 1e6 / count as f64).round()});
        merge(&mut hub_result, store_work);
        drop(hubs);
        if database_before.is_some() {
            // The hubs' sessions closed: their counters reach the statistics within a second.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            hub_result["database"] = database_per_event(database_before, database_usage(), count);
        }
        let base = baseline(http, sink, sink_addr, self.events).await;
        let ratio = (arrived / elapsed) / base["delivered_per_s"].as_f64().unwrap_or(1.0);
        json!({"hub": hub_result, "baseline": base, "hub_over_baseline": (ratio * 1000.0).round() / 1000.0})
    }
}

/// How a fixed-rate load reaches the hub.
#[derive(Clone, Copy, PartialEq)]
enum Sending {
    /// Each millisecond's events in one request to the batch API.
    Batches,
    /// One request per event (`POST /api/v1/events`), as agent frameworks publish.
    Single,
}

async fn fixed_rate(
    http: &reqwest::Client,
    sink: &Arc<Sink>,
    sink_addr: SocketAddr,
    per_second: usize,
    seconds: u64,
    hanging: Option<SocketAddr>,
    sending: Sending,
) -> Value {
    let hub = Hub::start();
    let tasks: Vec<String> = (0..1000).map(|t| format!("rate-{t}")).collect();
    register(http, &hub, &tasks, 1, sink_addr).await;
    if let Some(hanging) = hanging {
        // A second config on 10 % of the tasks, at a receiver that never answers.
        register(http, &hub, &tasks[..tasks.len() / 10], 1, hanging).await;
    }
    sink.reset();
    let (_, cpu_before) = hub.usage();
    let store_before = StoreWork::read(http, std::slice::from_ref(&hub)).await;
    let ticks_per_s = 1000;
    let per_tick = per_second / ticks_per_s;
    let url = match sending {
        Sending::Batches => format!("http://{}/api/v1/events:batch", hub.admin),
        Sending::Single => format!("http://{}/api/v1/events", hub.admin),
    };
    let mut interval = tokio::time::interval(Duration::from_millis(1000 / ticks_per_s as u64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0usize;
    let mut inflight = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        interval.tick().await;
        let events: Vec<Value> = (0..per_tick)
            .map(|i| event(&tasks[(sent + i) % tasks.len()], sent + i))
            .collect();
        sent += per_tick;
        let bodies = match sending {
            Sending::Batches => vec![Value::Array(events)],
            Sending::Single => events,
        };
        for body in bodies {
            let (http, url) = (http.clone(), url.clone());
            inflight.push(tokio::spawn(async move {
                let posted = Instant::now();
                let accepted = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                accepted.then(|| posted.elapsed().as_micros() as u64)
            }));
        }
    }
    // How long the hub took to accept (the durable commit included): the part of the
    // publish-to-arrival latency spent before delivery starts.
    let mut intake_us = Vec::new();
    for request in inflight {
        if let Ok(Some(us)) = request.await {
            intake_us.push(us);
        }
    }
    // Events whose request failed (refused, reset) were never accepted, so never delivered.
    let accepted = match sending {
        Sending::Batches => intake_us.len() * per_tick,
        Sending::Single => intake_us.len(),
    };
    let complete = wait_for(sink, accepted as u64, Duration::from_secs(60)).await;
    let (rss, cpu_after) = hub.usage();
    let hubs = [hub];
    let store_work = StoreWork::read(http, &hubs)
        .await
        .per_event(&store_before, accepted as u64);
    let mut result = json!({"events_per_s": per_second, "seconds": seconds, "sent": sent, "accepted": accepted, "complete": complete,
        "latency": percentiles(&mut sink.latencies_us.lock().unwrap()), "intake_latency": percentiles(&mut intake_us),
        "hub_peak_rss_mib": rss, "hub_cpu_s": cpu_after - cpu_before});
    merge(&mut result, store_work);
    result
}

/// (d): `tasks` × `per_task` deliveries queued for a receiver that is down; the hub's RSS
/// holding that backlog, then a SIGKILL and a restart with the receiver back: how long until
/// the hub serves, until the first delivery arrives and until the backlog is drained.
async fn backlog(http: &reqwest::Client, tasks: usize, per_task: usize) -> Value {
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = down.local_addr().unwrap();
    drop(down);
    // A flat one-second retry schedule: whichever attempt a delivery is at, it is due again
    // within a second of the receiver's return (the default schedule backs off to hours).
    let schedule = format!("[{}]", vec!["\"1s\""; 100].join(","));
    // The receiver's circuit opens while it is down. On a shared store the circuit outlives the
    // node (the restarted one honours the cool-down the killed one reached, up to
    // `circuit_max_cooldown`); probing once a second keeps this run about failover, not about
    // how long the cool-down had grown.
    let settings = [
        ("A2A_PUSH_HUB_DELIVERY__RETRY_SCHEDULE", schedule.as_str()),
        ("A2A_PUSH_HUB_DELIVERY__CIRCUIT_COOLDOWN", "1s"),
        ("A2A_PUSH_HUB_DELIVERY__CIRCUIT_MAX_COOLDOWN", "1s"),
    ];
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let hub = Hub::start_in(dir.clone(), &settings);
    let task_ids: Vec<String> = (0..tasks).map(|t| format!("backlog-{t}")).collect();
    register(http, &hub, &task_ids, 1, receiver).await;
    let events: Vec<(String, usize)> = (0..per_task)
        .flat_map(|n| task_ids.iter().map(move |t| (t.clone(), n)))
        .collect();
    let pending = events.len();
    let started = Instant::now();
    let url = format!("http://{}/api/v1/events:batch", hub.admin);
    publish(http, &url, events, 500, 4).await;
    let accepted_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_with_backlog, _) = hub.usage();
    drop(hub);

    let (sink, _) = start_sink_at(receiver).await;
    let restarted = Instant::now();
    let hub = Hub::start_in(dir, &settings);
    let serving_s = restarted.elapsed().as_secs_f64();
    let resumed = wait_for(&sink, 1, Duration::from_secs(60)).await;
    let resume_s = restarted.elapsed().as_secs_f64();
    let drained = wait_for(&sink, pending as u64, Duration::from_secs(300)).await;
    let drained_s = restarted.elapsed().as_secs_f64();
    let (rss_peak, cpu_s) = hub.usage();
    json!({"pending_deliveries": pending, "accepted_in_s": accepted_s, "hub_rss_with_backlog_mib": rss_with_backlog,
        "restart": {"serving_after_s": serving_s, "resumed": resumed, "first_delivery_after_s": resume_s,
            "drained": drained, "drained_after_s": drained_s, "arrived": sink.arrived.load(Ordering::SeqCst),
            "hub_peak_rss_mib": rss_peak, "hub_cpu_s": cpu_s}})
}

const USAGE: &str = "usage: hub-bench [--quick] [--scenarios a,b,c,d,e,f,g,h,i,j] [--store postgres://…] [--hub-log FILE]";

/// What the command line asks for.
struct Args {
    quick: bool,
    scenarios: Option<String>,
    store: Option<String>,
    hub_log: Option<String>,
}

/// Reads the command line; exits with the usage on `--help`, and with it and what is wrong on
/// any argument hub-bench does not know, rather than run an eight-minute benchmark the caller
/// did not ask for.
fn parse_args(args: impl Iterator<Item = String>) -> Args {
    let mut parsed = Args {
        quick: false,
        scenarios: None,
        store: None,
        hub_log: None,
    };
    let mut rest = args;
    while let Some(arg) = rest.next() {
        let slot = match arg.as_str() {
            "--quick" => {
                parsed.quick = true;
                continue;
            }
            "--scenarios" => &mut parsed.scenarios,
            "--store" => &mut parsed.store,
            "--hub-log" => &mut parsed.hub_log,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        };
        let Some(value) = rest.next() else {
            eprintln!("{arg} needs a value\n{USAGE}");
            std::process::exit(2);
        };
        *slot = Some(value);
    }
    parsed
}

#[tokio::main]
async fn main() {
    let Args {
        quick,
        scenarios,
        store,
        hub_log,
    } = parse_args(std::env::args().skip(1));
    if let Some(path) = hub_log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("--hub-log {path}: {e}"));
        let _ = HUB_LOG.set(Mutex::new(file));
    }
    let scenarios = scenarios.unwrap_or_else(|| {
        if store.is_some() {
            "a,b,c,d,e,f,g,h,i,j"
        } else {
            "a,b,c,d,e,f,g,h,i"
        }
        .to_string()
    });
    if let Some(url) = &store {
        let _ = POSTGRES.set((url.clone(), Mutex::new(Vec::new())));
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(128)
        // A request that never completes (one a fixed-rate run left waiting for a connection
        // on PostgreSQL, where the hub falls behind) fails instead of holding the run forever.
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (sink, sink_addr) = start_sink().await;
    let mut report = serde_json::Map::new();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    report.insert(
        "machine".into(),
        json!({"cores": cores, "quick": quick, "store": if store.is_some() { "postgres" } else { "embedded" }}),
    );
    for scenario in scenarios.split(',') {
        let result = match scenario.trim() {
            "a" => {
                let tasks = if quick { 1_000 } else { 10_000 };
                json!({"name": format!("throughput: {tasks} tasks x 1 config x 5 events, batch API"),
                    "result": throughput("a", &http, &sink, sink_addr, tasks, 1, 5).await})
            }
            "b" => {
                let seconds = if quick { 5 } else { 20 };
                json!({"name": format!("latency: 5,000 events/s for {seconds} s"), "result": fixed_rate(&http, &sink, sink_addr, 5_000, seconds, None, Sending::Batches).await})
            }
            "c" => {
                let seconds = if quick { 5 } else { 20 };
                let hanging = start_hanging_sink().await;
                json!({"name": format!("isolation: 5,000 events/s for {seconds} s, 10 % of tasks also push to a receiver that never answers"),
                    "result": fixed_rate(&http, &sink, sink_addr, 5_000, seconds, Some(hanging), Sending::Batches).await})
            }
            "d" => {
                let per_task = if quick { 10 } else { 100 };
                json!({"name": format!("backlog: 1,000 tasks x {per_task} events to a receiver that is down (circuit cool-down 1 s), then SIGKILL, receiver back, restart"),
                    "result": backlog(&http, 1_000, per_task).await})
            }
            "e" => {
                let events = if quick { 20 } else { 100 };
                json!({"name": format!("fan-out: 1 task x 100 configs x {events} events"),
                    "result": throughput("e", &http, &sink, sink_addr, 1, 100, events).await})
            }
            "j" if store.is_none() => {
                json!({"name": "two nodes on one database", "result": "PostgreSQL only: run with --store"})
            }
            "f" | "j" => {
                let (tasks, per_task) = if quick { (1_000, 10) } else { (1_000, 50) };
                let nodes = if scenario.trim() == "f" { 1 } else { 2 };
                let mut runs = serde_json::Map::new();
                for clients in [32, 128] {
                    runs.insert(
                        format!("{clients}_clients"),
                        single_events(&http, &sink, sink_addr, (tasks, per_task), clients, nodes)
                            .await,
                    );
                }
                let name = if nodes == 1 {
                    format!(
                        "single events: {tasks} tasks x {per_task} events, one event per request, 32 and 128 clients"
                    )
                } else {
                    format!(
                        "(f) on two nodes sharing one database: {tasks} tasks x {per_task} events, each task's events to one node, 32 and 128 clients"
                    )
                };
                json!({"name": name, "result": Value::Object(runs)})
            }
            "g" => {
                let seconds = if quick { 5 } else { 20 };
                let mut runs = serde_json::Map::new();
                for per_second in [5_000, 10_000] {
                    runs.insert(
                        format!("{per_second}_per_s"),
                        fixed_rate(
                            &http,
                            &sink,
                            sink_addr,
                            per_second,
                            seconds,
                            None,
                            Sending::Single,
                        )
                        .await,
                    );
                }
                json!({"name": format!("latency of single events: a fixed 5,000 and 10,000 events/s for {seconds} s, one request per event"),
                    "result": Value::Object(runs)})
            }
            "h" | "i" => {
                let (tasks, per_task) = if quick { (1_000, 10) } else { (1_000, 50) };
                let path = if scenario.trim() == "h" {
                    "inbound push (token checked) forwarded to a webhook"
                } else {
                    "gateway: an agent pushing its task updates to the intake, delivered to the client's webhook"
                };
                let mut runs = serde_json::Map::new();
                for clients in [32, 128] {
                    let run = if scenario.trim() == "h" {
                        inbound_forward(&http, &sink, sink_addr, tasks, per_task, clients).await
                    } else {
                        gateway_pushes(&http, &sink, sink_addr, tasks, per_task, clients).await
                    };
                    runs.insert(format!("{clients}_clients"), run);
                }
                json!({"name": format!("{path}: {tasks} tasks x {per_task} events, one push per request, 32 and 128 clients"),
                    "result": Value::Object(runs)})
            }
            other => {
                json!({"name": other, "result": "unknown scenario (a to j are implemented)"})
            }
        };
        eprintln!("{scenario}: {result}");
        report.insert(scenario.trim().to_string(), result);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Object(report)).unwrap()
    );
    if let Some((url, schemas)) = POSTGRES.get() {
        for schema in schemas.lock().unwrap().iter() {
            let (url, schema) = (url.clone(), schema.clone());
            on_own_thread(move || postgres_schema::drop_schema(&url, &schema));
        }
    }
}
