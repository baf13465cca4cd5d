//! Runs a hub inside your own program: registers a webhook over A2A JSON-RPC, publishes two
//! events through the event API and prints the task as the hub sees it.
//!
//! `cargo run --example embedded`

use a2a_push_hub::{Hub, Settings};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::default();
    settings.server.public_listen = "127.0.0.1:0".parse()?;
    settings.server.admin_listen = "127.0.0.1:0".parse()?;
    settings.store.path = dir.path().join("store");
    settings.security.allowed_subnets = vec!["127.0.0.0/8".parse()?];
    let hub = Hub::builder(settings).start().await?;
    let http = reqwest::Client::new();

    let created: Value = http
        .post(format!("{}/", hub.public_base_url()))
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig",
            "params": {"taskId": "t-1", "url": "http://127.0.0.1:9000/hook", "token": "secret"}}),
        )
        .send()
        .await?
        .json()
        .await?;
    println!("registered: {}", created["result"]);

    let admin = format!("http://{}", hub.admin_addr());
    for state in ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"] {
        let published: Value = http
            .post(format!("{admin}/api/v1/events"))
            .json(&json!({"statusUpdate": {"taskId": "t-1", "contextId": "c-1", "status": {"state": state}}}))
            .send()
            .await?
            .json()
            .await?;
        println!("published: {published}");
    }
    let task: Value = http
        .get(format!("{admin}/api/v1/tasks/t-1"))
        .send()
        .await?
        .json()
        .await?;
    println!("task: {}", serde_json::to_string_pretty(&task)?);
    hub.shutdown().await;
    Ok(())
}
