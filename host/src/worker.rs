//! Queue workers: take jobs, run their executions, retry what a retry may fix; and the sweeper,
//! which re-queues executions whose job was lost.
//!
//! A bounded pool (`concurrency` executions at once) takes jobs from the queue in batches. For
//! each, the worker first claims the execution row in the store ([`Store::claim_execution`]):
//! only a QUEUED execution, or a RUNNING one whose worker's lease ran out, can be claimed, so a
//! job delivered twice (or for an execution finished or cancelled meanwhile) is acked and
//! nothing more. While it runs, the worker renews both the job's lease and the row's. A
//! retryable failure (429, 5xx, timeouts, connection errors) with attempts left goes back to
//! the queue after an exponential backoff with jitter, or the provider's `retry-after` if longer.
//!
//! The sweeper looks for executions still QUEUED or RUNNING after their lease (the enqueueing
//! process died before adding the job, Redis was flushed, a worker died and its job is gone):
//! it queues them again, or ends them as ERROR once they have used all their attempts.
//!
//! [`Store::claim_execution`]: crate::store::Store::claim_execution

use std::sync::Arc;
use std::time::Duration;

use crate::events::Event;
use crate::execution::{ExecError, ExecuteRequest, Executor};
use crate::queue::{Delivery, Job, Queue};
use crate::store::{
    Claim, Execution, ExecutionStatus, FinishedExecution, Store, StoreError, now_ms,
};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Executions run at once by this process; 0 runs none (an API-only node).
    pub concurrency: usize,
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
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            max_attempts: 3,
            backoff_base: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            sweep_every: Duration::from_secs(5),
        }
    }
}

/// The running workers.
pub struct Workers {
    slots: Arc<tokio::sync::Semaphore>,
    concurrency: usize,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Workers {
    /// Stops taking jobs and waits up to `deadline` for the running executions to finish. What
    /// is still running then is left to its lease: another worker (or this one, restarted)
    /// takes it over.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(true);
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        match tokio::time::timeout(deadline, self.slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("workers stopped"),
            Err(_) => tracing::warn!(
                ?deadline,
                "workers stopped with executions still running; their leases will expire"
            ),
        }
    }
}

/// Starts the workers and the sweeper.
pub fn spawn(executor: Executor, config: WorkerConfig) -> Workers {
    let concurrency = config.concurrency;
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = Workers {
        slots: slots.clone(),
        concurrency,
        stop,
    };
    if concurrency == 0 {
        return workers;
    }
    let owner: Arc<str> = format!("{}-{}", std::process::id(), crate::store::new_id()).into();
    tokio::spawn(sweep(executor.clone(), config.clone(), stopped.clone()));
    tokio::spawn(take_jobs(executor, config, owner, slots, stopped));
    workers
}

async fn take_jobs(
    executor: Executor,
    config: WorkerConfig,
    owner: Arc<str>,
    slots: Arc<tokio::sync::Semaphore>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let queue = executor.queue().clone();
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
        if *stopped.borrow() {
            return;
        }
        let read = tokio::select! {
            read = queue.consume(batch.len(), config.lease, config.poll) => read,
            _ = stopped.changed() => return,
        };
        match read {
            Ok(deliveries) => {
                for delivery in deliveries {
                    let Some(slot) = batch.pop() else { break };
                    let (executor, config, owner) =
                        (executor.clone(), config.clone(), owner.clone());
                    tokio::spawn(async move {
                        process(&executor, &config, &owner, delivery).await;
                        drop(slot);
                    });
                }
            }
            Err(e) => {
                drop(batch);
                tracing::warn!(error = %e, "reading the queue failed; retrying");
                tokio::time::sleep(config.poll).await;
            }
        }
    }
}

async fn process(executor: &Executor, config: &WorkerConfig, owner: &str, delivery: Delivery) {
    let id = delivery.job.execution_id.clone();
    let queue = executor.queue();
    let lease_ms = config.lease.as_millis() as i64;
    let execution = match executor.store().claim_execution(&id, owner, lease_ms).await {
        Ok(Claim::Run(execution)) => execution,
        Ok(Claim::Skip) => {
            // Finished, cancelled or taken by a live worker: this delivery is a duplicate.
            if let Err(e) = queue.ack(&delivery).await {
                tracing::warn!(execution = %id, error = %e, "acking a duplicate job failed");
            }
            return;
        }
        Err(e) => {
            // The job keeps its lease and comes back when it runs out: nothing is lost.
            tracing::warn!(execution = %id, error = %e, "claiming a queued execution failed");
            return;
        }
    };
    let heartbeat = {
        let (store, queue, delivery, owner) = (
            executor.store().clone(),
            queue.clone(),
            delivery.clone(),
            owner.to_string(),
        );
        let lease = config.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let id = &delivery.job.execution_id;
                if let Err(e) = queue.extend(&delivery, lease).await {
                    tracing::warn!(execution = %id, error = %e, "renewing a job's lease failed");
                }
                if let Err(e) = store
                    .extend_execution(id, &owner, lease.as_millis() as i64)
                    .await
                {
                    tracing::warn!(execution = %id, error = %e, "renewing an execution's lease failed");
                }
            }
        })
    };
    let outcome = run_attempt(executor, config, &delivery.job, &execution).await;
    heartbeat.abort();
    let settled = match outcome {
        Ok(None) => queue.ack_finished(&delivery).await,
        Ok(Some(delay)) => queue.retry(&delivery, delay).await,
        Err(e) => {
            // The row keeps its lease and the job comes back: nothing is lost.
            tracing::warn!(execution = %id, error = %e, "running a queued execution failed in the store");
            return;
        }
    };
    if let Err(e) = settled {
        tracing::warn!(execution = %id, error = %e, "settling a job failed; it will be delivered again and skipped");
    }
}

/// Runs one claimed attempt. `None`: the execution has reached a final status in the store;
/// `Some(delay)`: run it again after `delay`.
async fn run_attempt(
    executor: &Executor,
    config: &WorkerConfig,
    job: &Job,
    execution: &Execution,
) -> Result<Option<Duration>, StoreError> {
    let store = executor.store();
    let (id, attempt) = (&job.execution_id, execution.attempts);
    let event = |kind, status| Event::new(kind, status, id, &execution.pod_id, &execution.flow_id);
    if attempt > config.max_attempts {
        // Its workers kept dying mid-run: stop trying.
        let message = format!("no attempt of {} finished", config.max_attempts);
        store
            .finish_execution(id, &failed("ATTEMPTS_EXHAUSTED".into(), message.clone()))
            .await?;
        executor.publish(event("execution:error", "ERROR").with(
            "error",
            serde_json::json!({"code": "ATTEMPTS_EXHAUSTED", "message": message}),
        ));
        return Ok(None);
    }
    executor.publish(event("execution:running", "RUNNING").with("attempt", attempt));
    let request: Option<ExecuteRequest> =
        serde_json::from_value(execution.request_metadata["execute"].clone()).ok();
    let prepared = match request {
        Some(request) => executor
            .resolve(
                &executor.uncached_view(&job.workspace_id),
                &execution.user_id,
                &request,
            )
            .await
            .map(|(p, _)| p),
        None => Err(ExecError::Invalid {
            code: "INVALID_FIELD",
            message: "the queued request could not be read back".into(),
        }),
    };
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(ExecError::Store(e)) => return Err(e),
        Err(e) => {
            // What made it valid at enqueue time changed (pod or key deleted, …): fail it.
            let (code, message) = match &e {
                ExecError::Invalid { code, message } => (code.to_string(), message.clone()),
                other => ("INVALID_REQUEST".to_string(), other.to_string()),
            };
            store
                .finish_execution(id, &failed(code.clone(), message.clone()))
                .await?;
            executor.publish(event("execution:error", "ERROR").with(
                "error",
                serde_json::json!({"code": code, "message": message}),
            ));
            return Ok(None);
        }
    };
    prepared.execution_id = id.clone();
    prepared.retry_allowed = attempt < config.max_attempts;
    match executor.run(prepared, |_| {}).await {
        Err(ExecError::Retry { error, .. }) => {
            let delay = backoff(config, attempt).max(error.retry_after().unwrap_or_default());
            tracing::info!(execution = %id, attempt, ?delay, error = %error, "retrying");
            store
                .requeue_execution(
                    id,
                    error.code(),
                    &error.to_string(),
                    now_ms() + delay.as_millis() as i64,
                    config.lease.as_millis() as i64,
                )
                .await?;
            Ok(Some(delay))
        }
        Err(ExecError::Store(e)) => Err(e),
        // Completed, failed for good, or cancelled: the execution row says which.
        _ => Ok(None),
    }
}

/// Every `sweep_every`, re-queues (or ends) executions whose lease ran out.
async fn sweep(
    executor: Executor,
    config: WorkerConfig,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.sweep_every) => {}
            _ = stopped.changed() => return,
        }
        if let Err(e) = sweep_once(&executor, &config).await {
            tracing::warn!(error = %e, "sweeping stale executions failed");
        }
    }
}

/// One pass of the sweeper; returns how many executions it re-queued or ended.
pub async fn sweep_once(executor: &Executor, config: &WorkerConfig) -> Result<usize, SweepError> {
    let (store, queue): (&Store, &Arc<dyn Queue>) = (executor.store(), executor.queue());
    let mut handled = 0;
    for stale in store.stale_executions(500).await? {
        if stale.synchronous || stale.attempts >= config.max_attempts {
            let (code, message) = if stale.synchronous {
                (
                    "INTERRUPTED",
                    "the node running this synchronous execution stopped before it ended"
                        .to_string(),
                )
            } else {
                (
                    "ATTEMPTS_EXHAUSTED",
                    format!(
                        "gave up after {} attempts: no worker finished it",
                        stale.attempts
                    ),
                )
            };
            if store.abandon_execution(&stale, code, &message).await? {
                handled += 1;
                executor.publish(
                    Event::new(
                        "execution:error",
                        "ERROR",
                        &stale.id,
                        &stale.pod_id,
                        &stale.flow_id,
                    )
                    .with(
                        "error",
                        serde_json::json!({"code": code, "message": message}),
                    ),
                );
            }
            continue;
        }
        let deadline = now_ms() + executor.queue_grace().as_millis() as i64;
        if store.requeue_stale(&stale, deadline).await? {
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

fn failed(code: String, message: String) -> FinishedExecution {
    FinishedExecution {
        plugin_version: None,
        status: ExecutionStatus::Error,
        model_name: None,
        usage: Default::default(),
        cost: None,
        pricing_id: None,
        content: None,
        response_metadata: None,
        warnings: vec![],
        error_code: Some(code),
        error_message: Some(message),
    }
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
