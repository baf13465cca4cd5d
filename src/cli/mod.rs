//! The command line's parts besides `serve` (which is `main.rs`): its arguments, and the
//! subcommands that talk to a running hub, verify a captured delivery, probe an agent, back up
//! and restore the embedded store or migrate a database.

pub mod admin;
pub mod admin_client;
pub mod args;
pub mod backup;
pub mod migrate;
pub mod probe;
pub mod table;
pub mod verify;
