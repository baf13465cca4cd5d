//! The push requirements of the A2A conformance kit (its 1.0 requirement IDs), as the hub's own
//! black-box tests, each named after its requirement, over both bindings: against the standalone
//! hub, and through the gateway in front of an agent on the official Python SDK (those need the
//! SDK's venv: ignored here, run by `.ci/run` with `A2A_INTEROP_PYTHON`). The webhook is a local
//! receiver on loopback: no DNS is needed.
//!
//! What each requirement asks, as the kit checks it:
//! PUSH-CREATE-001 Create returns the config · PUSH-CREATE-002 it can be read back ·
//! PUSH-GET-001 Get returns its details · PUSH-GET-002 Get of an unknown id is an error ·
//! PUSH-LIST-001 List includes it · PUSH-DEL-001 Delete removes it · PUSH-DEL-002 deleting again
//! is no error · PUSH-DELIVER-001 the webhook gets `Authorization: <scheme> <credentials>` of the
//! config · PUSH-DELIVER-002 at least one POST within 15 s · PUSH-DELIVER-003 the body is a
//! `StreamResponse`.

use crate::common;

use std::time::Duration;

use common::{Receiver, TestHub, fast_delivery, status_event};
use reqwest::Method;
use serde_json::{Value, json};

/// How long the kit waits for a delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
const BINDINGS: [Binding; 2] = [Binding::JsonRpc, Binding::HttpJson];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Binding {
    JsonRpc,
    HttpJson,
}

/// The hub as the kit sees it: standalone, or a gateway in front of the Python SDK's agent.
struct Target {
    hub: TestHub,
    /// The agent process behind the gateway, if any (ended when dropped).
    _agent: Option<tokio::process::Child>,
}

impl Target {
    async fn standalone() -> Target {
        Target {
            hub: TestHub::start_with(fast_delivery).await,
            _agent: None,
        }
    }

    async fn gateway() -> Target {
        let agent = common::python_sdk_agent();
        let (child, port) = common::start_listening(agent).await;
        let upstream = format!("http://127.0.0.1:{port}/");
        let hub = TestHub::start_with(move |s| {
            fast_delivery(s);
            s.gateway.upstream = upstream;
        })
        .await;
        Target {
            hub,
            _agent: Some(child),
        }
    }

    fn gateway_mode(&self) -> bool {
        self._agent.is_some()
    }

    /// Where a binding's requests go: the agent's HTTP+JSON interface is at `/rest`.
    fn rest_base(&self) -> String {
        if self.gateway_mode() {
            format!("{}/rest", self.hub.public)
        } else {
            self.hub.public.clone()
        }
    }

    /// A task the push-config methods can address: one the agent runs (gateway), or one the
    /// hub has an event of (standalone).
    async fn task(&self, binding: Binding) -> String {
        if !self.gateway_mode() {
            let id = format!("task-{}", uuid::Uuid::new_v4());
            self.hub
                .publish(status_event(&id, "TASK_STATE_WORKING"))
                .await;
            return id;
        }
        let message = json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
            "parts": [{"text": "conformance"}]});
        let params = json!({"message": message, "configuration": {"returnImmediately": true}});
        let answer = self.send(binding, params).await;
        answer["task"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the agent answers with a task: {answer}"))
            .to_string()
    }

    /// `SendMessage` in `binding` (gateway mode); returns the result.
    async fn send(&self, binding: Binding, params: Value) -> Value {
        match binding {
            Binding::JsonRpc => self.hub.rpc_ok("SendMessage", params).await,
            Binding::HttpJson => {
                let response = self
                    .hub
                    .http
                    .post(format!("{}/message:send", self.rest_base()))
                    .header("content-type", "application/json")
                    .header("a2a-version", "1.0")
                    .body(params.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.json().await.unwrap()
            }
        }
    }

    /// Calls a push-config method; `Ok(result)` or `Err(error)` as the binding answers.
    async fn call(
        &self,
        binding: Binding,
        method: &str,
        task: &str,
        params: Value,
    ) -> Result<Value, Value> {
        match binding {
            Binding::JsonRpc => {
                let mut params = params;
                params["taskId"] = json!(task);
                let answer = self.hub.rpc(method, params).await;
                match answer.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(answer["result"].clone()),
                }
            }
            Binding::HttpJson => {
                let collection =
                    format!("{}/tasks/{task}/pushNotificationConfigs", self.rest_base());
                let id = params["id"].as_str().unwrap_or_default();
                let (method, url, body) = match method {
                    "CreateTaskPushNotificationConfig" => (Method::POST, collection, Some(params)),
                    "GetTaskPushNotificationConfig" => {
                        (Method::GET, format!("{collection}/{id}"), None)
                    }
                    "ListTaskPushNotificationConfigs" => (Method::GET, collection, None),
                    "DeleteTaskPushNotificationConfig" => {
                        (Method::DELETE, format!("{collection}/{id}"), None)
                    }
                    other => panic!("no such method {other}"),
                };
                let mut request = self
                    .hub
                    .http
                    .request(method, url)
                    .header("a2a-version", "1.0");
                if let Some(body) = body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body.to_string());
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status.is_success() {
                    Ok(body)
                } else {
                    Err(json!({"status": status.as_u16(), "body": body}))
                }
            }
        }
    }

    /// Has the agent (gateway) or the hub's event API (standalone) produce an update of a task
    /// whose config is `config`; returns the task id.
    async fn deliver(&self, binding: Binding, config: Value) -> String {
        if self.gateway_mode() {
            let message = json!({"messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER",
                "parts": [{"text": "conformance"}]});
            let params = json!({"message": message,
                "configuration": {"returnImmediately": true, "taskPushNotificationConfig": config}});
            let answer = self.send(binding, params).await;
            return answer["task"]["id"].as_str().unwrap().to_string();
        }
        let task = format!("task-{}", uuid::Uuid::new_v4());
        self.call(binding, "CreateTaskPushNotificationConfig", &task, config)
            .await
            .expect("the config is created");
        self.hub
            .publish(status_event(&task, "TASK_STATE_COMPLETED"))
            .await;
        task
    }

    async fn stop(self) {
        self.hub.stop().await;
    }
}

fn config(id: &str) -> Value {
    json!({"id": id, "url": "http://127.0.0.1:9/conformance-webhook"})
}

fn is_task_not_found(error: &Value) -> bool {
    error["code"] == -32001 || error["status"] == 404
}

async fn push_create_001(target: &Target) {
    for binding in BINDINGS {
        let task = target.task(binding).await;
        let created = target
            .call(
                binding,
                "CreateTaskPushNotificationConfig",
                &task,
                config("c1"),
            )
            .await
            .unwrap_or_else(|e| panic!("{binding:?}: {e}"));
        assert_eq!(
            (created["id"].as_str(), created["url"].as_str()),
            (Some("c1"), Some("http://127.0.0.1:9/conformance-webhook")),
            "{binding:?}: {created}"
        );
    }
}

async fn push_create_002_and_get_001(target: &Target) {
    for binding in BINDINGS {
        let task = target.task(binding).await;
        target
            .call(
                binding,
                "CreateTaskPushNotificationConfig",
                &task,
                config("c2"),
            )
            .await
            .unwrap();
        for _ in 0..2 {
            let got = target
                .call(
                    binding,
                    "GetTaskPushNotificationConfig",
                    &task,
                    json!({"id": "c2"}),
                )
                .await
                .unwrap_or_else(|e| panic!("{binding:?}: {e}"));
            assert_eq!(got["id"], "c2", "{binding:?}: {got}");
            assert_eq!(
                got["url"], "http://127.0.0.1:9/conformance-webhook",
                "{binding:?}"
            );
        }
    }
}

async fn push_get_002(target: &Target) {
    for binding in BINDINGS {
        let task = target.task(binding).await;
        let error = target
            .call(
                binding,
                "GetTaskPushNotificationConfig",
                &task,
                json!({"id": "no-such-config"}),
            )
            .await
            .expect_err("an unknown config is an error");
        assert!(is_task_not_found(&error), "{binding:?}: {error}");
    }
}

async fn push_list_001(target: &Target) {
    for binding in BINDINGS {
        let task = target.task(binding).await;
        target
            .call(
                binding,
                "CreateTaskPushNotificationConfig",
                &task,
                config("c3"),
            )
            .await
            .unwrap();
        let listed = target
            .call(binding, "ListTaskPushNotificationConfigs", &task, json!({}))
            .await
            .unwrap_or_else(|e| panic!("{binding:?}: {e}"));
        let ids: Vec<&str> = listed["configs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["id"].as_str())
            .collect();
        assert!(ids.contains(&"c3"), "{binding:?}: {listed}");
    }
}

async fn push_del_001_and_002(target: &Target) {
    for binding in BINDINGS {
        let task = target.task(binding).await;
        target
            .call(
                binding,
                "CreateTaskPushNotificationConfig",
                &task,
                config("c4"),
            )
            .await
            .unwrap();
        for attempt in ["first", "again"] {
            target
                .call(
                    binding,
                    "DeleteTaskPushNotificationConfig",
                    &task,
                    json!({"id": "c4"}),
                )
                .await
                .unwrap_or_else(|e| panic!("{binding:?} delete ({attempt}): {e}"));
            let gone = target
                .call(
                    binding,
                    "GetTaskPushNotificationConfig",
                    &task,
                    json!({"id": "c4"}),
                )
                .await
                .expect_err("deleted");
            assert!(is_task_not_found(&gone), "{binding:?}: {gone}");
        }
    }
}

/// PUSH-DELIVER-001, -002 and -003 on one delivery per binding.
async fn push_deliver_001_002_003(target: &Target) {
    for binding in BINDINGS {
        let receiver = Receiver::start().await;
        let credentials = format!("conformance-{}", uuid::Uuid::new_v4().simple());
        let config = json!({"id": "hook", "url": receiver.url("/hook"),
            "authentication": {"scheme": "Bearer", "credentials": credentials}});
        let started = std::time::Instant::now();
        target.deliver(binding, config).await;
        let first = receiver.wait_for(1, DELIVERY_TIMEOUT).await.remove(0);
        assert!(
            started.elapsed() < DELIVERY_TIMEOUT,
            "PUSH-DELIVER-002: one POST within 15 s"
        );
        assert_eq!(
            first.header("authorization"),
            format!("Bearer {credentials}"),
            "PUSH-DELIVER-001 ({binding:?})"
        );
        let body = first.json();
        let members: Vec<&String> = body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            members.len(),
            1,
            "PUSH-DELIVER-003 ({binding:?}): one member: {body}"
        );
        serde_json::from_value::<a2a::StreamResponse>(body.clone())
            .unwrap_or_else(|e| panic!("PUSH-DELIVER-003 ({binding:?}): {e}: {body}"));
    }
}

/// The tests of one requirement scenario: against the standalone hub, and through the gateway.
macro_rules! requirement {
    ($standalone:ident, $gateway:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $standalone() {
            let target = Target::standalone().await;
            $scenario(&target).await;
            target.stop().await;
        }

        #[tokio::test]
        #[ignore = "needs the Python SDK venv; run by .ci/run"]
        async fn $gateway() {
            let target = Target::gateway().await;
            $scenario(&target).await;
            target.stop().await;
        }
    };
}

requirement!(
    push_create_001_create_returns_the_config,
    gateway_push_create_001_create_returns_the_config,
    push_create_001
);
requirement!(
    push_create_002_and_push_get_001_the_config_persists_and_get_returns_it,
    gateway_push_create_002_and_push_get_001_the_config_persists_and_get_returns_it,
    push_create_002_and_get_001
);
requirement!(
    push_get_002_get_of_an_unknown_config_is_an_error,
    gateway_push_get_002_get_of_an_unknown_config_is_an_error,
    push_get_002
);
requirement!(
    push_list_001_list_includes_the_config,
    gateway_push_list_001_list_includes_the_config,
    push_list_001
);
requirement!(
    push_del_001_and_push_del_002_delete_removes_and_is_idempotent,
    gateway_push_del_001_and_push_del_002_delete_removes_and_is_idempotent,
    push_del_001_and_002
);
requirement!(
    push_deliver_001_002_003_the_webhook_gets_the_credentials_once_at_least_as_a_stream_response,
    gateway_push_deliver_001_002_003_the_webhook_gets_the_credentials_once_at_least_as_a_stream_response,
    push_deliver_001_002_003
);
