//! Errors of domain operations; each binding maps them to its own error model in one place
//! (`crate::api::errors`).

use crate::a2a::params::InvalidField;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A field of the request is missing, of the wrong type, or refused.
    #[error(transparent)]
    InvalidArgument(#[from] InvalidField),
    /// The task, or the config asked for, does not exist (A2A `TaskNotFoundError`).
    #[error("{0}")]
    TaskNotFound(String),
    /// An admin resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A remote agent refused or failed what the hub asked of it.
    #[error("{0}")]
    Upstream(String),
    /// The request contradicts the resource's state (e.g. replaying a pending delivery).
    #[error("{0}")]
    Conflict(String),
    /// A field of the request contradicts what is stored (an idempotency key used for another
    /// event).
    #[error(transparent)]
    ConflictingField(InvalidField),
    #[error(transparent)]
    Store(#[from] StoreError),
}
