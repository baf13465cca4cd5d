//! The subcommands that talk to a running hub's admin API: `deliveries`, `configs`,
//! `operator` and `keys`.

use std::process::ExitCode;

use super::admin_client::AdminError;
use super::admin_client::path;
use super::args::{
    AdminArgs, ConfigsAction, DeliveriesAction, FilterArgs, KeysAction, OperatorAction,
    OriginsAction, Output, SubscriptionsAction,
};

pub fn print_answer(output: Output, result: Result<serde_json::Value, AdminError>) -> ExitCode {
    match result {
        Ok(answer) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                ),
                Output::Table => print!("{}", super::table::render(&answer)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn keys(admin: AdminArgs, action: KeysAction) -> ExitCode {
    let (client, output) = admin.open();
    print_answer(
        output,
        match action {
            KeysAction::List => client.get("/api/v1/keys", &[]).await,
            KeysAction::Rotate => client.post("/api/v1/keys:rotate", &[], None).await,
        },
    )
}

pub async fn deliveries(admin: AdminArgs, action: DeliveriesAction) -> ExitCode {
    let (client, output) = admin.open();
    let result = match action {
        DeliveriesAction::List {
            filter,
            limit,
            after,
        } => {
            let mut query = filter.pairs();
            query.extend(limit.map(|l| ("limit", l.to_string())));
            query.extend(after.map(|a| ("after", a)));
            client.get("/api/v1/deliveries", &query).await
        }
        DeliveriesAction::Show { delivery_id } => {
            client
                .get(&format!("/api/v1/deliveries/{delivery_id}"), &[])
                .await
        }
        DeliveriesAction::Replay {
            delivery_id: Some(id),
            ..
        } => {
            client
                .post(&format!("/api/v1/deliveries/{id}/replay"), &[], None)
                .await
        }
        DeliveriesAction::Replay {
            delivery_id: None,
            filter,
        } => {
            let mut query: Vec<(&str, String)> = filter.pairs();
            let tenant = query
                .iter()
                .position(|(k, _)| *k == "tenant")
                .map(|i| query.remove(i).1);
            let body: serde_json::Map<String, serde_json::Value> = query
                .into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                .collect();
            let tenant: Vec<(&str, String)> = tenant.map(|t| ("tenant", t)).into_iter().collect();
            client
                .post(
                    "/api/v1/deliveries:replay",
                    &tenant,
                    Some(serde_json::Value::Object(body)),
                )
                .await
        }
    };
    print_answer(output, result)
}

pub async fn configs(admin: AdminArgs, action: ConfigsAction) -> ExitCode {
    let (client, output) = admin.open();
    let tenant = |tenant: Option<String>| -> Vec<(&str, String)> {
        tenant.map(|t| ("tenant", t)).into_iter().collect()
    };
    print_answer(
        output,
        match action {
            ConfigsAction::Health {
                task_id,
                config_id,
                tenant: t,
            } => {
                let at = path(&[
                    "api", "v1", "tasks", &task_id, "configs", &config_id, "health",
                ]);
                client.get(&at, &tenant(t)).await
            }
            ConfigsAction::Enable {
                task_id,
                config_id,
                tenant: t,
            } => {
                let action = format!("{config_id}:enable");
                let at = path(&["api", "v1", "tasks", &task_id, "configs", &action]);
                client.post(&at, &tenant(t), None).await
            }
            ConfigsAction::Filter {
                task_id,
                config_id,
                tenant: t,
                set,
            } => {
                let at = path(&[
                    "api", "v1", "tasks", &task_id, "configs", &config_id, "filter",
                ]);
                match filter_body(set) {
                    Ok(None) => client.get(&at, &tenant(t)).await,
                    Ok(Some(filter)) => client.put(&at, &tenant(t), filter).await,
                    Err(e) => Err(e),
                }
            }
            ConfigsAction::Defaults { tenant: t, set } => match filter_body(set) {
                Ok(None) => client.get("/api/v1/tenant-defaults", &tenant(t)).await,
                Ok(Some(filter)) => {
                    let body = serde_json::json!({ "filter": filter });
                    client
                        .put("/api/v1/tenant-defaults", &tenant(t), body)
                        .await
                }
                Err(e) => Err(e),
            },
        },
    )
}

/// The filter `--events` or `--match` asks to set; `None`: only show it.
fn filter_body(set: FilterArgs) -> Result<Option<serde_json::Value>, AdminError> {
    match (set.events, set.pattern) {
        (Some(events), _) => Ok(Some(serde_json::json!({ "events": events }))),
        (None, Some(pattern)) => serde_json::from_str::<serde_json::Value>(&pattern)
            .map(|pattern| Some(serde_json::json!({ "match": pattern })))
            .map_err(|e| AdminError::Usage(format!("--match is not valid JSON: {e}"))),
        (None, None) => Ok(None),
    }
}

pub async fn subscriptions(admin: AdminArgs, action: SubscriptionsAction) -> ExitCode {
    let (client, output) = admin.open();
    let of = |id: &str, what: Option<&str>| {
        let mut segments = vec!["api", "v1", "subscriptions", id];
        segments.extend(what);
        path(&segments)
    };
    let page =
        |after: u64, limit: usize| [("after", after.to_string()), ("limit", limit.to_string())];
    print_answer(
        output,
        match action {
            SubscriptionsAction::Create {
                tenant,
                task_id,
                token,
                webhook_secret,
                jwks_url,
                issuer,
                forward_to,
                tolerance_seconds,
                body,
            } => {
                let body = match body {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| AdminError::Usage(format!("--body is not valid JSON: {e}"))),
                    None => {
                        let mut fields = serde_json::Map::new();
                        let strings = [
                            ("taskId", task_id),
                            ("token", token),
                            ("webhookSecret", webhook_secret),
                            ("jwksUrl", jwks_url),
                            ("issuer", issuer),
                            ("forwardTo", forward_to),
                        ];
                        for (name, value) in strings {
                            if let Some(value) = value {
                                fields.insert(name.to_string(), value.into());
                            }
                        }
                        if let Some(seconds) = tolerance_seconds {
                            fields.insert("toleranceSeconds".to_string(), seconds.into());
                        }
                        Ok(serde_json::Value::Object(fields))
                    }
                };
                let query: Vec<(&str, String)> =
                    tenant.map(|t| ("tenant", t)).into_iter().collect();
                match body {
                    Ok(body) => {
                        client
                            .post("/api/v1/subscriptions", &query, Some(body))
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            SubscriptionsAction::List { limit, after } => {
                let mut query: Vec<(&str, String)> = limit
                    .map(|l| ("limit", l.to_string()))
                    .into_iter()
                    .collect();
                query.extend(after.map(|a| ("after", a)));
                client.get("/api/v1/subscriptions", &query).await
            }
            SubscriptionsAction::Show { id } => client.get(&of(&id, None), &[]).await,
            SubscriptionsAction::Delete { id } => client.delete(&of(&id, None)).await,
            SubscriptionsAction::Events { id, after, limit } => {
                client
                    .get(&of(&id, Some("events")), &page(after, limit))
                    .await
            }
            SubscriptionsAction::Receipts { id, after, limit } => {
                client
                    .get(&of(&id, Some("receipts")), &page(after, limit))
                    .await
            }
        },
    )
}

pub async fn origins(admin: AdminArgs, action: OriginsAction) -> ExitCode {
    let (client, output) = admin.open();
    print_answer(
        output,
        match action {
            OriginsAction::List { limit } => {
                client
                    .get("/api/v1/origins", &[("limit", limit.to_string())])
                    .await
            }
            OriginsAction::Health { url } => {
                client.get("/api/v1/origins/health", &[("url", url)]).await
            }
        },
    )
}

pub async fn operator(admin: AdminArgs, action: OperatorAction) -> ExitCode {
    let (client, output) = admin.open();
    match action {
        OperatorAction::Events {
            after,
            limit,
            follow: false,
        } => {
            let query = [("after", after.to_string()), ("limit", limit.to_string())];
            print_answer(output, client.get("/api/v1/operator/events", &query).await)
        }
        OperatorAction::Events {
            after,
            limit,
            follow: true,
        } => match follow_operator_events(&client, after, limit).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// How long `--follow` waits before asking again when it has seen every event.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Prints operator events after `after`, one JSON object per line, as they come: pages
/// through the list with its cursor, so nothing is missed or printed twice across a hub's
/// restart; returns on Ctrl-C.
async fn follow_operator_events(
    client: &super::admin_client::AdminClient,
    mut after: u64,
    limit: usize,
) -> Result<(), AdminError> {
    use std::io::Write;
    loop {
        let query = [("after", after.to_string()), ("limit", limit.to_string())];
        let page = client.get("/api/v1/operator/events", &query).await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let mut out = std::io::stdout().lock();
        for event in &events {
            let _ = writeln!(out, "{event}");
        }
        let _ = out.flush();
        drop(out);
        after = page["nextAfter"].as_u64().unwrap_or(after);
        if events.len() < limit {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }
}
