//! Executions: one row per run of a pod — what was asked, what came back, what it cost.

use std::sync::LazyLock;

use rust_decimal::Decimal;
use sqlx::any::AnyRow;

use super::queue::SYNC_LEASE_OWNER;
use super::{Result, Store, StoreError, decimal, get, new_id, now_ms};
use crate::domain::{Cost, ErrorCode, ExecutionStatus, QueuedRequest, Usage};

/// An execution about to run.
#[derive(Debug, Clone, Default)]
pub struct NewExecution {
    pub workspace_id: String,
    pub flow_id: String,
    pub pod_id: String,
    pub user_id: String,
    pub provider: String,
    pub model_id: String,
    pub streamed: bool,
    /// The provider key the execution uses; its usage is counted against it on completion.
    pub key_id: Option<String>,
    /// The request as sent to the plugin (prompts after interpolation, parameters).
    pub request_metadata: serde_json::Value,
    pub warnings: Vec<String>,
    /// A queued execution's request, resolved again when a worker takes it.
    pub queued: Option<QueuedRequest>,
    /// Record it only while its workspace's configuration is at this version (what the
    /// execution was resolved from); otherwise [`StoreError::ConfigChanged`]. `None`: always.
    pub config_version: Option<i64>,
    /// The flow run it is a pod of.
    pub run_id: Option<String>,
    /// The workspace API key it was started with: its usage counts against the key's month.
    pub api_key_id: Option<String>,
    /// An `Idempotency-Key` (scoped to its caller) and a hash of the request it came with.
    pub idempotency: Option<Idempotency>,
    /// The `x-request-id` of the request that recorded it.
    pub request_id: Option<String>,
}

/// Which of a workspace's executions to list.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub pod_id: Option<String>,
    pub flow_id: Option<String>,
    pub model: Option<String>,
    pub status: Option<ExecutionStatus>,
    /// An execution id: only those older than it.
    pub before: Option<String>,
}

/// An `Idempotency-Key` as recorded: `key` is unique in a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct FinishedExecution {
    pub status: ExecutionStatus,
    pub model_name: Option<String>,
    pub usage: Usage,
    pub cost: Option<Cost>,
    pub pricing_id: Option<String>,
    pub content: Option<String>,
    pub response_metadata: Option<serde_json::Value>,
    pub warnings: Vec<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The version of the provider plugin that ran it.
    pub plugin_version: Option<String>,
}

impl FinishedExecution {
    /// An ERROR with its code and message, and nothing else.
    pub fn failed(code: ErrorCode, message: String) -> Self {
        FinishedExecution {
            status: ExecutionStatus::Error,
            model_name: None,
            usage: Usage::default(),
            cost: None,
            pricing_id: None,
            content: None,
            response_metadata: None,
            warnings: vec![],
            error_code: Some(code.as_str().to_string()),
            error_message: Some(message),
            plugin_version: None,
        }
    }
}

/// A stored execution.
#[derive(Debug, Clone)]
pub struct Execution {
    pub id: String,
    pub workspace_id: String,
    pub flow_id: String,
    pub pod_id: String,
    pub user_id: String,
    pub status: ExecutionStatus,
    pub provider: String,
    pub model_id: String,
    pub model_name: Option<String>,
    pub streamed: bool,
    pub usage: Usage,
    pub cost: Option<Cost>,
    pub pricing_id: Option<String>,
    pub content: Option<String>,
    pub request_metadata: serde_json::Value,
    pub response_metadata: Option<serde_json::Value>,
    pub warnings: Vec<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The version of the provider plugin that ran it (once it ended).
    pub plugin_version: Option<String>,
    /// A queued execution's request, as it was asked.
    pub queued_request: Option<QueuedRequest>,
    /// The flow run it is a pod of.
    pub run_id: Option<String>,
    /// The workspace API key it was started with.
    pub api_key_id: Option<String>,
    /// The `x-request-id` of the request that recorded it.
    pub request_id: Option<String>,
}

pub(super) const COLUMNS: &str = "id, workspace_id, flow_id, pod_id, user_id, status, provider, model_id, model_name, streamed, prompt_tokens, cached_tokens, cache_write_tokens, completion_tokens, reasoning_tokens, input_cost, output_cost, reasoning_cost, total_cost, pricing_id, content, request_metadata, response_metadata, warnings, error_code, error_message, attempts, created_at, started_at, finished_at, plugin_version, queued_request, run_id, api_key_id, request_id";

fn count(row: &AnyRow, column: &str) -> Result<Option<u64>> {
    Ok(get::<Option<i64>>(row, column)?.and_then(|n| u64::try_from(n).ok()))
}

fn json(text: &str, column: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn row_to_execution(row: &AnyRow) -> Result<Execution> {
    let status: String = get(row, "status")?;
    let cost = match (
        decimal(get(row, "input_cost")?, "input_cost")?,
        decimal(get(row, "output_cost")?, "output_cost")?,
        decimal(get(row, "reasoning_cost")?, "reasoning_cost")?,
        decimal(get(row, "total_cost")?, "total_cost")?,
    ) {
        (Some(input_cost), Some(output_cost), Some(reasoning_cost), Some(total_cost)) => {
            Some(Cost {
                input_cost,
                output_cost,
                reasoning_cost,
                total_cost,
            })
        }
        _ => None,
    };
    let response: Option<String> = get(row, "response_metadata")?;
    let warnings: String = get(row, "warnings")?;
    Ok(Execution {
        id: get(row, "id")?,
        workspace_id: get(row, "workspace_id")?,
        flow_id: get(row, "flow_id")?,
        pod_id: get(row, "pod_id")?,
        user_id: get(row, "user_id")?,
        status: ExecutionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        provider: get(row, "provider")?,
        model_id: get(row, "model_id")?,
        model_name: get(row, "model_name")?,
        streamed: get::<i64>(row, "streamed")? != 0,
        usage: Usage {
            prompt_tokens: count(row, "prompt_tokens")?,
            cached_tokens: count(row, "cached_tokens")?,
            cache_write_tokens: count(row, "cache_write_tokens")?,
            completion_tokens: count(row, "completion_tokens")?,
            reasoning_tokens: count(row, "reasoning_tokens")?,
        },
        cost,
        pricing_id: get(row, "pricing_id")?,
        content: get(row, "content")?,
        request_metadata: json(&get::<String>(row, "request_metadata")?, "request_metadata")?,
        response_metadata: response
            .map(|r| json(&r, "response_metadata"))
            .transpose()?,
        warnings: serde_json::from_str(&warnings)
            .map_err(|e| StoreError::Corrupt(format!("warnings: {e}")))?,
        error_code: get(row, "error_code")?,
        error_message: get(row, "error_message")?,
        attempts: get(row, "attempts")?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        plugin_version: get(row, "plugin_version")?,
        queued_request: get::<Option<String>>(row, "queued_request")?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("queued_request: {e}")))
            })
            .transpose()?,
        run_id: get(row, "run_id")?,
        api_key_id: get(row, "api_key_id")?,
        request_id: get(row, "request_id")?,
    })
}

fn signed(n: Option<u64>) -> Option<i64> {
    n.and_then(|n| i64::try_from(n).ok())
}

impl Store {
    /// Records a synchronous execution that starts running now, leased for `lease_ms` to its
    /// caller (the lease is renewed while it runs; if the node dies, the sweeper ends it as
    /// `INTERRUPTED`). Returns its id.
    pub async fn start_execution(&self, new: &NewExecution, lease_ms: i64) -> Result<String> {
        self.insert_execution(
            new,
            ExecutionStatus::Running,
            Some(now_ms() + lease_ms),
            Some(SYNC_LEASE_OWNER),
        )
        .await
    }

    /// Inserts a new execution: RUNNING from now (attempt 1), or QUEUED with a deadline for a
    /// worker to take it by (`leased_until`, unix ms).
    pub(super) async fn insert_execution(
        &self,
        new: &NewExecution,
        status: ExecutionStatus,
        leased_until: Option<i64>,
        lease_owner: Option<&str>,
    ) -> Result<String> {
        const INSERTED: &str = "id, workspace_id, flow_id, pod_id, user_id, status, provider, model_id, streamed, key_id, request_metadata, warnings, attempts, created_at, started_at, leased_until, lease_owner, queued_request, run_id, api_key_id, idempotency_key, idempotency_hash, request_id";
        const VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23";
        static INSERT: LazyLock<String> =
            LazyLock::new(|| format!("INSERT INTO executions ({INSERTED}) VALUES ({VALUES})"));
        // The version check and the insert are one statement: nothing can change in between.
        static INSERT_IF_CURRENT: LazyLock<String> = LazyLock::new(|| {
            format!(
                "INSERT INTO executions ({INSERTED}) SELECT {VALUES} FROM workspaces WHERE id = $2 AND config_version = $24"
            )
        });
        let (id, now) = (new_id(), now_ms());
        let running = status == ExecutionStatus::Running;
        let sql = match new.config_version {
            Some(_) => INSERT_IF_CURRENT.as_str(),
            None => INSERT.as_str(),
        };
        let mut statement = sqlx::query(sql)
            .bind(id.clone())
            .bind(new.workspace_id.clone())
            .bind(new.flow_id.clone())
            .bind(new.pod_id.clone())
            .bind(new.user_id.clone())
            .bind(status.as_str())
            .bind(new.provider.clone())
            .bind(new.model_id.clone())
            .bind(i64::from(new.streamed))
            .bind(new.key_id.clone())
            .bind(new.request_metadata.to_string())
            .bind(serde_json::to_string(&new.warnings).unwrap_or_else(|_| "[]".into()))
            .bind(i64::from(running))
            .bind(now)
            .bind(running.then_some(now))
            .bind(leased_until)
            .bind(lease_owner.map(str::to_string))
            .bind(
                new.queued
                    .as_ref()
                    .and_then(|q| serde_json::to_string(q).ok()),
            )
            .bind(new.run_id.clone())
            .bind(new.api_key_id.clone())
            .bind(new.idempotency.as_ref().map(|i| i.key.clone()))
            .bind(new.idempotency.as_ref().map(|i| i.request_hash.clone()))
            .bind(new.request_id.clone());
        if let Some(version) = new.config_version {
            statement = statement.bind(version);
        }
        match self.write(statement).await {
            Ok(0) => Err(StoreError::ConfigChanged),
            Ok(_) => Ok(id),
            // Migration 0012's trigger: the run pod was not PENDING.
            Err(e) if new.run_id.is_some() && e.to_string().contains("run pod not pending") => {
                Err(StoreError::RunPodTaken)
            }
            // Migration 0013's unique index: another request with this key came first.
            Err(e) if new.idempotency.is_some() && e.to_string().contains("idempotency") => {
                Err(StoreError::IdempotencyTaken)
            }
            Err(e) => Err(e),
        }
    }

    /// Records how a running execution ended. Completing it also adds its usage to its provider
    /// key's daily counters (a database trigger, in the same statement: exactly once). Returns
    /// `false` if the execution was no longer running (finished or cancelled): nothing is written.
    pub async fn finish_execution(&self, id: &str, done: &FinishedExecution) -> Result<bool> {
        let money = |f: fn(&Cost) -> Decimal| done.cost.as_ref().map(|c| f(c).to_string());
        // Picodollars: an integer the database can add up exactly.
        let picousd = done
            .cost
            .map(|c| (c.total_cost * Decimal::from(1_000_000_000_000_i64)).round())
            .and_then(|p| i64::try_from(p).ok());
        let updated = self.write(sqlx::query(
            "UPDATE executions SET status = $1, model_name = $2, prompt_tokens = $3, cached_tokens = $4, cache_write_tokens = $5, completion_tokens = $6, reasoning_tokens = $7,
                input_cost = $8, output_cost = $9, reasoning_cost = $10, total_cost = $11, cost_picousd = $12, pricing_id = $13, content = $14, response_metadata = $15,
                warnings = $16, error_code = $17, error_message = $18, finished_at = $19, plugin_version = $20
             WHERE id = $21 AND status = $22",
        )
        .bind(done.status.as_str())
        .bind(done.model_name.clone())
        .bind(signed(done.usage.prompt_tokens))
        .bind(signed(done.usage.cached_tokens))
        .bind(signed(done.usage.cache_write_tokens))
        .bind(signed(done.usage.completion_tokens))
        .bind(signed(done.usage.reasoning_tokens))
        .bind(money(|c| c.input_cost))
        .bind(money(|c| c.output_cost))
        .bind(money(|c| c.reasoning_cost))
        .bind(money(|c| c.total_cost))
        .bind(picousd)
        .bind(done.pricing_id.clone())
        .bind(done.content.clone())
        .bind(done.response_metadata.as_ref().map(|v| v.to_string()))
        .bind(serde_json::to_string(&done.warnings).unwrap_or_else(|_| "[]".into()))
        .bind(done.error_code.clone())
        .bind(done.error_message.clone())
        .bind(now_ms())
        .bind(done.plugin_version.clone())
        .bind(id.to_string())
        .bind(ExecutionStatus::Running.as_str()))
        .await?;
        Ok(updated > 0)
    }

    pub async fn execution(&self, ws: &str, id: &str) -> Result<Execution> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(ws)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        row_to_execution(&row)
    }

    /// The execution recorded with this idempotency key since `since` (unix ms), and the hash of
    /// the request it came with. An older one lets the key go (it may be used again).
    pub async fn execution_by_idempotency(
        &self,
        ws: &str,
        key: &str,
        since: i64,
    ) -> Result<Option<(Execution, String)>> {
        static SELECT: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {COLUMNS}, idempotency_hash FROM executions WHERE workspace_id = $1 AND idempotency_key = $2"
            )
        });
        let row = sqlx::query(SELECT.as_str())
            .bind(ws)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let execution = row_to_execution(&row)?;
        if execution.created_at < since {
            self.write(
                sqlx::query(
                    "UPDATE executions SET idempotency_key = NULL WHERE workspace_id = $1 AND id = $2",
                )
                .bind(ws.to_string())
                .bind(execution.id.clone()),
            )
            .await?;
            return Ok(None);
        }
        Ok(Some((execution, get(&row, "idempotency_hash")?)))
    }

    /// Deletes up to `batch` finished executions that ended before `cutoff` (unix ms); returns
    /// how many. Kept whatever their age: an execution an edge pins, and a pod's latest
    /// completed one (its output is what downstream pods read). Usage totals (per provider key
    /// and per API key) are counted elsewhere and stay.
    pub async fn delete_finished_executions(&self, cutoff: i64, batch: u32) -> Result<u64> {
        self.write(
            sqlx::query(
                "DELETE FROM executions WHERE id IN (
                   SELECT e.id FROM executions e
                   WHERE e.finished_at < $1 AND e.status IN ('COMPLETED', 'ERROR', 'CANCELLED')
                     AND NOT EXISTS (SELECT 1 FROM edges g WHERE g.pinned_execution_id = e.id)
                     AND (e.status <> 'COMPLETED' OR e.pod_id = '' OR EXISTS (
                           SELECT 1 FROM executions n WHERE n.pod_id = e.pod_id AND n.status = 'COMPLETED'
                             AND n.finished_at > e.finished_at))
                   LIMIT $2)",
            )
            .bind(cutoff)
            .bind(i64::from(batch)),
        )
        .await
    }

    /// A workspace's executions, newest first, as `filter` narrows them.
    pub async fn workspace_executions(
        &self,
        ws: &str,
        filter: &HistoryFilter,
        limit: u32,
    ) -> Result<Vec<Execution>> {
        static SELECT: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {COLUMNS} FROM executions WHERE workspace_id = $1
                   AND ($2 IS NULL OR pod_id = $2) AND ($3 IS NULL OR model_id = $3) AND ($4 IS NULL OR status = $4)
                   AND ($5 IS NULL OR created_at < (SELECT created_at FROM executions WHERE workspace_id = $1 AND id = $5)
                        OR (created_at = (SELECT created_at FROM executions WHERE workspace_id = $1 AND id = $5) AND id < $5))
                   AND ($7 IS NULL OR flow_id = $7)
                 ORDER BY created_at DESC, id DESC LIMIT $6"
            )
        });
        sqlx::query(SELECT.as_str())
            .bind(ws)
            .bind(filter.pod_id.as_deref())
            .bind(filter.model.as_deref())
            .bind(filter.status.map(ExecutionStatus::as_str))
            .bind(filter.before.as_deref())
            .bind(i64::from(limit))
            .bind(filter.flow_id.as_deref())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(row_to_execution)
            .collect()
    }

    /// A pod's executions, newest first.
    pub async fn pod_executions(
        &self,
        ws: &str,
        pod_id: &str,
        limit: u32,
    ) -> Result<Vec<Execution>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE workspace_id = $1 AND pod_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(ws)
        .bind(pod_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(row_to_execution)
        .collect()
    }

    /// The newest COMPLETED execution of a pod: (execution id, output).
    pub async fn latest_output(&self, ws: &str, pod_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT id, content FROM executions WHERE workspace_id = $1 AND pod_id = $2 AND status = 'COMPLETED'
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(ws)
        .bind(pod_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                get(&r, "id")?,
                get::<Option<String>>(&r, "content")?.unwrap_or_default(),
            ))
        })
        .transpose()
    }

    /// The output of one COMPLETED execution of `pod_id` (for an edge pinned to it).
    pub async fn execution_output(
        &self,
        ws: &str,
        pod_id: &str,
        execution_id: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT content FROM executions WHERE workspace_id = $1 AND pod_id = $2 AND id = $3 AND status = 'COMPLETED'",
        )
        .bind(ws)
        .bind(pod_id)
        .bind(execution_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(get::<Option<String>>(&r, "content")?.unwrap_or_default()))
            .transpose()
    }
}
