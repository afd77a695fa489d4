//! What the queue needs of the SQL store, on two tables:
//!
//! - `executions`: a queued execution's row carries a lease. A worker may run an execution only
//!   after moving it to RUNNING under its own lease ([`Store::claim_execution`]), so whatever
//!   the queue delivers twice is run once; a sweeper finds the rows whose lease ran out.
//! - `jobs`: the embedded queue's jobs, each leased to the worker that took it by a token.

use std::sync::LazyLock;

use super::executions::{COLUMNS, row_to_execution};
use super::{
    Backend, Execution, NewExecution, Result, Store, StoreError, get, new_id, now_ms,
    with_json_list,
};
use crate::domain::ExecutionStatus;

/// A job taken from the embedded queue.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub execution_id: String,
    pub workspace_id: String,
    /// Proves the lease: only its holder can renew, finish or reschedule the job.
    pub token: String,
}

/// What a worker may do with a delivered execution.
#[derive(Debug, Clone)]
pub enum Claim {
    /// It is now RUNNING under this worker's lease, as it reads now; its `attempts` counts this
    /// one. With its workspace's `config_version` as the same statement read it (`None`: the
    /// workspace is gone), so the worker needs no read of its own to trust a cached configuration.
    Run(Box<Execution>, Option<i64>),
    /// Nothing: it finished, was cancelled or deleted, or another worker's live lease holds it.
    Skip,
}

/// An execution whose lease ran out while QUEUED or RUNNING.
#[derive(Debug, Clone)]
pub struct Stale {
    pub id: String,
    pub workspace_id: String,
    pub pod_id: String,
    pub flow_id: String,
    pub attempts: i64,
    pub leased_until: i64,
    /// A synchronous execution whose caller's node stopped renewing it: nobody waits for its
    /// answer any more, so it is ended, not run again.
    pub synchronous: bool,
}

/// The lease owner of a synchronous execution (queued ones carry their worker's id).
pub const SYNC_LEASE_OWNER: &str = "sync";

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued or running (`was`) and is now CANCELLED.
    Now {
        was: ExecutionStatus,
        pod_id: String,
        flow_id: String,
    },
    /// It had already finished with this status.
    AlreadyFinished(ExecutionStatus),
}

/// The embedded queue's jobs at a glance.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobCounts {
    pub waiting: i64,
    pub delayed: i64,
    pub active: i64,
    /// Since when the oldest waiting job has been due, in ms (0: none waits).
    pub oldest_waiting_ms: i64,
}

impl Store {
    /// Records a QUEUED execution that a worker should take within `grace_ms` (else the sweeper
    /// queues it again).
    pub async fn insert_queued_execution(
        &self,
        new: &NewExecution,
        grace_ms: i64,
    ) -> Result<String> {
        self.insert_execution(
            new,
            ExecutionStatus::Queued,
            Some(now_ms() + grace_ms),
            None,
        )
        .await
    }

    /// Moves a QUEUED execution, or a RUNNING one whose worker's lease ran out, to RUNNING under
    /// `owner`'s lease for `lease_ms`, counting the attempt; returns it (one statement, no
    /// second read).
    pub async fn claim_execution(&self, id: &str, owner: &str, lease_ms: i64) -> Result<Claim> {
        let mut claims = self
            .claim_executions(&[id.to_string()], owner, lease_ms)
            .await?;
        Ok(claims.pop().unwrap_or(Claim::Skip))
    }

    /// [`Store::claim_execution`] for several executions in one statement: a claim per id, in
    /// the order given (a worker that took several jobs at once writes once for all of them).
    pub async fn claim_executions(
        &self,
        ids: &[String],
        owner: &str,
        lease_ms: i64,
    ) -> Result<Vec<Claim>> {
        fn claim(ids: &str) -> String {
            format!(
                "UPDATE executions SET status = 'RUNNING', attempts = attempts + 1, lease_owner = $1, leased_until = $2, started_at = $3
                 WHERE id IN ({ids}) AND (status = 'QUEUED' OR (status = 'RUNNING' AND leased_until < $3))
                 RETURNING {COLUMNS}, (SELECT config_version FROM workspaces WHERE id = executions.workspace_id) AS config_version"
            )
        }
        static CLAIM: LazyLock<[String; 2]> = LazyLock::new(|| with_json_list(claim, 4));
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let sql = self.backend.pick(&CLAIM);
        let wanted = serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = now_ms();
        let rows = self
            .write_returning(
                sqlx::query(sql)
                    .bind(owner.to_string())
                    .bind(now + lease_ms)
                    .bind(now)
                    .bind(wanted),
            )
            .await?;
        let mut claimed = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let execution = row_to_execution(row)?;
            let config_version = get::<Option<i64>>(row, "config_version")?;
            claimed.insert(execution.id.clone(), (execution, config_version));
        }
        Ok(ids
            .iter()
            .map(|id| match claimed.remove(id) {
                Some((execution, config_version)) => {
                    Claim::Run(Box::new(execution), config_version)
                }
                None => Claim::Skip,
            })
            .collect())
    }

    /// Renews `owner`'s lease on a running execution; `false` if it no longer holds it.
    pub async fn extend_execution(&self, id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let changed = self
            .write(
                sqlx::query(
                    "UPDATE executions SET leased_until = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'RUNNING'",
                )
                .bind(now_ms() + lease_ms)
                .bind(id.to_string())
                .bind(owner.to_string()),
            )
            .await?;
        Ok(changed > 0)
    }

    /// A retryable failure with attempts left: back to QUEUED, due again at `due_ms` and to be
    /// taken within `grace_ms` after that; the error is kept for visibility.
    pub async fn requeue_execution(
        &self,
        id: &str,
        code: &str,
        message: &str,
        due_ms: i64,
        grace_ms: i64,
    ) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE executions SET status = 'QUEUED', error_code = $1, error_message = $2, lease_owner = NULL, leased_until = $3
             WHERE id = $4 AND status = 'RUNNING'",
        )
        .bind(code.to_string())
        .bind(message.to_string())
        .bind(due_ms + grace_ms)
        .bind(id.to_string());
        let done = self.write(statement).await?;
        Ok(done > 0)
    }

    /// Up to `limit` queued or running executions whose lease ran out, oldest first.
    pub async fn stale_executions(&self, limit: i64) -> Result<Vec<Stale>> {
        let rows = sqlx::query(
            "SELECT id, workspace_id, pod_id, flow_id, attempts, leased_until, lease_owner FROM executions
             WHERE status IN ('QUEUED', 'RUNNING') AND leased_until < $1 ORDER BY leased_until LIMIT $2",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Stale {
                    id: get(r, "id")?,
                    workspace_id: get(r, "workspace_id")?,
                    pod_id: get(r, "pod_id")?,
                    flow_id: get(r, "flow_id")?,
                    attempts: get(r, "attempts")?,
                    leased_until: get(r, "leased_until")?,
                    synchronous: get::<Option<String>>(r, "lease_owner")?.as_deref()
                        == Some(SYNC_LEASE_OWNER),
                })
            })
            .collect()
    }

    /// Puts a stale execution back to QUEUED (its worker is gone) with a new deadline, if nobody
    /// touched it since it was found stale (so of several sweepers, one re-queues it).
    pub async fn requeue_stale(&self, stale: &Stale, until_ms: i64) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE executions SET status = 'QUEUED', lease_owner = NULL, leased_until = $1
             WHERE id = $2 AND leased_until = $3 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(until_ms)
        .bind(stale.id.clone())
        .bind(stale.leased_until);
        let done = self.write(statement).await?;
        Ok(done > 0)
    }

    /// Ends a stale execution that used all its attempts as an ERROR, if nobody touched it since
    /// it was found stale.
    pub async fn abandon_execution(
        &self,
        stale: &Stale,
        code: &str,
        message: &str,
    ) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE executions SET status = 'ERROR', error_code = $1, error_message = $2, finished_at = $3, lease_owner = NULL
             WHERE id = $4 AND leased_until = $5 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(code.to_string())
        .bind(message.to_string())
        .bind(now_ms())
        .bind(stale.id.clone())
        .bind(stale.leased_until);
        let done = self.write(statement).await?;
        Ok(done > 0)
    }

    /// Executions per status, all workspaces (for metrics).
    pub async fn execution_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, CAST(COUNT(*) AS BIGINT) AS n FROM executions GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, "status")?, get(r, "n")?)))
            .collect()
    }

    /// Cancels a queued or running execution of the workspace: it is marked CANCELLED, so a
    /// worker never starts it and a running call's result is not saved.
    pub async fn cancel_execution(&self, ws: &str, execution_id: &str) -> Result<Cancelled> {
        let execution = self.execution(ws, execution_id).await?;
        let current = execution.status;
        if !matches!(current, ExecutionStatus::Queued | ExecutionStatus::Running) {
            return Ok(Cancelled::AlreadyFinished(current));
        }
        let statement = sqlx::query(
            "UPDATE executions SET status = 'CANCELLED', finished_at = $1, error_code = 'CANCELLED', error_message = 'cancelled by a user', lease_owner = NULL
             WHERE workspace_id = $2 AND id = $3 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(now_ms())
        .bind(ws.to_string())
        .bind(execution_id.to_string());
        let done = self.write(statement).await?;
        if done == 0 {
            // It finished between the read and the update.
            return Ok(Cancelled::AlreadyFinished(
                self.execution(ws, execution_id).await?.status,
            ));
        }
        Ok(Cancelled::Now {
            was: current,
            pod_id: execution.pod_id,
            flow_id: execution.flow_id,
        })
    }

    // The embedded queue's jobs.

    /// Adds a job due at `not_before` (unix ms); a job already there for the execution stays.
    pub async fn add_job(
        &self,
        execution_id: &str,
        workspace_id: &str,
        not_before: i64,
    ) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO jobs (execution_id, workspace_id, attempts, not_before, created_at) VALUES ($1, $2, 0, $3, $4)
                 ON CONFLICT (execution_id) DO NOTHING",
            )
            .bind(execution_id.to_string())
            .bind(workspace_id.to_string())
            .bind(not_before)
            .bind(now_ms()),
        )
        .await?;
        Ok(())
    }

    /// Leases up to `max` due jobs, oldest first, for `lease_ms`.
    pub async fn claim_jobs(&self, max: usize, lease_ms: i64) -> Result<Vec<ClaimedJob>> {
        fn claim(skip_locked: &str) -> String {
            format!(
                "UPDATE jobs SET leased_until = $1, lease_owner = $2, attempts = attempts + 1
                 WHERE execution_id IN (SELECT execution_id FROM jobs WHERE not_before <= $3 AND (leased_until IS NULL OR leased_until < $3)
                                        ORDER BY not_before, created_at LIMIT $4 {skip_locked})
                 RETURNING execution_id, workspace_id, not_before, created_at"
            )
        }
        static SQLITE: LazyLock<String> = LazyLock::new(|| claim(""));
        static POSTGRES: LazyLock<String> = LazyLock::new(|| claim("FOR UPDATE SKIP LOCKED"));
        let sql = match self.backend {
            Backend::Postgres => POSTGRES.as_str(),
            Backend::Sqlite => SQLITE.as_str(),
        };
        let (now, token) = (now_ms(), new_id());
        let rows = self
            .write_returning(
                sqlx::query(sql)
                    .bind(now + lease_ms)
                    .bind(token.clone())
                    .bind(now)
                    .bind(i64::try_from(max).unwrap_or(i64::MAX)),
            )
            .await?;
        let mut jobs = rows
            .iter()
            .map(|r| {
                Ok((
                    (get::<i64>(r, "not_before")?, get::<i64>(r, "created_at")?),
                    ClaimedJob {
                        execution_id: get(r, "execution_id")?,
                        workspace_id: get(r, "workspace_id")?,
                        token: token.clone(),
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING follows no ORDER BY: restore queue order.
        jobs.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.execution_id.cmp(&b.1.execution_id))
        });
        Ok(jobs.into_iter().map(|(_, job)| job).collect())
    }

    /// Renews a job's lease; `false` if the token no longer holds it.
    pub async fn extend_job(&self, execution_id: &str, token: &str, lease_ms: i64) -> Result<bool> {
        let changed = self
            .write(
                sqlx::query(
                    "UPDATE jobs SET leased_until = $1 WHERE execution_id = $2 AND lease_owner = $3",
                )
                .bind(now_ms() + lease_ms)
                .bind(execution_id.to_string())
                .bind(token.to_string()),
            )
            .await?;
        Ok(changed > 0)
    }

    /// Removes a job, if the token still holds its lease.
    pub async fn delete_job(&self, execution_id: &str, token: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM jobs WHERE execution_id = $1 AND lease_owner = $2")
                .bind(execution_id.to_string())
                .bind(token.to_string()),
        )
        .await?;
        Ok(())
    }

    /// Removes an execution's job, leased or not.
    pub async fn drop_job(&self, execution_id: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM jobs WHERE execution_id = $1").bind(execution_id.to_string()),
        )
        .await?;
        Ok(())
    }

    /// Releases a leased job to be claimed again at `not_before` (unix ms).
    pub async fn reschedule_job(
        &self,
        execution_id: &str,
        token: &str,
        not_before: i64,
    ) -> Result<()> {
        self.write(
            sqlx::query("UPDATE jobs SET not_before = $1, leased_until = NULL, lease_owner = NULL WHERE execution_id = $2 AND lease_owner = $3")
                .bind(not_before)
                .bind(execution_id.to_string())
                .bind(token.to_string()),
        )
        .await?;
        Ok(())
    }

    /// A job's due time and lease end, if it exists.
    pub async fn job_lease(&self, execution_id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let row = sqlx::query("SELECT not_before, leased_until FROM jobs WHERE execution_id = $1")
            .bind(execution_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((get(&r, "not_before")?, get(&r, "leased_until")?)))
            .transpose()
    }

    /// How many jobs wait, wait for a retry, or are leased.
    pub async fn job_counts(&self) -> Result<JobCounts> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN leased_until >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS active,
                    CAST(COALESCE(SUM(CASE WHEN (leased_until IS NULL OR leased_until < $1) AND not_before > $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS delayed,
                    CAST(COALESCE(SUM(CASE WHEN (leased_until IS NULL OR leased_until < $1) AND not_before <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS waiting,
                    CAST(COALESCE(MIN(CASE WHEN (leased_until IS NULL OR leased_until < $1) AND not_before <= $1 THEN not_before END), $1) AS BIGINT) AS oldest_due
             FROM jobs",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(JobCounts {
            waiting: get(&row, "waiting")?,
            delayed: get(&row, "delayed")?,
            active: get(&row, "active")?,
            oldest_waiting_ms: now - get::<i64>(&row, "oldest_due")?,
        })
    }
}
