//! The plugins this process serves, by provider id and version, and loading new ones while it
//! runs.
//!
//! Lifecycle of a load (upload, plugin folder, reload): size check → compile off the async
//! threads, under a time cap → the runtime's checks (component, world, API version, manifest) →
//! the provider's conformance vectors when the id names a provider with built-in vectors → put in
//! beside the versions already loaded. The newest version serves pods that do not pin one; older
//! ones stay loaded for pods that do, until unloaded. Lookups hand out a clone of the `Plugin`, so
//! an execution keeps the version it started with. A refused load changes nothing. Every load,
//! swap, refusal, unload and limits change is logged and sent to [`Registry::subscribe`]rs.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

use super::limits::PluginLimits;
use super::limits::Policy;
use super::runtime::{Limits, Plugin, PluginError, Runtime};
use super::types::{Manifest, PluginKind};

/// Where a loaded plugin came from, and so where a reload reads it again.
#[derive(Debug, Clone)]
pub enum Source {
    /// Compiled into the binary.
    Builtin(&'static [u8]),
    /// Uploaded through the API; the registry keeps a copy at this path so it survives restarts.
    Upload(Option<PathBuf>),
    /// A file in the plugin folder.
    Dir(PathBuf),
}

impl Source {
    fn kind(&self) -> &'static str {
        match self {
            Source::Builtin(_) => "builtin",
            Source::Upload(_) => "upload",
            Source::Dir(_) => "dir",
        }
    }

    fn path(&self) -> Option<&PathBuf> {
        match self {
            Source::Upload(path) => path.as_ref(),
            Source::Dir(path) => Some(path),
            Source::Builtin(_) => None,
        }
    }
}

#[derive(Clone)]
struct Loaded {
    plugin: Plugin,
    loaded_at: i64,
    source: Source,
    /// The built-in this version shadows (same id and version): back when this one goes.
    shadows: Option<Box<Loaded>>,
}

/// Versions of one plugin id, oldest first.
type Versions = BTreeMap<VersionKey, Loaded>;

/// Orders versions as semver does for x.y.z (a pre-release before its release).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct VersionKey((u64, u64, u64), bool, String);

impl VersionKey {
    fn of(version: &str) -> Self {
        let (core, pre) = version.split_once('-').unwrap_or((version, ""));
        let core = core.split('+').next().unwrap_or_default();
        let mut n = core.split('.').map(|p| p.parse().unwrap_or(0));
        let triple = (
            n.next().unwrap_or(0),
            n.next().unwrap_or(0),
            n.next().unwrap_or(0),
        );
        VersionKey(triple, pre.is_empty(), version.to_string())
    }
}

/// Loaded plugins, the operator's limits, and the stream of operator events.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
    runtime: Option<Arc<Runtime>>,
    limits: LoadLimits,
    /// Where uploads are kept so they load again after a restart; `None`: not kept.
    keep_dir: Option<PathBuf>,
    /// What every load must pass after the runtime's own checks.
    vet: Option<Vetting>,
}

/// A check every load must pass after the runtime's own, such as a provider's conformance
/// vectors ([`crate::conformance::vetting`]); `Err` refuses the load, saying why.
pub type Vetting = Arc<
    dyn Fn(Plugin) -> std::pin::Pin<Box<dyn Future<Output = Result<(), LoadError>> + Send>>
        + Send
        + Sync,
>;

struct Shared {
    plugins: RwLock<BTreeMap<String, Versions>>,
    /// Operator limits by plugin id (they may name a plugin not loaded yet) in force.
    policies: RwLock<BTreeMap<String, Arc<Policy>>>,
    /// The limits file's, which limits set through the API replace (per plugin).
    file_limits: RwLock<BTreeMap<String, PluginLimits>>,
    events: broadcast::Sender<PluginEvent>,
    recent: Mutex<VecDeque<PluginEvent>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shared: Arc::new(Shared {
                plugins: RwLock::default(),
                policies: RwLock::default(),
                file_limits: RwLock::default(),
                events: broadcast::channel(256).0,
                recent: Mutex::default(),
            }),
            runtime: None,
            limits: LoadLimits::default(),
            keep_dir: None,
            vet: None,
        }
    }
}

/// How many past events a new subscriber is sent first.
const RECENT_EVENTS: usize = 100;

/// One loaded plugin version, as operators see it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub manifest: Manifest,
    /// `active`: the version pods get unless they pin one; `loaded`: an older version kept for
    /// pods that pin it.
    pub state: &'static str,
    /// `builtin`, `upload` or `dir` (the plugin folder).
    pub source: &'static str,
    /// RFC 3339.
    pub loaded_at: String,
    /// Instances started (one per provider call or extraction).
    pub calls: u64,
    /// Calls that failed in the sandbox: trap, deadline, memory, or `maxConcurrent` reached.
    pub errors: u64,
    /// The operator's limits for this plugin id, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<PluginLimits>,
}

/// Something operators watch: `plugin:loaded`, `plugin:replaced`, `plugin:refused`,
/// `plugin:unloaded`, `plugin:limits`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The plugin id (unknown for a file that is not a plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `builtin`, `upload`, `dir` or `api`.
    pub source: &'static str,
    /// Why it was refused, what it replaced, or which file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// RFC 3339.
    pub timestamp: String,
}

/// Caps on one load.
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
    #[error("it fails the {provider} conformance vectors: {failures}")]
    Conformance { provider: String, failures: String },
    #[error("could not read the plugin: {0}")]
    Io(String),
    #[error("no plugin {0:?} is loaded")]
    NotLoaded(String),
    #[error(
        "{0:?} is built in: it cannot be unloaded, only shadowed by a newer version of the same kind"
    )]
    Builtin(String),
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub manifest: Manifest,
    /// The version that was active before, if the id was loaded.
    pub replaced: Option<String>,
    /// Whether the loaded version is now the one pods get by default (false for an older one).
    pub active: bool,
}

/// Why no plugin could be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("no provider plugin {0:?} is loaded")]
    Plugin(String),
    #[error("version {version} of plugin {id:?} is not loaded (loaded: {loaded})")]
    Version {
        id: String,
        version: String,
        loaded: String,
    },
}

impl Registry {
    /// A registry holding the built-in plugins, compiling new ones with `runtime` within `limits`.
    /// Every later load must also pass `vet`.
    pub fn vetted_by(mut self, vet: Vetting) -> Self {
        self.vet = Some(vet);
        self
    }

    pub async fn with_builtins(
        runtime: Arc<Runtime>,
        limits: LoadLimits,
    ) -> Result<Self, PluginError> {
        let registry = Registry {
            runtime: Some(runtime.clone()),
            limits,
            ..Registry::default()
        };
        for (_, wasm) in super::BUILTIN {
            registry.put(runtime.load(wasm).await?, Source::Builtin(wasm));
        }
        Ok(registry)
    }

    /// Keeps uploads in `dir` (and [`Registry::restore_uploads`] reads them back at start).
    pub fn keep_uploads_in(mut self, dir: PathBuf) -> Self {
        self.keep_dir = Some(dir);
        self
    }

    /// Puts a checked plugin in; returns the version that was active before.
    fn put(&self, plugin: Plugin, source: Source) -> Option<String> {
        let manifest = plugin.manifest();
        let (id, key) = (manifest.id.clone(), VersionKey::of(&manifest.version));
        let mut loaded = Loaded {
            plugin,
            loaded_at: crate::domain::now_ms(),
            source,
            shadows: None,
        };
        let mut plugins = self.write();
        let versions = plugins.entry(id).or_default();
        let before = versions.keys().next_back().map(|k| k.2.clone());
        if let Some(replaced) = versions.remove(&key) {
            // A built-in is never lost: whatever replaces it keeps it, to put back.
            loaded.shadows = match replaced.source {
                Source::Builtin(_) if !matches!(loaded.source, Source::Builtin(_)) => {
                    Some(Box::new(replaced))
                }
                _ => replaced.shadows,
            };
        }
        versions.insert(key, loaded);
        before
    }

    /// Compiles, checks and puts in an uploaded plugin, keeping a copy (if the registry keeps
    /// uploads) so it is loaded again after a restart. Refused: nothing changes.
    pub async fn upload(&self, wasm: Vec<u8>) -> Result<Swapped, LoadError> {
        let plugin = self
            .check_new(wasm.clone())
            .await
            .map_err(|e| self.refused(e, "upload", None))?;
        let kept = match &self.keep_dir {
            Some(dir) => {
                // Named from the id and version the manifest check validated (no separators).
                let m = plugin.manifest();
                let name = format!("{}@{}.wasm", m.id, m.version);
                if name.contains(['/', '\\']) || name.contains("..") {
                    return Err(self.refused(
                        LoadError::Refused(PluginError::Invalid(format!(
                            "{name:?} cannot name a file"
                        ))),
                        "upload",
                        None,
                    ));
                }
                let path = dir.join(name);
                write_atomically(&path, &wasm)
                    .map_err(|e| self.refused(LoadError::Io(e), "upload", None))?;
                Some(path)
            }
            None => None,
        };
        Ok(self.swap_in(plugin, Source::Upload(kept)))
    }

    /// Loads a plugin from a file (the plugin folder, or a kept upload at start).
    pub async fn load_file(&self, path: PathBuf, source: Source) -> Result<Swapped, LoadError> {
        let kind = source.kind();
        let file = Some(path.display().to_string());
        let wasm = std::fs::read(&path)
            .map_err(|e| self.refused(LoadError::Io(e.to_string()), kind, file.clone()))?;
        match self.check_new(wasm).await {
            Ok(plugin) => Ok(self.swap_in(plugin, source)),
            Err(e) => Err(self.refused(e, kind, file)),
        }
    }

    /// Loads the uploads kept by earlier runs (at start). Returns how many loaded; one that no
    /// longer loads is logged and left in place.
    pub async fn restore_uploads(&self) -> usize {
        let Some(Ok(entries)) = self.keep_dir.as_ref().map(std::fs::read_dir) else {
            return 0;
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        paths.sort();
        let mut loaded = 0;
        for path in paths {
            if self
                .load_file(path.clone(), Source::Upload(Some(path)))
                .await
                .is_ok()
            {
                loaded += 1;
            }
        }
        loaded
    }

    /// Compiles and checks the active version of `id` again from where it came from (its file,
    /// its kept upload, or the binary) and puts it in anew.
    pub async fn reload(&self, id: &str) -> Result<Swapped, LoadError> {
        let loaded = self
            .read()
            .get(id)
            .and_then(|v| v.values().next_back().cloned())
            .ok_or_else(|| LoadError::NotLoaded(id.to_string()))?;
        match &loaded.source {
            Source::Builtin(wasm) => match self.check(wasm.to_vec()).await {
                Ok(plugin) => Ok(self.swap_in(plugin, loaded.source.clone())),
                Err(e) => Err(self.refused(e, "builtin", None)),
            },
            source => match source.path() {
                Some(path) => self.load_file(path.clone(), source.clone()).await,
                None => Err(LoadError::Io(format!(
                    "plugin {id:?} was loaded from memory; upload it again"
                ))),
            },
        }
    }

    /// The size cap, the compile (off the async threads, under the time cap), the runtime's
    /// checks, then the registry's vetting (conformance, for a provider with built-in vectors).
    async fn check(&self, wasm: Vec<u8>) -> Result<Plugin, LoadError> {
        let limits = self.limits;
        if wasm.len() > limits.max_bytes {
            return Err(LoadError::TooLarge {
                size: wasm.len(),
                max: limits.max_bytes,
            });
        }
        let runtime = self.runtime.clone().ok_or(LoadError::NoRuntime)?;
        // Compiling takes tens of milliseconds of CPU: not on the threads that serve requests.
        let compiling = runtime.clone();
        let compiled = tokio::task::spawn_blocking(move || compiling.compile(&wasm));
        let compiled = match tokio::time::timeout(limits.compile_timeout, compiled).await {
            Err(_) => return Err(LoadError::Timeout(limits.compile_timeout)),
            Ok(Err(e)) => {
                return Err(LoadError::Refused(PluginError::Invalid(format!(
                    "compiling the plugin failed: {e}"
                ))));
            }
            Ok(Ok(result)) => result?,
        };
        let plugin = runtime.finish(compiled).await?;
        if let Some(vet) = &self.vet {
            vet(plugin.clone()).await?;
        }
        Ok(plugin)
    }

    /// [`Registry::check`], for content that is not loaded yet: its id must also be free of
    /// another kind ([`Registry::check_kind`]).
    async fn check_new(&self, wasm: Vec<u8>) -> Result<Plugin, LoadError> {
        let plugin = self.check(wasm).await?;
        self.check_kind(&plugin)?;
        Ok(plugin)
    }

    /// An id belongs to one kind: a provider cannot take a loaded extractor's id, nor the
    /// other way round (it would replace it for every pod that names it).
    fn check_kind(&self, plugin: &Plugin) -> Result<(), LoadError> {
        let manifest = plugin.manifest();
        let taken = self
            .read()
            .get(&manifest.id)
            .and_then(|versions| versions.values().next_back())
            .map(|loaded| loaded.plugin.manifest().kind)
            .filter(|kind| *kind != manifest.kind);
        match taken {
            Some(kind) => Err(LoadError::Refused(PluginError::Invalid(format!(
                "the id {:?} belongs to a loaded {} plugin; a {} plugin cannot take it",
                manifest.id,
                kind.as_str(),
                manifest.kind.as_str()
            )))),
            None => Ok(()),
        }
    }

    fn swap_in(&self, plugin: Plugin, source: Source) -> Swapped {
        let manifest = plugin.manifest().clone();
        let kind = source.kind();
        let file = source.path().map(|p| p.display().to_string());
        let replaced = self.put(plugin, source);
        let active = self
            .read()
            .get(&manifest.id)
            .and_then(|v| v.keys().next_back())
            .is_some_and(|k| k.2 == manifest.version);
        tracing::info!(plugin = %manifest.id, version = %manifest.version, ?replaced, active, source = kind, "plugin loaded");
        self.emit(PluginEvent {
            kind: if replaced.is_some() {
                "plugin:replaced"
            } else {
                "plugin:loaded"
            },
            id: Some(manifest.id.clone()),
            version: Some(manifest.version.clone()),
            source: kind,
            detail: match (&replaced, file) {
                (Some(before), _) => Some(format!(
                    "was {before}; {} is {}",
                    manifest.version,
                    if active { "active" } else { "loaded beside it" }
                )),
                (None, file) => file,
            },
            timestamp: now_iso(),
        });
        Swapped {
            manifest,
            replaced,
            active,
        }
    }

    fn refused(&self, error: LoadError, source: &'static str, file: Option<String>) -> LoadError {
        tracing::warn!(%error, source, ?file, "plugin refused; what was loaded keeps serving");
        self.emit(PluginEvent {
            kind: "plugin:refused",
            id: None,
            version: None,
            source,
            detail: Some(match file {
                Some(file) => format!("{file}: {error}"),
                None => error.to_string(),
            }),
            timestamp: now_iso(),
        });
        error
    }

    /// Unloads every version of `id`, or just `version`; executions already running on it
    /// finish. Kept uploads are deleted. Built-ins stay: one that was shadowed by the same
    /// version comes back, and asking only for built-ins is [`LoadError::Builtin`]. Returns how
    /// many versions were unloaded.
    pub fn remove(&self, id: &str, version: Option<&str>) -> Result<usize, LoadError> {
        let removed: Vec<Loaded> = {
            let mut plugins = self.write();
            let Some(versions) = plugins.get_mut(id) else {
                return Ok(0);
            };
            let asked: Vec<VersionKey> = versions
                .keys()
                .filter(|k| version.is_none_or(|v| k.2 == v))
                .cloned()
                .collect();
            let (builtin, removable): (Vec<VersionKey>, Vec<VersionKey>) = asked
                .into_iter()
                .partition(|k| matches!(versions[k].source, Source::Builtin(_)));
            if removable.is_empty() && !builtin.is_empty() {
                return Err(LoadError::Builtin(id.to_string()));
            }
            let mut removed = Vec::new();
            for key in removable {
                let Some(mut gone) = versions.remove(&key) else {
                    continue;
                };
                if let Some(builtin) = gone.shadows.take() {
                    versions.insert(key, *builtin);
                }
                removed.push(gone);
            }
            if versions.is_empty() {
                plugins.remove(id);
            }
            removed
        };
        for loaded in &removed {
            if let Source::Upload(Some(path)) = &loaded.source
                && let Err(e) = std::fs::remove_file(path)
            {
                tracing::warn!(file = %path.display(), error = %e, "could not delete a kept upload");
            }
            let version = loaded.plugin.manifest().version.clone();
            tracing::info!(plugin = %id, %version, "plugin unloaded");
            self.emit(PluginEvent {
                kind: "plugin:unloaded",
                id: Some(id.to_string()),
                version: Some(version),
                source: loaded.source.kind(),
                detail: None,
                timestamp: now_iso(),
            });
        }
        Ok(removed.len())
    }

    pub fn limits(&self) -> LoadLimits {
        self.limits
    }

    /// The runtime's default limits, which an operator's per-plugin limits override.
    pub fn default_limits(&self) -> Limits {
        self.runtime
            .as_ref()
            .map(|r| r.config().limits)
            .unwrap_or_default()
    }

    /// `version` of `id`, or the active one when `None`, under the operator's policy for it.
    pub fn get_version(&self, id: &str, version: Option<&str>) -> Result<Plugin, Missing> {
        let plugins = self.read();
        let versions = plugins
            .get(id)
            .ok_or_else(|| Missing::Plugin(id.to_string()))?;
        let loaded = match version {
            None => versions.values().next_back(),
            Some(v) => versions.get(&VersionKey::of(v)),
        }
        .ok_or_else(|| Missing::Version {
            id: id.to_string(),
            version: version.unwrap_or_default().to_string(),
            loaded: versions
                .keys()
                .map(|k| k.2.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        let policy = self.policy_of(id);
        Ok(match policy {
            Some(policy) => loaded.plugin.with_policy(policy),
            None => loaded.plugin.clone(),
        })
    }

    /// As [`Registry::get_version`], for a provider plugin only.
    pub fn provider(&self, id: &str, version: Option<&str>) -> Result<Plugin, Missing> {
        let plugin = self.get_version(id, version)?;
        if plugin.manifest().kind != PluginKind::Provider {
            return Err(Missing::Plugin(id.to_string()));
        }
        Ok(plugin)
    }

    /// The active version of an extractor-only plugin.
    pub fn extractor(&self, id: &str) -> Option<Plugin> {
        self.get_version(id, None)
            .ok()
            .filter(|p| p.manifest().kind == PluginKind::Extractor)
    }

    fn policy_of(&self, id: &str) -> Option<Arc<Policy>> {
        self.shared
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The limits file's limits (at start); the API's, set with [`Registry::set_limits`],
    /// replace them per plugin.
    pub fn set_file_limits(&self, limits: BTreeMap<String, PluginLimits>) {
        for (id, l) in &limits {
            self.apply_limits(id, Some(l.clone()), "file");
        }
        *self
            .shared
            .file_limits
            .write()
            .unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// Sets the limits an operator gave `id` through the API (validated by the caller), or
    /// `None` to fall back to the limits file's; later calls run under them, calls already
    /// running keep theirs.
    pub fn set_limits(&self, id: &str, limits: Option<PluginLimits>) {
        let limits = limits.or_else(|| {
            self.shared
                .file_limits
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .cloned()
        });
        self.apply_limits(id, limits, "api");
    }

    /// Every plugin id with limits set through the API or the file.
    pub fn limited_ids(&self) -> Vec<String> {
        self.shared
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn apply_limits(&self, id: &str, limits: Option<PluginLimits>, source: &'static str) {
        let mut policies = self
            .shared
            .policies
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let before = policies.get(id).map(|p| p.setting.clone());
        if before == limits {
            return;
        }
        match &limits {
            Some(l) => {
                let policy = Arc::new(Policy::new(l.clone(), self.default_limits()));
                policies.insert(id.to_string(), policy);
            }
            None => {
                policies.remove(id);
            }
        }
        drop(policies);
        tracing::info!(plugin = %id, ?limits, "plugin limits set");
        self.emit(PluginEvent {
            kind: "plugin:limits",
            id: Some(id.to_string()),
            version: None,
            source,
            detail: Some(
                limits
                    .map(|l| serde_json::to_string(&l).unwrap_or_default())
                    .unwrap_or_else(|| "cleared".into()),
            ),
            timestamp: now_iso(),
        });
    }

    /// The operator's limits for `id`.
    pub fn limits_of(&self, id: &str) -> Option<PluginLimits> {
        self.shared
            .policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|p| p.setting.clone())
    }

    /// The active manifests.
    pub fn manifests(&self) -> Vec<Manifest> {
        self.read()
            .values()
            .filter_map(|v| v.values().next_back())
            .map(|l| l.plugin.manifest().clone())
            .collect()
    }

    /// Every loaded version, by id, newest first.
    pub fn list(&self) -> Vec<PluginInfo> {
        let plugins = self.read();
        let mut out = Vec::new();
        for (id, versions) in plugins.iter() {
            let limits = self.limits_of(id);
            for (i, loaded) in versions.values().rev().enumerate() {
                let (calls, errors) = loaded.plugin.stats().get();
                out.push(PluginInfo {
                    manifest: loaded.plugin.manifest().clone(),
                    state: if i == 0 { "active" } else { "loaded" },
                    source: loaded.source.kind(),
                    loaded_at: crate::domain::iso_time::format(loaded.loaded_at),
                    calls,
                    errors,
                    limits: limits.clone(),
                });
            }
        }
        out
    }

    /// The recent operator events, then every new one as it happens.
    pub fn subscribe(&self) -> (Vec<PluginEvent>, broadcast::Receiver<PluginEvent>) {
        let recent = self.shared.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Subscribing under the lock: no event falls between the two.
        (
            recent.iter().cloned().collect(),
            self.shared.events.subscribe(),
        )
    }

    fn emit(&self, event: PluginEvent) {
        let mut recent = self.shared.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.shared.events.send(event);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Versions>> {
        // A panic while holding the lock cannot leave the map half-written: recover the guard.
        self.shared
            .plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Versions>> {
        self.shared
            .plugins
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// Now, as events show it (RFC 3339).
fn now_iso() -> String {
    crate::domain::iso_time::format(crate::domain::now_ms())
}

/// Writes `bytes` to `path` through a temporary file and a rename: never a half-written plugin.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::VersionKey;

    #[test]
    fn versions_order_as_semver() {
        let mut v: Vec<VersionKey> = ["0.10.0", "0.2.0", "0.2.0-rc.1", "1.0.0", "0.2.1"]
            .into_iter()
            .map(VersionKey::of)
            .collect();
        v.sort();
        let order: Vec<&str> = v.iter().map(|k| k.2.as_str()).collect();
        assert_eq!(order, ["0.2.0-rc.1", "0.2.0", "0.2.1", "0.10.0", "1.0.0"]);
    }
}
