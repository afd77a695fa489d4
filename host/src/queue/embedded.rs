//! The embedded backend: jobs in the SQL store's `jobs` table (SQLite by default, or
//! PostgreSQL, where workers on several nodes claim with `SKIP LOCKED`). Adding wakes this
//! process's waiting consumer at once; other processes notice within their poll interval.
//!
//! Acks are group-committed: the acks that arrive while one `DELETE` runs go together in the
//! next, so a busy queue spends one write on many finished jobs.

use std::time::Duration;

use super::{Delivery, Job, Queue, QueueCounts, QueueError, Result, millis};
use crate::store::{Store, now_ms};

/// How often a waiting consumer looks for jobs another process added.
const POLL: Duration = Duration::from_millis(100);

pub struct Embedded {
    store: Store,
    added: tokio::sync::Notify,
    acks: std::sync::Mutex<Acks>,
}

/// Acks waiting for the next `DELETE`, and whether one is running.
#[derive(Default)]
struct Acks {
    pending: Vec<PendingAck>,
    flushing: bool,
}

type PendingAck = (
    (String, String),
    tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
);

/// Most acks in one statement (two bind parameters each).
const ACKS_PER_DELETE: usize = 500;

impl Embedded {
    pub fn new(store: Store) -> Self {
        Embedded {
            store,
            added: tokio::sync::Notify::new(),
            acks: Default::default(),
        }
    }

    fn acks(&self) -> std::sync::MutexGuard<'_, Acks> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes the pending acks' jobs, batch after batch, until none is left.
    async fn flush_acks(&self) {
        // Should this future be dropped mid-flush, the next ack leads instead.
        struct Abandoned<'a>(&'a Embedded);
        impl Drop for Abandoned<'_> {
            fn drop(&mut self) {
                self.0.acks().flushing = false;
            }
        }
        let abandoned = Abandoned(self);
        loop {
            let batch: Vec<PendingAck> = {
                let mut acks = self.acks();
                if acks.pending.is_empty() {
                    acks.flushing = false;
                    std::mem::forget(abandoned);
                    return;
                }
                let n = acks.pending.len().min(ACKS_PER_DELETE);
                acks.pending.drain(..n).collect()
            };
            let (leases, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let done = self
                .store
                .delete_jobs(&leases)
                .await
                .map_err(|e| e.to_string());
            for tx in waiting {
                let _ = tx.send(done.clone());
            }
        }
    }
}

#[async_trait::async_trait]
impl Queue for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn fifo(&self) -> bool {
        true
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lease = (delivery.job.execution_id.clone(), delivery.handle.clone());
        let lead = {
            let mut acks = self.acks();
            acks.pending.push((lease, tx));
            !std::mem::replace(&mut acks.flushing, true)
        };
        if lead {
            self.flush_acks().await;
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(QueueError::Batch(e)),
            Err(_) => Err(QueueError::Batch("the ack batch was dropped".into())),
        }
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

    async fn metrics(&self) -> Result<QueueCounts> {
        let c = self.store.job_counts().await?;
        Ok(QueueCounts {
            waiting: c.waiting,
            delayed: c.delayed,
            active: c.active,
        })
    }
}
