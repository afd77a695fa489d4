//! Queue workers: take jobs, run their executions, retry what a retry may fix.
//!
//! A bounded pool (`concurrency` executions at once) claims due jobs with a short lease that it
//! renews while the execution runs. Each attempt moves the execution to RUNNING, resolves its prompts afresh (the
//! upstream outputs of *now*), and runs it; a retryable failure (429, 5xx, timeouts, connection
//! errors) with attempts left goes back to the queue after an exponential backoff with jitter, or
//! after the provider's `retry-after` if that is longer. A worker that dies leaves its lease to
//! expire; the job is then claimed again, and the execution resumes from RUNNING.

use std::sync::Arc;
use std::time::Duration;

use crate::events::Event;
use crate::execution::{ExecError, ExecuteRequest, Executor};
use crate::store::{ExecutionStatus, FinishedExecution, Job, now_ms};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Executions run at once by this process; 0 runs none (an API-only node).
    pub concurrency: usize,
    /// Attempts per execution, the first included.
    pub max_attempts: i64,
    /// Backoff before attempt n+1 is `base · 2^(n-1)`, ±25 % jitter.
    pub backoff_base: Duration,
    /// How long a claimed job stays leased without news from its worker, which renews it every
    /// third of this while the execution runs. A worker that dies stops renewing: after this
    /// long, another worker claims the job.
    pub lease: Duration,
    /// How often an idle worker looks for due jobs (it is also woken when a job is added here).
    pub poll: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            max_attempts: 3,
            backoff_base: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(250),
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

/// Starts the workers.
pub fn spawn(executor: Executor, config: WorkerConfig) -> Workers {
    let concurrency = config.concurrency;
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let workers = Workers {
        slots: slots.clone(),
        concurrency,
        stop,
    };
    if concurrency == 0 {
        return workers;
    }
    let owner: Arc<str> = format!("{}-{}", std::process::id(), crate::store::new_id()).into();
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot,
                _ = stopped.changed() => return,
            };
            let Ok(slot) = slot else { return };
            if *stopped.borrow() {
                return;
            }
            match executor
                .store()
                .claim_job(&owner, config.lease.as_millis() as i64)
                .await
            {
                Ok(Some(job)) => {
                    let (executor, config, owner) =
                        (executor.clone(), config.clone(), owner.clone());
                    tokio::spawn(async move {
                        process(&executor, &config, &owner, job).await;
                        drop(slot);
                    });
                }
                Ok(None) => {
                    drop(slot);
                    tokio::select! {
                        _ = executor.queued().notified() => {}
                        _ = tokio::time::sleep(config.poll) => {}
                        _ = stopped.changed() => return,
                    }
                }
                Err(e) => {
                    drop(slot);
                    tracing::warn!(error = %e, "claiming a job failed; retrying");
                    tokio::time::sleep(config.poll).await;
                }
            }
        }
    });
    workers
}

async fn process(executor: &Executor, config: &WorkerConfig, owner: &str, job: Job) {
    let id = &job.execution_id;
    let heartbeat = {
        let (store, id, owner) = (executor.store().clone(), id.clone(), owner.to_string());
        let lease = config.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(e) = store
                    .extend_lease(&id, &owner, lease.as_millis() as i64)
                    .await
                {
                    tracing::warn!(execution = %id, error = %e, "renewing a lease failed");
                }
            }
        })
    };
    let outcome = attempt(executor, config, &job).await;
    heartbeat.abort();
    if let Err(e) = outcome {
        // The job keeps its lease and is retried when it expires: nothing is lost.
        tracing::warn!(execution = %id, error = %e, "running a queued execution failed in the store");
    }
}

async fn attempt(
    executor: &Executor,
    config: &WorkerConfig,
    job: &Job,
) -> Result<(), crate::store::StoreError> {
    let store = executor.store();
    let id = &job.execution_id;
    // Finished or cancelled meanwhile (a redelivered job): nothing to do, nothing billed twice.
    if !store.mark_running(id, job.attempts).await? {
        return store.ack_job(id).await;
    }
    let execution = store.execution(&job.workspace_id, id).await?;
    executor.publish(
        Event::new(
            "execution:running",
            "RUNNING",
            id,
            &execution.pod_id,
            &execution.flow_id,
        )
        .with("attempt", job.attempts),
    );
    let request: Option<ExecuteRequest> =
        serde_json::from_value(execution.request_metadata["execute"].clone()).ok();
    let prepared = match request {
        Some(request) => executor
            .resolve(&job.workspace_id, &execution.user_id, &request)
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
            executor.publish(
                Event::new(
                    "execution:error",
                    "ERROR",
                    id,
                    &execution.pod_id,
                    &execution.flow_id,
                )
                .with(
                    "error",
                    serde_json::json!({"code": code, "message": message}),
                ),
            );
            return store.ack_job(id).await;
        }
    };
    prepared.execution_id = id.clone();
    prepared.retry_allowed = job.attempts < config.max_attempts;
    match executor.run(prepared, |_| {}).await {
        Err(ExecError::Retry { error, .. }) => {
            let delay = backoff(config, job.attempts).max(error.retry_after().unwrap_or_default());
            tracing::info!(execution = %id, attempt = job.attempts, ?delay, error = %error, "retrying");
            store
                .reschedule_job(id, now_ms() + delay.as_millis() as i64)
                .await
        }
        Err(ExecError::Store(e)) => Err(e),
        // Completed, failed for good, or cancelled: the execution row says which.
        _ => store.ack_job(id).await,
    }
}

fn failed(code: String, message: String) -> FinishedExecution {
    FinishedExecution {
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
