//! The Redis backend: a Stream read through one consumer group.
//!
//! - `{prefix}:jobs` is the stream; each entry's `job` field is the job as JSON. An entry is
//!   deleted when acked, so the stream holds exactly the jobs not yet done.
//! - A consumer's pending entries are its leases: renewing one resets its idle time (`XCLAIM`),
//!   and an entry idle past the lease is a dead consumer's and is taken over (`XAUTOCLAIM`).
//! - `{prefix}:delayed` is a sorted set of retries by due time; due ones are moved into the
//!   stream (atomically, by a script) before each read.
//! - A flushed Redis loses its jobs; the group is made again on the next read, and the sweeper
//!   re-adds the executions whose jobs were lost.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError};

use super::{Delivery, Job, JobState, Queue, QueueCounts, QueueError, Result, millis};
use crate::domain::now_ms;

const GROUP: &str = "workers";

/// Moves due retries (KEYS[1], a sorted set) into the stream (KEYS[2]); returns when the next
/// one is due (unix ms), or -1 if none waits.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', job)
  redis.call('ZREM', KEYS[1], job)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next[2] then return tonumber(next[2]) end
return -1";

pub struct RedisQueue {
    client: Client,
    /// Short commands, shared.
    commands: ConnectionManager,
    /// Blocking reads get a connection of their own (a blocked multiplexed connection would hold
    /// up every command behind it); made again after an error.
    reader: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    stream: String,
    delayed: String,
    consumer: String,
    promote: redis::Script,
    /// When due retries were last moved into the stream, and stalled entries last reclaimed:
    /// both are looked for now and then, not on every read.
    promoted: std::sync::Mutex<Option<Instant>>,
    reclaimed: std::sync::Mutex<Option<Instant>>,
    /// When the next retry this node knows of is due (unix ms): a blocking read ends by then,
    /// so a retry leaves on time rather than at the end of a whole poll.
    next_due: std::sync::Mutex<Option<i64>>,
}

/// How often due retries are moved into the stream.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);

/// Whether `every` has passed since `last` (and if so, marks now).
fn due(last: &std::sync::Mutex<Option<Instant>>, every: Duration) -> bool {
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < every) {
        return false;
    }
    *last = Some(now);
    true
}

impl RedisQueue {
    /// Connects to `url` and makes the stream and its group if they are missing.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = Client::open(url)?;
        let commands = client.get_connection_manager().await?;
        let queue = RedisQueue {
            client,
            commands,
            reader: tokio::sync::Mutex::new(None),
            stream: format!("{prefix}:jobs"),
            delayed: format!("{prefix}:delayed"),
            consumer: format!("{}-{}", std::process::id(), crate::domain::new_id()),
            promote: redis::Script::new(PROMOTE),
            promoted: Default::default(),
            next_due: Default::default(),
            reclaimed: Default::default(),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    async fn ensure_group(&self) -> Result<()> {
        let mut conn = self.commands.clone();
        // From 0: the stream holds only jobs not yet done, and a new group must see them all.
        let made: std::result::Result<(), RedisError> =
            conn.xgroup_create_mkstream(&self.stream, GROUP, "0").await;
        match made {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn delivery(&self, entry: &StreamId) -> Option<Delivery> {
        let job = match entry
            .get::<String>("job")
            .map(|j| serde_json::from_str::<Job>(&j))
        {
            Some(Ok(job)) => job,
            _ => {
                tracing::warn!(entry = %entry.id, stream = %self.stream, "skipping an unreadable queue entry");
                return None;
            }
        };
        Some(Delivery {
            job,
            handle: entry.id.clone(),
        })
    }

    async fn read(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let mut reader = self.reader.lock().await;
        let conn = match reader.as_mut() {
            Some(conn) => conn,
            None => reader.insert(
                self.client
                    .get_multiplexed_async_connection_with_config(
                        &AsyncConnectionConfig::new().set_response_timeout(None),
                    )
                    .await?,
            ),
        };
        let block = millis(wait).max(1);
        let read = tokio::time::timeout(
            wait + Duration::from_secs(5),
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(max)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">")
                .query_async::<Option<StreamReadReply>>(conn),
        )
        .await;
        let reply = match read {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                if e.code() == Some("NOGROUP") {
                    // Redis was flushed or restarted empty.
                    drop(reader);
                    self.ensure_group().await?;
                    return Ok(vec![]);
                }
                *reader = None;
                return Err(e.into());
            }
            Err(_) => {
                *reader = None;
                return Err(QueueError::Config("a blocking read from Redis hung".into()));
            }
        };
        Ok(reply
            .map(|r| {
                r.keys
                    .iter()
                    .flat_map(|k| k.ids.iter())
                    .filter_map(|e| self.delivery(e))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn add(&self, job: &Job, delay: Duration) -> Result<()> {
        let payload = serde_json::to_string(job).map_err(|e| QueueError::Config(e.to_string()))?;
        let mut conn = self.commands.clone();
        if delay.is_zero() {
            let _: String = conn.xadd(&self.stream, "*", &[("job", payload)]).await?;
        } else {
            let due_at = now_ms() + millis(delay);
            let _: i64 = conn.zadd(&self.delayed, payload, due_at).await?;
            let mut next = self.next_due.lock().unwrap_or_else(|e| e.into_inner());
            *next = Some(next.map_or(due_at, |at| at.min(due_at)));
        }
        Ok(())
    }

    async fn consume(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        let mut conn = self.commands.clone();
        let now = now_ms();
        let next_due = *self.next_due.lock().unwrap_or_else(|e| e.into_inner());
        if due(&self.promoted, PROMOTE_EVERY) || next_due.is_some_and(|at| at <= now) {
            let next: i64 = self
                .promote
                .key(&self.delayed)
                .key(&self.stream)
                .arg(now)
                .invoke_async(&mut conn)
                .await?;
            *self.next_due.lock().unwrap_or_else(|e| e.into_inner()) = (next >= 0).then_some(next);
        }
        // Wait no longer than until the next retry is due.
        let wait = match *self.next_due.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(at) => wait.min(Duration::from_millis(
                at.saturating_sub(now_ms()).max(1) as u64
            )),
            None => wait,
        };
        // An entry is stalled only once idle a whole lease: looking four times a lease is plenty.
        if !due(&self.reclaimed, lease / 4) {
            return self.read(max, wait).await;
        }
        // A dead consumer's jobs first: they have waited longest.
        let stalled: std::result::Result<StreamAutoClaimReply, RedisError> =
            redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(millis(lease))
                .arg("0-0")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await;
        match stalled {
            Ok(reply) if !reply.claimed.is_empty() => {
                if reply.claimed.len() >= max {
                    // There may be more: look again on the next read.
                    *self.reclaimed.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                return Ok(reply
                    .claimed
                    .iter()
                    .filter_map(|e| self.delivery(e))
                    .collect());
            }
            Err(e) if e.code() == Some("NOGROUP") => self.ensure_group().await?,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        self.read(max, wait).await
    }

    async fn extend(&self, delivery: &Delivery, _lease: Duration) -> Result<()> {
        // Claiming it again resets its idle time, which is what the lease is measured by.
        let mut conn = self.commands.clone();
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(&delivery.handle)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let mut conn = self.commands.clone();
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .xack(&self.stream, GROUP, &[&delivery.handle])
            .xdel(&self.stream, &[&delivery.handle])
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        let due_at = now_ms() + millis(delay);
        {
            let mut next = self.next_due.lock().unwrap_or_else(|e| e.into_inner());
            *next = Some(next.map_or(due_at, |at| at.min(due_at)));
        }
        let payload =
            serde_json::to_string(&delivery.job).map_err(|e| QueueError::Config(e.to_string()))?;
        let mut conn = self.commands.clone();
        let _: (i64, i64, i64) = redis::pipe()
            .atomic()
            .zadd(&self.delayed, payload, due_at)
            .xack(&self.stream, GROUP, &[&delivery.handle])
            .xdel(&self.stream, &[&delivery.handle])
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn cancel(&self, _execution_id: &str) -> Result<()> {
        // Streams are not searchable by content; the worker that gets it drops it.
        Ok(())
    }

    async fn status(&self, job: &Job) -> Result<Option<JobState>> {
        let payload = serde_json::to_string(job).map_err(|e| QueueError::Config(e.to_string()))?;
        let mut conn = self.commands.clone();
        let due: Option<f64> = conn.zscore(&self.delayed, payload).await?;
        // A stream entry cannot be found by its content.
        Ok(due.map(|_| JobState::Delayed))
    }

    async fn metrics(&self) -> Result<QueueCounts> {
        let mut conn = self.commands.clone();
        let groups: std::result::Result<redis::streams::StreamInfoGroupsReply, RedisError> =
            conn.xinfo_groups(&self.stream).await;
        let (waiting, active, delivered) = match groups {
            Ok(reply) => reply
                .groups
                .iter()
                .find(|g| g.name == GROUP)
                .map(|g| {
                    let delivered = g.last_delivered_id.clone();
                    (g.lag.unwrap_or(0) as i64, g.pending as i64, Some(delivered))
                })
                .unwrap_or((0, 0, None)),
            // No stream yet (or Redis was flushed): nothing queued.
            Err(_) => (0, 0, None),
        };
        // The oldest waiting job is the first entry after the group's last delivered one; its
        // id starts with the time it was added (ms).
        let mut oldest_waiting_ms = 0;
        if let (Some(after), true) = (delivered, waiting > 0) {
            let next: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            if let Some(added) = next
                .ids
                .first()
                .and_then(|entry| entry.id.split('-').next())
                .and_then(|ms| ms.parse::<i64>().ok())
            {
                oldest_waiting_ms = (crate::domain::now_ms() - added).max(0);
            }
        }
        let delayed: i64 = conn.zcard(&self.delayed).await?;
        Ok(QueueCounts {
            waiting,
            delayed,
            active,
            oldest_waiting_ms: Some(oldest_waiting_ms),
        })
    }
}
