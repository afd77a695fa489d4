//! Provider plugins: the sandboxed runtime, the bindings layer (one module per WIT version, and
//! the only code that knows one), manifest checks, the registry, and the built-in plugins
//! compiled into the binary.

mod bindings;
pub mod limits;
mod manifest;
mod registry;
mod runtime;
mod share;
pub mod types;
pub mod watch;

pub use bindings::{SUPPORTED, supported as supported_apis};
pub use limits::{PluginLimits, Policy};
pub use manifest::validate as validate_manifest;
pub use registry::{
    LoadError, LoadLimits, Missing, PluginEvent, PluginInfo, Registry, Source, Swapped, Vetting,
};
pub use runtime::{
    Instance, Limits, Plugin, PluginError, Runtime, RuntimeConfig, Stats, default_workspace_calls,
};

/// The built-in plugins as (id, WebAssembly component) pairs, built by `host/build.rs`: three
/// providers and the `json-field` output extractor.
pub static BUILTIN: [(&str, &[u8]); 4] = [
    ("openai", include_bytes!(env!("PODS_BUILTIN_OPENAI"))),
    ("anthropic", include_bytes!(env!("PODS_BUILTIN_ANTHROPIC"))),
    ("gemini", include_bytes!(env!("PODS_BUILTIN_GEMINI"))),
    (
        "json-field",
        include_bytes!(env!("PODS_BUILTIN_JSON_FIELD")),
    ),
];
