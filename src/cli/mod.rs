//! The command line's parts besides `serve` (which is `main.rs`): its arguments, and the
//! subcommands that talk to a running hub, verify a captured delivery, probe an agent or migrate a database.

pub mod admin;
pub mod admin_client;
pub mod args;
pub mod migrate;
pub mod probe;
pub mod verify;
