//! Settings from flags and the environment, and opening what they point at. Every secret has a
//! development default: when `PODS_JWT_SECRET` or `PODS_MASTER_KEY` is unset, a random one is
//! generated once into the data folder (mode 0600), so the first `pods serve` needs no setup.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::auth::Tokens;
use crate::aws::AwsSettings;
use crate::egress::{Egress, EgressConfig, EgressPolicy};
use crate::events::Hub;
use crate::execution::{Executor, Services};
use crate::ledger::Ledger;
use crate::plugins::{Limits, LoadLimits, Registry, Runtime, RuntimeConfig};
use crate::pod_store::{DynamoPods, PodStore};
use crate::queue::{Backend as QueueBackend, QueueSettings};
use crate::store::Store;
use crate::vault::{Vault, write_private};

/// Where pod configs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PodStoreBackend {
    Sql,
    #[value(name = "dynamodb")]
    DynamoDb,
}

/// How nodes share execution events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsBackend {
    Local,
    Redis,
}

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
    /// Most plugin calls of one workspace running at once on a node; its other calls wait their
    /// turn. Default: the number of cores.
    #[arg(long, env = "PODS_PLUGIN_WORKSPACE_CALLS", global = true)]
    pub plugin_workspace_calls: Option<usize>,
    /// How long a bearer token lives (and the longest one accepted), in hours (1–8760).
    #[arg(
        long,
        env = "PODS_TOKEN_TTL_HOURS",
        default_value_t = 24,
        global = true
    )]
    pub token_ttl_hours: u64,
    /// The completion bound of a pod without `maxTokens`, in a flow run's cost estimate.
    #[arg(
        long,
        env = "PODS_DEFAULT_MAX_TOKENS",
        default_value_t = 4096,
        global = true
    )]
    pub default_max_tokens: u32,
    /// How long to wait for a provider's headers, or between two chunks of its answer.
    #[arg(
        long,
        env = "PODS_PROVIDER_TIMEOUT_SECS",
        default_value_t = 120,
        global = true
    )]
    pub provider_timeout_secs: u64,
    /// Largest provider answer read (and handed to a plugin), in bytes; beyond it the call fails
    /// with `PROVIDER_MALFORMED_RESPONSE`.
    #[arg(
        long,
        env = "PODS_PROVIDER_MAX_RESPONSE_BYTES",
        default_value_t = 32 << 20,
        global = true
    )]
    pub provider_max_response_bytes: usize,
    /// Queued executions this process runs at once (0: none, an API-only node) while the queue
    /// keeps up; the pool grows past it while work waits, up to `workers_max`.
    #[arg(long, env = "PODS_WORKERS", default_value_t = 10, global = true)]
    pub workers: usize,
    /// The most queued executions this process runs at once while work waits (default: four
    /// times `PODS_WORKERS`; set it to `PODS_WORKERS` for a pool of fixed size).
    #[arg(long, env = "PODS_WORKERS_MAX", global = true)]
    pub workers_max: Option<usize>,
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
    /// Where queued executions wait: `embedded` (the SQL store), `redis` or `sqs`. Switching it
    /// is the only change needed to move the queue.
    #[arg(long, env = "QUEUE_BACKEND", value_enum, default_value_t = QueueBackend::Embedded, global = true)]
    pub queue_backend: QueueBackend,
    /// How nodes share execution events and cancels: `local` (one node) or `redis`; default
    /// `redis` when the queue is Redis, else `local`.
    #[arg(long, env = "EVENTS_BACKEND", value_enum, global = true)]
    pub events_backend: Option<EventsBackend>,
    /// The Redis of the `redis` queue and event relay.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub redis_url: String,
    /// Where rate-limit buckets live: `local` (each node its own) or `redis` (shared); default
    /// `redis` when the events go through Redis, else `local`.
    #[arg(long, env = "PODS_RATE_LIMITS_BACKEND", value_enum, global = true)]
    pub rate_limits_backend: Option<EventsBackend>,
    /// Executions (sync, streamed or queued) one user may start per minute; 0: no limit.
    #[arg(
        long,
        env = "PODS_RATE_EXECUTIONS_PER_MIN",
        default_value_t = 6000,
        global = true
    )]
    pub rate_executions_per_min: u32,
    /// Failed authentications one client address may make per minute before it is answered 429;
    /// 0: no limit.
    #[arg(
        long,
        env = "PODS_RATE_AUTH_FAILURES_PER_MIN",
        default_value_t = 30,
        global = true
    )]
    pub rate_auth_failures_per_min: u32,
    /// Password sign-ins (`POST /api/v1/auth/login`) per minute for one email from one client
    /// address, right or wrong; 0: no limit.
    #[arg(
        long,
        env = "PODS_RATE_LOGINS_PER_MIN",
        default_value_t = 5,
        global = true
    )]
    pub rate_logins_per_min: u32,
    /// WebSocket tickets (`POST /api/v1/ws-ticket`) one user or API key may take per minute;
    /// 0: no limit.
    #[arg(
        long,
        env = "PODS_RATE_WS_TICKETS_PER_MIN",
        default_value_t = 120,
        global = true
    )]
    pub rate_ws_tickets_per_min: u32,
    /// Prefix of every Redis key and channel this deployment uses.
    #[arg(long, env = "PODS_REDIS_PREFIX", default_value = "pods", global = true)]
    pub redis_prefix: String,
    /// The SQS queue to use; unset: the queue `SQS_QUEUE_NAME` is found or made, with a
    /// dead-letter queue. The endpoint, region and credentials come from `AWS_ENDPOINT_URL`,
    /// `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, env = "SQS_QUEUE_URL", global = true)]
    pub sqs_queue_url: Option<String>,
    #[arg(
        long,
        env = "SQS_QUEUE_NAME",
        default_value = "pods-executions",
        global = true
    )]
    pub sqs_queue_name: String,
    /// Where pod configs live: `sql` (the database) or `dynamodb` (AWS, or moto via
    /// `AWS_ENDPOINT_URL`).
    #[arg(long, env = "POD_STORE", value_enum, default_value_t = PodStoreBackend::Sql, global = true)]
    pub pod_store: PodStoreBackend,
    /// The DynamoDB table of pod configs (made if missing).
    #[arg(
        long,
        env = "PODS_DYNAMODB_TABLE",
        default_value = "pods",
        global = true
    )]
    pub dynamodb_table: String,
    /// A folder of `.wasm` plugins loaded, reloaded and unloaded as files come and go.
    #[arg(long, env = "PLUGIN_DIR", default_value = "./plugins.d", global = true)]
    pub plugin_dir: PathBuf,
    /// Largest plugin upload (`POST /api/v1/plugins`), in bytes.
    #[arg(long, env = "PODS_PLUGIN_MAX_BYTES", default_value_t = 32 << 20, global = true)]
    pub plugin_max_bytes: usize,
    /// Longest an uploaded plugin may take to compile, in seconds.
    #[arg(
        long,
        env = "PODS_PLUGIN_COMPILE_SECS",
        default_value_t = 60,
        global = true
    )]
    pub plugin_compile_secs: u64,
    /// A JSON file of per-plugin limits (`{"openai": {"deadlineMs": 500, "maxConcurrent": 50}}`);
    /// limits set through the API replace a plugin's.
    #[arg(long, env = "PODS_PLUGIN_LIMITS", global = true)]
    pub plugin_limits: Option<PathBuf>,
    /// Exceptions to the egress policy, which refuses internal addresses (loopback, private,
    /// link-local, …): comma-separated CIDRs, addresses, `ip:port`, host names or `host:port`,
    /// e.g. `127.0.0.1:11434` for a local Ollama.
    #[arg(long, env = "PODS_EGRESS_ALLOW", global = true)]
    pub egress_allow: Option<String>,
    /// Largest answer text (and reasoning, each) and request body a plugin may hand back, in
    /// bytes; beyond it a call fails with `PLUGIN_OUTPUT_TOO_LARGE`.
    #[arg(long, env = "PODS_PLUGIN_MAX_OUTPUT_BYTES", default_value_t = 8 << 20, global = true)]
    pub plugin_max_output_bytes: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "PODS_MAX_BODY_BYTES", default_value_t = 1 << 20, global = true)]
    pub max_body_bytes: usize,
    /// Delete finished executions older than this many days (default: keep everything). Usage
    /// and cost totals per key stay; see the README's "Retention".
    #[arg(long, env = "PODS_RETENTION_DAYS", global = true)]
    pub retention_days: Option<u32>,
    /// Also serve `GET /metrics` here without a token (e.g. `10.0.0.5:9464`, an address only the
    /// network's Prometheus reaches); on the API's address it always needs a system admin's token.
    #[arg(long, env = "PODS_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Settings {
    pub fn worker_config(&self) -> crate::worker::WorkerConfig {
        crate::worker::WorkerConfig {
            concurrency: self.workers,
            max_concurrency: self
                .workers_max
                .unwrap_or(self.workers.saturating_mul(4))
                .max(self.workers),
            max_attempts: self.max_attempts.max(1),
            backoff_base: Duration::from_millis(self.retry_base_ms),
            lease: self.lease(),
            sweep_every: (self.lease() / 2).min(Duration::from_secs(5)),
            retention: self
                .retention_days
                .filter(|days| *days > 0)
                .map(|days| Duration::from_secs(u64::from(days) * 86_400)),
            ..crate::worker::WorkerConfig::default()
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    pub fn queue_settings(&self) -> QueueSettings {
        QueueSettings {
            backend: self.queue_backend,
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            sqs_queue_url: self.sqs_queue_url.clone(),
            sqs_queue_name: self.sqs_queue_name.clone(),
            // One receive per attempt, and one more to see that none finished.
            sqs_max_receives: u32::try_from(self.max_attempts.max(1) + 1).unwrap_or(u32::MAX),
            aws: AwsSettings::from_env(),
        }
    }

    fn events_backend(&self) -> EventsBackend {
        self.events_backend.unwrap_or(match self.queue_backend {
            QueueBackend::Redis => EventsBackend::Redis,
            _ => EventsBackend::Local,
        })
    }

    /// The rate limiter: buckets in this process, or shared through Redis.
    pub async fn limiter(&self) -> Result<crate::limiter::Limiter> {
        use crate::limiter::Limiter;
        Ok(
            match self.rate_limits_backend.unwrap_or(self.events_backend()) {
                EventsBackend::Local => Limiter::local(),
                EventsBackend::Redis => Limiter::redis(&self.redis_url, &self.redis_prefix)
                    .await
                    .context("connect the rate limiter to Redis")?,
            },
        )
    }

    /// The limits the API enforces.
    pub fn rates(&self) -> crate::limiter::Rates {
        use crate::limiter::Rate;
        crate::limiter::Rates {
            executions: Rate::per_minute(self.rate_executions_per_min),
            auth_failures: Rate::per_minute(self.rate_auth_failures_per_min),
            logins: Rate::per_minute(self.rate_logins_per_min),
            ws_tickets: Rate::per_minute(self.rate_ws_tickets_per_min),
        }
    }

    /// The event hub: this process only, or relayed through Redis.
    pub async fn events(&self) -> Result<Hub> {
        Ok(match self.events_backend() {
            EventsBackend::Local => Hub::default(),
            EventsBackend::Redis => Hub::with_redis(&self.redis_url, &self.redis_prefix)
                .await
                .context("connect the Redis event relay")?,
        })
    }

    pub fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            limits: Limits {
                deadline: Duration::from_millis(self.plugin_deadline_ms),
                memory_cap: self.plugin_memory_mb << 20,
            },
            // wasmtime wants an absolute cache path; PODS_DATA_DIR is often relative (./data).
            cache_dir: std::path::absolute(self.data_dir.join("wasm-cache")).ok(),
            workspace_calls: self
                .plugin_workspace_calls
                .unwrap_or_else(crate::plugins::default_workspace_calls),
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
            return Ok(Tokens::new(secret.as_bytes(), self.token_ttl()));
        }
        let path = self.data_dir.join("jwt.secret");
        if !path.exists() {
            write_private(&path, &Vault::generate_key())
                .with_context(|| format!("write {}", path.display()))?;
        }
        let secret =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Ok(Tokens::new(secret.trim().as_bytes(), self.token_ttl()))
    }

    fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_hours.clamp(1, 24 * 365) * 3600)
    }

    /// Everything a node needs, opened and loaded.
    pub async fn node(&self) -> Result<Node> {
        let store = self.store().await?;
        let vault = self.vault()?;
        let runtime = std::sync::Arc::new(Runtime::new(self.runtime_config())?);
        let registry = Registry::with_builtins(
            runtime,
            LoadLimits {
                max_bytes: self.plugin_max_bytes,
                compile_timeout: Duration::from_secs(self.plugin_compile_secs.max(1)),
            },
        )
        .await?
        .keep_uploads_in(self.data_dir.join("plugins"))
        .vetted_by(crate::conformance::vetting());
        if let Some(path) = &self.plugin_limits {
            let file = crate::plugins::limits::read_file(path, self.plugin_memory_mb as u32)
                .map_err(|why| anyhow::anyhow!("PODS_PLUGIN_LIMITS: {why}"))?;
            registry.set_file_limits(file);
        }
        let restored = registry.restore_uploads().await;
        if restored > 0 {
            tracing::info!(restored, "uploaded plugins loaded again");
        }
        crate::plugins::limits::apply_stored(&registry, &store).await;
        crate::plugins::limits::spawn_refresh(registry.clone(), store.clone());
        let egress_policy = match &self.egress_allow {
            Some(spec) => EgressPolicy::with_exceptions(spec).map_err(anyhow::Error::msg)?,
            None => EgressPolicy::public_only(),
        };
        let egress = Egress::new(EgressConfig {
            timeout: Duration::from_secs(self.provider_timeout_secs),
            max_response_bytes: self.provider_max_response_bytes,
            policy: egress_policy.clone(),
            caps: crate::egress::OutputCaps {
                text_bytes: self.plugin_max_output_bytes,
                body_bytes: self.plugin_max_output_bytes,
                ..crate::egress::OutputCaps::default()
            },
        })?;
        let queue = crate::queue::open(&self.queue_settings(), &store)
            .await
            .with_context(|| format!("open the {:?} queue", self.queue_backend))?;
        let pods = match self.pod_store {
            PodStoreBackend::Sql => PodStore::Sql(store.clone()),
            PodStoreBackend::DynamoDb => PodStore::Dynamo {
                store: store.clone(),
                items: DynamoPods::open(AwsSettings::from_env().dynamodb(), &self.dynamodb_table)
                    .await
                    .context("open the DynamoDB pod table")?,
            },
        };
        let events = self.events().await?;
        let limiter = std::sync::Arc::new(self.limiter().await?);
        let ledger = Ledger::new(store.clone(), events.clone());
        let executor = Executor::new(Services {
            store: store.clone(),
            plugins: registry.clone(),
            egress,
            vault: vault.clone(),
            pods: pods.clone(),
            queue: queue.clone(),
            ledger: ledger.clone(),
            lease: self.lease(),
            limiter: limiter.clone(),
        });
        let runs = crate::runs::Runs::new(
            store.clone(),
            pods.clone(),
            ledger.clone(),
            executor.clone(),
            self.default_max_tokens,
            self.lease(),
        );
        Ok(Node {
            runs,
            egress_policy,
            limiter,
            rates: self.rates(),
            store,
            pods,
            plugins: registry,
            vault,
            queue,
            events,
            ledger,
            executor,
        })
    }
}

/// A node's services, opened: what the API and the workers are given.
#[derive(Clone)]
pub struct Node {
    pub store: Store,
    pub pods: PodStore,
    pub plugins: Registry,
    pub vault: Vault,
    pub queue: std::sync::Arc<dyn crate::queue::Queue>,
    pub events: Hub,
    pub ledger: Ledger,
    pub executor: Executor,
    pub egress_policy: EgressPolicy,
    pub limiter: std::sync::Arc<crate::limiter::Limiter>,
    pub rates: crate::limiter::Rates,
    pub runs: crate::runs::Runs,
}

impl Node {
    /// What the workers and the sweeper need.
    pub fn scheduling(&self) -> crate::worker::Scheduling {
        crate::worker::Scheduling {
            store: self.store.clone(),
            executor: self.executor.clone(),
            ledger: self.ledger.clone(),
            queue: self.queue.clone(),
            runs: self.runs.clone(),
        }
    }
}
