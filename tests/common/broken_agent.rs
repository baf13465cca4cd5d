//! An A2A agent (JSON-RPC, A2A 1.0) that gets push notifications wrong on purpose, one way
//! for each of the probe's checks: the probe must fail every one of them against it.
//!
//! - card: `pushNotifications: false`; its methods want `X-Api-Key: broken-agent-key`
//!   (`BROKEN_AGENT_KEY`: the probe's `--header`);
//! - config methods: Create answers another id and echoes the token, a config created without
//!   an id gets none back, Get answers another URL, List leaves out `probe-late`, Delete keeps
//!   the config and the second Delete is an internal error; configs created after the task
//!   started are never pushed to, and every URL is accepted (SSRF);
//! - pushes (to inline configs only): the first by PUT, text/plain, no A2A-Version, no token
//!   header, a wrong Authorization, a JWT no key signed, a `webhook-signature` that does not
//!   verify against the JWKS it serves; the events: SUBMITTED, COMPLETED, WORKING in A2A 0.3
//!   shape (after the terminal state), an artifact of another task, the COMPLETED push again —
//!   while the task really ends FAILED, never pushed;
//! - failures: a 503 or a 429 is retried at once, a 410 once more, a 500 or a dropped
//!   connection never, and the client gives up after 1 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The API key the agent's methods require.
pub const BROKEN_AGENT_KEY: &str = "broken-agent-key";

#[derive(Clone, Default)]
struct Config {
    id: String,
    url: String,
    token: Option<String>,
    authentication: Option<Value>,
}

struct Task {
    started: Instant,
    context_id: String,
    configs: Vec<Config>,
    deletes: HashMap<String, u32>,
}

#[derive(Clone)]
struct Agent {
    base: String,
    tasks: Arc<Mutex<HashMap<String, Task>>>,
    http: reqwest::Client,
}

/// The running broken agent.
pub struct BrokenAgent {
    pub url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl BrokenAgent {
    pub async fn start() -> BrokenAgent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let agent = Agent {
            base: format!("http://{addr}"),
            tasks: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        };
        let app = axum::Router::new()
            .route("/.well-known/agent-card.json", get(card))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/", post(rpc))
            .with_state(agent.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        BrokenAgent {
            url: agent.base,
            _server: server,
        }
    }
}

async fn card(State(agent): State<Agent>) -> Json<Value> {
    Json(json!({
        "name": "broken-agent",
        "description": "gets every push-notification rule wrong",
        "version": "1.0.0",
        "supportedInterfaces": [{"url": format!("{}/", agent.base), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": false, "pushNotifications": false},
        "defaultInputModes": ["text"], "defaultOutputModes": ["text"], "skills": []
    }))
}

/// An Ed25519 key that signed nothing this agent sends.
async fn jwks() -> Json<Value> {
    Json(
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "unrelated",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
    )
}

fn state_at(task: &Task) -> &'static str {
    match task.started.elapsed().as_millis() {
        0..300 => "TASK_STATE_SUBMITTED",
        300..1200 => "TASK_STATE_WORKING",
        _ => "TASK_STATE_FAILED",
    }
}

fn task_json(id: &str, task: &Task) -> Value {
    json!({"id": id, "contextId": task.context_id, "status": {"state": state_at(task)}})
}

fn config_json(task_id: &str, config: &Config) -> Value {
    json!({"taskId": task_id, "id": config.id, "url": config.url, "token": config.token,
           "authentication": config.authentication})
}

fn config_of(params: &Value) -> Config {
    Config {
        id: params["id"].as_str().unwrap_or_default().to_string(),
        url: params["url"].as_str().unwrap_or_default().to_string(),
        token: params["token"].as_str().map(str::to_string),
        authentication: params.get("authentication").cloned(),
    }
}

async fn rpc(
    State(agent): State<Agent>,
    headers: axum::http::HeaderMap,
    Json(request): Json<Value>,
) -> Result<Json<Value>, axum::http::StatusCode> {
    if headers
        .get("x-api-key")
        .is_none_or(|key| key != BROKEN_AGENT_KEY)
    {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    let id = request["id"].clone();
    let params = &request["params"];
    let task_id = params["taskId"].as_str().unwrap_or_default().to_string();
    let result = {
        let mut tasks = agent.tasks.lock().unwrap();
        match request["method"].as_str().unwrap_or_default() {
            "SendMessage" => {
                let new_id = uuid::Uuid::new_v4().to_string();
                let mut task = Task {
                    started: Instant::now(),
                    context_id: uuid::Uuid::new_v4().to_string(),
                    configs: vec![],
                    deletes: HashMap::new(),
                };
                let inline = &params["configuration"]["taskPushNotificationConfig"];
                if inline.is_object() {
                    let config = config_of(inline);
                    tokio::spawn(push_all(
                        agent.clone(),
                        new_id.clone(),
                        task.context_id.clone(),
                        config.clone(),
                    ));
                    task.configs.push(config);
                }
                let answer = task_json(&new_id, &task);
                tasks.insert(new_id, task);
                Ok(json!({"task": answer}))
            }
            "GetTask" => {
                let id = params["id"].as_str().unwrap_or_default();
                tasks
                    .get(id)
                    .map(|t| task_json(id, t))
                    .ok_or((-32001, "Task not found"))
            }
            "CreateTaskPushNotificationConfig" => match tasks.get_mut(&task_id) {
                None => Err((-32001, "Task not found")),
                Some(task) => {
                    let mut config = config_of(params);
                    let given = config.id.clone();
                    if config.id.is_empty() {
                        config.id = uuid::Uuid::new_v4().to_string();
                    }
                    task.configs.push(config.clone());
                    let mut answer = config_json(&task_id, &config);
                    answer["id"] = if given.is_empty() {
                        Value::Null
                    } else {
                        json!(format!("other-{given}"))
                    };
                    Ok(answer)
                }
            },
            "GetTaskPushNotificationConfig" => match tasks.get(&task_id) {
                None => Err((-32001, "Task not found")),
                Some(task) => match task.configs.iter().find(|c| c.id == params["id"]) {
                    None => Err((-32001, "Config not found")),
                    Some(config) => {
                        let mut answer = config_json(&task_id, config);
                        answer["url"] = json!("http://elsewhere.example/hook");
                        Ok(answer)
                    }
                },
            },
            "ListTaskPushNotificationConfigs" => match tasks.get(&task_id) {
                None => Err((-32001, "Task not found")),
                Some(task) => Ok(json!({"configs": task
                    .configs
                    .iter()
                    .filter(|c| c.id != "probe-late")
                    .map(|c| config_json(&task_id, c))
                    .collect::<Vec<_>>()})),
            },
            "DeleteTaskPushNotificationConfig" => match tasks.get_mut(&task_id) {
                None => Err((-32001, "Task not found")),
                Some(task) => {
                    let count = task
                        .deletes
                        .entry(params["id"].as_str().unwrap_or_default().to_string())
                        .or_default();
                    *count += 1;
                    if *count == 1 {
                        Ok(json!({}))
                    } else {
                        Err((-32603, "internal error"))
                    }
                }
            },
            _ => Err((-32601, "Method not found")),
        }
    };
    Ok(Json(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }))
}

/// Pushes the task's wrong sequence of events to one config, one after another.
async fn push_all(agent: Agent, task_id: String, context_id: String, config: Config) {
    let status = |state: &str| json!({"statusUpdate": {"taskId": task_id, "contextId": context_id, "status": {"state": state}}});
    let completed = status("TASK_STATE_COMPLETED");
    let completed_id = uuid::Uuid::new_v4().to_string();
    let events = [
        (
            reqwest::Method::PUT,
            json!({"task": {"id": task_id, "contextId": context_id, "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            uuid::Uuid::new_v4().to_string(),
        ),
        (
            reqwest::Method::POST,
            completed.clone(),
            completed_id.clone(),
        ),
        (
            reqwest::Method::POST,
            json!({"kind": "status-update", "taskId": task_id, "contextId": context_id, "status": {"state": "working"}, "final": false}),
            uuid::Uuid::new_v4().to_string(),
        ),
        (
            reqwest::Method::POST,
            json!({"artifactUpdate": {"taskId": "another-task", "contextId": context_id, "artifact": {"artifactId": "a1", "parts": [{"text": "42"}]}}}),
            uuid::Uuid::new_v4().to_string(),
        ),
        (reqwest::Method::POST, completed, completed_id),
    ];
    for (method, body, webhook_id) in events {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = agent
                .http
                .request(method.clone(), &config.url)
                .header("content-type", "text/plain")
                .header("webhook-id", &webhook_id)
                .header("webhook-timestamp", "1700000000")
                .header("webhook-signature", "v1a,AAAA")
                .body(body.to_string());
            if let Some(auth) = &config.authentication {
                let scheme = auth["scheme"].as_str().unwrap_or("Bearer");
                request = request.header(
                    "authorization",
                    match auth["credentials"].as_str() {
                        Some(_) => format!("{scheme} wrong-credentials"),
                        None => format!(
                            "{scheme} eyJhbGciOiJFUzI1NiJ9.eyJ0YXNrSWQiOiJ4In0.c2lnbmF0dXJl"
                        ),
                    },
                );
            }
            let retry = match request.send().await {
                Ok(answer) => match answer.status().as_u16() {
                    503 => attempt < 3,
                    429 | 410 => attempt < 2,
                    _ => false,
                },
                Err(_) => false,
            };
            if !retry {
                break;
            }
        }
    }
}
