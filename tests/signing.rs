//! Signed deliveries: the published vectors, live deliveries verified as a receiver would
//! (against the hub's JWKS or a whsec_ secret), key rotation with its grace period, and the
//! `verify` command.

use crate::common;

use std::time::Duration;

use a2a_push_hub::verify::{CapturedRequest, VerifyOptions, verify_request};
use a2a_push_hub::verify::{jwt, webhooks};
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Received, Receiver, TestHub, fast_delivery, status_event, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/spec/vectors/signing.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn captured(request: &Received) -> CapturedRequest {
    CapturedRequest {
        headers: request
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    value.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: request.body.to_vec(),
    }
}

async fn jwks(hub: &TestHub) -> Value {
    hub.http
        .get(format!("{}/.well-known/jwks.json", hub.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[test]
fn the_published_vectors_verify() {
    let v = vectors();
    let seed: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &v["ed25519"]["seedHex"].as_str().unwrap()[i * 2..i * 2 + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    let ed = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let secret = webhooks::parse_secret(v["hmac"]["whsec"].as_str().unwrap()).unwrap();
    let public = webhooks::parse_public_key(v["ed25519"]["whpk"].as_str().unwrap()).unwrap();
    for case in v["webhookCases"].as_array().unwrap() {
        let body = STANDARD
            .decode(case["bodyBase64"].as_str().unwrap())
            .unwrap();
        let (id, ts) = (
            case["webhookId"].as_str().unwrap(),
            case["webhookTimestamp"].as_str().unwrap(),
        );
        let content = webhooks::signed_content(id, ts, &body);
        assert_eq!(
            STANDARD.encode(&content),
            case["signedContentBase64"],
            "{}",
            case["name"]
        );
        assert_eq!(
            webhooks::sign_v1(&secret, &content),
            case["expected"]["v1"],
            "{}",
            case["name"]
        );
        assert_eq!(
            webhooks::sign_v1a(&ed, &content),
            case["expected"]["v1a"],
            "{}",
            case["name"]
        );
        let keys = webhooks::WebhookKeys {
            secrets: vec![secret.clone()],
            public_keys: vec![public.clone()],
        };
        let at: i64 = ts.parse().unwrap();
        let signature = case["expected"]["webhookSignature"].as_str();
        assert!(webhooks::verify(Some(id), Some(ts), signature, &body, &keys, at, 300).is_ok());
    }
    let token = v["jwt"]["token"].as_str().unwrap();
    let body = STANDARD
        .decode(v["jwt"]["bodyBase64"].as_str().unwrap())
        .unwrap();
    let at = v["jwt"]["verifyAt"].as_i64().unwrap();
    let expect = jwt::Expectations {
        audience: v["jwt"]["claims"]["aud"].as_str(),
        issuer: v["jwt"]["claims"]["iss"].as_str(),
        leeway_s: 0,
    };
    let claims = jwt::verify(token, &v["jwt"]["jwks"], &expect, &body, at).unwrap();
    assert_eq!(serde_json::to_value(&claims).unwrap(), v["jwt"]["claims"]);
    assert!(
        jwt::verify(token, &v["jwt"]["jwks"], &expect, &body, at + 400).is_err(),
        "the vector token expires"
    );
}

#[tokio::test]
async fn live_deliveries_verify_against_the_jwks_and_the_whsec_secret() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let url = receiver.url("/signed");
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "url": url, "token": SECRET, "authentication": {"scheme": "Bearer"}}),
    )
    .await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    assert!(
        request.headers.get("x-a2a-notification-token").is_none(),
        "a whsec_ secret is never sent"
    );
    let signature = request.header("webhook-signature");
    assert!(
        signature.starts_with("v1a,") && signature.contains(" v1,"),
        "{signature}"
    );
    let options = VerifyOptions {
        secret: webhooks::parse_secret(SECRET),
        jwks: Some(jwks(&hub).await),
        audience: Some(url.clone()),
        issuer: Some(hub.public.clone()),
        tolerance_s: 300,
        now_s: now_s(),
        ..Default::default()
    };
    let checks = verify_request(&captured(&request), &options);
    assert_eq!(checks.len(), 3, "{checks:?}");
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");

    let mut tampered = captured(&request);
    tampered.body.push(b' ');
    assert!(
        verify_request(&tampered, &options)
            .iter()
            .all(|c| !c.passed),
        "a changed body fails every check"
    );
    let late = VerifyOptions {
        now_s: now_s() + 3600,
        ..options.clone()
    };
    assert!(
        verify_request(&captured(&request), &late)
            .iter()
            .all(|c| !c.passed),
        "an old delivery fails every check"
    );
    let elsewhere = VerifyOptions {
        audience: Some("http://127.0.0.1:1/other".into()),
        ..options.clone()
    };
    let checks = verify_request(&captured(&request), &elsewhere);
    assert!(
        checks
            .iter()
            .any(|c| c.name.contains("JWT") && !c.passed && c.detail.contains("audience")),
        "{checks:?}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn after_a_rotation_old_keys_co_sign_for_the_grace_period_then_retire() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.signing.rotation_grace = a2a_push_hub::config::HumanDuration(Duration::from_secs(2));
    })
    .await;
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "url": receiver.url("/r"), "authentication": {"scheme": "Bearer"}}),
    )
    .await;
    let before = jwks(&hub).await;
    let (status, _, rotated) = hub.admin_post("/api/v1/keys:rotate", "").await;
    assert_eq!(status, 200, "{rotated}");
    assert!(
        !rotated.to_string().contains("private"),
        "no private material is answered"
    );
    let during = jwks(&hub).await;
    assert_eq!(during["keys"].as_array().unwrap().len(), 4);
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let first = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        first.header("webhook-signature").split(' ').count(),
        2,
        "old and new Ed25519 keys co-sign"
    );
    let with = |jwks: &Value| VerifyOptions {
        jwks: Some(jwks.clone()),
        tolerance_s: 300,
        now_s: now_s(),
        ..Default::default()
    };
    let stale = verify_request(&captured(&first), &with(&before));
    assert!(
        stale.iter().any(|c| c.name.contains("v1a") && c.passed),
        "a receiver with the old JWKS still verifies v1a: {stale:?}"
    );
    assert!(
        stale.iter().any(|c| c.name.contains("JWT") && !c.passed),
        "the JWT is signed by the new key: {stale:?}"
    );
    assert!(
        verify_request(&captured(&first), &with(&during))
            .iter()
            .all(|c| c.passed),
        "a refreshed JWKS verifies everything"
    );

    let after = wait_until(WAIT, "the old keys to retire", || async {
        let document = jwks(&hub).await;
        (document["keys"].as_array().unwrap().len() == 2).then_some(document)
    })
    .await;
    hub.publish(status_event("t1", "TASK_STATE_COMPLETED"))
        .await;
    let second = receiver.wait_for(2, WAIT).await.remove(1);
    assert_eq!(
        second.header("webhook-signature").split(' ').count(),
        1,
        "retired keys no longer sign"
    );
    assert!(
        verify_request(&captured(&second), &with(&after))
            .iter()
            .all(|c| c.passed)
    );
    let rotated_out = verify_request(&captured(&second), &with(&before));
    assert!(
        rotated_out.iter().all(|c| !c.passed),
        "the rotated-out keys verify nothing: {rotated_out:?}"
    );
    let (_, listed) = hub.admin_get("/api/v1/keys").await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["state"] == "active")
    );
    hub.stop().await;
}

#[tokio::test]
async fn the_verify_command_reports_each_check() {
    let receiver = Receiver::start().await;
    let hub = TestHub::start_with(fast_delivery).await;
    let url = receiver.url("/cli");
    hub.rpc_ok(
        "CreateTaskPushNotificationConfig",
        json!({"taskId": "t1", "url": url, "token": SECRET, "authentication": {"scheme": "Bearer"}}),
    )
    .await;
    hub.publish(status_event("t1", "TASK_STATE_WORKING")).await;
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &[u8]| {
        let mut raw = b"POST /cli HTTP/1.1\r\n".to_vec();
        for (header, value) in request.headers.iter() {
            raw.extend_from_slice(format!("{header}: {}\r\n", value.to_str().unwrap()).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(body);
        let path = dir.path().join(name);
        std::fs::write(&path, raw).unwrap();
        path
    };
    let good = write("good.http", &request.body);
    let mut altered = request.body.to_vec();
    altered[0] = b' ';
    let bad = write("bad.http", &altered);
    let jwks_url = format!("{}/.well-known/jwks.json", hub.public);
    let run = |file: &std::path::Path| {
        let args = [
            "verify".to_string(),
            "--request".to_string(),
            file.display().to_string(),
            "--jwks".to_string(),
            jwks_url.clone(),
            "--allow-private-networks".to_string(),
            "--secret".to_string(),
            SECRET.to_string(),
            "--audience".to_string(),
            url.clone(),
        ];
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
                .args(args)
                .output()
                .await
                .unwrap()
        }
    };
    let output = run(&good).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("PASS").count(), 3, "{stdout}");
    let output = run(&bad).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout.matches("FAIL").count(), 3, "{stdout}");
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_a2a-push-hub"))
        .args([
            "verify",
            "--request",
            &good.display().to_string(),
            "--jwks",
            &jwks_url,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "loopback JWKS needs --allow-private-networks"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback"));
    hub.stop().await;
}
