//! The plugins this process serves, by provider id, and loading new ones while it runs.
//!
//! Lifecycle of an upload: size check → compile off the async threads, under a time cap →
//! the runtime's checks (component, world, API version, manifest) → swapped in under the id its
//! manifest names. Lookups hand out a clone of the `Plugin`, so an execution keeps the version it
//! started with while later ones get the new one; a refused upload leaves the old version serving.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::runtime::{Plugin, PluginError, Runtime};
use super::types::Manifest;

#[derive(Clone)]
struct Loaded {
    plugin: Plugin,
    loaded_at: i64,
    source: &'static str,
}

/// Loaded plugins by id.
#[derive(Default, Clone)]
pub struct Registry {
    plugins: Arc<RwLock<BTreeMap<String, Loaded>>>,
    runtime: Option<Arc<Runtime>>,
    limits: LoadLimits,
}

/// One loaded plugin, as operators see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub manifest: Manifest,
    /// `builtin`, `upload` or `dir` (the plugin folder).
    pub source: &'static str,
    /// RFC 3339.
    pub loaded_at: String,
}

/// Caps on one upload.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    pub max_bytes: usize,
    pub compile_timeout: Duration,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_bytes: 32 << 20,
            compile_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the plugin is {size} bytes; the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("compiling the plugin took longer than {0:?}")]
    Timeout(Duration),
    #[error("this registry has no runtime to compile plugins with")]
    NoRuntime,
    #[error(transparent)]
    Refused(#[from] PluginError),
}

/// What an upload replaced.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub manifest: Manifest,
    /// The version it replaced, if the id was loaded.
    pub replaced: Option<String>,
}

impl Registry {
    /// A registry holding the built-in plugins, compiling uploads with `runtime` within `limits`.
    pub fn with_builtins(runtime: Arc<Runtime>, limits: LoadLimits) -> Result<Self, PluginError> {
        let registry = Registry {
            runtime: Some(runtime.clone()),
            limits,
            ..Registry::default()
        };
        for (_, wasm) in super::BUILTIN {
            registry.put(runtime.load(wasm)?, "builtin");
        }
        Ok(registry)
    }

    /// Adds or replaces the plugin with the same id.
    pub fn insert(&self, plugin: Plugin) {
        self.put(plugin, "builtin");
    }

    fn put(&self, plugin: Plugin, source: &'static str) -> Option<Loaded> {
        let id = plugin.manifest().id.clone();
        let loaded = Loaded {
            plugin,
            loaded_at: crate::store::now_ms(),
            source,
        };
        self.write().insert(id, loaded)
    }

    /// Compiles, checks and swaps in an uploaded plugin. Refused: nothing changes.
    pub async fn load(&self, wasm: Vec<u8>) -> Result<Swapped, LoadError> {
        self.load_from(wasm, "upload").await
    }

    /// As [`Registry::load`], recording where the plugin came from (`upload`, `dir`).
    pub async fn load_from(
        &self,
        wasm: Vec<u8>,
        source: &'static str,
    ) -> Result<Swapped, LoadError> {
        let limits = self.limits;
        if wasm.len() > limits.max_bytes {
            return Err(LoadError::TooLarge {
                size: wasm.len(),
                max: limits.max_bytes,
            });
        }
        let runtime = self.runtime.clone().ok_or(LoadError::NoRuntime)?;
        // Compiling takes tens of milliseconds of CPU: not on the threads that serve requests.
        let compiled = tokio::task::spawn_blocking(move || runtime.load(&wasm));
        let plugin = match tokio::time::timeout(limits.compile_timeout, compiled).await {
            Err(_) => return Err(LoadError::Timeout(limits.compile_timeout)),
            Ok(Err(e)) => {
                return Err(LoadError::Refused(PluginError::Invalid(format!(
                    "compiling the plugin failed: {e}"
                ))));
            }
            Ok(Ok(result)) => result?,
        };
        let manifest = plugin.manifest().clone();
        let replaced = self
            .put(plugin, source)
            .map(|old| old.plugin.manifest().version.clone());
        tracing::info!(plugin = %manifest.id, version = %manifest.version, ?replaced, "plugin loaded");
        Ok(Swapped { manifest, replaced })
    }

    /// Unloads a plugin; executions already running on it finish. `false` if none had the id.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self.write().remove(id).is_some();
        if removed {
            tracing::info!(plugin = %id, "plugin unloaded");
        }
        removed
    }

    pub fn limits(&self) -> LoadLimits {
        self.limits
    }

    pub fn get(&self, id: &str) -> Option<Plugin> {
        self.read().get(id).map(|l| l.plugin.clone())
    }

    pub fn manifests(&self) -> Vec<Manifest> {
        self.read()
            .values()
            .map(|l| l.plugin.manifest().clone())
            .collect()
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        self.read()
            .values()
            .map(|l| PluginInfo {
                manifest: l.plugin.manifest().clone(),
                source: l.source,
                loaded_at: crate::store::iso_time::format(l.loaded_at),
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Loaded>> {
        // A panic while holding the lock cannot leave the map half-written: recover the guard.
        self.plugins.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Loaded>> {
        self.plugins.write().unwrap_or_else(|e| e.into_inner())
    }
}
