//! The embedded backend: jobs in the SQL store's `jobs` table (SQLite by default, or
//! PostgreSQL, where workers on several nodes claim with `SKIP LOCKED`). Adding wakes this
//! process's waiting consumer at once; other processes notice within their poll interval.

use std::time::Duration;

use super::{Delivery, Job, JobState, Queue, QueueCounts, Result, millis};
use crate::domain::now_ms;
use crate::store::Store;

/// How often a waiting consumer looks for jobs another process added.
const POLL: Duration = Duration::from_millis(100);

pub struct Embedded {
    store: Store,
    added: tokio::sync::Notify,
}

impl Embedded {
    pub fn new(store: Store) -> Self {
        Embedded {
            store,
            added: tokio::sync::Notify::new(),
        }
    }
}

#[async_trait::async_trait]
impl Queue for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn add(&self, job: &Job, delay: Duration) -> Result<()> {
        self.store
            .add_job(
                &job.execution_id,
                &job.workspace_id,
                now_ms() + millis(delay),
            )
            .await?;
        if delay.is_zero() {
            self.added.notify_one();
        }
        Ok(())
    }

    async fn add_in_line(&self, job: &Job, since: i64) -> Result<()> {
        // Jobs are taken by `not_before`: an earlier one is already due, and goes first.
        self.store
            .add_job(&job.execution_id, &job.workspace_id, since.min(now_ms()))
            .await?;
        self.added.notify_one();
        Ok(())
    }

    async fn consume(&self, max: usize, lease: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let jobs = self.store.claim_jobs(max, millis(lease)).await?;
            if !jobs.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(jobs
                    .into_iter()
                    .map(|j| Delivery {
                        job: Job {
                            execution_id: j.execution_id,
                            workspace_id: j.workspace_id,
                        },
                        handle: j.token,
                    })
                    .collect());
            }
            let nap = POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = self.added.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<()> {
        self.store
            .extend_job(&delivery.job.execution_id, &delivery.handle, millis(lease))
            .await?;
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.store
            .delete_job(&delivery.job.execution_id, &delivery.handle)
            .await?;
        Ok(())
    }

    async fn ack_finished(&self, _delivery: &Delivery) -> Result<()> {
        // The statement that ended the execution removed its job (a trigger).
        Ok(())
    }

    async fn retry(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        self.store
            .reschedule_job(
                &delivery.job.execution_id,
                &delivery.handle,
                now_ms() + millis(delay),
            )
            .await?;
        Ok(())
    }

    async fn cancel(&self, execution_id: &str) -> Result<()> {
        self.store.drop_job(execution_id).await?;
        Ok(())
    }

    async fn status(&self, job: &Job) -> Result<Option<JobState>> {
        Ok(self
            .store
            .job_lease(&job.execution_id)
            .await?
            .map(|(not_before, leased_until)| {
                let now = now_ms();
                match leased_until {
                    Some(until) if until >= now => JobState::Active,
                    _ if not_before > now => JobState::Delayed,
                    _ => JobState::Waiting,
                }
            }))
    }

    async fn metrics(&self) -> Result<QueueCounts> {
        let c = self.store.job_counts().await?;
        Ok(QueueCounts {
            waiting: c.waiting,
            delayed: c.delayed,
            active: c.active,
            oldest_waiting_ms: Some(c.oldest_waiting_ms),
        })
    }
}
