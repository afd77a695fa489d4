//! Pods: runs LLM pods wired into flows. Providers are sandboxed WebAssembly plugins.
//!
//! Data flows one way: `api → execution → (context, plugins, cost, vault) → (store, queue, events)`.
//! This crate so far holds the plugin foundation: the sandbox ([`plugins`]), the provider call
//! through it ([`egress`], with [`sse`] framing), the conformance vectors ([`conformance`]) and a
//! minimal HTTP server ([`server`]).

pub mod conformance;
pub mod egress;
pub mod plugins;
pub mod server;
pub mod sse;
