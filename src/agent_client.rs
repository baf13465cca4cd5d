//! An A2A client of a remote agent, for the probe and the MCP bridge: reads the agent card,
//! picks a binding and a protocol version, and calls the agent's methods (send a message,
//! cancel a task, the four push-config methods, get a task) over JSON-RPC or HTTP+JSON, in
//! A2A 1.0 or 0.3 shapes, through the SSRF-guarded client. Answers are normalised to the 1.0
//! shapes so that callers read one form.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::delivery::client::GuardedClient;

/// Largest answer read from the agent.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    JsonRpc,
    HttpJson,
}

impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::JsonRpc => "JSONRPC",
            Binding::HttpJson => "HTTP+JSON",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V03,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "1.0",
            Version::V03 => "0.3",
        }
    }
}

/// The message the probe sends to start each task.
#[derive(Debug, Clone)]
pub enum MessageSpec {
    /// One text part.
    Text(String),
    /// A whole message object in the version's shape; its `messageId` is replaced per send.
    Json(Value),
}

/// What the probe asks the agent to push to.
#[derive(Debug, Clone, Default)]
pub struct PushTarget {
    pub id: Option<String>,
    pub url: String,
    pub token: Option<String>,
    /// `(scheme, credentials)`; credentials may be absent (a scheme alone).
    pub authentication: Option<(String, Option<String>)>,
}

/// A failed call: what the agent answered, in a form a report can show.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// JSON-RPC error code, when there was one.
    pub code: Option<i64>,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, self.code) {
            (_, Some(code)) => write!(f, "error {code}: {}", self.message),
            (Some(status), None) => write!(f, "HTTP {status}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl CallError {
    fn transport(message: String) -> CallError {
        CallError {
            status: None,
            code: None,
            message,
        }
    }

    /// Whether the agent said "no such thing" rather than failing.
    pub fn is_not_found(&self) -> bool {
        // -32001 TaskNotFound (both versions); REST 404.
        self.code == Some(-32001)
            || (self.code.is_none() && self.status == Some(404))
            || self.message.to_ascii_lowercase().contains("not found")
    }
}

/// The card's facts the probe uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardFacts {
    pub card_url: String,
    pub name: String,
    pub push_notifications: Option<bool>,
    pub streaming: Option<bool>,
}

/// A connection to the agent, as chosen from its card.
pub struct Agent {
    client: GuardedClient,
    pub endpoint: String,
    pub binding: Binding,
    pub version: Version,
    headers: Vec<(String, String)>,
    /// How long one call may take: an agent may push (to a held webhook) before it answers.
    pub call_timeout: Duration,
}

fn card_urls(agent_url: &str) -> Vec<String> {
    if agent_url.ends_with(".json") {
        return vec![agent_url.to_string()];
    }
    let base = agent_url.trim_end_matches('/');
    let origin = url::Url::parse(agent_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| base.to_string());
    let mut urls = vec![
        format!("{base}/.well-known/agent-card.json"),
        format!("{base}/.well-known/agent.json"),
    ];
    if origin != base {
        urls.push(format!("{origin}/.well-known/agent-card.json"));
    }
    urls
}

/// The interfaces a card offers: `(url, binding, version)`.
fn interfaces(card: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for interface in card["supportedInterfaces"].as_array().into_iter().flatten() {
        found.push((
            interface["url"].as_str().unwrap_or_default().to_string(),
            interface["protocolBinding"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            interface["protocolVersion"]
                .as_str()
                .unwrap_or("1.0")
                .to_string(),
        ));
    }
    // A 0.3 card: `url` with `preferredTransport`, plus `additionalInterfaces`.
    if let Some(url) = card["url"].as_str() {
        let version = card["protocolVersion"]
            .as_str()
            .unwrap_or("0.3")
            .to_string();
        let preferred = card["preferredTransport"].as_str().unwrap_or("JSONRPC");
        found.push((url.to_string(), preferred.to_string(), version.clone()));
        for interface in card["additionalInterfaces"]
            .as_array()
            .into_iter()
            .flatten()
        {
            found.push((
                interface["url"].as_str().unwrap_or_default().to_string(),
                interface["transport"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                version.clone(),
            ));
        }
    }
    found
}

fn version_of(text: &str) -> Option<Version> {
    if text.starts_with("1.") {
        Some(Version::V1)
    } else if text.starts_with("0.3") {
        Some(Version::V03)
    } else {
        None
    }
}

fn binding_of(text: &str) -> Option<Binding> {
    match text.to_ascii_uppercase().as_str() {
        "JSONRPC" => Some(Binding::JsonRpc),
        "HTTP+JSON" | "REST" => Some(Binding::HttpJson),
        _ => None,
    }
}

impl Agent {
    /// Reads the card and picks the first interface that matches the wishes (`None` = any),
    /// preferring 1.0 and JSON-RPC.
    pub async fn discover(
        client: GuardedClient,
        agent_url: &str,
        headers: Vec<(String, String)>,
        binding: Option<Binding>,
        version: Option<Version>,
    ) -> Result<(Agent, CardFacts), String> {
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut tried = Vec::new();
        let mut card = None;
        for url in card_urls(agent_url) {
            match client
                .exchange_json(Method::GET, &url, &header_refs, None, MAX_ANSWER_BYTES)
                .await
            {
                Ok(answer) if answer.status == 200 && answer.body.is_object() => {
                    card = Some((url, answer.body));
                    break;
                }
                Ok(answer) => tried.push(format!("{url} answered {}", answer.status)),
                Err(e) => tried.push(e.to_string()),
            }
        }
        let (card_url, card) =
            card.ok_or_else(|| format!("no agent card found: {}", tried.join("; ")))?;
        let mut candidates: Vec<(String, Binding, Version)> = interfaces(&card)
            .into_iter()
            .filter_map(|(url, b, v)| Some((url, binding_of(&b)?, version_of(&v)?)))
            .filter(|(url, b, v)| {
                !url.is_empty()
                    && binding.is_none_or(|wanted| wanted == *b)
                    && version.is_none_or(|wanted| wanted == *v)
            })
            .collect();
        candidates.sort_by_key(|(_, b, v)| (*v != Version::V1, *b != Binding::JsonRpc));
        let (endpoint, binding, version) = candidates.into_iter().next().ok_or_else(|| {
            format!(
                "the card at {card_url} offers no JSONRPC or HTTP+JSON interface{} (it lists: {})",
                match (binding, version) {
                    (None, None) => String::new(),
                    (b, v) => format!(
                        " matching{}{}",
                        b.map(|b| format!(" --binding {}", b.as_str()))
                            .unwrap_or_default(),
                        v.map(|v| format!(" --version {}", v.as_str()))
                            .unwrap_or_default()
                    ),
                },
                interfaces(&card)
                    .iter()
                    .map(|(u, b, v)| format!("{b} {v} at {u}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let facts = CardFacts {
            card_url,
            name: card["name"].as_str().unwrap_or_default().to_string(),
            push_notifications: card["capabilities"]["pushNotifications"].as_bool(),
            streaming: card["capabilities"]["streaming"].as_bool(),
        };
        Ok((
            Agent {
                client,
                endpoint,
                binding,
                version,
                headers,
                call_timeout: Duration::from_secs(10),
            },
            facts,
        ))
    }

    async fn http(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CallError> {
        let mut headers: Vec<(&str, &str)> = vec![
            ("accept", "application/json"),
            ("a2a-version", self.version.as_str()),
        ];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let answer = self
            .client
            .exchange_json_within(
                method,
                url,
                &headers,
                body,
                MAX_ANSWER_BYTES,
                self.call_timeout,
            )
            .await
            .map_err(|e| CallError::transport(e.to_string()))?;
        Ok((answer.status, answer.body))
    }

    async fn rpc(&self, method: &str, params: Value) -> Result<Value, CallError> {
        let request = json!({"jsonrpc": "2.0", "id": uuid::Uuid::new_v4().to_string(),
            "method": method, "params": params});
        let (status, answer) = self
            .http(Method::POST, &self.endpoint, Some(&request))
            .await?;
        if let Some(error) = answer.get("error") {
            return Err(CallError {
                status: Some(status),
                code: error["code"].as_i64(),
                message: error["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_string(),
            });
        }
        // A success without `result` is what some SDKs send for methods that return nothing
        // (Delete): read it as `null` and let the checks judge the content.
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.endpoint.trim_end_matches('/'));
        let (status, answer) = self.http(method, &url, body).await?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let message = answer["error"]["message"]
            .as_str()
            .or(answer["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| answer.to_string());
        Err(CallError {
            status: Some(status),
            code: None,
            message,
        })
    }

    fn target_json(&self, target: &PushTarget, task_id: Option<&str>) -> Value {
        let mut config = json!({"url": target.url});
        if let Some(id) = &target.id {
            config["id"] = json!(id);
        }
        if let Some(token) = &target.token {
            config["token"] = json!(token);
        }
        if let Some((scheme, credentials)) = &target.authentication {
            config["authentication"] = match self.version {
                Version::V1 => json!({"scheme": scheme}),
                Version::V03 => json!({"schemes": [scheme]}),
            };
            if let Some(credentials) = credentials {
                config["authentication"]["credentials"] = json!(credentials);
            }
        }
        if let (Some(task_id), Version::V1) = (task_id, self.version) {
            config["taskId"] = json!(task_id);
        }
        config
    }

    /// One operation in the chosen binding: JSON-RPC `method` with `params`, or HTTP+JSON
    /// `verb path` (a POST carries `params` as its body).
    async fn call(
        &self,
        method: &str,
        params: Value,
        verb: Method,
        path: &str,
    ) -> Result<Value, CallError> {
        match self.binding {
            Binding::JsonRpc => self.rpc(method, params).await,
            Binding::HttpJson => {
                let body = (verb == Method::POST).then_some(&params);
                self.rest(verb, path, body).await
            }
        }
    }

    /// Sends the message, with an inline push config when given; returns the task as
    /// answered (1.0 shape), or an error when the agent answered with a bare message.
    pub async fn send_message(
        &self,
        message: &MessageSpec,
        push: Option<&PushTarget>,
    ) -> Result<Value, CallError> {
        let message_id = uuid::Uuid::new_v4().to_string();
        let message = match (message, self.version) {
            (MessageSpec::Json(template), _) => {
                let mut message = template.clone();
                message["messageId"] = json!(message_id);
                message
            }
            (MessageSpec::Text(text), Version::V1) => {
                json!({"messageId": message_id, "role": "ROLE_USER", "parts": [{"text": text}]})
            }
            (MessageSpec::Text(text), Version::V03) => json!({"kind": "message",
                "messageId": message_id, "role": "user", "parts": [{"kind": "text", "text": text}]}),
        };
        let (mut configuration, push_field, method, path) = match self.version {
            Version::V1 => (
                json!({"returnImmediately": true}),
                "taskPushNotificationConfig",
                "SendMessage",
                "/message:send",
            ),
            Version::V03 => (
                json!({"blocking": false}),
                "pushNotificationConfig",
                "message/send",
                "/v1/message:send",
            ),
        };
        if let Some(push) = push {
            configuration[push_field] = self.target_json(push, None);
        }
        let params = json!({"message": message, "configuration": configuration});
        let result = self.call(method, params, Method::POST, path).await?;
        let answer = self.task_of(result.get("task").cloned().unwrap_or(result));
        if answer["id"].as_str().is_none_or(str::is_empty) {
            return Err(CallError {
                status: None,
                code: None,
                message: format!(
                    "the agent answered without a task (nothing can be pushed): {answer}"
                ),
            });
        }
        Ok(answer)
    }

    /// A task as answered, in the 1.0 shape.
    fn task_of(&self, task: Value) -> Value {
        match self.version {
            Version::V1 => task,
            Version::V03 => task_from_v03(task),
        }
    }

    /// A config as answered, in the 1.0 shape.
    fn config_of(&self, config: Value) -> Value {
        match self.version {
            Version::V1 => config,
            Version::V03 => config_from_v03(config),
        }
    }

    /// The REST path of a task's configs (`/v1` in 0.3).
    fn configs_path(&self, task_id: &str) -> String {
        match self.version {
            Version::V1 => format!("/tasks/{task_id}/pushNotificationConfigs"),
            Version::V03 => format!("/v1/tasks/{task_id}/pushNotificationConfigs"),
        }
    }

    /// The task as the agent reports it now (1.0 shape).
    pub async fn get_task(&self, task_id: &str) -> Result<Value, CallError> {
        let (method, path) = match self.version {
            Version::V1 => ("GetTask", format!("/tasks/{task_id}")),
            Version::V03 => ("tasks/get", format!("/v1/tasks/{task_id}")),
        };
        let task = self
            .call(method, json!({"id": task_id}), Method::GET, &path)
            .await?;
        Ok(self.task_of(task))
    }

    /// Asks the agent to cancel the task; the task as answered (1.0 shape).
    pub async fn cancel_task(&self, task_id: &str) -> Result<Value, CallError> {
        let (method, path) = match self.version {
            Version::V1 => ("CancelTask", format!("/tasks/{task_id}:cancel")),
            Version::V03 => ("tasks/cancel", format!("/v1/tasks/{task_id}:cancel")),
        };
        let task = self
            .call(method, json!({"id": task_id}), Method::POST, &path)
            .await?;
        Ok(self.task_of(task))
    }

    /// A text message in the agent's version's shape: of `task_id` when given (an answer to
    /// `input-required`), in conversation `context_id` when given.
    pub fn text_message(
        &self,
        text: &str,
        task_id: Option<&str>,
        context_id: Option<&str>,
    ) -> MessageSpec {
        let mut message = match self.version {
            Version::V1 => json!({"role": "ROLE_USER", "parts": [{"text": text}]}),
            Version::V03 => json!({"kind": "message", "role": "user",
                "parts": [{"kind": "text", "text": text}]}),
        };
        if let Some(task_id) = task_id {
            message["taskId"] = json!(task_id);
        }
        if let Some(context_id) = context_id {
            message["contextId"] = json!(context_id);
        }
        MessageSpec::Json(message)
    }

    /// `CreateTaskPushNotificationConfig`; the config as answered (1.0 shape).
    pub async fn create_config(
        &self,
        task_id: &str,
        target: &PushTarget,
    ) -> Result<Value, CallError> {
        let config = self.target_json(target, Some(task_id));
        let (method, params) = match self.version {
            Version::V1 => ("CreateTaskPushNotificationConfig", config),
            Version::V03 => (
                "tasks/pushNotificationConfig/set",
                json!({"taskId": task_id, "pushNotificationConfig": config}),
            ),
        };
        let path = self.configs_path(task_id);
        let config = self.call(method, params, Method::POST, &path).await?;
        Ok(self.config_of(config))
    }

    /// The JSON-RPC method and params that name one config.
    fn config_address(
        &self,
        v1: &'static str,
        v03: &'static str,
        task_id: &str,
        id: &str,
    ) -> (&'static str, Value) {
        match self.version {
            Version::V1 => (v1, json!({"taskId": task_id, "id": id})),
            Version::V03 => (v03, json!({"id": task_id, "pushNotificationConfigId": id})),
        }
    }

    /// `GetTaskPushNotificationConfig` (1.0 shape).
    pub async fn get_config(&self, task_id: &str, id: &str) -> Result<Value, CallError> {
        let (method, params) = self.config_address(
            "GetTaskPushNotificationConfig",
            "tasks/pushNotificationConfig/get",
            task_id,
            id,
        );
        let path = format!("{}/{id}", self.configs_path(task_id));
        let config = self.call(method, params, Method::GET, &path).await?;
        Ok(self.config_of(config))
    }

    /// `ListTaskPushNotificationConfigs`: the configs (1.0 shape).
    pub async fn list_configs(&self, task_id: &str) -> Result<Vec<Value>, CallError> {
        let (method, params) = match self.version {
            Version::V1 => (
                "ListTaskPushNotificationConfigs",
                json!({"taskId": task_id}),
            ),
            Version::V03 => ("tasks/pushNotificationConfig/list", json!({"id": task_id})),
        };
        let path = self.configs_path(task_id);
        let answer = self.call(method, params, Method::GET, &path).await?;
        let list = match (&answer["configs"], &answer) {
            (Value::Array(configs), _) => configs.clone(),
            (_, Value::Array(configs)) => configs.clone(),
            _ => {
                return Err(CallError {
                    status: None,
                    code: None,
                    message: format!("the list answer is not a list of configs: {answer}"),
                });
            }
        };
        Ok(list.into_iter().map(|c| self.config_of(c)).collect())
    }

    /// `DeleteTaskPushNotificationConfig`.
    pub async fn delete_config(&self, task_id: &str, id: &str) -> Result<(), CallError> {
        let (method, params) = self.config_address(
            "DeleteTaskPushNotificationConfig",
            "tasks/pushNotificationConfig/delete",
            task_id,
            id,
        );
        let path = format!("{}/{id}", self.configs_path(task_id));
        self.call(method, params, Method::DELETE, &path)
            .await
            .map(|_| ())
    }
}

/// A 0.3 task (`{"kind":"task","status":{"state":"working"}}`) in the 1.0 shape the checks read.
fn task_from_v03(task: Value) -> Value {
    let mut task = task;
    if let Some(state) = task["status"]["state"].as_str() {
        task["status"]["state"] = json!(state_from_v03(state));
    }
    task
}

/// A 0.3 state name as its 1.0 enum name.
pub fn state_from_v03(state: &str) -> String {
    if state.starts_with("TASK_STATE_") {
        return state.to_string();
    }
    format!(
        "TASK_STATE_{}",
        state.replace('-', "_").to_ascii_uppercase()
    )
}

/// A 0.3 `TaskPushNotificationConfig` (`{taskId, pushNotificationConfig:{…}}`) flattened.
fn config_from_v03(config: Value) -> Value {
    let Some(inner) = config.get("pushNotificationConfig") else {
        return config;
    };
    let mut flat = inner.clone();
    flat["taskId"] = config["taskId"].clone();
    if let Some(schemes) = flat["authentication"]["schemes"].as_array() {
        let scheme = schemes.first().cloned().unwrap_or(Value::Null);
        flat["authentication"]["scheme"] = scheme;
    }
    flat
}

/// Terminal task states (1.0 names).
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_STATE_COMPLETED"
            | "TASK_STATE_FAILED"
            | "TASK_STATE_CANCELED"
            | "TASK_STATE_REJECTED"
    )
}
