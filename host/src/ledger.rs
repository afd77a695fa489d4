//! The execution ledger: the only code that changes an execution's status. Each transition is
//! one conditional store write, then a typed event — never an event for a write that did not
//! happen.
//!
//! | from | to | method | event |
//! |---|---|---|---|
//! | — | RUNNING | [`Ledger::record_running`] (a synchronous call) | `execution:running` |
//! | — | QUEUED | [`Ledger::record_queued`] | `execution:queued`, confirmed before it returns |
//! | QUEUED, or RUNNING past its lease | RUNNING | [`Ledger::claim`], [`Ledger::claim_many`] (a worker) | `execution:running` with `attempt` |
//! | RUNNING | RUNNING | [`Running::delta`] (streamed text) | `execution:delta` |
//! | RUNNING | COMPLETED | [`Running::complete`] | `execution:completed` with the result |
//! | RUNNING | ERROR | [`Running::fail`]; a panic while running (`INTERNAL_ERROR`) | `execution:error` |
//! | RUNNING | QUEUED | [`Running::requeue`] (a retry) | `execution:queued` with the error, confirmed |
//! | QUEUED or RUNNING past its lease | QUEUED | [`Ledger::requeue_stale`] (the sweeper) | — |
//! | QUEUED or RUNNING past its lease | ERROR | [`Ledger::abandon`] (the sweeper) | `execution:error` |
//! | QUEUED or RUNNING | CANCELLED | [`Ledger::cancel`] | `execution:cancelled` |
//!
//! Every other change is refused by the write's condition and publishes nothing: a finished
//! (COMPLETED, ERROR, CANCELLED) execution never changes again, a queued one cannot complete, a
//! live lease cannot be claimed.
//!
//! **Order across nodes.** Events that hand an execution to another node (`queued`, first or
//! for a retry) are confirmed by the hub before the caller adds the job, so a worker's
//! `running` can never overtake them; every other event of an execution comes from the node
//! running it, whose events leave in order.
//!
//! **Leases.** A [`Running`] execution holds its lease through a heartbeat that renews it (and
//! a queued execution's job lease) every third of the lease. The heartbeat belongs to the
//! `Running` guard and stops whenever the guard goes: settled, returned early, cancelled,
//! dropped with its task at shutdown, or unwound by a panic — and a panic also ends the
//! execution as ERROR `INTERNAL_ERROR` (a run that panicked is not tried again blindly).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::domain::{ErrorCode, ExecutionResult, ExecutionStatus, StreamDelta, iso_time, now_ms};
use crate::events::{Channels, Hub};
use crate::queue::{Delivery, Queue};
use crate::store::{
    Cancelled, Claim as StoreClaim, Execution, FinishedExecution, NewExecution, NewRun, Result,
    SYNC_LEASE_OWNER, Stale, Store, StoreError,
};

/// Records executions and their status changes; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    events: Hub,
}

/// A queued execution's job, whose lease a claim's heartbeat renews with the execution's.
pub type QueuedJob = (Arc<dyn Queue>, Delivery);

/// What every event of an execution names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub execution_id: String,
    pub workspace_id: String,
    /// Empty for a call without a pod (the OpenAI-compatible door's `provider/model`).
    pub pod_id: String,
    /// Empty for a call without a pod.
    pub flow_id: String,
    /// The flow run the execution is a pod of: its changes are also `run:pod` events.
    pub run_id: Option<String>,
}

/// Why an execution failed: `{code, message}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    /// A NUL in the message (a provider's error text) is replaced by U+FFFD: not every
    /// database can store one.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into().replace('\0', "\u{FFFD}"),
        }
    }
}

/// What happened, as clients see it (the `type` field and its payload).
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Change<'a> {
    #[serde(rename = "execution:queued")]
    Queued {
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a Failure>,
    },
    #[serde(rename = "execution:running")]
    Running {
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<i64>,
    },
    #[serde(rename = "execution:delta")]
    Delta { text: &'a str, reasoning: &'a str },
    #[serde(rename = "execution:completed")]
    Completed { result: &'a ExecutionResult },
    #[serde(rename = "execution:error")]
    Error { error: &'a Failure },
    #[serde(rename = "execution:cancelled")]
    Cancelled,
}

impl Change<'_> {
    fn status(&self) -> ExecutionStatus {
        match self {
            Change::Queued { .. } => ExecutionStatus::Queued,
            Change::Running { .. } | Change::Delta { .. } => ExecutionStatus::Running,
            Change::Completed { result } => result.status,
            Change::Error { .. } => ExecutionStatus::Error,
            Change::Cancelled => ExecutionStatus::Cancelled,
        }
    }
}

/// What happened to a flow run, as clients see it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
enum RunChange<'a> {
    #[serde(rename = "run:queued")]
    Queued { run_id: &'a str },
    #[serde(rename = "run:started")]
    Started { run_id: &'a str },
    /// A pod of the run changed status.
    #[serde(rename = "run:pod")]
    Pod {
        run_id: &'a str,
        pod_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        execution_id: Option<&'a str>,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped_because: Option<&'a str>,
    },
    #[serde(rename = "run:completed")]
    Completed(RunEnd<'a>),
    #[serde(rename = "run:failed")]
    Failed(RunEnd<'a>),
    #[serde(rename = "run:cancelled")]
    Cancelled(RunEnd<'a>),
    #[serde(rename = "run:budget_exceeded")]
    BudgetExceeded(RunEnd<'a>),
}

/// How a run ended: its status and what it spent.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RunEnd<'a> {
    run_id: &'a str,
    status: &'a str,
    spent_usd: String,
}

impl<'a> RunChange<'a> {
    fn ended(run_id: &'a str, status: &'a str, spent: rust_decimal::Decimal) -> Self {
        let end = RunEnd {
            run_id,
            status,
            spent_usd: spent.normalize().to_string(),
        };
        match status {
            "COMPLETED" => RunChange::Completed(end),
            "CANCELLED" => RunChange::Cancelled(end),
            "BUDGET_EXCEEDED" => RunChange::BudgetExceeded(end),
            _ => RunChange::Failed(end),
        }
    }
}

/// One event as sent to WebSocket clients (JSON, camelCase): `type`, `executionId`, `podId`,
/// `flowId`, `status`, `timestamp` and the change's payload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(flatten)]
    change: &'a Change<'a>,
    execution_id: &'a str,
    pod_id: &'a str,
    flow_id: &'a str,
    status: ExecutionStatus,
    timestamp: String,
}

impl Ledger {
    pub fn new(store: Store, events: Hub) -> Self {
        Ledger { store, events }
    }

    /// The hub this ledger publishes to (for subscribers and cancel watches).
    pub fn events(&self) -> &Hub {
        &self.events
    }

    fn event<'a>(ids: &'a Ids, change: &'a Change<'a>) -> Event<'a> {
        Event {
            change,
            execution_id: &ids.execution_id,
            pod_id: &ids.pod_id,
            flow_id: &ids.flow_id,
            status: change.status(),
            timestamp: iso_time::format(now_ms()),
        }
    }

    /// An execution's events go to its flow's channel (when it has a pod) and to its
    /// workspace's.
    fn channels(ids: &Ids) -> Channels {
        Channels::flow_and_workspace(&ids.flow_id, &ids.workspace_id)
    }

    fn publish(&self, ids: &Ids, change: Change<'_>) {
        self.events
            .publish(&Self::channels(ids), &Self::event(ids, &change));
        self.publish_run_pod(ids, &change);
    }

    async fn publish_confirmed(&self, ids: &Ids, change: Change<'_>) {
        self.events
            .publish_confirmed(&Self::channels(ids), &Self::event(ids, &change))
            .await;
        self.publish_run_pod(ids, &change);
    }

    /// A run pod's execution changed status: `run:pod` (deltas are not a change of status).
    fn publish_run_pod(&self, ids: &Ids, change: &Change<'_>) {
        if let (Some(run_id), false) = (&ids.run_id, matches!(change, Change::Delta { .. })) {
            self.publish_run(
                &ids.flow_id,
                &RunChange::Pod {
                    run_id,
                    pod_id: &ids.pod_id,
                    execution_id: Some(&ids.execution_id),
                    status: change.status().as_str(),
                    skipped_because: None,
                },
            );
        }
    }

    fn publish_run(&self, flow_id: &str, change: &RunChange<'_>) {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct RunEvent<'a> {
            #[serde(flatten)]
            change: &'a RunChange<'a>,
            flow_id: &'a str,
            timestamp: String,
        }
        self.events.publish(
            &Channels::flow(flow_id),
            &RunEvent {
                change,
                flow_id,
                timestamp: iso_time::format(now_ms()),
            },
        );
    }

    /// — → RUNNING: a synchronous execution, leased to this node for `lease` and renewed while
    /// it runs. Nothing is written if the workspace's configuration moved past
    /// `new.config_version` ([`crate::store::StoreError::ConfigChanged`]).
    #[tracing::instrument(name = "store.record", skip_all)]
    pub async fn record_running(&self, new: &NewExecution, lease: Duration) -> Result<Running> {
        let id = self.store.start_execution(new, millis(lease)).await?;
        let ids = ids_of(id, new);
        self.publish(&ids, Change::Running { attempt: None });
        let heartbeat = Heartbeat::start(
            self.store.clone(),
            &ids.execution_id,
            SYNC_LEASE_OWNER,
            lease,
            None,
        );
        Ok(Running::new(self.clone(), ids, heartbeat, None))
    }

    /// — → QUEUED, for a worker to take within `grace`. Returns once every node has the
    /// `queued` event, so the caller may add the job.
    #[tracing::instrument(name = "store.record", skip_all)]
    pub async fn record_queued(&self, new: &NewExecution, grace: Duration) -> Result<Ids> {
        let id = self
            .store
            .insert_queued_execution(new, millis(grace))
            .await?;
        let ids = ids_of(id, new);
        self.publish_confirmed(&ids, Change::Queued { error: None })
            .await;
        Ok(ids)
    }

    /// QUEUED (or RUNNING past its lease) → RUNNING under `owner`'s lease, counting the attempt.
    /// The heartbeat renews the row's lease and, given one, the job's.
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
        job: Option<QueuedJob>,
    ) -> Result<Claim> {
        let mut claims = self
            .claim_many(vec![(id.to_string(), job)], owner, lease)
            .await?;
        Ok(claims.pop().unwrap_or(Claim::Skip))
    }

    /// [`Ledger::claim`] for several executions in one store write (a worker that took several
    /// jobs at once): a claim per execution, in the order given.
    pub async fn claim_many(
        &self,
        wanted: Vec<(String, Option<QueuedJob>)>,
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<Claim>> {
        let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
        let claims = self
            .store
            .claim_executions(&ids, owner, millis(lease))
            .await?;
        Ok(claims
            .into_iter()
            .zip(wanted)
            .map(|(claim, (id, job))| {
                let (execution, config_version) = match claim {
                    StoreClaim::Run(execution, config_version) => (execution, config_version),
                    StoreClaim::Skip => return Claim::Skip,
                };
                let ids = Ids {
                    execution_id: execution.id.clone(),
                    workspace_id: execution.workspace_id.clone(),
                    pod_id: execution.pod_id.clone(),
                    flow_id: execution.flow_id.clone(),
                    run_id: execution.run_id.clone(),
                };
                self.publish(
                    &ids,
                    Change::Running {
                        attempt: Some(execution.attempts),
                    },
                );
                let heartbeat = Heartbeat::start(self.store.clone(), &id, owner, lease, job);
                Claim::Run(
                    Running::new(self.clone(), ids, heartbeat, config_version),
                    execution,
                )
            })
            .collect())
    }

    /// Up to `limit` queued or running executions whose lease ran out, oldest first.
    pub async fn stale(&self, limit: i64) -> Result<Vec<Stale>> {
        self.store.stale_executions(limit).await
    }

    /// QUEUED or RUNNING (past its lease) → QUEUED again with a new deadline, if nobody touched
    /// it since it was found stale. The caller adds its job again.
    pub async fn requeue_stale(&self, stale: &Stale, until_ms: i64) -> Result<bool> {
        self.store.requeue_stale(stale, until_ms).await
    }

    /// QUEUED or RUNNING (past its lease) → ERROR, if nobody touched it since it was found stale.
    pub async fn abandon(&self, stale: &Stale, failure: &Failure) -> Result<bool> {
        let ended = self
            .store
            .abandon_execution(stale, failure.code.as_str(), &failure.message)
            .await?;
        if ended {
            let ids = Ids {
                execution_id: stale.id.clone(),
                workspace_id: stale.workspace_id.clone(),
                pod_id: stale.pod_id.clone(),
                flow_id: stale.flow_id.clone(),
                run_id: None,
            };
            self.publish(&ids, Change::Error { error: failure });
        }
        Ok(ended)
    }

    // Flow runs. A run's own status and its pods' (those without an execution) change here too:
    // one conditional store write each, then a `run:*` event on the flow's channel.

    /// — → QUEUED: a new run, every pod PENDING.
    pub async fn record_run(&self, run: &NewRun<'_>) -> Result<()> {
        self.store.create_run(run).await?;
        self.publish_run(run.flow_id, &RunChange::Queued { run_id: run.id });
        Ok(())
    }

    /// QUEUED → RUNNING.
    pub async fn start_run(&self, flow_id: &str, run_id: &str) -> Result<bool> {
        let started = self.store.start_run(run_id).await?;
        if started {
            self.publish_run(flow_id, &RunChange::Started { run_id });
        }
        Ok(started)
    }

    /// A PENDING run pod ends without running: `SKIPPED` (and why), `CANCELLED`, or `ERROR`
    /// (it could not be queued: `error` says why).
    pub async fn end_run_pod(
        &self,
        flow_id: &str,
        run_id: &str,
        pod_id: &str,
        status: &str,
        skipped_because: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        let ended = self
            .store
            .end_run_pod(run_id, pod_id, status, skipped_because, error)
            .await?;
        if ended {
            let change = RunChange::Pod {
                run_id,
                pod_id,
                execution_id: None,
                status,
                skipped_because,
            };
            self.publish_run(flow_id, &change);
        }
        Ok(ended)
    }

    /// QUEUED or RUNNING → COMPLETED, FAILED or BUDGET_EXCEEDED.
    pub async fn finish_run(
        &self,
        flow_id: &str,
        run_id: &str,
        status: &str,
        spent: rust_decimal::Decimal,
    ) -> Result<bool> {
        let finished = self.store.finish_run(run_id, status).await?;
        if finished {
            self.publish_run(flow_id, &RunChange::ended(run_id, status, spent));
        }
        Ok(finished)
    }

    /// QUEUED or RUNNING → CANCELLED, its pending pods with it (running ones are cancelled as
    /// executions by the caller).
    pub async fn cancel_run(
        &self,
        flow_id: &str,
        run_id: &str,
        spent: rust_decimal::Decimal,
    ) -> Result<bool> {
        let cancelled = self.store.cancel_run(run_id).await?;
        if cancelled {
            self.publish_run(flow_id, &RunChange::ended(run_id, "CANCELLED", spent));
        }
        Ok(cancelled)
    }

    /// FAILED, CANCELLED or BUDGET_EXCEEDED → RUNNING: `again`'s pods are PENDING once more.
    pub async fn reopen_run(
        &self,
        flow_id: &str,
        run_id: &str,
        from: &str,
        budget_usd: Option<rust_decimal::Decimal>,
        again: &[(String, Option<rust_decimal::Decimal>)],
    ) -> Result<bool> {
        let reopened = self
            .store
            .reopen_run(run_id, from, budget_usd, again)
            .await?;
        if reopened {
            self.publish_run(flow_id, &RunChange::Started { run_id });
        }
        Ok(reopened)
    }

    /// QUEUED or RUNNING → CANCELLED. Whichever node runs it is asked to abort its call.
    pub async fn cancel(&self, ws: &str, execution_id: &str) -> Result<Cancelled> {
        let outcome = self.store.cancel_execution(ws, execution_id).await?;
        if let Cancelled::Now {
            pod_id, flow_id, ..
        } = &outcome
        {
            self.events.request_cancel(execution_id);
            let ids = Ids {
                execution_id: execution_id.to_string(),
                workspace_id: ws.to_string(),
                pod_id: pod_id.clone(),
                flow_id: flow_id.clone(),
                run_id: None,
            };
            self.publish(&ids, Change::Cancelled);
        }
        Ok(outcome)
    }

    /// RUNNING → ERROR for an execution whose guard is gone (a panic).
    async fn fail_running(&self, ids: &Ids, failure: &Failure) -> Result<bool> {
        let failed = FinishedExecution::failed(failure.code, failure.message.clone());
        let ended = self
            .store
            .finish_execution(&ids.execution_id, &failed)
            .await?;
        if ended {
            self.publish(ids, Change::Error { error: failure });
        }
        Ok(ended)
    }
}

/// What a worker may do with a delivered execution.
// One per delivered job, moved once: boxing the guard would cost an allocation per job for no gain.
#[allow(clippy::large_enum_variant)]
pub enum Claim {
    /// Run it: it is RUNNING under this worker's lease (as it reads now).
    Run(Running, Box<Execution>),
    /// Nothing: it finished, was cancelled, or another worker's live lease holds it.
    Skip,
}

/// An execution this node is running, holding its lease. Settle it with [`Running::complete`],
/// [`Running::fail`] or [`Running::requeue`]; dropped unsettled, it leaves the row to its lease
/// (cancel, shutdown) — or, if a panic drops it, ends it as `INTERNAL_ERROR`.
pub struct Running {
    ledger: Ledger,
    ids: Ids,
    _heartbeat: Heartbeat,
    settled: bool,
    /// For a claimed queued execution: its workspace's `config_version` as the claim read it.
    config_version: Option<i64>,
}

impl Running {
    fn new(ledger: Ledger, ids: Ids, heartbeat: Heartbeat, config_version: Option<i64>) -> Self {
        Running {
            ledger,
            ids,
            _heartbeat: heartbeat,
            settled: false,
            config_version,
        }
    }

    /// The workspace's `config_version` as the claim that started this run read it (`None` for
    /// an execution recorded as running, or when its workspace is gone).
    pub fn config_version(&self) -> Option<i64> {
        self.config_version
    }

    pub fn ids(&self) -> &Ids {
        &self.ids
    }

    /// Resolves when a cancel of this execution is requested on any node.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.ledger.events.cancelled(&self.ids.execution_id)
    }

    /// Streamed text or reasoning, to the flow's clients (an empty increment sends nothing).
    pub fn delta(&self, delta: &StreamDelta) {
        if !delta.text.is_empty() || !delta.reasoning.is_empty() {
            self.ledger.publish(
                &self.ids,
                Change::Delta {
                    text: &delta.text,
                    reasoning: &delta.reasoning,
                },
            );
        }
    }

    /// RUNNING → COMPLETED (`done.status`), with its usage counted in the same statement.
    /// `false`: it was no longer running (cancelled meanwhile); nothing was written or sent.
    #[tracing::instrument(name = "store.finish", skip_all)]
    pub async fn complete(
        mut self,
        done: &FinishedExecution,
        result: &ExecutionResult,
    ) -> Result<bool> {
        self.settled = true;
        let store = &self.ledger.store;
        let saved = match store.finish_execution(&self.ids.execution_id, done).await {
            Ok(saved) => saved,
            // The answer itself cannot be stored: writing it again would fail again, and a retry
            // would pay the provider again. The execution ends with the error, and with the
            // usage and cost the provider did bill.
            Err(e) if e.is_rejection() => {
                let failure = Failure::new(
                    ErrorCode::StoreRejected,
                    format!("the database refused the answer: {e}"),
                );
                let failed = FinishedExecution {
                    model_name: done.model_name.clone(),
                    usage: done.usage,
                    cost: done.cost,
                    pricing_id: done.pricing_id.clone(),
                    warnings: done.warnings.clone(),
                    plugin_version: done.plugin_version.clone(),
                    ..FinishedExecution::failed(failure.code, failure.message.clone())
                };
                if store
                    .finish_execution(&self.ids.execution_id, &failed)
                    .await?
                {
                    self.ledger
                        .publish(&self.ids, Change::Error { error: &failure });
                }
                return Err(StoreError::Rejected(e.to_string()));
            }
            Err(e) => return Err(e),
        };
        if saved {
            self.ledger.publish(&self.ids, Change::Completed { result });
        }
        Ok(saved)
    }

    /// RUNNING → ERROR, keeping the execution's warnings and which plugin version ran it.
    /// `false`: it was no longer running; nothing was written or sent.
    #[tracing::instrument(name = "store.finish", skip_all)]
    pub async fn fail(
        mut self,
        failure: &Failure,
        warnings: Vec<String>,
        plugin_version: Option<String>,
    ) -> Result<bool> {
        self.settled = true;
        let done = FinishedExecution {
            warnings,
            plugin_version,
            ..FinishedExecution::failed(failure.code, failure.message.clone())
        };
        let store = &self.ledger.store;
        let ended = store
            .finish_execution(&self.ids.execution_id, &done)
            .await?;
        if ended {
            self.ledger
                .publish(&self.ids, Change::Error { error: failure });
        }
        Ok(ended)
    }

    /// RUNNING → QUEUED for another attempt, due at `due_ms` and to be taken within `grace`
    /// after that; the error stays visible. Returns once every node has the `queued` event, so
    /// the caller may put the job back. `false`: it was no longer running.
    pub async fn requeue(
        mut self,
        failure: &Failure,
        due_ms: i64,
        grace: Duration,
    ) -> Result<bool> {
        self.settled = true;
        let store = &self.ledger.store;
        let requeued = store
            .requeue_execution(
                &self.ids.execution_id,
                failure.code.as_str(),
                &failure.message,
                due_ms,
                millis(grace),
            )
            .await?;
        if requeued {
            self.ledger
                .publish_confirmed(
                    &self.ids,
                    Change::Queued {
                        error: Some(failure),
                    },
                )
                .await;
        }
        Ok(requeued)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.settled || !std::thread::panicking() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ledger, ids) = (self.ledger.clone(), self.ids.clone());
        tracing::error!(execution = %ids.execution_id, "an execution's run panicked; ending it as INTERNAL_ERROR");
        runtime.spawn(async move {
            let failure = Failure::new(
                ErrorCode::InternalError,
                "the server failed while running this execution",
            );
            if let Err(e) = ledger.fail_running(&ids, &failure).await {
                tracing::warn!(execution = %ids.execution_id, error = %e, "ending a panicked execution failed; its lease will run out");
            }
        });
    }
}

/// Renews a running execution's lease (and its job's) every third of the lease, until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(store: Store, id: &str, owner: &str, lease: Duration, job: Option<QueuedJob>) -> Self {
        let (id, owner) = (id.to_string(), owner.to_string());
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Some((queue, delivery)) = &job
                    && let Err(e) = queue.extend(delivery, lease).await
                {
                    tracing::warn!(execution = %id, error = %e, "renewing a job's lease failed");
                }
                if let Err(e) = store.extend_execution(&id, &owner, millis(lease)).await {
                    tracing::warn!(execution = %id, error = %e, "renewing an execution's lease failed");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn ids_of(execution_id: String, new: &NewExecution) -> Ids {
    Ids {
        execution_id,
        workspace_id: new.workspace_id.clone(),
        pod_id: new.pod_id.clone(),
        flow_id: new.flow_id.clone(),
        run_id: new.run_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Value;
    use tokio::sync::broadcast::Receiver;

    use super::*;
    use crate::domain::{ExecuteRequest, QueuedRequest, UsageView, new_id};
    use crate::store::Cancelled;

    const FLOW: &str = "flow-1";
    const LEASE: Duration = Duration::from_secs(60);

    struct Fixture {
        ledger: Ledger,
        store: Store,
        ws: String,
        events: Receiver<Arc<str>>,
    }

    async fn fixture() -> Fixture {
        let dir = std::env::temp_dir().join(format!("pods-ledger-{}", new_id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let url = format!("sqlite://{}", dir.join("pods.db").display());
        let store = Store::connect(&url).await.expect("store");
        let user = store
            .create_user("ledger@pods.test", "L", false)
            .await
            .expect("user");
        let ws = store
            .create_workspace("w", &user.id)
            .await
            .expect("workspace")
            .id;
        let hub = Hub::default();
        let events = hub.subscribe(FLOW);
        Fixture {
            ledger: Ledger::new(store.clone(), hub),
            store,
            ws,
            events,
        }
    }

    impl Fixture {
        fn new_execution(&self) -> NewExecution {
            NewExecution {
                workspace_id: self.ws.clone(),
                flow_id: FLOW.into(),
                pod_id: "pod-1".into(),
                provider: "openai".into(),
                model_id: "gpt-4o-mini".into(),
                queued: Some(QueuedRequest(ExecuteRequest {
                    pod_id: "pod-1".into(),
                    ..ExecuteRequest::default()
                })),
                ..NewExecution::default()
            }
        }

        /// The events published since the last call: (type, status, the whole event).
        fn events(&mut self) -> Vec<(String, String, Value)> {
            let mut seen = vec![];
            while let Ok(text) = self.events.try_recv() {
                let event: Value = serde_json::from_str(&text).expect("an event is JSON");
                let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
                seen.push((field("type"), field("status"), event));
            }
            seen
        }

        fn kinds(&mut self) -> Vec<String> {
            self.events().into_iter().map(|(kind, ..)| kind).collect()
        }

        async fn status(&self, id: &str) -> ExecutionStatus {
            self.store
                .execution(&self.ws, id)
                .await
                .expect("row")
                .status
        }

        async fn queued(&mut self) -> String {
            let ids = self
                .ledger
                .record_queued(&self.new_execution(), LEASE)
                .await
                .expect("queued");
            self.events();
            ids.execution_id
        }

        async fn claimed(&mut self, lease: Duration) -> Running {
            let id = self.queued().await;
            let claim = self.ledger.claim(&id, "worker-1", lease, None).await;
            let Ok(Claim::Run(running, _)) = claim else {
                panic!("a queued execution is claimed");
            };
            self.events();
            running
        }
    }

    fn result_of(running: &Running) -> ExecutionResult {
        ExecutionResult {
            execution_id: running.ids().execution_id.clone(),
            status: ExecutionStatus::Completed,
            content: "done".into(),
            reasoning: None,
            usage: UsageView::from(crate::domain::Usage::default()),
            cost: None,
            finish_reason: None,
            model: None,
            warnings: vec![],
        }
    }

    fn completed() -> FinishedExecution {
        FinishedExecution {
            status: ExecutionStatus::Completed,
            content: Some("done".into()),
            error_code: None,
            error_message: None,
            ..FinishedExecution::failed(ErrorCode::Internal, String::new())
        }
    }

    /// Runs `future`, expecting it to resolve within a short while.
    async fn soon<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), future)
            .await
            .expect("resolved in time")
    }

    #[tokio::test]
    async fn record_running_writes_running_then_says_so() {
        let mut f = fixture().await;
        let running = f
            .ledger
            .record_running(&f.new_execution(), LEASE)
            .await
            .expect("recorded");
        let id = running.ids().execution_id.clone();
        assert_eq!(f.status(&id).await, ExecutionStatus::Running);
        let events = f.events();
        assert_eq!(events.len(), 1);
        let (kind, status, event) = &events[0];
        assert_eq!(
            (kind.as_str(), status.as_str()),
            ("execution:running", "RUNNING")
        );
        assert_eq!(event["executionId"], id.as_str());
        assert_eq!(
            (event["podId"].as_str(), event["flowId"].as_str()),
            (Some("pod-1"), Some(FLOW))
        );
        assert!(
            event["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
    }

    #[tokio::test]
    async fn record_refused_by_a_moved_configuration_writes_and_sends_nothing() {
        let mut f = fixture().await;
        let stale = NewExecution {
            config_version: Some(-1),
            run_id: None,
            ..f.new_execution()
        };
        let recorded = f.ledger.record_running(&stale, LEASE).await;
        assert!(matches!(
            recorded,
            Err(crate::store::StoreError::ConfigChanged)
        ));
        assert!(f.ledger.record_queued(&stale, LEASE).await.is_err());
        assert!(f.events().is_empty());
    }

    #[tokio::test]
    async fn record_queued_keeps_the_typed_request_and_says_queued() {
        let mut f = fixture().await;
        let ids = f
            .ledger
            .record_queued(&f.new_execution(), LEASE)
            .await
            .expect("queued");
        let row = f
            .store
            .execution(&f.ws, &ids.execution_id)
            .await
            .expect("row");
        assert_eq!(row.status, ExecutionStatus::Queued);
        let QueuedRequest(request) = row.queued_request.expect("the request is stored");
        assert_eq!(request.pod_id, "pod-1");
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("execution:queued", "QUEUED")
        );
        assert!(
            events[0].2.get("error").is_none(),
            "a first queueing carries no error"
        );
    }

    #[tokio::test]
    async fn claim_moves_queued_to_running_once_and_counts_the_attempt() {
        let mut f = fixture().await;
        let id = f.queued().await;
        let Claim::Run(running, execution) = f
            .ledger
            .claim(&id, "worker-1", LEASE, None)
            .await
            .expect("claim")
        else {
            panic!("claimed");
        };
        assert_eq!(execution.attempts, 1);
        assert_eq!(f.status(&id).await, ExecutionStatus::Running);
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, "execution:running");
        assert_eq!(events[0].2["attempt"], 1);

        // A second delivery while the first worker's lease is alive: refused, silent.
        let again = f
            .ledger
            .claim(&id, "worker-2", LEASE, None)
            .await
            .expect("claim");
        assert!(matches!(again, Claim::Skip));
        assert!(f.events().is_empty());
        drop(running);
    }

    #[tokio::test]
    async fn claim_many_claims_in_one_write_and_answers_each_in_order() {
        let mut f = fixture().await;
        let (first, taken, second) = (f.queued().await, f.queued().await, f.queued().await);
        let Claim::Run(held, _) = f
            .ledger
            .claim(&taken, "worker-2", LEASE, None)
            .await
            .expect("claim")
        else {
            panic!("claimed");
        };
        let _ = f.events();
        let wanted = [&first, &taken, "no-such-execution", &second]
            .iter()
            .map(|id| (id.to_string(), None))
            .collect();
        let claims = f
            .ledger
            .claim_many(wanted, "worker-1", LEASE)
            .await
            .expect("claims");
        let got: Vec<Option<String>> = claims
            .iter()
            .map(|c| match c {
                Claim::Run(running, execution) => {
                    assert_eq!(running.ids().execution_id, execution.id);
                    Some(execution.id.clone())
                }
                Claim::Skip => None,
            })
            .collect();
        assert_eq!(got, [Some(first.clone()), None, None, Some(second.clone())]);
        assert_eq!(f.status(&first).await, ExecutionStatus::Running);
        assert_eq!(f.status(&second).await, ExecutionStatus::Running);
        let events = f.events();
        let running: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(running, ["execution:running", "execution:running"]);
        drop((claims, held));
    }

    #[tokio::test]
    async fn claim_takes_over_a_running_execution_whose_lease_ran_out() {
        let mut f = fixture().await;
        let running = f.claimed(Duration::from_millis(1)).await;
        let id = running.ids().execution_id.clone();
        drop(running);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Claim::Run(_, execution) = f
            .ledger
            .claim(&id, "worker-2", LEASE, None)
            .await
            .expect("claim")
        else {
            panic!("a dead worker's execution is taken over");
        };
        assert_eq!(execution.attempts, 2);
        assert_eq!(f.kinds(), ["execution:running"]);
    }

    #[tokio::test]
    async fn delta_sends_streamed_text_and_nothing_for_an_empty_increment() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        running.delta(&StreamDelta::default());
        assert!(f.events().is_empty(), "an empty increment sends nothing");
        running.delta(&StreamDelta {
            text: "Hel".into(),
            ..StreamDelta::default()
        });
        let events = f.events();
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("execution:delta", "RUNNING")
        );
        assert_eq!(
            (
                events[0].2["text"].as_str(),
                events[0].2["reasoning"].as_str()
            ),
            (Some("Hel"), Some(""))
        );
    }

    #[tokio::test]
    async fn complete_moves_running_to_completed_and_sends_the_result() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let result = result_of(&running);
        let id = result.execution_id.clone();
        assert!(
            running
                .complete(&completed(), &result)
                .await
                .expect("complete")
        );
        assert_eq!(f.status(&id).await, ExecutionStatus::Completed);
        let events = f.events();
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("execution:completed", "COMPLETED")
        );
        assert_eq!(events[0].2["result"]["content"], "done");
    }

    #[tokio::test]
    async fn complete_of_an_execution_cancelled_meanwhile_writes_and_sends_nothing() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let result = result_of(&running);
        f.ledger
            .cancel(&f.ws, &result.execution_id)
            .await
            .expect("cancel");
        assert_eq!(f.kinds(), ["execution:cancelled"]);
        assert!(
            !running
                .complete(&completed(), &result)
                .await
                .expect("complete")
        );
        assert_eq!(
            f.status(&result.execution_id).await,
            ExecutionStatus::Cancelled
        );
        assert!(
            f.events().is_empty(),
            "no event for a write that did not happen"
        );
    }

    #[tokio::test]
    async fn fail_moves_running_to_error_with_its_code() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let id = running.ids().execution_id.clone();
        let failure = Failure::new(ErrorCode::ProviderAuth, "bad key");
        let ended = running
            .fail(&failure, vec!["w".into()], Some("0.1.0".into()))
            .await
            .expect("fail");
        assert!(ended);
        let row = f.store.execution(&f.ws, &id).await.expect("row");
        assert_eq!(row.status, ExecutionStatus::Error);
        assert_eq!(row.error_code.as_deref(), Some("PROVIDER_AUTH"));
        assert_eq!(
            (row.warnings, row.plugin_version.as_deref()),
            (vec!["w".to_string()], Some("0.1.0"))
        );
        let events = f.events();
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("execution:error", "ERROR")
        );
        assert_eq!(events[0].2["error"]["code"], "PROVIDER_AUTH");
    }

    #[tokio::test]
    async fn fail_of_a_finished_execution_is_refused() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let id = running.ids().execution_id.clone();
        f.ledger.cancel(&f.ws, &id).await.expect("cancel");
        f.events();
        let failure = Failure::new(ErrorCode::ProviderAuth, "bad key");
        assert!(!running.fail(&failure, vec![], None).await.expect("fail"));
        assert_eq!(f.status(&id).await, ExecutionStatus::Cancelled);
        assert!(f.events().is_empty());
    }

    #[tokio::test]
    async fn requeue_moves_running_back_to_queued_with_the_error_visible() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let id = running.ids().execution_id.clone();
        let failure = Failure::new(ErrorCode::ProviderRateLimited, "slow down");
        assert!(
            running
                .requeue(&failure, now_ms(), LEASE)
                .await
                .expect("requeue")
        );
        let row = f.store.execution(&f.ws, &id).await.expect("row");
        assert_eq!(row.status, ExecutionStatus::Queued);
        assert_eq!(row.error_code.as_deref(), Some("PROVIDER_RATE_LIMITED"));
        let events = f.events();
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("execution:queued", "QUEUED")
        );
        assert_eq!(events[0].2["error"]["code"], "PROVIDER_RATE_LIMITED");
        // And the next attempt can claim it.
        let claim = f
            .ledger
            .claim(&id, "worker-2", LEASE, None)
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Run(..)));
    }

    #[tokio::test]
    async fn requeue_of_a_cancelled_execution_is_refused() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let id = running.ids().execution_id.clone();
        f.ledger.cancel(&f.ws, &id).await.expect("cancel");
        f.events();
        let failure = Failure::new(ErrorCode::ProviderRateLimited, "slow down");
        assert!(
            !running
                .requeue(&failure, now_ms(), LEASE)
                .await
                .expect("requeue")
        );
        assert_eq!(f.status(&id).await, ExecutionStatus::Cancelled);
        assert!(f.events().is_empty());
    }

    #[tokio::test]
    async fn the_sweeper_requeues_a_stale_execution_once_and_silently() {
        let mut f = fixture().await;
        let id = f
            .ledger
            .record_queued(&f.new_execution(), Duration::ZERO)
            .await
            .expect("queued")
            .execution_id;
        f.events();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let stale = f.ledger.stale(10).await.expect("stale");
        assert_eq!(stale.len(), 1);
        assert!(
            f.ledger
                .requeue_stale(&stale[0], now_ms() + 60_000)
                .await
                .expect("requeue")
        );
        // Found stale before that: refused (another sweeper got there first).
        assert!(
            !f.ledger
                .requeue_stale(&stale[0], now_ms() + 60_000)
                .await
                .expect("requeue")
        );
        assert_eq!(f.status(&id).await, ExecutionStatus::Queued);
        assert!(f.ledger.stale(10).await.expect("stale").is_empty());
        assert!(f.events().is_empty());
    }

    #[tokio::test]
    async fn the_sweeper_abandons_a_stale_execution_once_with_an_error_event() {
        let mut f = fixture().await;
        let running = f.claimed(Duration::from_millis(1)).await;
        let id = running.ids().execution_id.clone();
        drop(running);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let stale = f.ledger.stale(10).await.expect("stale");
        let failure = Failure::new(ErrorCode::AttemptsExhausted, "gave up");
        assert!(
            f.ledger
                .abandon(&stale[0], &failure)
                .await
                .expect("abandon")
        );
        assert!(
            !f.ledger
                .abandon(&stale[0], &failure)
                .await
                .expect("abandon")
        );
        assert_eq!(f.status(&id).await, ExecutionStatus::Error);
        let events = f.events();
        assert_eq!(events.len(), 1, "one error event: {events:?}");
        assert_eq!(events[0].2["error"]["code"], "ATTEMPTS_EXHAUSTED");
    }

    #[tokio::test]
    async fn cancel_ends_a_queued_or_running_execution_and_aborts_its_call() {
        let mut f = fixture().await;
        let queued = f.queued().await;
        let outcome = f.ledger.cancel(&f.ws, &queued).await.expect("cancel");
        assert!(matches!(
            outcome,
            Cancelled::Now {
                was: ExecutionStatus::Queued,
                ..
            }
        ));
        assert_eq!(f.kinds(), ["execution:cancelled"]);

        let running = f.claimed(LEASE).await;
        let id = running.ids().execution_id.clone();
        let call = running.cancelled();
        f.ledger.cancel(&f.ws, &id).await.expect("cancel");
        soon(call).await;
        let events = f.events();
        assert_eq!(
            (events[0].0.as_str(), events[0].1.as_str()),
            ("execution:cancelled", "CANCELLED")
        );
    }

    #[tokio::test]
    async fn a_finished_execution_never_changes_again() {
        let mut f = fixture().await;
        let running = f.claimed(LEASE).await;
        let result = result_of(&running);
        let id = result.execution_id.clone();
        running
            .complete(&completed(), &result)
            .await
            .expect("complete");
        f.events();
        let outcome = f.ledger.cancel(&f.ws, &id).await.expect("cancel");
        assert_eq!(
            outcome,
            Cancelled::AlreadyFinished(ExecutionStatus::Completed)
        );
        let claim = f
            .ledger
            .claim(&id, "worker-2", LEASE, None)
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Skip));
        assert!(f.ledger.stale(10).await.expect("stale").is_empty());
        assert_eq!(f.status(&id).await, ExecutionStatus::Completed);
        assert!(f.events().is_empty());
    }

    #[tokio::test]
    async fn the_heartbeat_renews_the_lease_until_its_guard_is_gone() {
        let mut f = fixture().await;
        let lease = Duration::from_millis(300);
        let running = f
            .ledger
            .record_running(&f.new_execution(), lease)
            .await
            .expect("recorded");
        tokio::time::sleep(lease * 3).await;
        assert!(
            f.ledger.stale(10).await.expect("stale").is_empty(),
            "renewed while held"
        );
        drop(running);
        tokio::time::sleep(lease * 2).await;
        assert_eq!(
            f.ledger.stale(10).await.expect("stale").len(),
            1,
            "not renewed once dropped"
        );
        f.events();
    }

    #[tokio::test]
    async fn a_run_that_panics_ends_as_internal_error_and_stops_its_heartbeat() {
        let mut f = fixture().await;
        let lease = Duration::from_millis(300);
        let running = f.claimed(lease).await;
        let id = running.ids().execution_id.clone();
        let task = tokio::spawn(async move {
            let _held = running;
            panic!("a bug while running");
        });
        assert!(task.await.is_err(), "the task panicked");
        let failed = soon(async {
            loop {
                if f.status(&id).await == ExecutionStatus::Error {
                    return f.store.execution(&f.ws, &id).await.expect("row");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(failed.error_code.as_deref(), Some("INTERNAL_ERROR"));
        let events = f.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].2["error"]["code"], "INTERNAL_ERROR");
    }
}
