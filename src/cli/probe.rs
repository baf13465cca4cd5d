//! `probe`: turns the flags into probe options, runs the probe, writes the reports.

use std::process::ExitCode;

use a2a_push_hub::config::parse_duration;
use a2a_push_hub::probe::{self, Binding, MessageSpec, ProbeOptions, Version};

use super::args::{BindingChoice, ProbeArgs, VersionChoice};

fn options(args: &ProbeArgs) -> Result<ProbeOptions, String> {
    let duration =
        |flag: &str, text: &str| parse_duration(text).map_err(|e| format!("--{flag}: {e}"));
    let message = match &args.message_file {
        None => MessageSpec::Text(args.message.clone()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--message-file: cannot read {}: {e}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("--message-file: {} is not JSON: {e}", path.display()))?;
            if !value.is_object() {
                return Err(format!(
                    "--message-file: {} must hold a JSON object (a Message)",
                    path.display()
                ));
            }
            MessageSpec::Json(value)
        }
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            let (name, value) = h.split_once(':').ok_or_else(|| {
                "--header must be `Name: value` (the value is not shown here)".to_string()
            })?;
            let name = name.trim();
            if name.is_empty() || reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            {
                return Err(format!("--header: {name:?} is not a valid header name"));
            }
            Ok((name.to_string(), value.trim().to_string()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let agent_url = url::Url::parse(&args.agent)
        .map_err(|e| format!("--agent {:?} is not a URL: {e}", args.agent))?;
    if !matches!(agent_url.scheme(), "http" | "https") {
        return Err(format!(
            "--agent must be an http or https URL, not {}",
            agent_url.scheme()
        ));
    }
    if let Some(webhook_url) = &args.webhook_url {
        let parsed = url::Url::parse(webhook_url)
            .map_err(|e| format!("--webhook-url {webhook_url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("--webhook-url must be an http or https URL".to_string());
        }
    }
    Ok(ProbeOptions {
        agent_url: args.agent.clone(),
        binding: match args.binding {
            BindingChoice::Auto => None,
            BindingChoice::JsonRpc => Some(Binding::JsonRpc),
            BindingChoice::HttpJson => Some(Binding::HttpJson),
        },
        version: match args.version {
            VersionChoice::Auto => None,
            VersionChoice::V1 => Some(Version::V1),
            VersionChoice::V03 => Some(Version::V03),
        },
        message,
        headers,
        webhook_listen: args.webhook_listen,
        webhook_url: args.webhook_url.clone(),
        task_timeout: duration("timeout", &args.timeout)?,
        retry_wait: duration("retry-wait", &args.retry_wait)?,
        hang_limit: duration("hang-for", &args.hang_for)?,
        jwks_url: args.jwks.clone(),
        allow_private_networks: args.allow_private_networks,
    })
}

fn write(
    path: &Option<std::path::PathBuf>,
    what: &str,
    render: impl Fn() -> String,
) -> Result<(), String> {
    if let Some(path) = path {
        std::fs::write(path, render())
            .map_err(|e| format!("cannot write the {what} report to {}: {e}", path.display()))?;
        eprintln!("{what} report: {}", path.display());
    }
    Ok(())
}

pub async fn probe(args: ProbeArgs) -> ExitCode {
    let options = match options(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match probe::run(options).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("{}", report.summary_text());
    let written = write(&args.json, "JSON", || report.to_json())
        .and_then(|()| write(&args.junit, "JUnit", || report.to_junit()))
        .and_then(|()| write(&args.html, "HTML", || report.to_html()));
    if let Err(e) = written {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if report.must_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
