//! Running pods and reading their history.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
use crate::execution::ExecError;
use crate::store::{Cancelled, Execution, Idempotency, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/workspaces/{ws}/executions",
            post(execute).get(workspace_history),
        )
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
    /// `queued`; on an idempotent replay, the execution's status now (lower case).
    pub status: String,
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/executions", tag = "executions", security(("bearer" = [])),
    request_body = ExecuteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Within 24 hours the same key (from the same user or API key) answers with the same execution instead of running again; marked `Idempotent-Replayed: true`")),
    responses(
        (status = 200, body = ExecutionResult, description = "The finished execution (or, with `stream: true`, a text/event-stream of start, token, done and error events)"),
        (status = 202, body = Queued, description = "With `async: true`: recorded and queued; a worker runs it"),
        (status = 400, description = "Invalid request, unknown provider or model, missing provider key: nothing is recorded"),
        (status = 402, description = "BUDGET_EXHAUSTED: the API key's monthly budget is spent"),
        (status = 409, description = "EXECUTION_CANCELLED: cancelled while it ran (`executionId` says which); CONFLICT: the execution of this Idempotency-Key has not finished yet"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED: the Idempotency-Key came with another request in the last 24 hours"),
        (status = 429, description = "RATE_LIMITED: the caller started more executions than `PODS_RATE_EXECUTIONS_PER_MIN` allows, or an API key is over its requests or tokens a minute; `Retry-After` says when to try again"),
        (status = 502, description = "The provider or its plugin failed; the execution is stored with the error (`executionId`)"),
        (status = 504, description = "PROVIDER_TIMEOUT: the provider did not answer in time; the execution is stored with the error (`executionId`)")))]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    headers: HeaderMap,
    Body(req): Body<ExecuteRequest>,
) -> Result<Response, ApiError> {
    // A replay runs nothing: it is answered before the limits on running.
    let idempotency = idempotency(&headers, &caller, &req)?;
    if let Some(key) = &idempotency {
        state.access(&ws, &caller, Role::Member).await?;
        if let Some(replay) = replay(&state, &ws, key, &req).await? {
            return Ok(replay);
        }
    }
    state.may_run(&caller).await?;
    let who = caller.principal();
    // The executor checks the caller's role (from its cache of the workspace's configuration).
    // With `stream` too, the queued call is streamed and its tokens go to the flow's WebSocket.
    let started = if req.run_async {
        state
            .executor
            .enqueue(&ws, &who, &req, idempotency.clone())
            .await
            .map(Err)
    } else {
        state
            .executor
            .start(&ws, &who, &req, idempotency.clone())
            .await
            .map(Ok)
    };
    let started = match (started, &idempotency) {
        // The same key, at the same moment: the first request's execution is the answer.
        (Err(ExecError::Store(StoreError::IdempotencyTaken)), Some(key)) => {
            return match replay(&state, &ws, key, &req).await? {
                Some(replay) => Ok(replay),
                None => Err(StoreError::IdempotencyTaken.into()),
            };
        }
        (started, _) => started?,
    };
    let started = match started {
        Ok(started) => started,
        Err(id) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(Queued {
                    execution_id: id,
                    status: "queued".into(),
                }),
            )
                .into_response());
        }
    };
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
            Err(e) => error_event(&ApiError::from(e)),
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

/// How long an `Idempotency-Key` finds its execution.
const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// The request's `Idempotency-Key`, scoped to its caller (the same key from another user or
/// API key is another key), with a hash of the request; 400 if it is not 1–255 visible ASCII
/// characters.
pub(super) fn idempotency(
    headers: &HeaderMap,
    caller: &Caller,
    req: &ExecuteRequest,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    let request = serde_json::to_string(req).unwrap_or_default();
    Ok(Some(Idempotency {
        key: format!("{}:{key}", caller.rate_subject()),
        request_hash: crate::auth::api_key_hash(&request),
    }))
}

/// The execution recorded with this idempotency key in the last 24 hours, if any; the same key
/// with another request is 422 `IDEMPOTENCY_KEY_REUSED`.
pub(super) async fn recorded(
    state: &AppState,
    ws: &str,
    key: &Idempotency,
) -> Result<Option<Execution>, ApiError> {
    let since = crate::domain::now_ms() - IDEMPOTENCY_WINDOW_MS;
    let Some((e, hash)) = state
        .store
        .execution_by_idempotency(ws, &key.key, since)
        .await?
    else {
        return Ok(None);
    };
    if hash != key.request_hash {
        return Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            format!(
                "this Idempotency-Key was used with another request in the last 24 hours (execution {})",
                e.id
            ),
        ));
    }
    Ok(Some(e))
}

/// The answer of an execution recorded with this idempotency key in the last 24 hours, as the
/// request asks for it (queued, finished, streamed), marked `Idempotent-Replayed: true`; `None`
/// if there is none.
async fn replay(
    state: &AppState,
    ws: &str,
    key: &Idempotency,
    req: &ExecuteRequest,
) -> Result<Option<Response>, ApiError> {
    let Some(e) = recorded(state, ws, key).await? else {
        return Ok(None);
    };
    let mut response = if req.run_async {
        let queued = Queued {
            execution_id: e.id,
            status: e.status.as_str().to_ascii_lowercase(),
        };
        (StatusCode::ACCEPTED, Json(queued)).into_response()
    } else {
        let start = json!({"executionId": e.id, "podId": e.pod_id, "status": "RUNNING"});
        let outcome = recorded_outcome(e);
        match (req.stream, outcome) {
            (false, Ok(result)) => Json(result).into_response(),
            (false, Err(error)) => error.into_response(),
            (true, outcome) => {
                let last = match outcome {
                    Ok(result) => sse("done", &result),
                    Err(error) => error_event(&error),
                };
                let events = [sse("start", &start), last].map(Ok::<_, Infallible>);
                Sse::new(futures_util::stream::iter(events)).into_response()
            }
        }
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}

/// A recorded execution as the execute route answered it: the result, or the error with the
/// execution's id. (A replay has no reasoning text or finish reason: they are not recorded.)
pub(super) fn recorded_outcome(e: Execution) -> Result<ExecutionResult, ApiError> {
    let with_id = |error: ApiError, id: String| ApiError {
        execution_id: Some(id),
        ..error
    };
    match e.status {
        ExecutionStatus::Completed => Ok(ExecutionResult {
            execution_id: e.id,
            status: e.status,
            content: e.content.unwrap_or_default(),
            reasoning: None,
            usage: e.usage.into(),
            cost: e.cost,
            finish_reason: None,
            model: e.model_name,
            warnings: e.warnings,
        }),
        ExecutionStatus::Error => {
            let code = e
                .error_code
                .as_deref()
                .and_then(ErrorCode::parse)
                .unwrap_or(ErrorCode::Internal);
            let message = e.error_message.unwrap_or_default();
            Err(with_id(ApiError::new(code, message), e.id))
        }
        ExecutionStatus::Cancelled => {
            Err(ApiError::from(ExecError::Cancelled { execution_id: e.id }))
        }
        ExecutionStatus::Queued | ExecutionStatus::Running => Err(with_id(
            ApiError::new(
                ErrorCode::Conflict,
                "the execution with this Idempotency-Key has not finished yet; GET it by its executionId",
            ),
            e.id,
        )),
    }
}

fn error_event(error: &ApiError) -> Event {
    sse(
        "error",
        &json!({"executionId": error.execution_id, "error": {"code": error.code, "message": error.message}}),
    )
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
    /// `null` for a call without a pod (`provider/model` through `/v1/chat/completions`).
    pub pod_id: Option<String>,
    pub flow_id: Option<String>,
    /// The flow run it is a pod of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The `x-request-id` of the request that recorded it (`null` for a run's pods).
    pub request_id: Option<String>,
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
            pod_id: Some(e.pod_id).filter(|id| !id.is_empty()),
            flow_id: Some(e.flow_id).filter(|id| !id.is_empty()),
            run_id: e.run_id,
            request_id: e.request_id,
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceHistoryQuery {
    /// How many, newest first: 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only this pod's executions.
    pub pod_id: Option<String>,
    /// Only this flow's executions.
    pub flow_id: Option<String>,
    /// Only executions of this model (as requested, e.g. `gpt-4o-mini`).
    pub model: Option<String>,
    /// Only executions with this status (`QUEUED`, `RUNNING`, `COMPLETED`, `ERROR`, `CANCELLED`).
    pub status: Option<String>,
    /// Only executions older than this one (an execution id): the next page.
    pub before: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/executions", tag = "executions", security(("bearer" = [])),
    params(WorkspaceHistoryQuery),
    responses((status = 200, body = [ExecutionView], description = "The workspace's executions, newest first — pods' and calls without a pod (`podId: null`)"),
        (status = 400, description = "INVALID_FIELD: a bad query parameter")))]
pub async fn workspace_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    query: super::QueryParams<WorkspaceHistoryQuery>,
) -> Result<Json<Vec<ExecutionView>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    let (q, limit) = super::paged(query, |q| q.limit, 20, 100)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidField,
                format!("status {s:?} is not one of QUEUED, RUNNING, COMPLETED, ERROR, CANCELLED"),
            )
        })?),
    };
    let filter = crate::store::HistoryFilter {
        pod_id: q.pod_id,
        flow_id: q.flow_id,
        model: q.model,
        status,
        before: q.before,
    };
    let history = state
        .store
        .workspace_executions(&ws, &filter, limit)
        .await?;
    Ok(Json(
        history
            .into_iter()
            .map(|e| ExecutionView::new(e, false))
            .collect(),
    ))
}
