//! `a2a-push-hub probe` against real agents: the official Python and JS SDKs' agents bare
//! (what they really do, finding by finding; the Python 0.3 SDK too), the same Python agent
//! behind the hub's gateway (retries, ordering and signatures now pass), and a scripted agent
//! that breaks every check.
//!
//! The SDK runs need the interop environments; `.ci/run` builds them and runs
//! `cargo test --test integration -- --ignored probe::` with `A2A_INTEROP_PYTHON`, `A2A_INTEROP_PYTHON03` and
//! `A2A_INTEROP_NODE` set.

use crate::common;

use std::time::Duration;

use a2a_push_hub::probe::{Binding, MessageSpec, ProbeOptions, Report, Verdict, run};
use common::{
    BROKEN_AGENT_KEY, BrokenAgent, TestHub, fast_delivery, hub_binary, python_sdk_agent,
    start_listening,
};

fn options(agent_url: &str, retry_wait_s: u64, hang_s: u64) -> ProbeOptions {
    ProbeOptions {
        agent_url: agent_url.to_string(),
        binding: None,
        version: None,
        message: MessageSpec::Text("probe test".to_string()),
        headers: vec![],
        webhook_listen: "127.0.0.1:0".parse().unwrap(),
        webhook_url: None,
        task_timeout: Duration::from_secs(40),
        retry_wait: Duration::from_secs(retry_wait_s),
        hang_limit: Duration::from_secs(hang_s),
        jwks_url: None,
        allow_private_networks: true,
    }
}

/// Asserts every check's verdict: `failing` and `skipped` name the exceptions to "pass".
fn assert_verdicts(report: &Report, failing: &[&str], skipped: &[&str]) {
    let wrong: Vec<String> = report
        .checks
        .iter()
        .filter_map(|check| {
            let expected = if failing.contains(&check.id) {
                Verdict::Fail
            } else if skipped.contains(&check.id) {
                Verdict::Skip
            } else {
                Verdict::Pass
            };
            (check.result != expected).then(|| {
                format!(
                    "{}: {:?}, expected {expected:?} — {:?}",
                    check.id, check.result, check.evidence
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Asserts the agent gave up on the held push after about `seconds` (its client's timeout).
fn assert_gave_up_after(report: &Report, seconds: f64) {
    let text = evidence(report, "delivery.timeout");
    let measured: f64 = text
        .strip_prefix("gave up after ")
        .and_then(|rest| rest.split('s').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no time in {text:?}"));
    assert!((measured - seconds).abs() < 1.0, "{text}");
}

fn evidence(report: &Report, id: &str) -> String {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .evidence
        .join("\n")
}

#[tokio::test]
async fn every_check_fails_against_an_agent_that_breaks_them_and_the_reports_say_so() {
    let agent = BrokenAgent::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (json, junit, html) = (
        dir.path().join("r.json"),
        dir.path().join("r.xml"),
        dir.path().join("r.html"),
    );
    let run = tokio::process::Command::new(hub_binary())
        .args(["probe", "--agent", &agent.url, "--allow-private-networks"])
        .args(["--retry-wait", "3s", "--hang-for", "5s", "--timeout", "15s"])
        .args(["--header", &format!("X-Api-Key: {BROKEN_AGENT_KEY}")])
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--html")
        .arg(&html)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the probe finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a MUST failed: exit 1\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("verdict: FAIL"), "{stdout}");

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["schema"], "a2a-push-hub/probe-report/v1");
    let checks = report["checks"].as_array().unwrap();
    let not_failed: Vec<String> = checks
        .iter()
        .filter(|c| c["result"] != "fail")
        .map(|c| format!("{} {} {}", c["id"], c["result"], c["evidence"]))
        .collect();
    assert!(
        not_failed.is_empty(),
        "every check can fail:\n{}",
        not_failed.join("\n")
    );
    assert_eq!(report["summary"]["fail"], checks.len());
    assert_eq!(report["summary"]["verdict"], "fail");
    for check in checks {
        assert!(!check["evidence"].as_array().unwrap().is_empty(), "{check}");
        assert!(
            ["MUST", "SHOULD", "MAY"].contains(&check["level"].as_str().unwrap()),
            "{check}"
        );
    }
    // The secrets the probe handed out never reach the report.
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(
        !text.contains("probe-token-") && !text.contains("probe-credentials-"),
        "a secret leaked"
    );
    assert!(
        text.contains("\"Bearer ****\""),
        "Authorization is shown masked"
    );

    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.starts_with("<?xml"));
    assert_eq!(junit.matches("<testcase ").count(), checks.len());
    assert_eq!(junit.matches("<failure ").count(), checks.len());
    let html = std::fs::read_to_string(&html).unwrap();
    assert_well_formed(&html);
    for check in checks {
        assert!(
            html.contains(&format!(
                "id=\"check-{}\" class=\"fail\"",
                check["id"].as_str().unwrap()
            )),
            "{}",
            check["id"]
        );
    }
    assert!(
        !html.contains("probe-token-"),
        "a secret leaked into the page"
    );
}

#[tokio::test]
async fn a_probe_that_cannot_reach_the_agent_says_why_and_exits_2() {
    let output = tokio::process::Command::new(hub_binary())
        .args(["probe", "--agent", "http://127.0.0.1:9/"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-private-networks"), "{stderr}");
    let output = tokio::process::Command::new(hub_binary())
        .args([
            "probe",
            "--agent",
            "ftp://example.com/",
            "--header",
            "no colon",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// What the SDKs' senders leave out, bare: no retry at all, no A2A-Version, no SSRF screen,
/// no signature, the token echoed back by the config methods.
const SDK_FAILS: [&str; 10] = [
    "config.credentials-hidden",
    "delivery.a2a-version",
    "retry.after-5xx",
    "retry.backoff",
    "retry.stops-on-410",
    "retry.after-timeout",
    "retry.after-reset",
    "ssrf.loopback",
    "ssrf.link-local",
    "ssrf.private",
];
/// Nothing to grade: no retry after 429 (so no wait), no signature, no JWT.
const SDK_SKIPS: [&str; 3] = ["retry.retry-after", "signature.webhook", "signature.jwt"];

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn a_python_sdk_agent_pushes_once_and_never_retries_over_either_binding() {
    let (_agent, port) = start_listening(python_sdk_agent()).await;
    let url = format!("http://127.0.0.1:{port}");
    let rest = ProbeOptions {
        binding: Some(Binding::HttpJson),
        ..options(&url, 4, 15)
    };
    let (jsonrpc, rest) = tokio::join!(run(options(&url, 4, 15)), run(rest));
    for (report, binding) in [(jsonrpc.unwrap(), "JSONRPC"), (rest.unwrap(), "HTTP+JSON")] {
        assert_eq!(report.agent.binding, binding);
        assert_verdicts(&report, &SDK_FAILS, &SDK_SKIPS);
        assert!(!report.must_failed());
        // This agent gives its sender an httpx client with a 10 s timeout.
        assert_gave_up_after(&report, 10.0);
        assert!(evidence(&report, "delivery.token").contains("X-A2A-Notification-Token"));
        assert!(evidence(&report, "retry.after-5xx").starts_with("not retried within 4.0s"));
        assert_eq!(report.agent.name, "interop-agent");
    }
}

#[tokio::test]
#[ignore = "needs Node.js and tests/interop/js/node_modules; run by .ci/run"]
async fn a_js_sdk_agent_sends_no_token_beside_authorization_and_gives_up_after_5_seconds() {
    let agent = common::js_sdk_agent();
    let (_agent, port) = start_listening(agent).await;
    let report = run(options(&format!("http://127.0.0.1:{port}"), 4, 15))
        .await
        .unwrap();
    let mut fails = SDK_FAILS.to_vec();
    fails.extend(["delivery.token", "delivery.timeout"]);
    assert_verdicts(&report, &fails, &SDK_SKIPS);
    assert!(
        evidence(&report, "delivery.token")
            .contains("no token header (the config has both a token and authentication)"),
        "{}",
        evidence(&report, "delivery.token")
    );
    assert_gave_up_after(&report, 5.0);
    assert!(evidence(&report, "delivery.content-type").contains("application/a2a+json"));
}

#[tokio::test]
#[ignore = "needs the Python SDK venv; run by .ci/run"]
async fn behind_the_gateway_the_same_python_agent_retries_in_order_and_signs() {
    let (_agent, port) = start_listening(python_sdk_agent()).await;
    let hub = TestHub::start_with(|s| {
        fast_delivery(s);
        s.gateway.upstream = format!("http://127.0.0.1:{port}/");
        // Backoff the probe can measure: 1 s, then 3 s.
        s.delivery.retry_schedule = ["1s", "3s", "5s"]
            .iter()
            .map(|d| {
                a2a_push_hub::config::HumanDuration(
                    a2a_push_hub::config::parse_duration(d).unwrap(),
                )
            })
            .collect();
        s.delivery.throttle_backoff = a2a_push_hub::config::HumanDuration(Duration::from_secs(1));
        // The probe's webhook is on loopback; every other private range stays refused.
        s.security.allow_private_networks = false;
        s.security.allowed_subnets = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let report = run(options(&hub.public, 8, 15)).await.unwrap();
    // The one loopback address allowed for the probe's own webhook is accepted for any URL.
    assert_verdicts(&report, &["ssrf.loopback"], &[]);
    assert!(evidence(&report, "signature.jwt").contains("/.well-known/jwks.json"));
    hub.stop().await;
}

/// Every element the page opens is closed, in order (the page uses `<meta>` and `<br>` as its
/// only void elements), and text holds no raw `<`.
fn assert_well_formed(html: &str) {
    let body = html
        .strip_prefix("<!DOCTYPE html>")
        .expect("a DOCTYPE first");
    let mut open: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find('<') {
        let end = rest[at..].find('>').expect("every tag ends") + at;
        let tag = &rest[at + 1..end];
        assert!(!tag.contains('<'), "a raw < inside {tag:?}");
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(!name.is_empty(), "not a tag: <{tag}>");
        if let Some(closing) = tag.strip_prefix('/') {
            let expected = open
                .pop()
                .unwrap_or_else(|| panic!("</{closing}> closes nothing"));
            assert_eq!(expected, name, "</{name}> closes <{expected}>");
        } else if !["meta", "br"].contains(&name.as_str()) {
            open.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "never closed: {open:?}");
}

#[tokio::test]
#[ignore = "needs the Python 0.3 SDK venv; run by .ci/run"]
async fn a_python_0_3_sdk_agent_sends_no_authorization_and_answers_get_with_the_wrong_config() {
    let python = std::env::var("A2A_INTEROP_PYTHON03")
        .expect("set A2A_INTEROP_PYTHON03 to a Python that has a2a-sdk==0.3.26 (see .ci/run)");
    let mut agent = tokio::process::Command::new(python);
    agent.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python03/agent_server.py"
    ));
    let (_agent, port) = start_listening(agent).await;
    let report = run(options(&format!("http://127.0.0.1:{port}"), 4, 15))
        .await
        .unwrap();
    assert_eq!(report.agent.version, "0.3", "the 0.3 card is recognised");
    let mut fails = SDK_FAILS.to_vec();
    // a2a-sdk 0.3.26 answers Get with the task's first config whatever the id, and its
    // sender never sends Authorization (SHOULD for 0.3).
    fails.extend(["config.get", "config.delete", "delivery.authorization"]);
    assert_verdicts(&report, &fails, &SDK_SKIPS);
    assert!(report.must_failed());
    let authorization = report
        .checks
        .iter()
        .find(|c| c.id == "delivery.authorization")
        .unwrap();
    assert_eq!(authorization.level, a2a_push_hub::probe::Level::Should);
    assert!(
        evidence(&report, "delivery.body").contains("valid A2A 0.3 push bodies"),
        "{}",
        evidence(&report, "delivery.body")
    );
}
