//! The plugins this process serves, by provider id.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::runtime::{Plugin, PluginError, Runtime};
use super::types::Manifest;

/// Loaded plugins by id. Lookups hand out a clone of the `Plugin`, so a caller keeps the version
/// it started with even if the entry is replaced meanwhile.
#[derive(Default, Clone)]
pub struct Registry {
    plugins: Arc<RwLock<BTreeMap<String, Plugin>>>,
}

impl Registry {
    /// A registry holding the built-in plugins.
    pub fn with_builtins(runtime: &Runtime) -> Result<Self, PluginError> {
        let registry = Registry::default();
        for (_, wasm) in super::BUILTIN {
            registry.insert(runtime.load(wasm)?);
        }
        Ok(registry)
    }

    /// Adds or replaces the plugin with the same id.
    pub fn insert(&self, plugin: Plugin) {
        let id = plugin.manifest().id.clone();
        self.write().insert(id, plugin);
    }

    pub fn get(&self, id: &str) -> Option<Plugin> {
        self.read().get(id).cloned()
    }

    pub fn manifests(&self) -> Vec<Manifest> {
        self.read().values().map(|p| p.manifest().clone()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Plugin>> {
        // A panic while holding the lock cannot leave the map half-written: recover the guard.
        self.plugins.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Plugin>> {
        self.plugins.write().unwrap_or_else(|e| e.into_inner())
    }
}
