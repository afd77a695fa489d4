//! Running pods and reading their history.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{ApiError, AppState, Body, Caller};
use crate::domain::ErrorCode;
use crate::domain::{
    Cost, ExecuteRequest, ExecutionResult, ExecutionStatus, Role, UsageView, iso_time,
};
use crate::store::{Cancelled, Execution, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{ws}/executions", post(execute))
        .route(
            "/workspaces/{ws}/executions/{id}",
            get(get_execution).delete(cancel_execution),
        )
        .route("/workspaces/{ws}/executions/pod/{pod_id}", get(pod_history))
}

/// The answer to `async: true`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub execution_id: String,
    /// Always `queued`.
    pub status: String,
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/executions", tag = "executions", security(("bearer" = [])),
    request_body = ExecuteRequest,
    responses(
        (status = 200, body = ExecutionResult, description = "The finished execution (or, with `stream: true`, a text/event-stream of start, token, done and error events)"),
        (status = 202, body = Queued, description = "With `async: true`: recorded and queued; a worker runs it"),
        (status = 400, description = "Invalid request, unknown provider or model, missing provider key: nothing is recorded"),
        (status = 409, description = "EXECUTION_CANCELLED: cancelled while it ran (`executionId` says which)"),
        (status = 429, description = "RATE_LIMITED: the caller started more executions than `PODS_RATE_EXECUTIONS_PER_MIN` allows; `Retry-After` says when to try again"),
        (status = 502, description = "The provider or its plugin failed; the execution is stored with the error (`executionId`)"),
        (status = 504, description = "PROVIDER_TIMEOUT: the provider did not answer in time; the execution is stored with the error (`executionId`)")))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Body(req): Body<ExecuteRequest>,
) -> Result<Response, ApiError> {
    state
        .limit(
            &format!("user:{}", caller.user_id),
            state.rates.executions,
            1,
        )
        .await?;
    // The executor checks the caller's role (from its cache of the workspace's configuration).
    // With `stream` too, the queued call is streamed and its tokens go to the flow's WebSocket.
    if req.run_async {
        let id = state.executor.enqueue(&ws, &caller.user_id, &req).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(Queued {
                execution_id: id,
                status: "queued".into(),
            }),
        )
            .into_response());
    }
    let started = state.executor.start(&ws, &caller.user_id, &req).await?;
    if !req.stream {
        let result = state
            .executor
            .run(started.running, started.resolved, None, |_| {})
            .await?;
        return Ok(Json(result).into_response());
    }

    // Streaming: the execution runs in its own task so that a client who goes away does not
    // stop it from being saved (and billed) once.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let ids = started.ids();
    let start = json!({"executionId": ids.execution_id, "podId": ids.pod_id, "status": "RUNNING"});
    let _ = tx.send(sse("start", &start));
    let executor = state.executor.clone();
    tokio::spawn(async move {
        let deltas = tx.clone();
        let outcome = executor
            .run(started.running, started.resolved, None, move |d| {
                if !d.text.is_empty() || !d.reasoning.is_empty() {
                    let _ = deltas.send(sse(
                        "token",
                        &json!({"text": d.text, "reasoning": d.reasoning}),
                    ));
                }
            })
            .await;
        let last = match outcome {
            Ok(result) => sse("done", &result),
            Err(e) => {
                let error = ApiError::from(e);
                sse(
                    "error",
                    &json!({"executionId": error.execution_id, "error": {"code": error.code, "message": error.message}}),
                )
            }
        };
        let _ = tx.send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
}

/// A stored execution, as the seed's history shows it plus the full usage, cost and metadata.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub id: String,
    pub pod_id: String,
    pub flow_id: String,
    /// The flow run it is a pod of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub status: ExecutionStatus,
    pub provider: String,
    pub model_id: String,
    pub model_name: Option<String>,
    pub streamed: bool,
    /// `promptTokens`, cached included.
    pub input_tokens: Option<u64>,
    /// `completionTokens`, reasoning excluded.
    pub output_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub usage: UsageView,
    /// Total cost in USD, exact; `null` when the model had no price.
    pub cost_in_usd: Option<String>,
    pub cost: Option<Cost>,
    /// The pricing row the cost was computed from.
    pub pricing_id: Option<String>,
    pub content: Option<String>,
    pub warnings: Vec<String>,
    pub attempts: i64,
    #[serde(with = "iso_time")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(with = "iso_time::option")]
    #[schema(value_type = Option<String>)]
    pub started_at: Option<i64>,
    #[serde(with = "iso_time::option")]
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<i64>,
    pub runtime_in_ms: Option<i64>,
    pub error_message: Option<String>,
    pub error_code: Option<String>,
    /// The version of the provider plugin that ran it.
    pub plugin_version: Option<String>,
    /// Where a queued or running execution's job stands in the queue (single-execution view,
    /// when the queue backend can tell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::queue::JobState>,
    /// The request as sent to the provider plugin (single-execution view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub request_metadata: Option<serde_json::Value>,
    /// The provider's raw answer (single-execution view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub response_metadata: Option<serde_json::Value>,
}

impl ExecutionView {
    fn new(e: Execution, detailed: bool) -> Self {
        ExecutionView {
            runtime_in_ms: e.started_at.zip(e.finished_at).map(|(s, f)| f - s),
            cost_in_usd: e.cost.map(|c| c.total_cost.to_string()),
            input_tokens: e.usage.prompt_tokens,
            output_tokens: e.usage.completion_tokens,
            reasoning_tokens: e.usage.reasoning_tokens,
            cached_tokens: e.usage.cached_tokens,
            cache_write_tokens: e.usage.cache_write_tokens,
            usage: e.usage.into(),
            job: None,
            request_metadata: detailed.then_some(e.request_metadata),
            response_metadata: if detailed { e.response_metadata } else { None },
            id: e.id,
            pod_id: e.pod_id,
            flow_id: e.flow_id,
            run_id: e.run_id,
            status: e.status,
            provider: e.provider,
            model_id: e.model_id,
            model_name: e.model_name,
            streamed: e.streamed,
            cost: e.cost,
            pricing_id: e.pricing_id,
            content: e.content,
            warnings: e.warnings,
            attempts: e.attempts,
            created_at: e.created_at,
            started_at: e.started_at,
            finished_at: e.finished_at,
            error_message: e.error_message,
            error_code: e.error_code,
            plugin_version: e.plugin_version,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/executions/{id}", tag = "executions", security(("bearer" = [])),
    responses((status = 200, body = ExecutionView)))]
pub async fn get_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<Json<ExecutionView>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    match state.store.execution(&ws, &id).await {
        Ok(e) => {
            let job = if matches!(e.status, ExecutionStatus::Queued | ExecutionStatus::Running) {
                let job = crate::queue::Job {
                    execution_id: e.id.clone(),
                    workspace_id: ws.clone(),
                };
                state.queue.status(&job).await?
            } else {
                None
            };
            Ok(Json(ExecutionView {
                job,
                ..ExecutionView::new(e, true)
            }))
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found("execution")),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/executions/{id}", tag = "executions", security(("bearer" = [])),
    responses((status = 204, description = "Cancelled: a queued execution never runs; a running one is aborted and its result not saved"),
        (status = 409, description = "ALREADY_FINISHED")))]
pub async fn cancel_execution(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    match state.executor.cancel(&ws, &id).await? {
        Cancelled::Now { .. } => Ok(StatusCode::NO_CONTENT),
        Cancelled::AlreadyFinished(status) => Err(ApiError::new(
            ErrorCode::AlreadyFinished,
            format!("the execution has already finished: {}", status.as_str()),
        )),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// How many, newest first: 1 to 100, default 10.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/executions/pod/{pod_id}", tag = "executions", security(("bearer" = [])),
    params(HistoryQuery), responses((status = 200, body = [ExecutionView])))]
pub async fn pod_history(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, pod_id)): Path<(String, String)>,
    query: super::QueryParams<HistoryQuery>,
) -> Result<Json<Vec<ExecutionView>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let (_, limit) = super::paged(query, |q| q.limit, 10, 100)?;
    match state.pods.get(&ws, &pod_id).await {
        Err(StoreError::NotFound) => return Err(ApiError::not_found("pod")),
        other => other?,
    };
    let history = state.store.pod_executions(&ws, &pod_id, limit).await?;
    Ok(Json(
        history
            .into_iter()
            .map(|e| ExecutionView::new(e, false))
            .collect(),
    ))
}
