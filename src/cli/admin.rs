//! The subcommands that talk to a running hub's admin API: `deliveries`, `configs`,
//! `operator` and `keys`.

use std::process::ExitCode;

use super::admin_client::AdminError;
use super::admin_client::path;
use super::args::{AdminArgs, ConfigsAction, DeliveriesAction, KeysAction, OperatorAction};

pub fn print_answer(result: Result<serde_json::Value, AdminError>) -> ExitCode {
    match result {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn keys(admin: AdminArgs, action: KeysAction) -> ExitCode {
    let client = admin.client();
    print_answer(match action {
        KeysAction::List => client.get("/api/v1/keys", &[]).await,
        KeysAction::Rotate => client.post("/api/v1/keys:rotate", &[], None).await,
    })
}

pub async fn deliveries(admin: AdminArgs, action: DeliveriesAction) -> ExitCode {
    let client = admin.client();
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
    print_answer(result)
}

pub async fn configs(admin: AdminArgs, action: ConfigsAction) -> ExitCode {
    let client = admin.client();
    let tenant = |tenant: Option<String>| -> Vec<(&str, String)> {
        tenant.map(|t| ("tenant", t)).into_iter().collect()
    };
    print_answer(match action {
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
    })
}

pub async fn operator(admin: AdminArgs, action: OperatorAction) -> ExitCode {
    let client = admin.client();
    print_answer(match action {
        OperatorAction::Events { after, limit } => {
            let query = [("after", after.to_string()), ("limit", limit.to_string())];
            client.get("/api/v1/operator/events", &query).await
        }
    })
}
