//! The A2A 1.0 push-config methods over real HTTP, in both bindings: JSON-RPC at `/` and
//! HTTP+JSON at `/[{tenant}/]tasks/{taskId}/pushNotificationConfigs[/{configId}]`.

use crate::common;

use common::TestHub;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HOOK: &str = "http://127.0.0.1:9/hook";

fn error_reason(body: &Value) -> &str {
    body["error"]["details"]
        .as_array()
        .and_then(|details| details.iter().find(|d| d["@type"] == a2a::ERROR_INFO_TYPE))
        .and_then(|d| d["reason"].as_str())
        .unwrap_or_default()
}

fn rpc_reason(response: &Value) -> &str {
    response["error"]["data"]
        .as_array()
        .and_then(|data| data.iter().find(|d| d["@type"] == a2a::ERROR_INFO_TYPE))
        .and_then(|d| d["reason"].as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn jsonrpc_create_get_list_delete_round_trip_in_snake_and_camel_case() {
    let hub = TestHub::start().await;
    let created = hub
        .rpc_ok(
            "CreateTaskPushNotificationConfig",
            json!({"task_id": "t1", "id": "cfg-1", "url": HOOK, "token": "tok-1"}),
        )
        .await;
    assert_eq!(created, json!({"id": "cfg-1", "taskId": "t1", "url": HOOK}));

    let got = hub
        .rpc_ok(
            "GetTaskPushNotificationConfig",
            json!({"task_id": "t1", "id": "cfg-1"}),
        )
        .await;
    assert_eq!(got, created);
    let listed = hub
        .rpc_ok(
            "ListTaskPushNotificationConfigs",
            json!({"task_id": "t1", "page_size": 10}),
        )
        .await;
    assert_eq!(listed, json!({"configs": [created], "nextPageToken": ""}));

    let deleted = hub
        .rpc(
            "DeleteTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "cfg-1"}),
        )
        .await;
    assert_eq!(deleted["result"], Value::Null);
    assert!(deleted.get("error").is_none(), "{deleted}");
    let again = hub
        .rpc(
            "DeleteTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "cfg-1"}),
        )
        .await;
    assert!(
        again.get("error").is_none(),
        "delete must be idempotent: {again}"
    );

    let missing = hub
        .rpc(
            "GetTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "cfg-1"}),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32001, "{missing}");
    assert_eq!(rpc_reason(&missing), "TASK_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn rest_create_get_list_delete_round_trip() {
    let hub = TestHub::start().await;
    let (status, created) = hub
        .rest(
            Method::POST,
            "/tasks/t1/pushNotificationConfigs",
            Some(json!({"id": "cfg-1", "url": HOOK, "authentication": {"scheme": "Bearer", "credentials": "c-secret"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        created,
        json!({"id": "cfg-1", "taskId": "t1", "url": HOOK, "authentication": {"scheme": "Bearer"}})
    );
    let (status, got) = hub
        .rest(Method::GET, "/tasks/t1/pushNotificationConfigs/cfg-1", None)
        .await;
    assert_eq!((status, &got), (StatusCode::OK, &created));
    let (status, listed) = hub
        .rest(Method::GET, "/tasks/t1/pushNotificationConfigs", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!({"configs": [created], "nextPageToken": ""}));
    for _ in 0..2 {
        let (status, body) = hub
            .rest(
                Method::DELETE,
                "/tasks/t1/pushNotificationConfigs/cfg-1",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "delete is idempotent: {body}");
    }
    let (status, body) = hub
        .rest(Method::GET, "/tasks/t1/pushNotificationConfigs/cfg-1", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["status"], "NOT_FOUND", "{body}");
    assert_eq!(error_reason(&body), "TASK_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn unknown_task_or_config_is_task_not_found_in_both_bindings() {
    let hub = TestHub::start().await;
    let response = hub
        .rpc(
            "GetTaskPushNotificationConfig",
            json!({"taskId": "never-seen", "id": "x"}),
        )
        .await;
    assert_eq!(response["error"]["code"], -32001);
    hub.create_config("t1", HOOK).await;
    let response = hub
        .rpc(
            "GetTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "nope"}),
        )
        .await;
    assert_eq!(response["error"]["code"], -32001);
    let (status, body) = hub
        .rest(
            Method::GET,
            "/tasks/never-seen/pushNotificationConfigs/x",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_reason(&body), "TASK_NOT_FOUND");
    hub.stop().await;
}

#[tokio::test]
async fn a_missing_url_is_invalid_params_naming_the_field() {
    let hub = TestHub::start().await;
    let response = hub
        .rpc("CreateTaskPushNotificationConfig", json!({"taskId": "t1"}))
        .await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`url` is required"),
        "{response}"
    );
    let violation = response["error"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == a2a::BAD_REQUEST_TYPE)
        .expect("a BadRequest detail");
    assert_eq!(violation["fieldViolations"][0]["field"], "url");

    let (status, body) = hub
        .rest(
            Method::POST,
            "/tasks/t1/pushNotificationConfigs",
            Some(json!({"token": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("url"),
        "{body}"
    );
    assert_eq!(error_reason(&body), "INVALID_PARAMS");
    hub.stop().await;
}

#[tokio::test]
async fn refused_urls_are_invalid_params_that_name_the_reason() {
    let hub = TestHub::start_with(|s| s.security.allowed_subnets.clear()).await;
    let cases = [
        ("ftp://example.com/hook", "only http and https"),
        ("http://localhost:9/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.1/hook", "private"),
        ("http://[::ffff:192.168.0.1]/hook", "private"),
        ("not a url", "not a valid URL"),
        ("http://user:pw@93.184.216.34/", "user name or password"),
    ];
    for (url, reason) in cases {
        let response = hub
            .rpc(
                "CreateTaskPushNotificationConfig",
                json!({"taskId": "t1", "url": url}),
            )
            .await;
        assert_eq!(response["error"]["code"], -32602, "{url}: {response}");
        let message = response["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{url}: {message}");
        let (status, body) = hub
            .rest(
                Method::POST,
                "/tasks/t1/pushNotificationConfigs",
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
    }
    let listed = hub
        .rpc_ok("ListTaskPushNotificationConfigs", json!({"taskId": "t1"}))
        .await;
    assert_eq!(listed["configs"], json!([]), "nothing refused was stored");
    hub.stop().await;
}

#[tokio::test]
async fn id_less_creates_make_distinct_configs_and_an_existing_id_is_replaced() {
    let hub = TestHub::start().await;
    let a = hub.create_config("t1", HOOK).await;
    let b = hub.create_config("t1", HOOK).await;
    assert_ne!(a, b);
    uuid::Uuid::parse_str(&a).expect("assigned ids are UUIDs");
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "id": a, "url": "http://127.0.0.1:9/other"}),
    )
    .await;
    let listed = hub
        .rpc_ok("ListTaskPushNotificationConfigs", json!({"taskId": "t1"}))
        .await;
    let configs = listed["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    let replaced = configs.iter().find(|c| c["id"] == a.as_str()).unwrap();
    assert_eq!(replaced["url"], "http://127.0.0.1:9/other");
    hub.stop().await;
}

#[tokio::test]
async fn the_rest_path_task_id_wins_over_the_body() {
    let hub = TestHub::start().await;
    let (status, created) = hub
        .rest(
            Method::POST,
            "/tasks/from-path/pushNotificationConfigs",
            Some(json!({"taskId": "from-body", "id": "c", "url": HOOK})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["taskId"], "from-path");
    let (status, _) = hub
        .rest(
            Method::GET,
            "/tasks/from-path/pushNotificationConfigs/c",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = hub
        .rest(
            Method::GET,
            "/tasks/from-body/pushNotificationConfigs/c",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub.stop().await;
}

#[tokio::test]
async fn list_pages_through_every_config_and_caps_the_page_size() {
    let hub = TestHub::start_with(|s| s.limits.max_configs_per_task = 200).await;
    let mut created = Vec::new();
    for _ in 0..105 {
        created.push(hub.create_config("busy", HOOK).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut params = json!({"taskId": "busy"});
        if !token.is_empty() {
            params["pageToken"] = json!(token);
        }
        let page = hub.rpc_ok("ListTaskPushNotificationConfigs", params).await;
        pages += 1;
        let configs = page["configs"].as_array().unwrap();
        assert!(configs.len() <= 50, "default page size is 50");
        seen.extend(
            configs
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string()),
        );
        token = page["nextPageToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    created.sort();
    assert_eq!(seen, created, "every config exactly once");

    let big = hub
        .rpc_ok(
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "busy", "pageSize": 1000}),
        )
        .await;
    assert_eq!(
        big["configs"].as_array().unwrap().len(),
        100,
        "page size is capped at 100"
    );

    let (status, page) = hub
        .rest(
            Method::GET,
            "/tasks/busy/pushNotificationConfigs?page_size=7",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["configs"].as_array().unwrap().len(), 7);
    let next = page["nextPageToken"].as_str().unwrap();
    let (status, page2) = hub
        .rest(
            Method::GET,
            &format!("/tasks/busy/pushNotificationConfigs?pageSize=7&pageToken={next}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(page["configs"][0], page2["configs"][0]);

    let bad = hub
        .rpc(
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "busy", "pageToken": "!!not-ours"}),
        )
        .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pageToken")
    );
    let negative = hub
        .rpc(
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "busy", "pageSize": -1}),
        )
        .await;
    assert_eq!(negative["error"]["code"], -32602, "{negative}");
    hub.stop().await;
}

#[tokio::test]
async fn an_empty_list_still_has_configs_and_next_page_token() {
    let hub = TestHub::start().await;
    let listed = hub
        .rpc_ok(
            "ListTaskPushNotificationConfigs",
            json!({"taskId": "nothing-here"}),
        )
        .await;
    assert_eq!(listed, json!({"configs": [], "nextPageToken": ""}));
    let (status, body) = hub
        .rest(
            Method::GET,
            "/tasks/nothing-here/pushNotificationConfigs",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"configs": [], "nextPageToken": ""}));
    hub.stop().await;
}

#[tokio::test]
async fn secrets_are_never_answered() {
    let hub = TestHub::start().await;
    let secret_token = "tok-SECRET-1";
    let secret_credentials = "cred-SECRET-2";
    let config = json!({"taskId": "t1", "id": "c1", "url": HOOK, "token": secret_token,
        "authentication": {"scheme": "Basic", "credentials": secret_credentials}});
    let mut answers = vec![
        hub.rpc("CreateTaskPushNotificationConfig", config.clone())
            .await,
    ];
    answers.push(
        hub.rpc(
            "GetTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "c1"}),
        )
        .await,
    );
    answers.push(
        hub.rpc("ListTaskPushNotificationConfigs", json!({"taskId": "t1"}))
            .await,
    );
    answers.push(
        hub.rest(
            Method::POST,
            "/tasks/t1/pushNotificationConfigs",
            Some(config),
        )
        .await
        .1,
    );
    answers.push(
        hub.rest(Method::GET, "/tasks/t1/pushNotificationConfigs/c1", None)
            .await
            .1,
    );
    answers.push(
        hub.rest(Method::GET, "/tasks/t1/pushNotificationConfigs", None)
            .await
            .1,
    );
    answers.push(hub.admin_get("/api/v1/tasks/t1").await.1);
    for answer in answers {
        let text = answer.to_string();
        // Each answer is the config itself (alone, in a list or in the task view), not an
        // error that would say nothing of secrets.
        let body = answer.get("result").unwrap_or(&answer);
        let config = body.get("configs").map_or(body, |configs| &configs[0]);
        assert_eq!(config["url"], HOOK, "not an answer with the config: {text}");
        assert!(!text.contains("SECRET"), "a secret leaked: {text}");
    }
    let view = hub.admin_get("/api/v1/tasks/t1").await.1;
    assert_eq!(view["configs"][0]["hasToken"], true);
    assert_eq!(view["configs"][0]["hasCredentials"], true);
    assert_eq!(view["configs"][0]["authenticationScheme"], "Basic");
    hub.stop().await;
}

#[tokio::test]
async fn tenants_are_isolated_in_both_bindings() {
    let hub = TestHub::start().await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"tenant": "acme", "taskId": "t1", "id": "shared-id", "url": "http://127.0.0.1:9/acme"}),
    )
    .await;
    let (status, _) = hub
        .rest(
            Method::POST,
            "/globex/tasks/t1/pushNotificationConfigs",
            Some(json!({"id": "shared-id", "url": "http://127.0.0.1:9/globex"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, acme) = hub
        .rest(
            Method::GET,
            "/acme/tasks/t1/pushNotificationConfigs/shared-id",
            None,
        )
        .await;
    assert_eq!(acme["url"], "http://127.0.0.1:9/acme");
    assert_eq!(acme["tenant"], "acme");
    let globex = hub
        .rpc_ok(
            "GetTaskPushNotificationConfig",
            json!({"tenant": "globex", "taskId": "t1", "id": "shared-id"}),
        )
        .await;
    assert_eq!(globex["url"], "http://127.0.0.1:9/globex");
    let default = hub
        .rpc(
            "GetTaskPushNotificationConfig",
            json!({"taskId": "t1", "id": "shared-id"}),
        )
        .await;
    assert_eq!(
        default["error"]["code"], -32001,
        "the default tenant sees neither"
    );

    let (status, _) = hub
        .rest(
            Method::DELETE,
            "/acme/tasks/t1/pushNotificationConfigs/shared-id",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let still = hub
        .rpc_ok(
            "ListTaskPushNotificationConfigs",
            json!({"tenant": "globex", "taskId": "t1"}),
        )
        .await;
    assert_eq!(
        still["configs"].as_array().unwrap().len(),
        1,
        "deleting in acme leaves globex alone"
    );
    hub.stop().await;
}

#[tokio::test]
async fn jsonrpc_envelope_errors_have_their_codes() {
    let hub = TestHub::start().await;
    let cases: [(&str, i64); 8] = [
        ("{not json", -32700),
        ("[]", -32600),
        ("\"text\"", -32600),
        (
            r#"{"id": 1, "method": "GetTaskPushNotificationConfig"}"#,
            -32600,
        ),
        (r#"{"jsonrpc": "2.0", "id": 1}"#, -32600),
        (
            r#"{"jsonrpc": "2.0", "id": {"x": 1}, "method": "GetTask"}"#,
            -32600,
        ),
        (
            r#"{"jsonrpc": "2.0", "id": 1, "method": "NoSuchMethod"}"#,
            -32601,
        ),
        (
            r#"{"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig", "params": [1]}"#,
            -32602,
        ),
    ];
    for (body, code) in cases {
        let (status, response) = hub.rpc_raw(body.to_string(), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(response["error"]["code"], code, "{body}: {response}");
        assert_eq!(response["jsonrpc"], "2.0");
        assert!(!response["error"]["message"].as_str().unwrap().is_empty());
    }
    let wrong_type = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t1", "url": 5}),
        )
        .await;
    assert_eq!(wrong_type["error"]["code"], -32602);
    assert_eq!(
        wrong_type["error"]["message"],
        "`url` must be a string, got a number"
    );
    let agent_method = hub.rpc("SendMessage", json!({})).await;
    assert_eq!(agent_method["error"]["code"], -32004, "{agent_method}");
    hub.stop().await;
}

#[tokio::test]
async fn version_negotiation_refuses_versions_not_served() {
    let hub = TestHub::start().await;
    let body = json!({"jsonrpc": "2.0", "id": "v", "method": "ListTaskPushNotificationConfigs", "params": {"taskId": "t"}}).to_string();
    let (_, ok) = hub.rpc_raw(body.clone(), &[]).await;
    assert!(
        ok.get("result").is_some(),
        "PascalCase methods are 1.0 without a header: {ok}"
    );
    let (_, ok) = hub.rpc_raw(body.clone(), &[("A2A-Version", "1.0")]).await;
    assert!(ok.get("result").is_some(), "{ok}");
    let (_, mismatch) = hub.rpc_raw(body.clone(), &[("A2A-Version", "0.3")]).await;
    assert_eq!(
        mismatch["error"]["code"], -32601,
        "a 1.0 method asked for as 0.3: {mismatch}"
    );
    for version in ["0.2", "2.0"] {
        let (_, refused) = hub.rpc_raw(body.clone(), &[("A2A-Version", version)]).await;
        assert_eq!(refused["error"]["code"], -32009, "{refused}");
        assert_eq!(rpc_reason(&refused), "VERSION_NOT_SUPPORTED");
        assert_eq!(refused["id"], "v");
    }
    let response = hub
        .http
        .post(format!("{}/?A2A-Version=9.9", hub.public))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let refused: Value = response.json().await.unwrap();
    assert_eq!(
        refused["error"]["code"], -32009,
        "the query parameter counts too"
    );

    let response = hub
        .http
        .get(format!("{}/tasks/t/pushNotificationConfigs", hub.public))
        .header("A2A-Version", "0.3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_reason(&body), "VERSION_NOT_SUPPORTED");
    hub.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413_in_both_bindings() {
    let hub = TestHub::start_with(|s| s.limits.max_body_bytes = 4096).await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig",
        "params": {"taskId": "t", "url": HOOK, "token": "x".repeat(5000)}});
    let (status, response) = hub.rpc_raw(big.to_string(), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4096"),
        "{response}"
    );
    let (status, body) = hub
        .rest(
            Method::POST,
            "/tasks/t/pushNotificationConfigs",
            Some(json!({"url": HOOK, "token": "x".repeat(5000)})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    hub.stop().await;
}

#[tokio::test]
async fn header_injection_through_tokens_is_refused() {
    let hub = TestHub::start().await;
    let response = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t", "url": HOOK, "token": "a\r\nX-Evil: 1"}),
        )
        .await;
    assert_eq!(response["error"]["code"], -32602);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`token`")
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_webhook_name_that_does_not_resolve_now_is_accepted_and_one_resolving_to_a_refused_address_is_not()
 {
    let hub = TestHub::start_with(|s| s.security.allowed_subnets.clear()).await;
    // `.invalid` never resolves (RFC 6761): like a DNS outage, or a host not yet published.
    let created = hub
        .rpc_ok(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t", "url": "https://hook.example.invalid/a2a"}),
        )
        .await;
    assert_eq!(created["url"], "https://hook.example.invalid/a2a");
    let refused = hub
        .rpc(
            "CreateTaskPushNotificationConfig",
            json!({"taskId": "t", "url": "http://localhost:9/hook"}),
        )
        .await;
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{refused}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_path_asked_of_the_wrong_listener_is_answered_with_the_right_one() {
    let hub = TestHub::start().await;
    let response = hub
        .http
        .get(format!("{}/api/v1/deliveries", hub.public))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.text().await.unwrap();
    assert!(body.contains("served by the admin listener"), "{body}");
    let (status, problem) = hub.admin_get("/.well-known/jwks.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("served by the public listener"),
        "{problem}"
    );
    let (status, problem) = hub.admin_get("/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no such admin endpoint")
    );
}
