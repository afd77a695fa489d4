//! Provider plugins: the sandboxed runtime, the WIT bindings per API version, manifest checks and
//! the built-in plugins compiled into the binary.

pub mod limits;
mod manifest;
mod registry;
mod runtime;
pub mod types;
mod v0_1_0;
pub mod watch;

pub use limits::PluginLimits;
pub use manifest::{API_VERSION, validate as validate_manifest};
pub use registry::{
    LoadError, LoadLimits, Missing, PluginEvent, PluginInfo, Registry, Source, Swapped, Vetting,
};
pub use runtime::{
    Instance, Limits, Plugin, PluginError, Policy, Runtime, RuntimeConfig, SUPPORTED_APIS, Stats,
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
