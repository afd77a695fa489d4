//! The execution queue: one interface, three backends, chosen by `QUEUE_BACKEND` and nothing else.
//!
//! - `embedded` (default): jobs in the SQL store; no service needed; survives a restart.
//! - `redis`: a Redis Stream read through a consumer group; stalled jobs (a dead consumer's) are
//!   claimed again once idle past their lease; delayed retries wait in a sorted set.
//! - `sqs`: AWS SQS (or `moto_server`), long polling, the visibility timeout as the lease, and a
//!   dead-letter queue for a job received more often than any execution may be attempted.
//!
//! A queue is transport, not truth. Delivery is at least once; the execution row in the store
//! says whether a delivered job still has work to do (see `worker`), and a sweeper re-adds
//! executions whose job was lost (a crashed enqueue, a flushed Redis). So a backend may drop a
//! cancelled job or deliver a job twice without changing what is run or billed.
//!
//! Lifecycle of a job: [`Queue::add`] → [`Queue::consume`] leases it to one worker →
//! [`Queue::extend`] while it runs → [`Queue::ack`] / [`Queue::ack_finished`] (done, whatever
//! the outcome) or [`Queue::retry`] (run again later). A lease that runs out makes the job
//! deliverable again.

mod embedded;
mod redis;
mod sqs;

use std::sync::Arc;
use std::time::Duration;

pub use embedded::Embedded;
pub use redis::RedisQueue;
pub use sqs::SqsQueue;

/// One queued execution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub execution_id: String,
    pub workspace_id: String,
}

/// A job leased to this process, with the backend's handle on the delivery (an embedded lease
/// token, a stream entry id, an SQS receipt handle).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub job: Job,
    handle: String,
}

/// The queue at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    /// Due and not leased.
    pub waiting: i64,
    /// Waiting for a retry's backoff to pass.
    pub delayed: i64,
    /// Leased to a worker (running, or about to).
    pub active: i64,
    /// How long the oldest waiting job has waited, in ms (0: none waits); `None` where the
    /// backend cannot tell (SQS shows it only in CloudWatch's `ApproximateAgeOfOldestMessage`).
    pub oldest_waiting_ms: Option<i64>,
}

/// Where one execution's job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Due, not leased.
    Waiting,
    /// Waiting for a retry's backoff to pass.
    Delayed,
    /// Leased to a worker.
    Active,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("sqs: {0}")]
    Sqs(String),
    #[error("queue configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, QueueError>;

#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// `embedded`, `redis` or `sqs`.
    fn backend(&self) -> &'static str;

    /// Adds a job that becomes due after `delay`.
    async fn add(&self, job: &Job, delay: Duration) -> Result<()>;

    /// Adds a job that is due now but takes its place in line as if it had been added at
    /// `since` (unix ms): a flow run's later pods go ahead of newer runs' first ones, so runs
    /// finish in the order they started. Backends that cannot reorder (Redis streams, SQS) add
    /// it at the end.
    async fn add_in_line(&self, job: &Job, since: i64) -> Result<()> {
        let _ = since;
        self.add(job, Duration::ZERO).await
    }

    /// Up to `max` due jobs, each leased to this process for `lease`. Waits up to `wait` for
    /// one when none is due, then returns what it has (maybe nothing).
    async fn consume(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Delivery>>;

    /// Renews a delivery's lease; call it well within the lease while the job runs.
    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<()>;

    /// The job is done, whatever its outcome: it is not delivered again.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;

    /// As [`Queue::ack`], for a job whose execution the store has just moved to a final status
    /// (the embedded queue's job went with that statement).
    async fn ack_finished(&self, delivery: &Delivery) -> Result<()> {
        self.ack(delivery).await
    }

    /// Releases the job to be delivered again after `delay`.
    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<()>;

    /// Drops the execution's job if this backend can find it. Best effort: a worker that
    /// receives it anyway finds the execution cancelled and acks it.
    async fn cancel(&self, execution_id: &str) -> Result<()>;

    /// Where the job stands, if this backend can look it up: the embedded queue always can;
    /// Redis can find a delayed retry; SQS cannot find a message by its content (`None`).
    async fn status(&self, job: &Job) -> Result<Option<JobState>>;

    async fn metrics(&self) -> Result<QueueCounts>;

    /// Stops blocking reads and lets go of connections.
    async fn close(&self) {}
}

/// Which backend, from `QUEUE_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    #[default]
    Embedded,
    Redis,
    Sqs,
}

/// Where the non-embedded backends live.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub backend: Backend,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// Prefix of the Redis keys (`{prefix}:jobs`, `{prefix}:delayed`).
    pub redis_prefix: String,
    /// `SQS_QUEUE_URL`; else the queue named `sqs_queue_name` is created (with its dead-letter
    /// queue) or found.
    pub sqs_queue_url: Option<String>,
    pub sqs_queue_name: String,
    /// SQS moves a job to the dead-letter queue after this many receives.
    pub sqs_max_receives: u32,
    pub aws: crate::aws::AwsSettings,
}

/// Opens the configured backend.
pub async fn open(settings: &QueueSettings, store: &crate::store::Store) -> Result<Arc<dyn Queue>> {
    Ok(match settings.backend {
        Backend::Embedded => Arc::new(Embedded::new(store.clone())),
        Backend::Redis => {
            Arc::new(RedisQueue::connect(&settings.redis_url, &settings.redis_prefix).await?)
        }
        Backend::Sqs => Arc::new(
            SqsQueue::open(
                settings.aws.sqs(),
                settings.sqs_queue_url.clone(),
                &settings.sqs_queue_name,
                settings.sqs_max_receives,
            )
            .await?,
        ),
    })
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
