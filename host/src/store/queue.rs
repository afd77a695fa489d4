//! The embedded queue: jobs in the SQL store, next to the executions they run. Delivery is at
//! least once (a lease that expires makes a job claimable again); running is idempotent because a
//! worker only runs an execution it could move to RUNNING from QUEUED or from an expired RUNNING.

use super::{Backend, ExecutionStatus, NewExecution, Result, Store, get, new_id, now_ms};

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub execution_id: String,
    pub workspace_id: String,
    /// Including this one.
    pub attempts: i64,
}

/// The queue at a glance.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    /// Due and not claimed.
    pub waiting: i64,
    /// Waiting for a retry's backoff to pass.
    pub delayed: i64,
    /// Claimed by a worker (running, or about to).
    pub active: i64,
}

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

impl Store {
    /// Records a QUEUED execution and its job in one transaction.
    pub async fn enqueue_execution(&self, new: &NewExecution) -> Result<String> {
        let (id, now) = (new_id(), now_ms());
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO executions (id, workspace_id, flow_id, pod_id, user_id, status, provider, model_id, streamed, key_id, request_metadata, warnings, attempts, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, 0, $12)",
        )
        .bind(&id)
        .bind(&new.workspace_id)
        .bind(&new.flow_id)
        .bind(&new.pod_id)
        .bind(&new.user_id)
        .bind(ExecutionStatus::Queued.as_str())
        .bind(&new.provider)
        .bind(&new.model_id)
        .bind(&new.key_id)
        .bind(new.request_metadata.to_string())
        .bind(serde_json::to_string(&new.warnings).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO jobs (execution_id, workspace_id, attempts, not_before, created_at) VALUES ($1, $2, 0, $3, $3)")
            .bind(&id)
            .bind(&new.workspace_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Leases the oldest due job to `owner` for `lease_ms`, or `None` if none is due.
    pub async fn claim_job(&self, owner: &str, lease_ms: i64) -> Result<Option<Job>> {
        let now = now_ms();
        let skip_locked = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let _turn = self.write_turn().await;
        let row = sqlx::query(&format!(
            "UPDATE jobs SET leased_until = $1, lease_owner = $2, attempts = attempts + 1
             WHERE execution_id = (SELECT execution_id FROM jobs WHERE not_before <= $3 AND (leased_until IS NULL OR leased_until < $3)
                                   ORDER BY not_before, created_at LIMIT 1 {skip_locked})
             RETURNING execution_id, workspace_id, attempts"
        ))
        .bind(now + lease_ms)
        .bind(owner)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Job {
                execution_id: get(&r, "execution_id")?,
                workspace_id: get(&r, "workspace_id")?,
                attempts: get(&r, "attempts")?,
            })
        })
        .transpose()
    }

    /// Keeps a running job's lease alive; `false` if the lease was lost (another worker has it).
    pub async fn extend_lease(
        &self,
        execution_id: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE jobs SET leased_until = $1 WHERE execution_id = $2 AND lease_owner = $3",
        )
        .bind(now_ms() + lease_ms)
        .bind(execution_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many jobs wait, wait for a retry, or run.
    pub async fn queue_counts(&self) -> Result<QueueCounts> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN leased_until >= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS active,
                    CAST(COALESCE(SUM(CASE WHEN (leased_until IS NULL OR leased_until < $1) AND not_before > $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS delayed,
                    CAST(COALESCE(SUM(CASE WHEN (leased_until IS NULL OR leased_until < $1) AND not_before <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS waiting
             FROM jobs",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueCounts {
            waiting: get(&row, "waiting")?,
            delayed: get(&row, "delayed")?,
            active: get(&row, "active")?,
        })
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

    /// The job is done (whatever the outcome): remove it.
    pub async fn ack_job(&self, execution_id: &str) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM jobs WHERE execution_id = $1")
            .bind(execution_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Releases the job to run again at `not_before` (unix ms).
    pub async fn reschedule_job(&self, execution_id: &str, not_before: i64) -> Result<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE jobs SET not_before = $1, leased_until = NULL, lease_owner = NULL WHERE execution_id = $2")
            .bind(not_before)
            .bind(execution_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a queued execution (or a running one whose worker vanished) to RUNNING for this
    /// attempt. `false` if it was cancelled or has finished: do not run it.
    pub async fn mark_running(&self, execution_id: &str, attempt: i64) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE executions SET status = 'RUNNING', attempts = $1, started_at = $2 WHERE id = $3 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(attempt)
        .bind(now_ms())
        .bind(execution_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A retryable failure with attempts left: back to QUEUED, the error kept for visibility.
    pub async fn requeue_execution(
        &self,
        execution_id: &str,
        code: &str,
        message: &str,
    ) -> Result<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE executions SET status = 'QUEUED', error_code = $1, error_message = $2 WHERE id = $3 AND status = 'RUNNING'",
        )
        .bind(code)
        .bind(message)
        .bind(execution_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Cancels a queued or running execution of the workspace: its job is removed and it is
    /// marked CANCELLED, so a worker never starts it and a running call's result is not saved.
    pub async fn cancel_execution(&self, ws: &str, execution_id: &str) -> Result<Cancelled> {
        let execution = self.execution(ws, execution_id).await?;
        let current = execution.status;
        if !matches!(current, ExecutionStatus::Queued | ExecutionStatus::Running) {
            return Ok(Cancelled::AlreadyFinished(current));
        }
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE executions SET status = 'CANCELLED', finished_at = $1, error_code = 'CANCELLED', error_message = 'cancelled by a user'
             WHERE workspace_id = $2 AND id = $3 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(now_ms())
        .bind(ws)
        .bind(execution_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE execution_id = $1")
            .bind(execution_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            // It finished between the read and the update.
            drop(_turn);
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
}
