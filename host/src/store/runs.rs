//! Whole-flow runs and their pods (migration 0011). A run pod that has an execution takes its
//! status from it (so nothing can disagree after a crash); one without keeps its own.
//!
//! Only [`crate::ledger`] calls the writes here; [`crate::runs`] decides what they should be.

use std::sync::LazyLock;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError, decimal, get, now_ms, with_json_list};
use crate::domain::{ExecutionStatus, MessageInput, new_id};

/// The graph a run was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGraph {
    /// In execution order.
    pub pods: Vec<String>,
    /// (source, target)
    pub edges: Vec<(String, String)>,
}

/// A run as stored.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub workspace_id: String,
    pub flow_id: String,
    pub user_id: String,
    pub status: String,
    pub budget_usd: Option<Decimal>,
    pub messages: Option<Vec<MessageInput>>,
    pub stream: bool,
    pub graph: RunGraph,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The API key it was started with.
    pub api_key_id: Option<String>,
}

/// One pod of a run, with what its execution says.
#[derive(Debug, Clone)]
pub struct RunPod {
    pub pod_id: String,
    pub position: i64,
    /// The row's own status (PENDING, SKIPPED, CANCELLED, ERROR, or QUEUED once attached).
    pub status: String,
    pub execution_id: Option<String>,
    pub error: Option<String>,
    pub skipped_because: Option<String>,
    pub max_cost_usd: Option<Decimal>,
    /// The execution's status and cost, when there is one.
    pub execution_status: Option<ExecutionStatus>,
    pub cost_usd: Option<Decimal>,
    pub execution_error: Option<String>,
}

/// A new run: the run itself and its pods (position, max cost).
pub struct NewRun<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub flow_id: &'a str,
    pub user_id: &'a str,
    pub budget_usd: Option<Decimal>,
    pub messages: Option<&'a [MessageInput]>,
    pub stream: bool,
    pub graph: &'a RunGraph,
    pub max_costs: &'a [Option<Decimal>],
    /// The API key it was started with: its pods' executions count against the key.
    pub api_key_id: Option<&'a str>,
    /// Unix milliseconds.
    pub created_at: i64,
}

const RUN_COLUMNS: &str = "id, workspace_id, flow_id, user_id, status, budget_usd, messages, stream, graph, created_at, started_at, finished_at, api_key_id";

fn run_row(row: &AnyRow) -> Result<Run> {
    let json = |column: &str| -> Result<Option<String>> { get(row, column) };
    Ok(Run {
        id: get(row, "id")?,
        workspace_id: get(row, "workspace_id")?,
        flow_id: get(row, "flow_id")?,
        user_id: get(row, "user_id")?,
        status: get(row, "status")?,
        budget_usd: decimal(get(row, "budget_usd")?, "budget_usd")?,
        messages: json("messages")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("messages: {e}")))?,
        stream: get::<i64>(row, "stream")? != 0,
        graph: serde_json::from_str(&get::<String>(row, "graph")?)
            .map_err(|e| StoreError::Corrupt(format!("graph: {e}")))?,
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        api_key_id: get(row, "api_key_id")?,
    })
}

/// Run states in which a run still moves.
const ACTIVE: &str = "('QUEUED', 'RUNNING')";

impl Store {
    pub async fn create_run(&self, run: &NewRun<'_>) -> Result<()> {
        let now = run.created_at;
        let mut statements = vec![
            sqlx::query(
                "INSERT INTO flow_runs (id, workspace_id, flow_id, user_id, status, budget_usd, messages, stream, graph, created_at, updated_at, round_started_at, api_key_id)
                 VALUES ($1, $2, $3, $4, 'QUEUED', $5, $6, $7, $8, $9, $9, $9, $10)",
            )
            .bind(run.id.to_string())
            .bind(run.workspace_id.to_string())
            .bind(run.flow_id.to_string())
            .bind(run.user_id.to_string())
            .bind(run.budget_usd.map(|d| d.to_string()))
            .bind(run.messages.and_then(|m| serde_json::to_string(m).ok()))
            .bind(i64::from(run.stream))
            .bind(serde_json::to_string(run.graph).unwrap_or_default())
            .bind(now)
            .bind(run.api_key_id.map(str::to_string)),
        ];
        for (position, (pod, max)) in run.graph.pods.iter().zip(run.max_costs).enumerate() {
            statements.push(
                sqlx::query(
                    "INSERT INTO flow_run_pods (run_id, pod_id, position, status, max_cost_usd) VALUES ($1, $2, $3, 'PENDING', $4)",
                )
                .bind(run.id.to_string())
                .bind(pod.clone())
                .bind(position as i64)
                .bind(max.map(|d| d.to_string())),
            );
        }
        self.write_atomic(statements).await?;
        Ok(())
    }

    /// A run of the workspace.
    pub async fn run(&self, ws: &str, run_id: &str) -> Result<Run> {
        static RUN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("SELECT {RUN_COLUMNS} FROM flow_runs WHERE workspace_id = $1 AND id = $2")
        });
        let row = self
            .read_one(
                sqlx::query(RUN.as_str())
                    .bind(ws.to_string())
                    .bind(run_id.to_string()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        run_row(&row)
    }

    /// A flow's runs, newest first.
    pub async fn runs_of_flow(&self, ws: &str, flow_id: &str, limit: u32) -> Result<Vec<Run>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM flow_runs WHERE workspace_id = $1 AND flow_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(ws)
        .bind(flow_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    /// Whether the flow has a run that is not finished (its pods and edges must stay).
    pub async fn flow_has_active_run(&self, ws: &str, flow_id: &str) -> Result<bool> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM flow_runs WHERE workspace_id = $1 AND flow_id = $2 AND status IN {ACTIVE}"
        ))
        .bind(ws)
        .bind(flow_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// A run's pods in order, each with its execution's status and cost.
    pub async fn run_pods(&self, run_id: &str) -> Result<Vec<RunPod>> {
        let rows: super::group_commit::Statement = sqlx::query(
            "SELECT p.pod_id, p.position, p.status, p.execution_id, p.error, p.skipped_because, p.max_cost_usd,
                    e.status AS execution_status, e.total_cost, e.error_code, e.error_message
             FROM flow_run_pods p LEFT JOIN executions e ON e.id = p.execution_id
             WHERE p.run_id = $1 ORDER BY p.position",
        );
        let rows = self.read(rows.bind(run_id.to_string())).await?;
        rows.iter()
            .map(|row| {
                let status: Option<String> = get(row, "execution_status")?;
                let code: Option<String> = get(row, "error_code")?;
                let message: Option<String> = get(row, "error_message")?;
                Ok(RunPod {
                    pod_id: get(row, "pod_id")?,
                    position: get(row, "position")?,
                    status: get(row, "status")?,
                    execution_id: get(row, "execution_id")?,
                    error: get(row, "error")?,
                    skipped_because: get(row, "skipped_because")?,
                    max_cost_usd: decimal(get(row, "max_cost_usd")?, "max_cost_usd")?,
                    execution_status: status
                        .map(|s| {
                            ExecutionStatus::parse(&s)
                                .ok_or_else(|| StoreError::Corrupt(format!("status {s:?}")))
                        })
                        .transpose()?,
                    cost_usd: decimal(get(row, "total_cost")?, "total_cost")?,
                    execution_error: code.map(|c| match message {
                        Some(m) => format!("{c}: {m}"),
                        None => c,
                    }),
                })
            })
            .collect()
    }

    /// Takes the run's advancing lease until `until` and returns the run as it is now; `None`
    /// (and the run marked dirty, so the holder looks again) if another node holds it, or the
    /// run is finished. One statement, so a holder cannot let go between the try and the mark
    /// (a look would be lost).
    pub async fn lock_run(&self, run_id: &str, until: i64) -> Result<Option<Run>> {
        static LOCK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "UPDATE flow_runs SET
                    dirty = CASE WHEN advancing_until IS NULL OR advancing_until < $3 THEN 0 ELSE 1 END,
                    advancing_by = CASE WHEN advancing_until IS NULL OR advancing_until < $3 THEN $4 ELSE advancing_by END,
                    updated_at = CASE WHEN advancing_until IS NULL OR advancing_until < $3 THEN $3 ELSE updated_at END,
                    advancing_until = CASE WHEN advancing_until IS NULL OR advancing_until < $3 THEN $2 ELSE advancing_until END
                 WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')
                 RETURNING {RUN_COLUMNS}, advancing_by"
            )
        });
        let token = new_id();
        let rows = self
            .write_returning(
                sqlx::query(LOCK.as_str())
                    .bind(run_id.to_string())
                    .bind(until)
                    .bind(now_ms())
                    .bind(token.clone()),
            )
            .await?;
        match rows.first() {
            Some(row) if get::<Option<String>>(row, "advancing_by")?.as_deref() == Some(&token) => {
                Ok(Some(run_row(row)?))
            }
            _ => Ok(None),
        }
    }

    /// Gives the lease back unless someone asked for another look meanwhile (`false`: look
    /// again, still holding it).
    pub async fn unlock_run(&self, run_id: &str) -> Result<bool> {
        let released = self
            .write(
                sqlx::query(
                    "UPDATE flow_runs SET advancing_until = NULL WHERE id = $1 AND dirty = 0",
                )
                .bind(run_id.to_string()),
            )
            .await?
            == 1;
        if !released {
            self.write(
                sqlx::query("UPDATE flow_runs SET dirty = 0 WHERE id = $1")
                    .bind(run_id.to_string()),
            )
            .await?;
        }
        Ok(released)
    }

    /// Runs still moving that nobody has advanced since `before` (their last step's node may be
    /// gone): (workspace, run).
    pub async fn stalled_runs(&self, before: i64, limit: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT workspace_id, id FROM flow_runs
             WHERE status IN {ACTIVE} AND updated_at < $1 AND (advancing_until IS NULL OR advancing_until < $2)
             ORDER BY updated_at LIMIT $3"
        ))
        .bind(before)
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((get(r, "workspace_id")?, get(r, "id")?)))
            .collect()
    }

    /// QUEUED → RUNNING.
    pub async fn start_run(&self, run_id: &str) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE flow_runs SET status = 'RUNNING', started_at = COALESCE(started_at, $2), updated_at = $2
             WHERE id = $1 AND status = 'QUEUED'",
        )
        .bind(run_id.to_string())
        .bind(now_ms());
        Ok(self.write(statement).await? == 1)
    }

    /// A pending run pod ends without an execution: SKIPPED (with why), CANCELLED or ERROR.
    pub async fn end_run_pod(
        &self,
        run_id: &str,
        pod_id: &str,
        status: &str,
        skipped_because: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE flow_run_pods SET status = $3, skipped_because = $4, error = $5
             WHERE run_id = $1 AND pod_id = $2 AND status = 'PENDING'",
        )
        .bind(run_id.to_string())
        .bind(pod_id.to_string())
        .bind(status.to_string())
        .bind(skipped_because.map(str::to_string))
        .bind(error.map(str::to_string));
        Ok(self.write(statement).await? == 1)
    }

    /// A moving run ends with `status`.
    pub async fn finish_run(&self, run_id: &str, status: &str) -> Result<bool> {
        let statement = sqlx::query(
            "UPDATE flow_runs SET status = $2, finished_at = $3, updated_at = $3, advancing_until = NULL
             WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(run_id.to_string())
        .bind(status.to_string())
        .bind(now_ms());
        Ok(self.write(statement).await? == 1)
    }

    /// Cancels a moving run: it ends CANCELLED and its pending pods with it.
    pub async fn cancel_run(&self, run_id: &str) -> Result<bool> {
        let affected = self
            .write_atomic(vec![
                sqlx::query(
                    "UPDATE flow_runs SET status = 'CANCELLED', finished_at = $2, updated_at = $2
                     WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')",
                )
                .bind(run_id.to_string())
                .bind(now_ms()),
                // Only once the run is cancelled (by this or an earlier cancel).
                sqlx::query(
                    "UPDATE flow_run_pods SET status = 'CANCELLED' WHERE run_id = $1 AND status = 'PENDING'
                       AND EXISTS (SELECT 1 FROM flow_runs WHERE id = $1 AND status = 'CANCELLED')",
                )
                .bind(run_id.to_string()),
            ])
            .await?;
        Ok(affected.first() == Some(&1))
    }

    /// Makes a finished run move again: every pod that did not complete is PENDING again (its
    /// old execution stays in history), with new reservations; the budget may change.
    pub async fn reopen_run(
        &self,
        run_id: &str,
        from: &str,
        budget_usd: Option<Decimal>,
        again: &[(String, Option<Decimal>)],
    ) -> Result<bool> {
        let round = new_id();
        let mut statements = vec![
            sqlx::query(
                "UPDATE flow_runs SET status = 'RUNNING', finished_at = NULL, updated_at = $3,
                        round_started_at = $3, round = $5, budget_usd = COALESCE($4, budget_usd),
                        advancing_until = NULL, dirty = 0
                 WHERE id = $1 AND status = $2",
            )
            .bind(run_id.to_string())
            .bind(from.to_string())
            .bind(now_ms())
            .bind(budget_usd.map(|d| d.to_string()))
            .bind(round.clone()),
        ];
        for (pod, max) in again {
            // Only if this call reopened the run (its round).
            statements.push(
                sqlx::query(
                    "UPDATE flow_run_pods SET status = 'PENDING', execution_id = NULL, error = NULL,
                            skipped_because = NULL, max_cost_usd = $3
                     WHERE run_id = $1 AND pod_id = $2
                       AND EXISTS (SELECT 1 FROM flow_runs WHERE id = $1 AND round = $4)",
                )
                .bind(run_id.to_string())
                .bind(pod.clone())
                .bind(max.map(|d| d.to_string()))
                .bind(round.clone()),
            );
        }
        let affected = self.write_atomic(statements).await?;
        Ok(affected.first() == Some(&1))
    }

    /// The outputs of those of `pods` that completed in the run (one read; none for no pods).
    pub async fn run_outputs(&self, run_id: &str, pods: &[&str]) -> Result<Vec<(String, String)>> {
        fn outputs(pods: &str) -> String {
            format!(
                "SELECT p.pod_id, e.content FROM flow_run_pods p JOIN executions e ON e.id = p.execution_id
                 WHERE p.run_id = $1 AND e.status = 'COMPLETED' AND p.pod_id IN ({pods})"
            )
        }
        // A hot read, on the caller's thread: its text must not depend on the count.
        static OUTPUTS: LazyLock<[String; 2]> = LazyLock::new(|| with_json_list(outputs, 2));
        if pods.is_empty() {
            return Ok(vec![]);
        }
        let sql = self.backend.pick(&OUTPUTS);
        let wanted = serde_json::to_string(pods).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = self
            .read(sqlx::query(sql).bind(run_id.to_string()).bind(wanted))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    get(r, "pod_id")?,
                    get::<Option<String>>(r, "content")?.unwrap_or_default(),
                ))
            })
            .collect()
    }

    /// What the run's executions cost so far (every attempt, resumed ones included).
    pub async fn run_spent(&self, run_id: &str) -> Result<Decimal> {
        let rows = self
            .read(
                sqlx::query("SELECT total_cost FROM executions WHERE run_id = $1")
                    .bind(run_id.to_string()),
            )
            .await?;
        let mut spent = Decimal::ZERO;
        for row in &rows {
            if let Some(cost) = decimal(get(row, "total_cost")?, "total_cost")? {
                spent += cost;
            }
        }
        Ok(spent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lock_that_loses_asks_the_holder_to_look_again_and_reopen_resets_pods() {
        let (store, _dir) = Store::temp("pods-run-lease").await;
        let user = store
            .create_user("a@b.test", "a", false)
            .await
            .expect("user");
        let ws = store.create_workspace("w", &user.id).await.expect("ws");
        let graph = RunGraph {
            pods: vec!["p1".into(), "p2".into()],
            edges: vec![("p1".into(), "p2".into())],
        };
        store
            .create_run(&NewRun {
                id: "r",
                workspace_id: &ws.id,
                flow_id: "f",
                user_id: &user.id,
                budget_usd: None,
                messages: None,
                stream: false,
                graph: &graph,
                max_costs: &[None, None],
                api_key_id: None,
                created_at: now_ms(),
            })
            .await
            .expect("run");
        assert_eq!(store.run_pods("r").await.expect("pods").len(), 2);

        let until = now_ms() + 60_000;
        let run = store
            .lock_run("r", until)
            .await
            .expect("lock")
            .expect("taken");
        assert_eq!((run.status.as_str(), run.graph), ("QUEUED", graph.clone()));
        // Taken: the second caller does not get it, and the holder must look again.
        assert!(store.lock_run("r", until).await.expect("lock").is_none());
        assert!(!store.unlock_run("r").await.expect("unlock"), "look again");
        assert!(store.unlock_run("r").await.expect("unlock"), "released");
        assert!(
            store
                .lock_run("r", until)
                .await
                .expect("lock again")
                .is_some()
        );
        assert!(store.unlock_run("r").await.expect("unlock"));

        // Cancel ends the pending pods; reopening (from CANCELLED only) makes them pending again.
        assert!(store.cancel_run("r").await.expect("cancel"));
        assert!(!store.cancel_run("r").await.expect("cancel twice"));
        let statuses = |pods: Vec<RunPod>| pods.into_iter().map(|p| p.status).collect::<Vec<_>>();
        assert_eq!(
            statuses(store.run_pods("r").await.expect("pods")),
            ["CANCELLED", "CANCELLED"]
        );
        let again = [("p2".to_string(), None)];
        assert!(
            !store
                .reopen_run("r", "FAILED", None, &again)
                .await
                .expect("reopen")
        );
        assert_eq!(
            statuses(store.run_pods("r").await.expect("pods")),
            ["CANCELLED", "CANCELLED"]
        );
        assert!(
            store
                .reopen_run("r", "CANCELLED", None, &again)
                .await
                .expect("reopen")
        );
        assert_eq!(
            statuses(store.run_pods("r").await.expect("pods")),
            ["CANCELLED", "PENDING"]
        );
    }
}
