//! Folding events into a task's current state, the way the A2A SDKs' task managers do:
//! a `task` event replaces the snapshot; a status update moves the previous status message
//! into history and sets the new status; an artifact update adds, replaces, or (with
//! `append`) extends an artifact; a message is appended to history.

use a2a::{Artifact, StreamResponse, Task, TaskState, TaskStatus};

/// Applies `event` to `task` (or to an empty task named `task_id` when none exists yet).
pub fn apply(task: Option<Task>, task_id: &str, event: &StreamResponse) -> Task {
    let mut task = task.unwrap_or_else(|| Task {
        id: task_id.to_string(),
        context_id: String::new(),
        status: TaskStatus {
            state: TaskState::Unspecified,
            message: None,
            timestamp: None,
        },
        artifacts: None,
        history: None,
        metadata: None,
    });
    match event {
        StreamResponse::Task(snapshot) => task = snapshot.clone(),
        StreamResponse::StatusUpdate(update) => {
            if task.context_id.is_empty() {
                task.context_id = update.context_id.clone();
            }
            if let Some(previous) = task.status.message.take() {
                task.history.get_or_insert_with(Vec::new).push(previous);
            }
            task.status = update.status.clone();
            merge_metadata(&mut task, update.metadata.as_ref());
        }
        StreamResponse::ArtifactUpdate(update) => {
            if task.context_id.is_empty() {
                task.context_id = update.context_id.clone();
            }
            apply_artifact(&mut task, &update.artifact, update.append.unwrap_or(false));
        }
        StreamResponse::Message(message) => {
            if task.context_id.is_empty() {
                task.context_id = message.context_id.clone().unwrap_or_default();
            }
            task.history
                .get_or_insert_with(Vec::new)
                .push(message.clone());
        }
    }
    task
}

fn apply_artifact(task: &mut Task, artifact: &Artifact, append: bool) {
    let artifacts = task.artifacts.get_or_insert_with(Vec::new);
    match artifacts
        .iter_mut()
        .find(|a| a.artifact_id == artifact.artifact_id)
    {
        Some(existing) if append => {
            existing.parts.extend(artifact.parts.iter().cloned());
            if artifact.name.is_some() {
                existing.name = artifact.name.clone();
            }
            if artifact.description.is_some() {
                existing.description = artifact.description.clone();
            }
            if let Some(extra) = &artifact.metadata {
                existing
                    .metadata
                    .get_or_insert_with(Default::default)
                    .extend(extra.clone());
            }
        }
        Some(existing) => *existing = artifact.clone(),
        None => artifacts.push(artifact.clone()),
    }
}

fn merge_metadata(
    task: &mut Task,
    extra: Option<&std::collections::HashMap<String, serde_json::Value>>,
) {
    if let Some(extra) = extra {
        task.metadata
            .get_or_insert_with(Default::default)
            .extend(extra.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> StreamResponse {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn status_updates_move_the_previous_message_into_history() {
        let task = apply(
            None,
            "t1",
            &event(json!({"statusUpdate": {"taskId": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_WORKING", "message": {"messageId": "m1", "role": "ROLE_AGENT", "parts": [{"text": "working"}]}}}})),
        );
        assert_eq!(task.context_id, "c1");
        assert_eq!(task.status.state, TaskState::Working);
        assert!(task.history.is_none());
        let task = apply(
            Some(task),
            "t1",
            &event(json!({"statusUpdate": {"taskId": "t1", "contextId": "c1",
            "status": {"state": "TASK_STATE_COMPLETED"}}})),
        );
        assert_eq!(task.status.state, TaskState::Completed);
        assert_eq!(task.history.unwrap()[0].message_id, "m1");
    }

    #[test]
    fn artifact_chunks_append_and_replace() {
        let chunk = |text: &str, append: bool| {
            event(json!({"artifactUpdate": {"taskId": "t1", "contextId": "c1",
            "append": append, "artifact": {"artifactId": "a1", "parts": [{"text": text}]}}}))
        };
        let task = apply(None, "t1", &chunk("one", false));
        let task = apply(Some(task), "t1", &chunk("two", true));
        let artifacts = task.artifacts.clone().unwrap();
        assert_eq!(artifacts.len(), 1);
        assert_eq!(artifacts[0].parts.len(), 2);
        let task = apply(Some(task), "t1", &chunk("three", false));
        assert_eq!(task.artifacts.unwrap()[0].parts.len(), 1);
    }

    #[test]
    fn a_task_event_replaces_the_snapshot_and_messages_join_history() {
        let task = apply(
            None,
            "t1",
            &event(
                json!({"message": {"messageId": "m0", "taskId": "t1", "contextId": "c1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}),
            ),
        );
        assert_eq!(task.history.as_ref().unwrap().len(), 1);
        let task = apply(
            Some(task),
            "t1",
            &event(
                json!({"task": {"id": "t1", "contextId": "c9", "status": {"state": "TASK_STATE_SUBMITTED"}}}),
            ),
        );
        assert_eq!(task.context_id, "c9");
        assert!(task.history.is_none());
    }
}

/// What the hub remembers of a task's inbound pushes, to judge the order of the next one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub events: u64,
    pub terminal: bool,
    pub last_push_sequence: Option<u64>,
}

/// Conformance notes on `event` arriving after `progress`, and the progress after it.
pub fn progress_notes(
    progress: &Progress,
    event: &StreamResponse,
    push_sequence: Option<u64>,
) -> (Vec<String>, Progress) {
    let mut notes = Vec::new();
    let state = match event {
        StreamResponse::Task(task) => Some(&task.status.state),
        StreamResponse::StatusUpdate(update) => Some(&update.status.state),
        _ => None,
    };
    if progress.terminal {
        notes.push("order: event after the task had reached a terminal state".to_string());
    }
    if let (Some(previous), Some(current)) = (progress.last_push_sequence, push_sequence) {
        if current != previous + 1 {
            notes.push(format!(
                "order: push sequence {current} follows {previous} (a gap or a reordering)"
            ));
        }
    }
    if progress.events == 0 {
        notes.push("order: first event of the task".to_string());
    }
    let next = Progress {
        events: progress.events + 1,
        terminal: progress.terminal || state.is_some_and(|s| s.is_terminal()),
        last_push_sequence: push_sequence.or(progress.last_push_sequence),
    };
    (notes, next)
}
