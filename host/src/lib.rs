//! Pods: runs LLM pods wired into flows. Providers are sandboxed WebAssembly plugins.
//!
//! Data flows one way: [`api`] → [`execution`] → ([`workspace_config`], [`context`], [`plugins`]
//! via [`egress`], [`cost`], [`vault`]) → ([`store`], [`queue`], [`events`]). [`config`] opens them
//! all from flags and environment.

pub mod api;
pub mod auth;
pub mod aws;
pub mod config;
pub mod conformance;
pub mod context;
pub mod cost;
pub mod domain;
pub mod egress;
pub mod events;
pub mod execution;
pub mod ledger;
pub mod plugins;
pub mod pod_store;
pub mod queue;
pub mod scaffold;
pub mod server;
pub mod sse;
pub mod store;
pub mod vault;
pub mod worker;
pub mod workspace_config;
