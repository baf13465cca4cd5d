//! Delegating a task to a remote A2A agent with the hub's own inbound intake as its webhook,
//! then reading it back as the agent pushes it: the task folded from the verified pushes, its
//! events, waiting until it needs attention, replying to it and cancelling it. The MCP bridge
//! (`crate::mcp`, docs/MCP.md) is the caller.
//!
//! A delegation is an inbound subscription: created before the message is sent (an agent may
//! push at once), handed to the agent inline in `SendMessage`, then narrowed to the task the
//! agent created and marked with the agent it belongs to.

use std::time::Duration;

use a2a::{Part, StreamResponse, Task, TaskState};
use serde_json::{Value, json};

use super::Inbound;
use super::subscriptions;
use crate::a2a::params::InvalidField;
use crate::agent_client::{Agent, Binding, PushTarget};
use crate::domain::DomainError;
use crate::store::{Delegation, InboundEventRecord, SubscriptionRecord};

/// Longest message text a delegation or reply carries.
pub const MAX_MESSAGE_CHARS: usize = 32 * 1024;
/// Longest wait of one `wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Most events folded into a task; a task with more is folded from its first ones and says
/// so (`TaskNow::truncated`).
const MAX_FOLDED_EVENTS: usize = 10_000;
/// How much of an agent's own words a summary quotes.
const EXCERPT_CHARS: usize = 280;
/// How often a wait looks again when no news arrives (pushes taken by another node).
const WAIT_POLL: Duration = Duration::from_secs(1);
const PAGE: usize = 200;

/// What the caller asks to delegate.
pub struct DelegateRequest {
    pub agent_url: String,
    pub message: String,
    /// `JSONRPC` or `HTTP+JSON`; the card's first otherwise.
    pub binding: Option<String>,
    pub context_id: Option<String>,
}

/// A delegated task as the agent first answered it.
#[derive(Debug, Clone)]
pub struct Delegated {
    pub task_id: String,
    pub context_id: Option<String>,
    pub subscription_id: String,
    pub state: String,
    pub agent_url: String,
}

/// A task as the verified pushes tell it.
#[derive(Debug, Clone)]
pub struct TaskNow {
    pub task_id: String,
    pub subscription_id: String,
    /// `None` until the first push arrived.
    pub task: Option<Task>,
    /// Events folded, and the subscription sequence of the last one.
    pub events: usize,
    pub last_sequence: u64,
    pub truncated: bool,
}

impl TaskNow {
    pub fn state(&self) -> TaskState {
        self.task
            .as_ref()
            .map_or(TaskState::Unspecified, |t| t.status.state.clone())
    }

    /// Whether the task needs its delegator: finished, or asking for input.
    pub fn needs_attention(&self) -> bool {
        let state = self.state();
        state.is_terminal() || matches!(state, TaskState::InputRequired | TaskState::AuthRequired)
    }
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// Terminal, input-required or auth-required.
    Attention,
    Timeout,
}

fn invalid(field: &str, reason: impl Into<String>) -> DomainError {
    InvalidField::new(field, reason).into()
}

fn binding_of(text: Option<&str>) -> Result<Option<Binding>, DomainError> {
    match text {
        None => Ok(None),
        Some(text) => match text.to_ascii_uppercase().as_str() {
            "JSONRPC" => Ok(Some(Binding::JsonRpc)),
            "HTTP+JSON" | "REST" => Ok(Some(Binding::HttpJson)),
            other => Err(invalid(
                "binding",
                format!("must be JSONRPC or HTTP+JSON; got {other:?}"),
            )),
        },
    }
}

fn checked_message(text: &str) -> Result<(), DomainError> {
    if text.trim().is_empty() {
        return Err(invalid("message", "must not be empty"));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(invalid(
            "message",
            format!("is longer than {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(())
}

async fn agent_at(
    inbound: &Inbound,
    url: &str,
    binding: Option<Binding>,
) -> Result<Agent, DomainError> {
    inbound
        .policy
        .check_url(url)
        .await
        .map_err(|refusal| invalid("agent", format!("is refused: it {refusal}")))?;
    let (agent, _) = Agent::discover(inbound.client.clone(), url, Vec::new(), binding, None)
        .await
        .map_err(|reason| DomainError::Upstream(format!("the agent at {url}: {reason}")))?;
    Ok(agent)
}

/// Sends `request.message` to the agent with a new subscription of this hub as the task's
/// webhook; returns the task the agent created.
pub async fn delegate(
    inbound: &Inbound,
    request: DelegateRequest,
) -> Result<Delegated, DomainError> {
    checked_message(&request.message)?;
    if let Some(context_id) = &request.context_id {
        crate::a2a::params::check_id("contextId", context_id)?;
    }
    let agent = agent_at(
        inbound,
        &request.agent_url,
        binding_of(request.binding.as_deref())?,
    )
    .await?;
    let created = subscriptions::create(inbound, None, json!({})).await?;
    let subscription_id = created.subscription.id.clone();
    let target = PushTarget {
        id: Some(format!("a2a-push-hub-{subscription_id}")),
        url: created.subscription.url.clone(),
        token: created.push_notification_config["token"]
            .as_str()
            .map(str::to_string),
        authentication: None,
    };
    let message = agent.text_message(&request.message, None, request.context_id.as_deref());
    let task = match agent.send_message(&message, Some(&target)).await {
        Ok(task) => task,
        Err(error) => {
            let _ = inbound.store.delete_subscription(subscription_id).await;
            return Err(DomainError::Upstream(format!(
                "the agent at {} did not take the message: {error}",
                request.agent_url
            )));
        }
    };
    let task_id = task["id"].as_str().unwrap_or_default().to_string();
    let context_id = task["contextId"].as_str().map(str::to_string);
    let mut subscription = subscriptions::get(inbound, &subscription_id).await?;
    subscription.task_id = Some(task_id.clone());
    subscription.delegation = Some(Delegation {
        agent_url: request.agent_url.clone(),
        binding: agent.binding.as_str().to_string(),
        context_id: context_id.clone(),
    });
    inbound.store.put_subscription(subscription).await?;
    tracing::info!(task_id, subscription_id, agent = %request.agent_url, "task delegated");
    Ok(Delegated {
        state: task["status"]["state"]
            .as_str()
            .unwrap_or("TASK_STATE_SUBMITTED")
            .to_string(),
        task_id,
        context_id,
        subscription_id,
        agent_url: request.agent_url,
    })
}

/// Subscriptions read at a time while looking for the newest delegations.
const SCAN_PAGE: usize = 1000;

/// The subscriptions of the `limit` most recent delegations, newest first. Every subscription
/// is read (a gateway makes one per task), a page at a time, and only the newest `limit`
/// delegations are kept in memory meanwhile.
pub async fn newest(
    inbound: &Inbound,
    limit: usize,
) -> Result<Vec<SubscriptionRecord>, DomainError> {
    let mut newest: Vec<SubscriptionRecord> = Vec::new();
    let mut after = String::new();
    loop {
        let page = inbound
            .store
            .list_subscriptions(after.clone(), SCAN_PAGE)
            .await?;
        let full = page.len() == SCAN_PAGE;
        if let Some(last) = page.last() {
            after = last.id.clone();
        }
        newest.extend(
            page.into_iter()
                .filter(|s| s.delegation.is_some() && s.task_id.is_some()),
        );
        newest.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        newest.truncate(limit);
        if !full {
            return Ok(newest);
        }
    }
}

/// The subscription that receives `task_id`'s pushes: the delegation's, else any subscription
/// of that task.
pub async fn subscription_of(
    inbound: &Inbound,
    task_id: &str,
) -> Result<SubscriptionRecord, DomainError> {
    let mut found: Vec<SubscriptionRecord> = inbound
        .store
        .subscriptions_of_task(task_id.to_string())
        .await?
        .into_iter()
        .filter(|s| s.gateway.is_none())
        .collect();
    found.sort_by_key(|s| s.delegation.is_none());
    found.into_iter().next().ok_or_else(|| {
        DomainError::NotFound(format!(
            "no task {task_id:?} is delegated through this hub (use delegate_task first, or a subscription for the task)"
        ))
    })
}

/// The accepted events of an inbound subscription after `after`, in order, at most `limit`;
/// a subscription that does not exist is an error that says so.
pub async fn subscription_events(
    inbound: &Inbound,
    subscription_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<InboundEventRecord>, DomainError> {
    subscriptions::get(inbound, subscription_id).await?;
    events(inbound, subscription_id, after, limit).await
}

/// Every accepted event of the subscription after `after`, in order, at most `limit`.
async fn events(
    inbound: &Inbound,
    subscription_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<InboundEventRecord>, DomainError> {
    Ok(inbound
        .store
        .inbound_events(subscription_id.to_string(), after, limit)
        .await?)
}

fn parsed(record: &InboundEventRecord) -> Option<StreamResponse> {
    let value: Value = serde_json::from_str(record.event.get()).ok()?;
    crate::a2a::event::parse_event(&value, "")
        .ok()
        .map(|p| p.event)
}

/// The task folded from its subscription's accepted events.
pub async fn task_now(inbound: &Inbound, task_id: &str) -> Result<TaskNow, DomainError> {
    let subscription = subscription_of(inbound, task_id).await?;
    let mut now = TaskNow {
        task_id: task_id.to_string(),
        subscription_id: subscription.id,
        task: None,
        events: 0,
        last_sequence: 0,
        truncated: false,
    };
    fold_newer(inbound, &mut now).await?;
    Ok(now)
}

/// Folds into `now` the events its subscription accepted after `now.last_sequence`.
async fn fold_newer(inbound: &Inbound, now: &mut TaskNow) -> Result<(), DomainError> {
    loop {
        let page = events(inbound, &now.subscription_id, now.last_sequence, PAGE).await?;
        let done = page.len() < PAGE;
        for record in &page {
            now.last_sequence = record.sequence;
            if record.task_id != now.task_id {
                continue;
            }
            if now.events >= MAX_FOLDED_EVENTS {
                now.truncated = true;
                return Ok(());
            }
            if let Some(event) = parsed(record) {
                now.task = Some(crate::a2a::fold::apply(
                    now.task.take(),
                    &now.task_id,
                    &event,
                ));
                now.events += 1;
            }
        }
        if done {
            return Ok(());
        }
    }
}

/// Waits until the task needs attention or `timeout` passes. `on_event` hears each event of
/// the task after subscription sequence `after` — by default, those that arrive meanwhile.
pub async fn wait(
    inbound: &Inbound,
    task_id: &str,
    after: Option<u64>,
    timeout: Duration,
    mut on_event: impl FnMut(&InboundEventRecord),
) -> Result<(TaskNow, WaitEnd), DomainError> {
    let timeout = timeout.min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + timeout;
    let subscription = subscription_of(inbound, task_id).await?;
    // Watch before reading, so that an event accepted in between is not missed.
    let mut news = inbound.watch(&subscription.id).await;
    let mut now = task_now(inbound, task_id).await?;
    let mut heard = after.unwrap_or(now.last_sequence);
    loop {
        loop {
            let page = events(inbound, &subscription.id, heard, PAGE).await?;
            for record in &page {
                heard = record.sequence;
                if record.task_id == task_id {
                    on_event(record);
                }
            }
            if page.len() < PAGE {
                break;
            }
        }
        if heard > now.last_sequence {
            fold_newer(inbound, &mut now).await?;
        }
        if now.needs_attention() {
            return Ok((now, WaitEnd::Attention));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok((now, WaitEnd::Timeout)),
            _ = news.changed() => {}
            _ = tokio::time::sleep(WAIT_POLL) => {}
        }
    }
}

async fn delegated_agent(
    inbound: &Inbound,
    task_id: &str,
) -> Result<(Agent, Delegation), DomainError> {
    let subscription = subscription_of(inbound, task_id).await?;
    let delegation = subscription.delegation.ok_or_else(|| {
        DomainError::Conflict(format!(
            "task {task_id:?} was not delegated by this hub, so it does not know the agent to send to"
        ))
    })?;
    let agent = agent_at(
        inbound,
        &delegation.agent_url,
        binding_of(Some(&delegation.binding))?,
    )
    .await?;
    Ok((agent, delegation))
}

/// Sends `text` to the agent as the next message of the task (an answer to
/// `input-required`); returns the task's state as the agent answered.
pub async fn reply(inbound: &Inbound, task_id: &str, text: &str) -> Result<String, DomainError> {
    checked_message(text)?;
    let now = task_now(inbound, task_id).await?;
    if now.state().is_terminal() {
        return Err(DomainError::Conflict(format!(
            "task {task_id:?} is {}: it takes no more messages",
            short_state(&now.state())
        )));
    }
    let (agent, delegation) = delegated_agent(inbound, task_id).await?;
    let context_id = now
        .task
        .as_ref()
        .map(|t| t.context_id.clone())
        .filter(|c| !c.is_empty())
        .or(delegation.context_id.clone());
    let message = agent.text_message(text, Some(task_id), context_id.as_deref());
    let answered = agent.send_message(&message, None).await;
    state_answered(answered, &delegation, "take the reply")
}

/// The task state an agent's answer reports, or what it refused.
fn state_answered(
    answered: Result<Value, crate::agent_client::CallError>,
    delegation: &Delegation,
    what: &str,
) -> Result<String, DomainError> {
    let task = answered.map_err(|error| {
        DomainError::Upstream(format!(
            "the agent at {} did not {what}: {error}",
            delegation.agent_url
        ))
    })?;
    Ok(task["status"]["state"]
        .as_str()
        .unwrap_or("TASK_STATE_UNSPECIFIED")
        .to_string())
}

/// Asks the agent to cancel the task; returns its state as the agent answered.
pub async fn cancel(inbound: &Inbound, task_id: &str) -> Result<String, DomainError> {
    let (agent, delegation) = delegated_agent(inbound, task_id).await?;
    let answered = agent.cancel_task(task_id).await;
    state_answered(answered, &delegation, "cancel the task")
}

/// `completed`, `input-required`, …
pub fn short_state(state: &TaskState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
        .trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn text_of(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|part| serde_json::to_value(part).ok())
        .filter_map(|part| part["text"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `EXCERPT_CHARS` of an agent's words, fenced so that a model reads them as quoted
/// data, never as instructions to it.
pub fn excerpt(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut cut: String = text.chars().take(EXCERPT_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    Some(format!(
        "«agent text, untrusted: {}»",
        cut.replace('»', "'")
    ))
}

/// One line about a task that carries no more of the agent's words than a bounded excerpt
/// of its status message: its state, and its artifacts by name and size.
pub fn summary(now: &TaskNow) -> String {
    let Some(task) = &now.task else {
        return format!("task {}: no push received yet", now.task_id);
    };
    let mut line = format!("task {}: {}", task.id, short_state(&task.status.state));
    if let Some(artifacts) = task.artifacts.as_ref().filter(|a| !a.is_empty()) {
        let listed: Vec<String> = artifacts
            .iter()
            .take(10)
            .map(|a| {
                let name = a.name.clone().unwrap_or_else(|| a.artifact_id.clone());
                let size: usize = text_of(&a.parts).len();
                format!(
                    "{} ({} parts, {size} chars of text)",
                    excerpt_name(&name),
                    a.parts.len()
                )
            })
            .collect();
        line.push_str(&format!("; artifacts: {}", listed.join(", ")));
        if artifacts.len() > 10 {
            line.push_str(&format!(" and {} more", artifacts.len() - 10));
        }
    }
    if let Some(message) = &task.status.message {
        if let Some(quote) = excerpt(&text_of(&message.parts)) {
            line.push_str(&format!("; status message: {quote}"));
        }
    }
    line
}

/// An artifact's name as a summary shows it: short, on one line.
fn excerpt_name(name: &str) -> String {
    let one_line: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(64)
        .collect();
    format!("{one_line:?}")
}

/// The task state an accepted event reports (`working`, `completed`, …), if it reports one.
pub fn event_state(record: &InboundEventRecord) -> Option<String> {
    match parsed(record)? {
        StreamResponse::StatusUpdate(update) => Some(short_state(&update.status.state)),
        StreamResponse::Task(task) => Some(short_state(&task.status.state)),
        _ => None,
    }
}

/// One line about one accepted event: its kind and state, no agent text but an excerpt.
pub fn event_summary(record: &InboundEventRecord) -> String {
    let what = match parsed(record) {
        Some(StreamResponse::StatusUpdate(update)) => {
            let mut line = format!("status → {}", short_state(&update.status.state));
            if let Some(quote) = update
                .status
                .message
                .as_ref()
                .and_then(|m| excerpt(&text_of(&m.parts)))
            {
                line.push_str(&format!(" {quote}"));
            }
            line
        }
        Some(StreamResponse::ArtifactUpdate(update)) => format!(
            "artifact {} ({} parts)",
            excerpt_name(
                update
                    .artifact
                    .name
                    .as_deref()
                    .unwrap_or(&update.artifact.artifact_id)
            ),
            update.artifact.parts.len()
        ),
        Some(StreamResponse::Task(task)) => {
            format!("task snapshot, {}", short_state(&task.status.state))
        }
        Some(StreamResponse::Message(_)) => "message".to_string(),
        None => "event".to_string(),
    };
    format!("#{} {}: {what}", record.sequence, record.task_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract_tests::subscription;

    #[tokio::test]
    async fn the_newest_delegations_are_found_among_pages_of_other_subscriptions() {
        let inbound = super::super::tests::inbound(1.0, 1);
        // Two and a half pages of subscriptions; every tenth a delegation, made at its number.
        for n in 0..SCAN_PAGE * 5 / 2 {
            let mut record = subscription(&format!("sub-{n:05}"));
            record.task_id = Some(format!("task-{n}"));
            record.created_at_ms = n as u64;
            if n % 10 == 0 {
                record.delegation = Some(Delegation {
                    agent_url: "http://agent.example/".into(),
                    binding: "JSONRPC".into(),
                    context_id: None,
                });
            }
            inbound.store.put_subscription(record).await.unwrap();
        }
        let found: Vec<String> = newest(&inbound, 3)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(found, ["sub-02490", "sub-02480", "sub-02470"]);
    }
}
