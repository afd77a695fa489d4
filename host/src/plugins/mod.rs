//! Provider plugins: the sandboxed runtime, the WIT bindings per API version, manifest checks and
//! the built-in plugins compiled into the binary.

mod manifest;
mod registry;
mod runtime;
pub mod types;
mod v0_1_0;
pub mod watch;

pub use manifest::{API_VERSION, validate as validate_manifest};
pub use registry::{LoadError, LoadLimits, PluginInfo, Registry, Swapped};
pub use runtime::{Instance, Limits, Plugin, PluginError, Runtime, RuntimeConfig};

/// The built-in provider plugins as (id, WebAssembly component) pairs, built by `host/build.rs`.
pub static BUILTIN: [(&str, &[u8]); 3] = [
    ("openai", include_bytes!(env!("PODS_BUILTIN_OPENAI"))),
    ("anthropic", include_bytes!(env!("PODS_BUILTIN_ANTHROPIC"))),
    ("gemini", include_bytes!(env!("PODS_BUILTIN_GEMINI"))),
];
