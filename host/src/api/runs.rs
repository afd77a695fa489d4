//! Whole-flow runs: start, list, read, resume, cancel, and a run's cost estimate.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, Body, Caller};
use crate::domain::{ErrorCode, MessageInput, Role};
use crate::runs::{Estimate, RunError, RunRequest, pod_status};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/workspaces/{ws}/flows/{flow_id}/runs",
            get(list_runs).post(start_run),
        )
        .route(
            "/workspaces/{ws}/flows/{flow_id}/runs/{run_id}",
            get(get_run).delete(cancel_run),
        )
        .route(
            "/workspaces/{ws}/flows/{flow_id}/runs/{run_id}/resume",
            post(resume_run),
        )
        .route("/workspaces/{ws}/flows/{flow_id}/estimate", post(estimate))
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::NotFound(what) => ApiError::not_found(what),
            RunError::Invalid { code, message } => ApiError::new(code, message),
            RunError::Store(e) => e.into(),
            RunError::Exec(e) => e.into(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRun {
    /// Most the run may spend, in USD (a decimal string, e.g. `"0.50"`).
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub budget_usd: Option<String>,
    /// Used by every root pod in place of its user prompt (its system prompt stays).
    pub messages: Option<Vec<MessageInput>>,
    /// Send every pod's token deltas to the flow's WebSocket.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeRun {
    /// A new (higher) budget, in USD.
    #[schema(pattern = "^[0-9]+(\\.[0-9]+)?$")]
    pub budget_usd: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EstimateRequest {
    pub messages: Option<Vec<MessageInput>>,
}

/// One pod of a run.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPodView {
    pub pod_id: String,
    /// `PENDING`, `QUEUED`, `RUNNING`, `COMPLETED`, `ERROR`, `SKIPPED` or `CANCELLED`.
    pub status: String,
    pub execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The upstream pod whose failure skipped it, or `"budget"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_because: Option<String>,
}

/// A run and its pods.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: String,
    pub flow_id: String,
    /// `QUEUED`, `RUNNING`, `COMPLETED`, `FAILED`, `CANCELLED` or `BUDGET_EXCEEDED`.
    pub status: String,
    pub budget_usd: Option<String>,
    pub spent_usd: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub pods: Vec<RunPodView>,
}

async fn view(state: &AppState, run: crate::store::Run) -> Result<RunView, ApiError> {
    use crate::domain::iso_time::format;
    let pods = state.store.run_pods(&run.id).await?;
    let spent = state.store.run_spent(&run.id).await?;
    Ok(RunView {
        pods: pods
            .iter()
            .map(|p| RunPodView {
                pod_id: p.pod_id.clone(),
                status: pod_status(p).to_string(),
                execution_id: p.execution_id.clone(),
                error: p.error.clone().or_else(|| {
                    (pod_status(p) == "ERROR")
                        .then(|| p.execution_error.clone())
                        .flatten()
                }),
                skipped_because: p.skipped_because.clone(),
            })
            .collect(),
        run_id: run.id,
        flow_id: run.flow_id,
        status: run.status,
        budget_usd: run.budget_usd.map(|d| d.normalize().to_string()),
        spent_usd: spent.normalize().to_string(),
        created_at: format(run.created_at),
        started_at: run.started_at.map(format),
        finished_at: run.finished_at.map(format),
    })
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/runs", tag = "runs", security(("bearer" = [])),
    request_body = StartRun,
    responses((status = 202, description = "`{runId, status: \"queued\"}`: its root pods are queued"),
        (status = 400, description = "BUDGET_TOO_LOW, UNPRICED_MODEL_UNDER_BUDGET, INVALID_FIELD (an empty flow, a bad budget)")))]
pub async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
    Body(body): Body<StartRun>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    state.check_key_limits(&caller).await?;
    let request = RunRequest {
        budget_usd: super::positive_usd("budgetUsd", body.budget_usd.as_deref())?,
        messages: body.messages,
        stream: body.stream,
    };
    let id = state
        .runs
        .create(&ws, &flow_id, &caller.principal(), request)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"runId": id, "status": "queued"})),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many, newest first: 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/runs", tag = "runs", security(("bearer" = [])),
    params(RunsQuery), responses((status = 200, body = [RunView], description = "Newest first")))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
    query: super::QueryParams<RunsQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let (_, limit) = super::paged(query, |q| q.limit, 20, 100)?;
    let mut out = vec![];
    for run in state.store.runs_of_flow(&ws, &flow_id, limit).await? {
        out.push(view(&state, run).await?);
    }
    Ok(Json(out))
}

async fn run_of_flow(
    state: &AppState,
    ws: &str,
    flow_id: &str,
    run_id: &str,
) -> Result<crate::store::Run, ApiError> {
    let run = state.runs.run(ws, run_id).await?;
    if run.flow_id != flow_id {
        return Err(ApiError::not_found("run"));
    }
    Ok(run)
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/runs/{run_id}", tag = "runs", security(("bearer" = [])),
    responses((status = 200, body = RunView)))]
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id, run_id)): Path<(String, String, String)>,
) -> Result<Json<RunView>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let run = run_of_flow(&state, &ws, &flow_id, &run_id).await?;
    Ok(Json(view(&state, run).await?))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/runs/{run_id}", tag = "runs", security(("bearer" = [])),
    responses((status = 204, description = "Cancelled: pending pods CANCELLED, running ones cancelled as executions"),
        (status = 409, description = "ALREADY_FINISHED")))]
pub async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id, run_id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    run_of_flow(&state, &ws, &flow_id, &run_id).await?;
    if !state.runs.cancel(&ws, &run_id).await? {
        return Err(ApiError::new(
            ErrorCode::AlreadyFinished,
            "the run has already finished",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/runs/{run_id}/resume", tag = "runs", security(("bearer" = [])),
    request_body(content = Option<ResumeRun>),
    responses((status = 202, description = "Running again: only the pods that did not complete, and their descendants"),
        (status = 409, description = "CONFLICT (a run that is not FAILED, CANCELLED or BUDGET_EXCEEDED) or FLOW_CHANGED")))]
pub async fn resume_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id, run_id)): Path<(String, String, String)>,
    body: Option<Body<ResumeRun>>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    state.check_key_limits(&caller).await?;
    run_of_flow(&state, &ws, &flow_id, &run_id).await?;
    let budget = match body {
        Some(Body(b)) => super::positive_usd("budgetUsd", b.budget_usd.as_deref())?,
        None => None,
    };
    state.runs.resume(&ws, &run_id, budget).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"runId": run_id, "status": "running"})),
    ))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/estimate", tag = "runs", security(("bearer" = [])),
    request_body(content = Option<EstimateRequest>),
    responses((status = 200, body = Estimate)))]
pub async fn estimate(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
    body: Option<Body<EstimateRequest>>,
) -> Result<Json<Estimate>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let messages = body.and_then(|Body(b)| b.messages);
    Ok(Json(
        state
            .runs
            .estimate(&ws, &flow_id, messages.as_deref())
            .await?,
    ))
}
