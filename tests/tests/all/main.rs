//! Every integration and end-to-end test but the chaos suite, in one binary (linked once, as
//! wasmtime's `tests/all`): a module per topic. Run one topic with
//! `cargo test -p pods-e2e --test all -- MODULE::`. The chaos suite (`--test chaos`) is a binary
//! of its own: it restarts the machine's Redis and PostgreSQL, which no other test may see.

mod builtin_plugins;
mod cli;
mod config_cache;
mod console;
mod fuzz;
mod isolation;
mod js_plugin;
mod logs;
mod metrics;
mod nodes;
mod openai_door;
mod pipeline;
mod plugin_author;
mod plugin_uploads;
mod pod_store;
mod queue;
mod queue_conformance;
mod rate_limits;
mod readiness;
mod runs;
mod sandbox;
mod schema;
mod security;
mod sign_in;
mod sweeper;
mod traces;
mod usage;
mod vault;
mod websocket;
