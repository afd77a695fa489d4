//! Settings from flags and the environment, and opening what they point at. Every secret has a
//! development default: when `PODS_JWT_SECRET` or `PODS_MASTER_KEY` is unset, a random one is
//! generated once into the data folder (mode 0600), so the first `pods serve` needs no setup.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::auth::Tokens;
use crate::egress::{Egress, EgressConfig};
use crate::execution::Executor;
use crate::plugins::{Limits, Registry, Runtime, RuntimeConfig};
use crate::store::Store;
use crate::vault::{Vault, write_private};

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Folder for the server's data: the SQLite database, generated secrets, the plugin cache.
    #[arg(long, env = "PODS_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// `sqlite:…` or `postgres://…`; default: a SQLite file in the data folder.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Wall-clock budget of one call into a plugin, in milliseconds.
    #[arg(
        long,
        env = "PODS_PLUGIN_DEADLINE_MS",
        default_value_t = 1000,
        global = true
    )]
    pub plugin_deadline_ms: u64,
    /// Most linear memory one plugin instance may use, in MiB.
    #[arg(
        long,
        env = "PODS_PLUGIN_MEMORY_MB",
        default_value_t = 64,
        global = true
    )]
    pub plugin_memory_mb: usize,
    /// How long to wait for a provider's headers, or between two chunks of its answer.
    #[arg(
        long,
        env = "PODS_PROVIDER_TIMEOUT_SECS",
        default_value_t = 120,
        global = true
    )]
    pub provider_timeout_secs: u64,
    /// Queued executions this process runs at once (0: none, an API-only node).
    #[arg(long, env = "PODS_WORKERS", default_value_t = 10, global = true)]
    pub workers: usize,
    /// Attempts per queued execution, the first included.
    #[arg(long, env = "PODS_MAX_ATTEMPTS", default_value_t = 3, global = true)]
    pub max_attempts: i64,
    /// Backoff before the second attempt, in milliseconds; it doubles each attempt.
    #[arg(
        long,
        env = "PODS_RETRY_BASE_MS",
        default_value_t = 2000,
        global = true
    )]
    pub retry_base_ms: u64,
    /// Seconds a claimed job stays leased without its worker renewing it (a crashed worker's
    /// jobs are taken over after this).
    #[arg(long, env = "PODS_LEASE_SECS", default_value_t = 30, global = true)]
    pub lease_secs: u64,
    /// On shutdown, how long running executions may take to finish before the process exits.
    #[arg(
        long,
        env = "PODS_SHUTDOWN_GRACE_SECS",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_grace_secs: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "PODS_MAX_BODY_BYTES", default_value_t = 1 << 20, global = true)]
    pub max_body_bytes: usize,
}

impl Settings {
    pub fn worker_config(&self) -> crate::worker::WorkerConfig {
        crate::worker::WorkerConfig {
            concurrency: self.workers,
            max_attempts: self.max_attempts.max(1),
            backoff_base: Duration::from_millis(self.retry_base_ms),
            lease: Duration::from_secs(self.lease_secs.max(1)),
            ..crate::worker::WorkerConfig::default()
        }
    }

    pub fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            limits: Limits {
                deadline: Duration::from_millis(self.plugin_deadline_ms),
                memory_cap: self.plugin_memory_mb << 20,
            },
            cache_dir: Some(self.data_dir.join("wasm-cache")),
            ..RuntimeConfig::default()
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("pods.db").display()))
    }

    pub async fn store(&self) -> Result<Store> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("create {}", self.data_dir.display()))?;
        Store::connect(&self.database_url())
            .await
            .context("open the database")
    }

    /// `PODS_MASTER_KEY` (+ `PODS_MASTER_KEY_ID`, `PODS_PREVIOUS_MASTER_KEYS`), else the keyring file.
    pub fn vault(&self) -> Result<Vault> {
        match std::env::var("PODS_MASTER_KEY") {
            Ok(key) if !key.trim().is_empty() => {
                let id = std::env::var("PODS_MASTER_KEY_ID").unwrap_or_else(|_| "k1".into());
                let mut ring = vec![(id, key)];
                if let Ok(previous) = std::env::var("PODS_PREVIOUS_MASTER_KEYS") {
                    ring.extend(Vault::parse_keyring(&previous)?);
                }
                Ok(Vault::new(&ring)?)
            }
            _ => Ok(Vault::load_or_create(&self.keyring_path())?),
        }
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }

    /// `PODS_JWT_SECRET`, else a generated secret file.
    pub fn tokens(&self) -> Result<Tokens> {
        if let Ok(secret) = std::env::var("PODS_JWT_SECRET") {
            if secret.len() < 16 {
                anyhow::bail!("PODS_JWT_SECRET must be at least 16 characters");
            }
            return Ok(Tokens::new(secret.as_bytes()));
        }
        let path = self.data_dir.join("jwt.secret");
        if !path.exists() {
            write_private(&path, &Vault::generate_key())
                .with_context(|| format!("write {}", path.display()))?;
        }
        let secret =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Ok(Tokens::new(secret.trim().as_bytes()))
    }

    /// Everything an API node needs, opened and loaded.
    pub async fn executor(&self) -> Result<Executor> {
        let store = self.store().await?;
        let vault = self.vault()?;
        let runtime = Runtime::new(self.runtime_config())?;
        let registry = Registry::with_builtins(&runtime)?;
        let egress = Egress::new(EgressConfig {
            timeout: Duration::from_secs(self.provider_timeout_secs),
            ..EgressConfig::default()
        })?;
        Ok(Executor::new(store, registry, egress, vault))
    }
}
