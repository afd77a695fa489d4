//! What an execution reads of its workspace's configuration — the caller's role, the pod, the
//! provider key, the flow's edges — kept in memory between executions.
//!
//! Every change to memberships, pods, edges or provider keys bumps its workspace's
//! `config_version` (database triggers, so every writer counts: the API, the CLI, another node).
//! A [`View`] is stamped with the version read *before* anything in it, and fills itself lazily.
//! The statement that records an execution inserts only while the workspace is still at that
//! version ([`crate::store::NewExecution::config_version`]); if it moved, the caller takes a
//! [`Cache::fresh`] view and resolves again. So while a workspace's configuration stands still,
//! an execution reads nothing before it is recorded, and it never runs on configuration that
//! changed before it was recorded. A worker about to run a queued execution trusts its cached
//! view only at the version its claim read, in the same statement ([`Cache::at`]).
//!
//! Pods kept in DynamoDB are not covered by the version and are read every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::Role;
use crate::pod_store::PodStore;
use crate::store::{Edge, Pod, Result, Store, StoreError, StoredKey};

/// Most workspaces kept, and most entries of one kind in a view; past that, it starts over.
const MAX_ENTRIES: usize = 4096;

/// The views of recently used workspaces; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    store: Store,
    pods: PodStore,
    views: Arc<Mutex<HashMap<String, Arc<View>>>>,
}

impl Cache {
    pub fn new(store: Store, pods: PodStore) -> Self {
        Cache {
            store,
            pods,
            views: Arc::default(),
        }
    }

    /// The workspace's cached view, or a fresh one if there is none. The flag says whether it
    /// came from the cache (and so may be out of date).
    pub async fn view(&self, ws: &str) -> Result<(Arc<View>, bool)> {
        if let Some(view) = lock(&self.views).get(ws) {
            return Ok((view.clone(), true));
        }
        Ok((self.fresh(ws).await?, false))
    }

    /// A view stamped with the workspace's current version, replacing the cached one.
    /// `NotFound` if the workspace does not exist.
    pub async fn fresh(&self, ws: &str) -> Result<Arc<View>> {
        let version = self
            .store
            .config_version(ws)
            .await?
            .ok_or(StoreError::NotFound)?;
        let view = Arc::new(self.new_view(ws, version));
        let mut views = lock(&self.views);
        if views.len() >= MAX_ENTRIES {
            views.clear();
        }
        views.insert(ws.to_string(), view.clone());
        Ok(view)
    }

    /// Whether `view` still shows the workspace as it is (one read).
    pub async fn is_current(&self, view: &View) -> Result<bool> {
        Ok(self.store.config_version(&view.ws).await? == Some(view.version))
    }

    /// A view that shows the workspace at `version`, which the caller read in a statement of
    /// its own (a worker's claim of a queued execution): the cached view if it has that version,
    /// else a fresh one. No read when the configuration stood still.
    pub async fn at(&self, ws: &str, version: Option<i64>) -> Result<Arc<View>> {
        let cached = lock(&self.views)
            .get(ws)
            .filter(|view| Some(view.version) == version)
            .cloned();
        match cached {
            Some(view) => Ok(view),
            None => self.fresh(ws).await,
        }
    }

    fn new_view(&self, ws: &str, version: i64) -> View {
        View {
            ws: ws.to_string(),
            version,
            store: self.store.clone(),
            pods: self.pods.clone(),
            roles: Memo::default(),
            pod_configs: Memo::default(),
            keys: Memo::default(),
            edges: Memo::default(),
        }
    }
}

/// One workspace's configuration as of `version`, read on first use.
pub struct View {
    ws: String,
    /// The workspace's `config_version` before anything here was read.
    pub version: i64,
    store: Store,
    pods: PodStore,
    roles: Memo<Option<Role>>,
    pod_configs: Memo<Option<Pod>>,
    keys: Memo<Option<StoredKey>>,
    edges: Memo<Arc<Vec<Edge>>>,
}

impl View {
    pub fn workspace(&self) -> &str {
        &self.ws
    }

    /// The user's role in the workspace; `None`: not a member.
    pub async fn role(&self, user_id: &str) -> Result<Option<Role>> {
        if let Some(role) = self.roles.get(user_id) {
            return Ok(role);
        }
        let role = found(self.store.role(&self.ws, user_id).await)?;
        Ok(self.roles.keep(user_id, role))
    }

    /// The pod; `None`: not in this workspace.
    pub async fn pod(&self, id: &str) -> Result<Option<Pod>> {
        let versioned = matches!(self.pods, PodStore::Sql(_));
        if versioned && let Some(pod) = self.pod_configs.get(id) {
            return Ok(pod);
        }
        let pod = found(self.pods.get(&self.ws, id).await)?;
        Ok(if versioned {
            self.pod_configs.keep(id, pod)
        } else {
            pod
        })
    }

    /// The workspace's stored key for the provider; `None`: it has none.
    pub async fn key(&self, provider: &str) -> Result<Option<StoredKey>> {
        if let Some(key) = self.keys.get(provider) {
            return Ok(key);
        }
        let key = found(self.store.key(&self.ws, provider).await)?;
        Ok(self.keys.keep(provider, key))
    }

    /// The flow's edges.
    pub async fn edges(&self, flow_id: &str) -> Result<Arc<Vec<Edge>>> {
        if let Some(edges) = self.edges.get(flow_id) {
            return Ok(edges);
        }
        let edges = Arc::new(self.store.edges(&self.ws, flow_id).await?);
        Ok(self.edges.keep(flow_id, edges))
    }
}

/// `NotFound` → `None`.
fn found<T>(read: Result<T>) -> Result<Option<T>> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Values read once, by key.
struct Memo<V>(Mutex<HashMap<String, V>>);

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo(Mutex::new(HashMap::new()))
    }
}

impl<V: Clone> Memo<V> {
    fn get(&self, key: &str) -> Option<V> {
        lock(&self.0).get(key).cloned()
    }

    /// Keeps `value` (two readers may race to fill a key; either value is as of the view's
    /// version or newer, and a newer one fails the version check when used).
    fn keep(&self, key: &str, value: V) -> V {
        let mut map = lock(&self.0);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.to_string(), value.clone());
        value
    }
}

/// A poisoned lock only means another thread panicked while holding it; the map is still a
/// valid cache.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
