//! The probe's report: one JSON document (`spec/probe-report.md`), and the same facts as
//! JUnit XML (one test case per check) and as a self-contained HTML page; plus the short
//! summary printed on standard output. Secrets the probe handed out are masked everywhere.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::agent::Binding;
use super::checks::{self, Check, Level, Verdict, mask};
use super::observed::Observed;
use super::{CallRecord, ProbeOptions};
use crate::secret::masked_header_value;

/// The schema id of the JSON report; a new major number means a breaking change.
pub const SCHEMA: &str = "a2a-push-hub/probe-report/v1";
/// Bodies longer than this are cut in the report.
const MAX_BODY_CHARS: usize = 16 * 1024;

/// What `Report::new` is made from.
pub(super) struct Run<'a> {
    pub options: &'a ProbeOptions,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration: Duration,
    pub endpoint: String,
    pub binding: Binding,
    pub webhook_base: String,
    pub observed: &'a Observed,
    pub calls: Vec<CallRecord>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentFacts {
    pub url: String,
    pub card_url: String,
    pub name: String,
    pub endpoint: String,
    pub binding: &'static str,
    pub version: &'static str,
    pub push_notifications: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    /// Ids of the failed checks, by level.
    pub failed_must: Vec<&'static str>,
    pub failed_should: Vec<&'static str>,
    pub failed_may: Vec<&'static str>,
    /// `"fail"` when a MUST check failed.
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFacts {
    pub scenario: &'static str,
    pub task_id: Option<String>,
    pub webhook_url: String,
    pub states_seen: Vec<String>,
    pub error: Option<String>,
}

/// A request as the webhook received it, secrets masked.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedFacts {
    /// 1-based, as evidence names it (`#3`).
    pub number: usize,
    pub scenario: Option<String>,
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub answer: String,
}

/// A line of the timeline: a call the probe made or a push that arrived.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    pub at_ms: u64,
    pub scenario: String,
    /// `"call"` (the probe → the agent) or `"push"` (the agent → the probe).
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub task_timeout_ms: u64,
    pub retry_wait_ms: u64,
    pub hang_limit_ms: u64,
    pub webhook_base: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: &'static str,
    pub tool: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub agent: AgentFacts,
    pub settings: Settings,
    pub summary: Summary,
    pub checks: Vec<Check>,
    pub tasks: Vec<TaskFacts>,
    pub timeline: Vec<TimelineEntry>,
    pub received: Vec<ReceivedFacts>,
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Report {
    pub(super) fn new(run: Run<'_>) -> Report {
        let observed = run.observed;
        let secrets = observed.secrets();
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let count = |v: Verdict| run.checks.iter().filter(|c| c.result == v).count();
        let failed = |level: Level| {
            run.checks
                .iter()
                .filter(|c| c.level == level && c.result == Verdict::Fail)
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        let summary = Summary {
            total: run.checks.len(),
            pass: count(Verdict::Pass),
            fail: count(Verdict::Fail),
            skip: count(Verdict::Skip),
            failed_must: failed(Level::Must),
            failed_should: failed(Level::Should),
            failed_may: failed(Level::May),
            verdict: if checks::must_failed(&run.checks) {
                "fail"
            } else {
                "pass"
            },
        };
        let received: Vec<ReceivedFacts> = observed
            .received
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut body = mask(&String::from_utf8_lossy(&r.body), &secrets);
                if body.len() > MAX_BODY_CHARS {
                    let cut = (0..=MAX_BODY_CHARS)
                        .rev()
                        .find(|at| body.is_char_boundary(*at))
                        .unwrap_or(0);
                    body.truncate(cut);
                    body.push_str("…(cut)");
                }
                ReceivedFacts {
                    number: i + 1,
                    scenario: r.scenario.clone(),
                    at_ms: millis(r.at),
                    method: r.method.clone(),
                    path: r.path.clone(),
                    headers: r
                        .headers
                        .iter()
                        .map(|(n, v)| (n.clone(), masked_header_value(n, v, &secret_refs)))
                        .collect(),
                    body,
                    answer: checks::answered_text(&r.answered),
                }
            })
            .collect();
        let mut timeline: Vec<TimelineEntry> = run
            .calls
            .iter()
            .map(|c| TimelineEntry {
                at_ms: millis(c.at),
                scenario: c.scenario.to_string(),
                kind: "call",
                text: mask(&format!("{}: {}", c.call, c.outcome), &secrets),
            })
            .chain(observed.received.iter().enumerate().map(|(i, r)| {
                let event = super::observed::read_event(&r.body)
                    .map(|e| match e.state {
                        Some(state) => format!("{} {state}", e.kind),
                        None => e.kind,
                    })
                    .unwrap_or_else(|e| format!("unreadable body ({e})"));
                TimelineEntry {
                    at_ms: millis(r.at),
                    scenario: r
                        .scenario
                        .clone()
                        .unwrap_or_else(|| "(unknown path)".into()),
                    kind: "push",
                    text: format!(
                        "#{} {} {}: {event}; {}",
                        i + 1,
                        r.method,
                        r.path,
                        checks::answered_text(&r.answered)
                    ),
                }
            }))
            .collect();
        timeline.sort_by_key(|e| e.at_ms);
        Report {
            schema: SCHEMA,
            tool: concat!("a2a-push-hub ", env!("CARGO_PKG_VERSION")).to_string(),
            started_at: run
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms: millis(run.duration),
            agent: AgentFacts {
                url: run.options.agent_url.clone(),
                card_url: observed.card.card_url.clone(),
                name: observed.card.name.clone(),
                endpoint: run.endpoint,
                binding: run.binding.as_str(),
                version: observed.version.as_str(),
                push_notifications: observed.card.push_notifications,
            },
            settings: Settings {
                task_timeout_ms: millis(run.options.task_timeout),
                retry_wait_ms: millis(run.options.retry_wait),
                hang_limit_ms: millis(run.options.hang_limit),
                webhook_base: run.webhook_base,
            },
            summary,
            tasks: observed
                .scenarios
                .iter()
                .map(|s| TaskFacts {
                    scenario: s.name,
                    task_id: s.task_id.clone(),
                    webhook_url: s.target.url.clone(),
                    states_seen: s.states_seen.clone(),
                    error: s.error.as_ref().map(|e| mask(e, &secrets)),
                })
                .collect(),
            checks: run.checks,
            timeline,
            received,
        }
    }

    /// Whether a MUST check failed.
    pub fn must_failed(&self) -> bool {
        self.summary.verdict == "fail"
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as a JSON value (for callers that read fields).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A few lines for a terminal: the verdict, the counts, every failed check.
    pub fn summary_text(&self) -> String {
        let mut text = format!(
            "{} at {} ({} {}) — {} checks: {} pass, {} fail, {} skip\n",
            if self.agent.name.is_empty() {
                "unnamed agent"
            } else {
                &self.agent.name
            },
            self.agent.url,
            self.agent.binding,
            self.agent.version,
            self.summary.total,
            self.summary.pass,
            self.summary.fail,
            self.summary.skip
        );
        for check in self.checks.iter().filter(|c| c.result == Verdict::Fail) {
            let _ = writeln!(
                text,
                "  FAIL {:<6} {:<28} {}",
                check.level.as_str(),
                check.id,
                check
                    .evidence
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default()
            );
        }
        let _ = write!(
            text,
            "verdict: {}",
            if self.must_failed() {
                "FAIL (a MUST check failed)"
            } else {
                "PASS (every MUST check passed or was skipped)"
            }
        );
        text
    }

    /// JUnit XML: one test suite, one test case per check; a failed check is a `<failure>`,
    /// a skipped one `<skipped>`.
    pub fn to_junit(&self) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            xml,
            "<testsuites name=\"a2a-push-hub probe\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            self.summary.total,
            self.summary.fail,
            self.summary.skip,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" timestamp=\"{}\">",
            xml_escape(&format!("probe {}", self.agent.url)),
            self.summary.total,
            self.summary.fail,
            self.summary.skip,
            xml_escape(&self.started_at)
        );
        for check in &self.checks {
            let _ = write!(
                xml,
                "    <testcase classname=\"a2a.push.{}\" name=\"{} [{}] {}\">",
                xml_escape(check.id.split('.').next().unwrap_or("probe")),
                xml_escape(check.id),
                check.level.as_str(),
                xml_escape(check.title)
            );
            let evidence = xml_escape(&check.evidence.join("\n"));
            match check.result {
                Verdict::Pass => {
                    let _ = write!(xml, "<system-out>{evidence}</system-out>");
                }
                Verdict::Fail => {
                    let _ = write!(
                        xml,
                        "<failure message=\"{} {} failed ({})\">{evidence}</failure>",
                        check.level.as_str(),
                        xml_escape(check.id),
                        xml_escape(check.spec)
                    );
                }
                Verdict::Skip => {
                    let _ = write!(
                        xml,
                        "<skipped message=\"{}\"/>",
                        xml_escape(&check.evidence.join("; "))
                    );
                }
            }
            xml.push_str("</testcase>\n");
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }

    /// A self-contained page: summary, every check with its evidence, the timeline and
    /// every request received. No script, no external resource.
    pub fn to_html(&self) -> String {
        let mut html = String::new();
        let verdict = if self.must_failed() { "fail" } else { "pass" };
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>Push probe: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
            html_escape(&self.agent.url)
        );
        let _ = write!(
            html,
            "<h1>Push-notification probe</h1>\n<p class=\"verdict {verdict}\" id=\"verdict\">{}</p>\n\
             <dl class=\"facts\"><dt>Agent</dt><dd>{} <code>{}</code></dd><dt>Interface</dt><dd>{} {} at <code>{}</code></dd>\
             <dt>Started</dt><dd>{} ({:.1} s)</dd><dt>Tool</dt><dd>{}</dd></dl>\n",
            if verdict == "fail" {
                "FAIL: a MUST check failed"
            } else {
                "PASS: every MUST check passed or was skipped"
            },
            html_escape(&self.agent.name),
            html_escape(&self.agent.url),
            self.agent.binding,
            self.agent.version,
            html_escape(&self.agent.endpoint),
            html_escape(&self.started_at),
            self.duration_ms as f64 / 1000.0,
            html_escape(&self.tool)
        );
        let _ = write!(
            html,
            "<h2>Summary</h2>\n<table id=\"summary\"><caption>{} checks</caption>\n<thead><tr><th scope=\"col\">Level</th><th scope=\"col\">Pass</th><th scope=\"col\">Fail</th><th scope=\"col\">Skip</th></tr></thead><tbody>\n",
            self.summary.total
        );
        for level in [Level::Must, Level::Should, Level::May] {
            let of = |v: Verdict| {
                self.checks
                    .iter()
                    .filter(|c| c.level == level && c.result == v)
                    .count()
            };
            let _ = writeln!(
                html,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                level.as_str(),
                of(Verdict::Pass),
                of(Verdict::Fail),
                of(Verdict::Skip)
            );
        }
        html.push_str("</tbody></table>\n");
        let failed: Vec<&Check> = self
            .checks
            .iter()
            .filter(|c| c.result == Verdict::Fail)
            .collect();
        if !failed.is_empty() {
            html.push_str("<h2>Failed</h2>\n<ul id=\"failed\">\n");
            for check in failed {
                let _ = writeln!(
                    html,
                    "<li><a href=\"#check-{id}\"><code>{id}</code></a> ({}) {}</li>",
                    check.level.as_str(),
                    html_escape(check.title),
                    id = html_escape(check.id),
                );
            }
            html.push_str("</ul>\n");
        }
        html.push_str("<h2>Checks</h2>\n<table id=\"checks\"><thead><tr><th scope=\"col\">Result</th><th scope=\"col\">Level</th><th scope=\"col\">Check</th><th scope=\"col\">Evidence</th></tr></thead><tbody>\n");
        for check in &self.checks {
            let requests: String = check
                .requests
                .iter()
                .take(20)
                .map(|i| format!(" <a href=\"#r{}\">#{}</a>", i + 1, i + 1))
                .collect();
            let _ = writeln!(
                html,
                "<tr id=\"check-{id}\" class=\"{result}\"><td class=\"result\">{result}</td><td>{level}</td>\
                 <td><code>{id}</code><br>{title}<br><small>{spec}</small></td><td><ul>{evidence}</ul>{requests}</td></tr>",
                id = html_escape(check.id),
                result = check.result.as_str(),
                level = check.level.as_str(),
                title = html_escape(check.title),
                spec = html_escape(check.spec),
                evidence = check
                    .evidence
                    .iter()
                    .map(|e| format!("<li>{}</li>", html_escape(e)))
                    .collect::<String>(),
            );
        }
        html.push_str("</tbody></table>\n<h2>Tasks</h2>\n<table id=\"tasks\"><thead><tr><th scope=\"col\">Scenario</th><th scope=\"col\">Task</th><th scope=\"col\">States seen</th><th scope=\"col\">Webhook</th></tr></thead><tbody>\n");
        for task in &self.tasks {
            let _ = writeln!(
                html,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                task.scenario,
                html_escape(task.task_id.as_deref().unwrap_or("—")),
                html_escape(&match &task.error {
                    Some(e) => format!("not run: {e}"),
                    None => task.states_seen.join(" → "),
                }),
                html_escape(&task.webhook_url)
            );
        }
        html.push_str("</tbody></table>\n<h2>Timeline</h2>\n<ol id=\"timeline\">\n");
        for entry in &self.timeline {
            let _ = writeln!(
                html,
                "<li class=\"{}\"><time>+{:.3}s</time> <b>{}</b> {}</li>",
                entry.kind,
                entry.at_ms as f64 / 1000.0,
                html_escape(&entry.scenario),
                html_escape(&entry.text)
            );
        }
        html.push_str("</ol>\n<h2>Requests received</h2>\n");
        for request in &self.received {
            let headers: String = request
                .headers
                .iter()
                .map(|(n, v)| format!("{}: {}\n", html_escape(n), html_escape(v)))
                .collect();
            let _ = writeln!(
                html,
                "<details id=\"r{n}\"><summary>#{n} +{at:.3}s {scenario} — {answer}</summary>\
                 <pre>{method} {path}\n{headers}\n{body}</pre></details>",
                n = request.number,
                at = request.at_ms as f64 / 1000.0,
                scenario = html_escape(request.scenario.as_deref().unwrap_or("(unknown path)")),
                answer = html_escape(&request.answer),
                method = html_escape(&request.method),
                path = html_escape(&request.path),
                body = html_escape(&request.body),
            );
        }
        html.push_str("</main>\n</body>\n</html>\n");
        html
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}\
main{max-width:70rem;margin:auto;padding:1rem}table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}\
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}\
tr.pass td.result{background:#d8f0dc}tr.fail td.result{background:#f8d4d4;font-weight:bold}tr.skip td.result{background:#eee}\
.verdict{font-size:1.3rem;font-weight:bold;padding:.5rem}.verdict.pass{background:#d8f0dc}.verdict.fail{background:#f8d4d4}\
.facts dt{font-weight:bold}.facts dd{margin:0 0 .3rem 1rem}ul{margin:0;padding-left:1.1rem}\
pre{white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #ddd;padding:.5rem}\
#timeline li.call{color:#234}#timeline li.push{color:#333}code{font-size:.9em}\
@media (max-width:40rem){table,thead,tbody,tr,td,th{display:block}thead{display:none}}";

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// XML text and attribute escaping; characters XML 1.0 cannot hold become U+FFFD.
fn xml_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c.to_string(),
            c if (c as u32) < 0x20 => "\u{FFFD}".to_string(),
            c => html_escape(&c.to_string()),
        })
        .collect()
}
