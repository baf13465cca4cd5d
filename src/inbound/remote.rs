//! Registering the hub with a remote A2A agent as a task's push-notification webhook
//! (`CreateTaskPushNotificationConfig`), and removing that registration, over JSON-RPC or
//! HTTP+JSON, through the SSRF-guarded client.

use reqwest::Method;
use serde_json::{Value, json};

use crate::delivery::client::{ExchangeError, GuardedClient, JsonAnswer};

pub const JSONRPC: &str = "JSONRPC";
pub const HTTP_JSON: &str = "HTTP+JSON";
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
const HEADERS: [(&str, &str); 2] = [("a2a-version", "1.0"), ("accept", "application/json")];

/// The config the hub asks the agent to push to.
pub struct Registration<'a> {
    pub agent_url: &'a str,
    pub binding: &'a str,
    pub task_id: &'a str,
    pub config_id: &'a str,
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub authorization: Option<(&'a str, &'a str)>,
}

/// One exchange, retried once when no answer came (a peer may reset a pooled connection);
/// safe because both calls are idempotent (the config id is fixed).
async fn exchange(
    client: &GuardedClient,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<JsonAnswer, String> {
    match client
        .exchange_json(method.clone(), url, &HEADERS, body, MAX_ANSWER_BYTES)
        .await
    {
        Err(ExchangeError::Unreachable(_)) => client
            .exchange_json(method, url, &HEADERS, body, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| e.to_string()),
        other => other.map_err(|e| e.to_string()),
    }
}

fn rest_base(agent_url: &str) -> &str {
    agent_url.trim_end_matches('/')
}

fn jsonrpc_result(answer: Value, method: &str) -> Result<Value, String> {
    if let Some(error) = answer.get("error") {
        return Err(format!(
            "{method} failed at the agent: {} (code {})",
            error["message"].as_str().unwrap_or("no message"),
            error["code"]
        ));
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| format!("the agent's answer to {method} has neither result nor error"))
}

/// Registers the config; returns the id the agent stored it under.
pub async fn register(
    client: &GuardedClient,
    registration: &Registration<'_>,
) -> Result<String, String> {
    let mut config = json!({"id": registration.config_id, "taskId": registration.task_id, "url": registration.url});
    if let Some(token) = registration.token {
        config["token"] = json!(token);
    }
    if let Some((scheme, credentials)) = registration.authorization {
        config["authentication"] = json!({"scheme": scheme, "credentials": credentials});
    }
    let result = match registration.binding {
        JSONRPC => {
            let request = json!({"jsonrpc": "2.0", "id": uuid::Uuid::new_v4().to_string(),
                "method": "CreateTaskPushNotificationConfig", "params": config});
            let answer =
                exchange(client, Method::POST, registration.agent_url, Some(&request)).await?;
            jsonrpc_result(answer.body, "CreateTaskPushNotificationConfig")?
        }
        HTTP_JSON => {
            let url = format!(
                "{}/tasks/{}/pushNotificationConfigs",
                rest_base(registration.agent_url),
                registration.task_id
            );
            let answer = exchange(client, Method::POST, &url, Some(&config)).await?;
            if !(200..300).contains(&answer.status) {
                return Err(format!(
                    "the agent answered {}: {}",
                    answer.status, answer.body
                ));
            }
            answer.body
        }
        other => return Err(format!("unknown binding {other:?}")),
    };
    Ok(result["id"]
        .as_str()
        .unwrap_or(registration.config_id)
        .to_string())
}

/// Deletes the config at the agent.
pub async fn unregister(
    client: &GuardedClient,
    agent_url: &str,
    binding: &str,
    task_id: &str,
    config_id: &str,
) -> Result<(), String> {
    match binding {
        JSONRPC => {
            let request = json!({"jsonrpc": "2.0", "id": uuid::Uuid::new_v4().to_string(),
                "method": "DeleteTaskPushNotificationConfig", "params": {"taskId": task_id, "id": config_id}});
            let answer = exchange(client, Method::POST, agent_url, Some(&request)).await?;
            jsonrpc_result(answer.body, "DeleteTaskPushNotificationConfig").map(|_| ())
        }
        _ => {
            let url = format!(
                "{}/tasks/{task_id}/pushNotificationConfigs/{config_id}",
                rest_base(agent_url)
            );
            let answer = exchange(client, Method::DELETE, &url, None).await?;
            if (200..300).contains(&answer.status) || answer.status == 404 {
                Ok(())
            } else {
                Err(format!(
                    "the agent answered {}: {}",
                    answer.status, answer.body
                ))
            }
        }
    }
}
