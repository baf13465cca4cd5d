//! What the hub does, independent of how it is asked: push-config management, publishing
//! events, reading a task's state and its deliveries, replay. Each capability is a small
//! service (`PushConfigs`, `Events`, `Deliveries`) holding only the handles it needs; the HTTP
//! layer, the inbound role and the gateway call them, and they call the store. Nothing here
//! knows HTTP or JSON-RPC.

pub mod deliveries;
pub mod error;
pub mod events;
pub mod filters;
pub mod health;
pub mod origins;
pub mod push_configs;
pub mod tasks;

pub use deliveries::Deliveries;
pub use error::DomainError;
pub use events::Events;
pub use push_configs::PushConfigs;
