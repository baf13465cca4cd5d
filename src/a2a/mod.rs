//! The A2A protocol surface: version negotiation, lenient reading of request params, the
//! wire shapes of push configs and events, the error model of each binding, and folding
//! events into a task snapshot.
//!
//! Everything here is pure: no storage, no network. The rest of the hub works on the
//! internal model of `crate::store` and converts at this edge.

pub mod errors;
pub mod event;
pub mod filter;
pub mod fold;
pub mod params;
pub mod push_config;
pub mod v03;
pub mod version;
