//! The black-box tests, one module per concern, all in one test binary: the shared harness
//! (`common/`) is then compiled and linked once instead of once per file, which was a third of
//! the test build. Run one concern with `cargo test --test integration delivery::`.

mod common;

mod backup;
mod cli;
mod cluster;
mod conformance;
mod console;
mod delivery;
mod durability;
mod event_api;
mod filters;
mod gateway;
mod inbound;
mod interop_js;
mod interop_python;
mod interop_python03;
mod mcp;
mod operator;
mod probe;
mod push_configs;
mod restart;
mod retention;
mod security;
mod signing;
mod store;
mod torture;
mod trace_context;
mod v03;
