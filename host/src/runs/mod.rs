//! Whole-flow runs: a flow's pods run as ordinary queued executions, each once every upstream
//! pod has completed in this run, independent branches in parallel.
//!
//! Life of a run: `create` records it (every pod PENDING, the graph it was made for, each pod's
//! cost bound) and advances it. **Advancing** looks at the run's pods — a pod with an execution
//! has that execution's status — and, in execution order: skips a pending pod whose upstream
//! failed, was skipped or cancelled (`skippedBecause`); queues one whose upstreams all
//! completed, unless its bound would take the run past its budget (then it is skipped with
//! `"budget"`); and ends the run once nothing is pending, queued or running. A run is advanced
//! when it is created, when a worker finishes one of its pods, and by the sweeper for runs no one
//! advanced for a while (a node died mid-step). Every status change goes through the ledger.
//!
//! Most looks only queue pods whose upstreams completed, and those need no lock: queueing is
//! conditional on the pod being PENDING (the trigger below) and starting on the run being
//! QUEUED, and what such a look acts on (upstreams COMPLETED) does not change back, so two looks
//! at once cannot disagree — one of them finds the pod taken. A look that would skip or fail a
//! pod, reserve budget or end the run takes the run's lease instead (one holder at a time; a
//! node that finds it taken marks the run so the holder looks again): budget reservations are
//! never raced, and the run's end is decided by one holder after every pod it ended was
//! announced. A look without the lease saves the two writes that take and give it back.
//!
//! Crash safety: the state is the store's. The statement that records a pod's execution also
//! attaches it to the run pod (a trigger, migration 0012), and refuses it if the pod is no
//! longer PENDING — so no crash leaves an execution its run does not know about, and no pod is
//! scheduled twice. The queue's own recovery runs a recorded execution whose job was lost.

pub mod estimate;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rust_decimal::Decimal;

use crate::domain::{
    ErrorCode, ExecuteRequest, ExecutionStatus, KeyScope, MessageInput, Principal, Role, now_ms,
};
use crate::execution::{ExecError, Executor};
use crate::ledger::Ledger;
use crate::pod_store::PodStore;
use crate::store::{NewRun, Pod, Run, RunGraph, RunPod, Store, StoreError};
pub use estimate::{Estimate, PodEstimate};

/// Why a run request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl RunError {
    fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        RunError::Invalid {
            code,
            message: message.into(),
        }
    }
}

/// What a run asks for.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub budget_usd: Option<Decimal>,
    pub messages: Option<Vec<MessageInput>>,
    pub stream: bool,
}

/// Runs flows; cheap to clone.
#[derive(Clone)]
pub struct Runs {
    store: Store,
    pods: PodStore,
    ledger: Ledger,
    executor: Executor,
    default_max_tokens: u32,
    /// How long one node may hold a run's advancing lease; a run nobody advanced for this long
    /// is advanced by the sweeper.
    lease: Duration,
}

/// A run pod's status as the API shows it.
pub fn pod_status(pod: &RunPod) -> &str {
    match pod.execution_status {
        Some(status) => status.as_str(),
        None => &pod.status,
    }
}

impl Runs {
    pub fn new(
        store: Store,
        pods: PodStore,
        ledger: Ledger,
        executor: Executor,
        default_max_tokens: u32,
        lease: Duration,
    ) -> Self {
        Runs {
            store,
            pods,
            ledger,
            executor,
            default_max_tokens,
            lease,
        }
    }

    /// The flow's pods in execution order and its edges as a run graph.
    async fn graph(&self, ws: &str, flow_id: &str) -> Result<(Vec<Pod>, RunGraph), RunError> {
        match self.store.flow(ws, flow_id).await {
            Err(StoreError::NotFound) => return Err(RunError::NotFound("flow")),
            other => other?,
        };
        let pods = self.pods.list(ws, flow_id).await?;
        let edges = self.store.edges(ws, flow_id).await?;
        let order = crate::context::execution_order(&pods, &edges).ok_or_else(|| {
            RunError::invalid(ErrorCode::EdgeCycle, "the flow's edges form a cycle")
        })?;
        let by_id: HashMap<&str, &Pod> = pods.iter().map(|p| (p.id.as_str(), p)).collect();
        let ordered: Vec<Pod> = order
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).map(|p| (*p).clone()))
            .collect();
        let mut pairs: Vec<(String, String)> = edges
            .iter()
            .map(|e| (e.source_pod_id.clone(), e.target_pod_id.clone()))
            .collect();
        pairs.sort();
        Ok((
            ordered,
            RunGraph {
                pods: order,
                edges: pairs,
            },
        ))
    }

    /// Each pod's cost bound, with today's prices.
    async fn bounds(
        &self,
        pods: &[Pod],
        graph: &RunGraph,
        messages: Option<&[MessageInput]>,
    ) -> Result<Estimate, RunError> {
        let targets: HashSet<&str> = graph.edges.iter().map(|(_, t)| t.as_str()).collect();
        let roots: HashSet<String> = graph
            .pods
            .iter()
            .filter(|p| !targets.contains(p.as_str()))
            .cloned()
            .collect();
        let mut prices = HashMap::new();
        for pod in pods {
            let provider = pod.config.provider.to_ascii_lowercase();
            if let std::collections::hash_map::Entry::Vacant(slot) = prices.entry(provider) {
                let rows = self.store.prices_in_force(slot.key(), now_ms()).await?;
                slot.insert(rows);
            }
        }
        let price = |pod: &Pod| {
            let rows = prices.get(&pod.config.provider.to_ascii_lowercase())?;
            crate::cost::find_price(rows, &pod.config.model, None).cloned()
        };
        Ok(estimate::estimate(
            pods,
            &roots,
            messages,
            price,
            self.default_max_tokens,
        ))
    }

    /// `POST …/flows/{flowId}/estimate`.
    pub async fn estimate(
        &self,
        ws: &str,
        flow_id: &str,
        messages: Option<&[MessageInput]>,
    ) -> Result<Estimate, RunError> {
        let (pods, graph) = self.graph(ws, flow_id).await?;
        self.bounds(&pods, &graph, messages).await
    }

    /// Records a run and starts it; its id.
    pub async fn create(
        &self,
        ws: &str,
        flow_id: &str,
        who: &Principal,
        request: RunRequest,
    ) -> Result<String, RunError> {
        let (pods, graph) = self.graph(ws, flow_id).await?;
        if pods.is_empty() {
            return Err(RunError::invalid(
                ErrorCode::InvalidField,
                "the flow has no pods to run",
            ));
        }
        let bounds = self
            .bounds(&pods, &graph, request.messages.as_deref())
            .await?;
        if let Some(budget) = request.budget_usd {
            check_budget(budget, &bounds)?;
        }
        let key_budgeted = who
            .api_key
            .as_ref()
            .is_some_and(|key| key.monthly_budget_usd.is_some());
        if key_budgeted && !bounds.unpriced.is_empty() {
            return Err(RunError::invalid(
                ErrorCode::UnpricedModelUnderBudget,
                format!(
                    "pods {} use models with no price: a key with a monthly budget cannot run them",
                    bounds.unpriced.join(", ")
                ),
            ));
        }
        let max_costs: Vec<Option<Decimal>> = bounds.pods.iter().map(|p| p.max_cost_usd).collect();
        let run = Run {
            id: crate::domain::new_id(),
            workspace_id: ws.to_string(),
            flow_id: flow_id.to_string(),
            user_id: who.user_id.clone(),
            status: "QUEUED".into(),
            budget_usd: request.budget_usd,
            messages: request.messages,
            stream: request.stream,
            graph,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
            api_key_id: who.api_key.as_ref().map(|key| key.id.clone()),
        };
        self.ledger
            .record_run(&NewRun {
                id: &run.id,
                workspace_id: ws,
                flow_id,
                user_id: &run.user_id,
                budget_usd: run.budget_usd,
                messages: run.messages.as_deref(),
                stream: run.stream,
                graph: &run.graph,
                max_costs: &max_costs,
                api_key_id: run.api_key_id.as_deref(),
                created_at: run.created_at,
            })
            .await?;
        // The run as just recorded: no need to read it back.
        self.advance_from(ws, &run).await?;
        Ok(run.id)
    }

    /// Cancels a moving run: pending pods end CANCELLED, running ones are cancelled as
    /// executions are (on whichever node runs them). `false`: it had finished.
    pub async fn cancel(&self, ws: &str, run_id: &str) -> Result<bool, RunError> {
        let run = self.run(ws, run_id).await?;
        let spent = self.store.run_spent(run_id).await?;
        if !self.ledger.cancel_run(&run.flow_id, run_id, spent).await? {
            return Ok(false);
        }
        for pod in self.store.run_pods(run_id).await? {
            if let (Some(execution), Some(ExecutionStatus::Queued | ExecutionStatus::Running)) =
                (&pod.execution_id, pod.execution_status)
            {
                self.executor.cancel(ws, execution).await?;
            }
        }
        Ok(true)
    }

    /// Runs a FAILED, CANCELLED or BUDGET_EXCEEDED run again: only its pods that did not
    /// complete, with the pods' current settings, over the run's original graph.
    pub async fn resume(
        &self,
        ws: &str,
        run_id: &str,
        budget_usd: Option<Decimal>,
    ) -> Result<(), RunError> {
        let run = self.run(ws, run_id).await?;
        if !matches!(
            run.status.as_str(),
            "FAILED" | "CANCELLED" | "BUDGET_EXCEEDED"
        ) {
            return Err(RunError::invalid(
                ErrorCode::Conflict,
                format!(
                    "a {} run cannot be resumed (only FAILED, CANCELLED or BUDGET_EXCEEDED)",
                    run.status
                ),
            ));
        }
        let (pods, graph) = self.graph(ws, &run.flow_id).await?;
        if !same_graph(&graph, &run.graph) {
            return Err(RunError::invalid(
                ErrorCode::FlowChanged,
                "pods or edges of the run's flow were added or removed since it ran; start a new run",
            ));
        }
        let bounds = self.bounds(&pods, &graph, run.messages.as_deref()).await?;
        let budget = budget_usd.or(run.budget_usd);
        let state = self.store.run_pods(run_id).await?;
        let again: Vec<(String, Option<Decimal>)> = state
            .iter()
            .filter(|p| pod_status(p) != "COMPLETED")
            .map(|p| {
                let bound = bounds
                    .pods
                    .iter()
                    .find(|b| b.pod_id == p.pod_id)
                    .and_then(|b| b.max_cost_usd);
                (p.pod_id.clone(), bound)
            })
            .collect();
        if let Some(budget) = budget {
            let spent = self.store.run_spent(run_id).await?;
            let remaining = Estimate {
                pods: bounds
                    .pods
                    .into_iter()
                    .filter(|b| again.iter().any(|(id, _)| *id == b.pod_id))
                    .collect(),
                max_cost_usd: Decimal::ZERO,
                unpriced: vec![],
            };
            check_budget(budget - spent, &remaining)?;
        }
        if !self
            .ledger
            .reopen_run(&run.flow_id, run_id, &run.status, budget_usd, &again)
            .await?
        {
            return Err(RunError::invalid(
                ErrorCode::Conflict,
                "the run changed meanwhile; read it again",
            ));
        }
        self.advance(ws, run_id).await?;
        Ok(())
    }

    pub async fn run(&self, ws: &str, run_id: &str) -> Result<Run, RunError> {
        match self.store.run(ws, run_id).await {
            Err(StoreError::NotFound) => Err(RunError::NotFound("run")),
            other => Ok(other?),
        }
    }

    /// Moves the run as far as it can go now (see the module's doc). Another node advancing it
    /// meanwhile is asked to look again instead.
    pub async fn advance(&self, ws: &str, run_id: &str) -> Result<(), StoreError> {
        let run = match self.store.run(ws, run_id).await {
            Err(StoreError::NotFound) => return Ok(()),
            other => other?,
        };
        self.advance_from(ws, &run).await
    }

    /// [`Runs::advance`] from the run as it was just read.
    async fn advance_from(&self, ws: &str, run: &Run) -> Result<(), StoreError> {
        if self.step(ws, run, Lease::NotHeld).await? == Look::Done {
            return Ok(());
        }
        self.advance_holding_lease(ws, &run.id).await
    }

    /// [`Runs::advance`] with the run's lease held throughout.
    async fn advance_holding_lease(&self, ws: &str, run_id: &str) -> Result<(), StoreError> {
        let until = now_ms() + self.lease.as_millis() as i64;
        let Some(mut run) = self.store.lock_run(run_id, until).await? else {
            return Ok(());
        };
        loop {
            self.step(ws, &run, Lease::Held).await?;
            if self.store.unlock_run(run_id).await? {
                return Ok(());
            }
            // Asked to look again: at the run as it is now.
            run = self.store.run(ws, run_id).await?;
        }
    }

    /// Advances runs that nobody advanced for a lease's time (the node of their last step may
    /// be gone); how many. Holding the lease marks them advanced, so the next sweep takes others.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let before = now_ms() - self.lease.as_millis() as i64;
        let stalled = self.store.stalled_runs(before, 100).await?;
        for (ws, run) in &stalled {
            self.advance_holding_lease(ws, run).await?;
        }
        Ok(stalled.len())
    }

    /// One look at the run: skip, queue, or end it. Without the lease it only queues (and
    /// starts the run), and answers [`Look::NeedsLease`] if there was more to do.
    async fn step(&self, ws: &str, run: &Run, lease: Lease) -> Result<Look, StoreError> {
        let run_id = run.id.as_str();
        if !matches!(run.status.as_str(), "QUEUED" | "RUNNING") || run.workspace_id != ws {
            return Ok(Look::Done);
        }
        let held = lease == Lease::Held;
        if !held && run.budget_usd.is_some() {
            return Ok(Look::NeedsLease);
        }
        let mut look = Look::Done;
        let flow = run.flow_id.as_str();
        if run.status == "QUEUED" {
            self.ledger.start_run(flow, run_id).await?;
        }
        let pods = self.store.run_pods(run_id).await?;
        // What the run spent matters to a budget, and to the run's end: read it only then.
        let spent = match run.budget_usd {
            Some(_) => Some(self.store.run_spent(run_id).await?),
            None => None,
        };
        let mut upstream: HashMap<&str, Vec<&str>> = HashMap::new();
        for (source, target) in &run.graph.edges {
            upstream.entry(target).or_default().push(source);
        }
        let roots_messages = run.messages.clone();
        // Each pod's status as this step leaves it, and why a skipped one was skipped.
        let mut status: HashMap<String, (String, Option<String>)> = pods
            .iter()
            .map(|p| {
                (
                    p.pod_id.clone(),
                    (pod_status(p).to_string(), p.skipped_because.clone()),
                )
            })
            .collect();
        let bound: HashMap<&str, Decimal> = pods
            .iter()
            .map(|p| (p.pod_id.as_str(), p.max_cost_usd.unwrap_or_default()))
            .collect();
        let mut reserved: Decimal = pods
            .iter()
            .filter(|p| matches!(pod_status(p), "QUEUED" | "RUNNING"))
            .map(|p| p.max_cost_usd.unwrap_or_default())
            .sum();
        for pod in &pods {
            let id = pod.pod_id.as_str();
            if status.get(id).is_none_or(|(s, _)| s != "PENDING") {
                continue;
            }
            // Upstreams are the run's own pods (one graph made both); none other is looked at.
            let ups: Vec<&str> = upstream
                .get(id)
                .map(|u| {
                    u.iter()
                        .copied()
                        .filter(|u| status.contains_key(*u))
                        .collect()
                })
                .unwrap_or_default();
            let blocked = ups.iter().find_map(|u| {
                let (s, why) = status.get(*u)?;
                match s.as_str() {
                    "ERROR" | "CANCELLED" => Some(u.to_string()),
                    "SKIPPED" => Some(why.clone().unwrap_or_else(|| u.to_string())),
                    _ => None,
                }
            });
            if let Some(because) = blocked {
                if !held {
                    look = Look::NeedsLease;
                    continue;
                }
                self.ledger
                    .end_run_pod(flow, run_id, id, "SKIPPED", Some(&because), None)
                    .await?;
                status.insert(id.to_string(), ("SKIPPED".into(), Some(because)));
                continue;
            }
            if !ups
                .iter()
                .all(|u| status.get(*u).is_some_and(|(s, _)| s == "COMPLETED"))
            {
                continue;
            }
            let need = bound.get(id).copied().unwrap_or_default();
            if let (Some(budget), Some(spent)) = (run.budget_usd, spent)
                && spent + reserved + need > budget
            {
                self.ledger
                    .end_run_pod(flow, run_id, id, "SKIPPED", Some("budget"), None)
                    .await?;
                status.insert(id.to_string(), ("SKIPPED".into(), Some("budget".into())));
                continue;
            }
            let request = ExecuteRequest {
                pod_id: id.to_string(),
                messages: if ups.is_empty() {
                    roots_messages.clone()
                } else {
                    None
                },
                stream: run.stream,
                run_async: true,
                ..ExecuteRequest::default()
            };
            match self
                .executor
                .enqueue_run_pod(ws, &run_principal(run), &request, run_id, run.created_at)
                .await
            {
                Ok(_) => {
                    reserved += need;
                    status.insert(id.to_string(), ("QUEUED".into(), None));
                }
                // Another node scheduled the pod meanwhile (its lease on the run ran out under
                // this step): nothing was recorded here, and the pod counts as moving.
                Err(ExecError::Store(StoreError::RunPodTaken)) => {
                    reserved += need;
                    status.insert(id.to_string(), ("QUEUED".into(), None));
                }
                Err(ExecError::Store(e)) => return Err(e),
                // It cannot run as it is (its key was deleted, its model is unknown, …).
                Err(_) if !held => look = Look::NeedsLease,
                Err(e) => {
                    let why = e.to_string();
                    self.ledger
                        .end_run_pod(flow, run_id, id, "ERROR", None, Some(&why))
                        .await?;
                    status.insert(id.to_string(), ("ERROR".into(), None));
                }
            }
        }
        let moving = status
            .values()
            .any(|(s, _)| matches!(s.as_str(), "PENDING" | "QUEUED" | "RUNNING"));
        if !moving && !held {
            return Ok(Look::NeedsLease);
        }
        if !moving {
            let budget = status
                .values()
                .any(|(s, why)| s == "SKIPPED" && why.as_deref() == Some("budget"));
            let failed = status.values().any(|(s, _)| s != "COMPLETED");
            let end = match (budget, failed) {
                (true, _) => "BUDGET_EXCEEDED",
                (false, true) => "FAILED",
                (false, false) => "COMPLETED",
            };
            // Nothing was running when this step looked: what it spent is final.
            let spent = match spent {
                Some(spent) => spent,
                None => self.store.run_spent(run_id).await?,
            };
            self.ledger.finish_run(flow, run_id, end, spent).await?;
        }
        Ok(look)
    }
}

/// Whether a look holds the run's advancing lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Held,
    NotHeld,
}

/// What a look left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Done,
    /// Something only the lease's holder may do: skip or fail a pod, or end the run.
    NeedsLease,
}

/// Who a run's pods run as: the user who started it, and the API key it was started with (its
/// access and limits were checked then; its pods' usage counts against it).
fn run_principal(run: &Run) -> Principal {
    Principal {
        user_id: run.user_id.clone(),
        api_key: run.api_key_id.as_ref().map(|id| KeyScope {
            id: id.clone(),
            workspace_id: run.workspace_id.clone(),
            role: Role::Member,
            tpm: None,
            monthly_budget_usd: None,
        }),
    }
}

/// Refuses a budget that unpriced pods would escape, or that not even the cheapest pod fits.
fn check_budget(budget: Decimal, bounds: &Estimate) -> Result<(), RunError> {
    if !bounds.unpriced.is_empty() {
        return Err(RunError::invalid(
            ErrorCode::UnpricedModelUnderBudget,
            format!(
                "pods {} use models with no price: a budget cannot bound them (add prices, or run without budgetUsd)",
                bounds.unpriced.join(", ")
            ),
        ));
    }
    let cheapest = bounds.pods.iter().filter_map(|p| p.max_cost_usd).min();
    if let Some(cheapest) = cheapest
        && cheapest > budget
    {
        return Err(RunError::invalid(
            ErrorCode::BudgetTooLow,
            format!(
                "the budget of {budget} USD does not cover even the cheapest pod's bound of {cheapest} USD"
            ),
        ));
    }
    Ok(())
}

/// The same pods and edges (order aside).
fn same_graph(now: &RunGraph, then: &RunGraph) -> bool {
    let pods = |g: &RunGraph| g.pods.iter().cloned().collect::<HashSet<_>>();
    let edges = |g: &RunGraph| g.edges.iter().cloned().collect::<HashSet<_>>();
    pods(now) == pods(then) && edges(now) == edges(then)
}
