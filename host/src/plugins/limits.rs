//! What an operator allows one plugin: the limits file (`PODS_PLUGIN_LIMITS`) and the admin API
//! (`PUT /api/v1/plugins/{id}/limits`) speak this one shape. Limits set through the API replace
//! the file's for that plugin (kept in the database, so every node and restart sees them).
//!
//! ```json
//! {"openai": {"deadlineMs": 500, "memoryMb": 32, "maxConcurrent": 50, "allowedHosts": ["api.openai.com"]}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use super::runtime::Limits;

/// One plugin's limits; an absent field keeps the server's default.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginLimits {
    /// Wall-clock budget of each call into the plugin (1–60,000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 60000)]
    pub deadline_ms: Option<u64>,
    /// Memory cap of one instance, in MiB (1 up to the server's `PODS_PLUGIN_MEMORY_MB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 65536)]
    pub memory_mb: Option<u32>,
    /// Most instances of the plugin alive at once on this node; beyond it a call fails with the
    /// retryable `PLUGIN_BUSY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent: Option<u32>,
    /// Hosts the plugin's requests may go to: narrows the manifest's list and any workspace's
    /// base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = host_list)]
    pub allowed_hosts: Option<Vec<String>>,
}

/// A DNS name (lowercase, not ending in a digit-only label) or a dotted IPv4 address: what
/// [`super::manifest`]'s host check accepts, for the OpenAPI document.
const HOST_PATTERN: &str = r"^(([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z]([a-z0-9-]*[a-z0-9])?|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))$";

fn host_list() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(HOST_PATTERN)),
        )
        .build()
}

impl PluginLimits {
    /// Every problem, joined by `; `.
    pub fn validate(&self, max_memory_mb: u32) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(ms) = self.deadline_ms
            && !(1..=60_000).contains(&ms)
        {
            problems.push(format!("deadlineMs {ms} is not within 1–60000"));
        }
        if let Some(mb) = self.memory_mb
            && !(1..=max_memory_mb).contains(&mb)
        {
            problems.push(format!(
                "memoryMb {mb} is not within 1–{max_memory_mb} (PODS_PLUGIN_MEMORY_MB)"
            ));
        }
        if self.max_concurrent == Some(0) {
            problems.push("maxConcurrent must be at least 1 (unload the plugin to stop it)".into());
        }
        if self.max_concurrent.is_some_and(|n| n > 100_000) {
            problems.push("maxConcurrent must be at most 100000".into());
        }
        for host in self.allowed_hosts.iter().flatten() {
            if let Err(why) = super::manifest::check_host(host) {
                problems.push(format!("allowed host {host:?} {why}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// A plugin's limits in force: the operator's setting, the sandbox limits it makes over the
/// server's defaults, and the permits that cap its instances. Built once per setting.
#[derive(Debug, Default)]
pub struct Policy {
    /// As the operator set it.
    pub setting: PluginLimits,
    /// `None`: the runtime's limits.
    pub limits: Option<Limits>,
    /// One per instance that may be alive at once (`setting.max_concurrent`).
    pub(super) permits: Option<Arc<tokio::sync::Semaphore>>,
}

impl Policy {
    /// The policy `setting` makes, over the server's `defaults`.
    pub fn new(setting: PluginLimits, defaults: Limits) -> Self {
        let limits =
            (setting.deadline_ms.is_some() || setting.memory_mb.is_some()).then(|| Limits {
                deadline: setting
                    .deadline_ms
                    .map_or(defaults.deadline, Duration::from_millis),
                memory_cap: setting
                    .memory_mb
                    .map_or(defaults.memory_cap, |mb| (mb as usize) << 20),
            });
        let permits = setting
            .max_concurrent
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize)));
        Policy {
            setting,
            limits,
            permits,
        }
    }
}

/// Reads a limits file: a JSON object of plugin id → limits.
pub fn read_file(
    path: &Path,
    max_memory_mb: u32,
) -> Result<BTreeMap<String, PluginLimits>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let limits: BTreeMap<String, PluginLimits> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for (id, l) in &limits {
        l.validate(max_memory_mb)
            .map_err(|why| format!("{}: {id}: {why}", path.display()))?;
    }
    Ok(limits)
}

/// How often a node reads the limits other nodes' APIs stored.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Applies the limits stored through the API (on any node) to this node's registry; ids whose
/// stored limits were deleted fall back to the file's.
pub async fn apply_stored(registry: &super::Registry, store: &crate::store::Store) {
    let stored = match store.plugin_limits().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not read plugin limits");
            return;
        }
    };
    let mut stored: BTreeMap<String, PluginLimits> = stored
        .into_iter()
        .filter_map(|(id, json)| match serde_json::from_str(&json) {
            Ok(limits) => Some((id, limits)),
            Err(e) => {
                tracing::warn!(plugin = %id, error = %e, "stored plugin limits unreadable; ignored");
                None
            }
        })
        .collect();
    for id in registry.limited_ids() {
        stored.entry(id).or_default();
    }
    for (id, limits) in stored {
        registry.set_limits(&id, (limits != PluginLimits::default()).then_some(limits));
    }
}

/// Keeps applying stored limits until the store closes, so a change made through one node's API
/// reaches every node within `REFRESH_EVERY` (5 s).
pub fn spawn_refresh(registry: super::Registry, store: crate::store::Store) {
    tokio::spawn(async move {
        while !store.is_closed() {
            tokio::time::sleep(REFRESH_EVERY).await;
            apply_stored(&registry, &store).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_out_of_range_values_and_bad_hosts() {
        let l = PluginLimits {
            deadline_ms: Some(0),
            memory_mb: Some(128),
            max_concurrent: Some(0),
            allowed_hosts: Some(vec!["*.openai.com".into()]),
        };
        let why = l.validate(64).expect_err("invalid");
        assert!(why.contains("deadlineMs 0"), "{why}");
        assert!(why.contains("memoryMb 128"), "{why}");
        assert!(why.contains("maxConcurrent"), "{why}");
        assert!(why.contains("*.openai.com"), "{why}");
        assert_eq!(PluginLimits::default().validate(64), Ok(()));
    }

    #[test]
    fn policy_keeps_defaults_for_absent_fields() {
        let defaults = Limits {
            deadline: Duration::from_secs(1),
            memory_cap: 64 << 20,
        };
        let only_memory = PluginLimits {
            memory_mb: Some(8),
            ..Default::default()
        };
        let policy = Policy::new(only_memory, defaults);
        assert_eq!(
            policy.limits,
            Some(Limits {
                deadline: Duration::from_secs(1),
                memory_cap: 8 << 20
            })
        );
        assert_eq!(Policy::new(PluginLimits::default(), defaults).limits, None);
    }

    #[test]
    fn a_file_with_unknown_fields_is_refused() {
        let dir = std::env::temp_dir().join(format!("pods-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("limits.json");
        std::fs::write(&path, r#"{"openai": {"deadline": 5}}"#).expect("write");
        assert!(read_file(&path, 64).is_err());
        std::fs::write(&path, r#"{"openai": {"deadlineMs": 5}}"#).expect("write");
        assert_eq!(
            read_file(&path, 64).expect("ok")["openai"].deadline_ms,
            Some(5)
        );
    }
}
