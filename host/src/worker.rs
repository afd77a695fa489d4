//! Queue workers: take jobs, run their executions, retry what a retry may fix; and the sweeper,
//! which re-queues executions whose job was lost.
//!
//! Workers only schedule: a bounded pool (`concurrency` executions at once) takes jobs from the
//! queue in batches and claims their executions through the [`Ledger`] in one write: only a
//! QUEUED execution, or a RUNNING one whose worker's lease ran out, can be claimed, so a job
//! delivered twice (or for an execution finished or cancelled meanwhile) is acked and nothing
//! more. The claim's heartbeat renews both the job's lease and the row's while the
//! [`Executor`] runs the attempt; then the worker acks the job, or puts it back after the
//! backoff when the attempt was re-queued for a retry (429, 5xx, timeouts, connection errors,
//! with attempts left: exponential backoff with jitter, or the provider's `retry-after` if
//! longer).
//!
//! The sweeper looks for executions still QUEUED or RUNNING after their lease (the enqueueing
//! process died before adding the job, Redis was flushed, a worker died and its job is gone):
//! it queues them again, or ends them as ERROR once they have used all their attempts.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{ErrorCode, now_ms};
use crate::execution::{AttemptOutcome, Executor, Retry};
use crate::ledger::{Claim, Failure, Ledger};
use crate::queue::{Delivery, Job, Queue};
use crate::store::StoreError;

/// What the workers and the sweeper work with.
#[derive(Clone)]
pub struct Scheduling {
    /// For retention, which deletes old executions (not a status change).
    pub store: crate::store::Store,
    pub executor: Executor,
    pub ledger: Ledger,
    pub queue: Arc<dyn Queue>,
    /// Flow runs: a finished pod moves its run on.
    pub runs: crate::runs::Runs,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Executions run at once by this process while the queue keeps up; 0 runs none (an
    /// API-only node).
    pub concurrency: usize,
    /// While work waits (a read from the queue got every job it asked for), the pool grows
    /// by half of `concurrency` per read up to this many; it shrinks back as reads come back short.
    pub max_concurrency: usize,
    /// Attempts per execution, the first included.
    pub max_attempts: i64,
    /// Backoff before attempt n+1 is `base · 2^(n-1)`, ±25 % jitter.
    pub backoff_base: Duration,
    /// How long a job and its execution stay leased without news from their worker, which
    /// renews both every third of this. A worker that dies stops renewing: after this long,
    /// another worker takes the job over.
    pub lease: Duration,
    /// How long one read from the queue waits for a job.
    pub poll: Duration,
    /// How often the sweeper looks for executions whose lease ran out.
    pub sweep_every: Duration,
    /// Finished executions older than this are deleted by the sweeper; `None` keeps all.
    pub retention: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            max_concurrency: 40,
            max_attempts: 3,
            backoff_base: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            sweep_every: Duration::from_secs(5),
            retention: None,
        }
    }
}

/// The running workers.
pub struct Workers {
    pool: Arc<Pool>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The worker slots: one per execution run at once. There are `base` while the queue keeps up;
/// while work waits there are more, up to `max` — a slow provider needs many calls in flight,
/// and a bigger read and claim serve more jobs per write.
struct Pool {
    slots: Arc<tokio::sync::Semaphore>,
    /// Slots now, free and taken.
    size: std::sync::atomic::AtomicUsize,
    base: usize,
    max: usize,
}

impl Pool {
    fn new(base: usize, max: usize) -> Self {
        Pool {
            slots: Arc::new(tokio::sync::Semaphore::new(base)),
            size: base.into(),
            base,
            max: max.max(base),
        }
    }

    /// After a read from the queue: grow while it came back full, shrink toward `base` while
    /// it came back short.
    fn follow(&self, backlog: bool) {
        use std::sync::atomic::Ordering;
        let step = self.base.div_ceil(2).max(1);
        let size = self.size.load(Ordering::Relaxed);
        if backlog && size < self.max {
            let more = step.min(self.max - size);
            self.slots.add_permits(more);
            self.size.fetch_add(more, Ordering::Relaxed);
        } else if !backlog && size > self.base {
            // Only free slots can go; the rest go on a later read.
            let fewer = self.slots.forget_permits(step.min(size - self.base));
            self.size.fetch_sub(fewer, Ordering::Relaxed);
        }
    }
}

impl Workers {
    /// Stops taking jobs and waits up to `deadline` for the running executions to finish. What
    /// is still running then is left to its lease: another worker (or this one, restarted)
    /// takes it over.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        // The reader has stopped, so the pool's size no longer changes.
        let size = self.pool.size.load(std::sync::atomic::Ordering::Relaxed);
        let all = u32::try_from(size).unwrap_or(u32::MAX);
        match tokio::time::timeout(deadline, self.pool.slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("workers stopped"),
            Err(_) => tracing::warn!(
                ?deadline,
                "workers stopped with executions still running; their leases will expire"
            ),
        }
    }
}

/// Starts the workers and the sweeper.
pub fn spawn(scheduling: Scheduling, config: WorkerConfig) -> Workers {
    let pool = Arc::new(Pool::new(config.concurrency, config.max_concurrency));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = Workers {
        pool: pool.clone(),
        stop,
    };
    if config.concurrency == 0 {
        return workers;
    }
    let owner: Arc<str> = format!("{}-{}", std::process::id(), crate::domain::new_id()).into();
    tokio::spawn(sweep(scheduling.clone(), config.clone(), stopped.clone()));
    tokio::spawn(take_jobs(scheduling, config, owner, pool, stopped));
    workers
}

/// While work waits (the last read got every job it asked for), the reader gives more slots this
/// long to free before it reads, so that one read and one claim serve several jobs.
const GATHER: Duration = Duration::from_millis(1);

async fn take_jobs(
    scheduling: Scheduling,
    config: WorkerConfig,
    owner: Arc<str>,
    pool: Arc<Pool>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let queue = scheduling.queue.clone();
    let slots = pool.slots.clone();
    let mut backlog = false;
    loop {
        // At least one free slot, then as many more as are free: one read fills them all.
        let first = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = stopped.changed() => return,
        };
        let Ok(first) = first else { return };
        let mut batch = vec![first];
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            batch.push(slot);
        }
        let enough = pool
            .size
            .load(std::sync::atomic::Ordering::Relaxed)
            .div_ceil(2);
        if backlog && batch.len() < enough {
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < enough {
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => batch.push(slot),
                        Err(_) => return,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                    _ = stopped.changed() => return,
                }
            }
        }
        if *stopped.borrow() {
            return;
        }
        let read = tokio::select! {
            read = queue.consume(batch.len(), config.lease, config.poll) => read,
            _ = stopped.changed() => return,
        };
        let deliveries = match read {
            Ok(deliveries) => deliveries,
            Err(e) => {
                drop(batch);
                tracing::warn!(error = %e, "reading the queue failed; retrying");
                tokio::time::sleep(config.poll).await;
                continue;
            }
        };
        backlog = !deliveries.is_empty() && deliveries.len() == batch.len();
        // One claim for all of them; a job whose claim fails keeps its lease and comes back
        // when it runs out: nothing is lost.
        let wanted = deliveries
            .iter()
            .map(|d| (d.job.execution_id.clone(), Some((queue.clone(), d.clone()))))
            .collect();
        let claims = match scheduling
            .ledger
            .claim_many(wanted, &owner, config.lease)
            .await
        {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(jobs = deliveries.len(), error = %e, "claiming queued executions failed");
                drop(batch);
                tokio::time::sleep(config.poll).await;
                continue;
            }
        };
        for (delivery, claim) in deliveries.into_iter().zip(claims) {
            let Some(slot) = batch.pop() else { break };
            let (scheduling, config) = (scheduling.clone(), config.clone());
            tokio::spawn(async move {
                process(&scheduling, &config, delivery, claim).await;
                drop(slot);
            });
        }
        // The slots this read did not use are free again: a shrinking pool can let them go.
        // Once stopping, the pool keeps its size (shutdown waits for that many slots).
        drop(batch);
        if !*stopped.borrow() {
            pool.follow(backlog);
        }
    }
}

async fn process(scheduling: &Scheduling, config: &WorkerConfig, delivery: Delivery, claim: Claim) {
    let id = delivery.job.execution_id.clone();
    let queue = &scheduling.queue;
    let (running, execution) = match claim {
        Claim::Run(running, execution) => (running, execution),
        Claim::Skip => {
            // Finished, cancelled or taken by a live worker: this delivery is a duplicate.
            if let Err(e) = queue.ack(&delivery).await {
                tracing::warn!(execution = %id, error = %e, "acking a duplicate job failed");
            }
            return;
        }
    };
    let retry = Retry {
        backoff: backoff(config, execution.attempts),
        grace: config.lease,
    };
    let outcome = scheduling
        .executor
        .run_claimed(running, &execution, config.max_attempts, retry)
        .await;
    let done = matches!(outcome, Ok(AttemptOutcome::Done));
    let settled = match outcome {
        Ok(AttemptOutcome::Done) => queue.ack_finished(&delivery).await,
        Ok(AttemptOutcome::RetryAfter(delay)) => queue.retry(&delivery, delay).await,
        Err(e) => {
            // The row keeps its lease and the job comes back: nothing is lost.
            tracing::warn!(execution = %id, error = %e, "running a queued execution failed in the store");
            return;
        }
    };
    if let Err(e) = settled {
        tracing::warn!(execution = %id, error = %e, "settling a job failed; it will be delivered again and skipped");
    }
    // A pod of a flow run ended: its dependents may start (if this fails, the sweeper does it).
    if let (true, Some(run)) = (done, &execution.run_id)
        && let Err(e) = scheduling.runs.advance(&execution.workspace_id, run).await
    {
        tracing::warn!(run = %run, error = %e, "advancing a flow run failed; the sweeper will");
    }
}

/// Every `sweep_every`, re-queues (or ends) executions whose lease ran out.
async fn sweep(
    scheduling: Scheduling,
    config: WorkerConfig,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.sweep_every) => {}
            _ = stopped.changed() => return,
        }
        if let Err(e) = sweep_once(&scheduling.ledger, scheduling.queue.as_ref(), &config).await {
            tracing::warn!(error = %e, "sweeping stale executions failed");
        }
        if let Err(e) = scheduling.runs.sweep().await {
            tracing::warn!(error = %e, "advancing stalled flow runs failed");
        }
        if let Some(retention) = config.retention {
            match forget_old(&scheduling.store, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "deleted executions past the retention"),
                Err(e) => tracing::warn!(error = %e, "deleting old executions failed"),
            }
        }
    }
}

/// Executions deleted per statement, and statements per sweep: small writes, each its own
/// commit, so writers wait for none of them long; a backlog clears over a few sweeps.
const RETENTION_BATCH: u32 = 500;
const RETENTION_BATCHES_PER_SWEEP: usize = 20;

/// Deletes finished executions older than `retention`, a batch at a time; returns how many.
pub async fn forget_old(
    store: &crate::store::Store,
    retention: Duration,
) -> Result<u64, StoreError> {
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    for _ in 0..RETENTION_BATCHES_PER_SWEEP {
        let n = store
            .delete_finished_executions(cutoff, RETENTION_BATCH)
            .await?;
        deleted += n;
        if n < u64::from(RETENTION_BATCH) {
            break;
        }
        // Let waiting writers in between batches.
        tokio::task::yield_now().await;
    }
    Ok(deleted)
}

/// One pass of the sweeper; returns how many executions it re-queued or ended.
pub async fn sweep_once(
    ledger: &Ledger,
    queue: &dyn Queue,
    config: &WorkerConfig,
) -> Result<usize, SweepError> {
    let mut handled = 0;
    for stale in ledger.stale(500).await? {
        if stale.synchronous || stale.attempts >= config.max_attempts {
            let failure = if stale.synchronous {
                Failure::new(
                    ErrorCode::Interrupted,
                    "the node running this synchronous execution stopped before it ended",
                )
            } else {
                Failure::new(
                    ErrorCode::AttemptsExhausted,
                    format!(
                        "gave up after {} attempts: no worker finished it",
                        stale.attempts
                    ),
                )
            };
            if ledger.abandon(&stale, &failure).await? {
                handled += 1;
                if !stale.synchronous {
                    crate::metrics::get().queue_dead_letters.inc();
                }
            }
            continue;
        }
        let deadline = now_ms() + config.lease.as_millis() as i64;
        if ledger.requeue_stale(&stale, deadline).await? {
            handled += 1;
            tracing::info!(execution = %stale.id, "re-queueing an execution whose job was lost");
            let job = Job {
                execution_id: stale.id.clone(),
                workspace_id: stale.workspace_id.clone(),
            };
            queue.add(&job, Duration::ZERO).await?;
        }
    }
    Ok(handled)
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

/// `base · 2^(attempt-1)`, ±25 % jitter (so retries of a burst do not all land together).
fn backoff(config: &WorkerConfig, attempt: i64) -> Duration {
    let exp = config.backoff_base * 2u32.saturating_pow(attempt.clamp(1, 16) as u32 - 1);
    let jitter = 0.75 + 0.5 * (uuid::Uuid::now_v7().as_u128() % 1000) as f64 / 1000.0;
    exp.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_grows_while_work_waits_and_shrinks_back_as_it_keeps_up() {
        use std::sync::atomic::Ordering;
        let pool = Pool::new(10, 40);
        let size = |pool: &Pool| pool.size.load(Ordering::Relaxed);
        for expected in [15, 20, 25, 30, 35, 40, 40] {
            pool.follow(true);
            assert_eq!(size(&pool), expected);
        }
        assert_eq!(pool.slots.available_permits(), 40);
        // Slots in use cannot go: with 38 of 40 taken only the two free ones do.
        let taken = pool
            .slots
            .clone()
            .try_acquire_many_owned(38)
            .expect("slots");
        pool.follow(false);
        assert_eq!((size(&pool), pool.slots.available_permits()), (38, 0));
        drop(taken);
        for expected in [33, 28, 23, 18, 13, 10, 10] {
            pool.follow(false);
            assert_eq!(size(&pool), expected);
        }
        assert_eq!(pool.slots.available_permits(), 10);
        // A fixed pool stays as it is.
        let fixed = Pool::new(1, 1);
        fixed.follow(true);
        assert_eq!(size(&fixed), 1);
    }

    #[test]
    fn backoff_doubles_with_jitter() {
        let config = WorkerConfig {
            backoff_base: Duration::from_secs(2),
            ..WorkerConfig::default()
        };
        for (attempt, nominal) in [(1, 2.0), (2, 4.0), (3, 8.0)] {
            let d = backoff(&config, attempt).as_secs_f64();
            assert!(
                (nominal * 0.75..=nominal * 1.25).contains(&d),
                "attempt {attempt}: {d}"
            );
        }
    }
}
