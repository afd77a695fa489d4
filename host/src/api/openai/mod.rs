//! The OpenAI-compatible front door: `POST /v1/chat/completions` and `GET /v1/models`, so any
//! OpenAI client (the official SDKs, LangChain, …) can call any loaded provider — or a pod —
//! through Pods.
//!
//! It is a thin adapter: [`wire`] reads OpenAI's request into an [`ExecuteRequest`] and writes
//! the [`ExecutionResult`] back in OpenAI's shape; the call itself is the native execute route's
//! (the same executor, limits, idempotency, recording, billing and events). Errors are OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` with the status its SDKs expect.
//!
//! Who calls: a workspace API key (its workspace), or a person's token with `X-Pods-Workspace`.

mod wire;

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::executions::{idempotency, recorded, recorded_outcome};
use super::{ApiError, AppState, Caller, ClientAddress};
use crate::domain::{ErrorCode, ExecutionResult, Role, now_ms};
use crate::execution::ExecError;
use crate::store::StoreError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
}

/// The header that names the workspace when the caller is a person (a token, not a key).
const WORKSPACE_HEADER: &str = "x-pods-workspace";

/// An error in OpenAI's shape; `x-pods-execution-id` when it ended a recorded execution.
pub struct DoorError {
    status: StatusCode,
    kind: &'static str,
    code: String,
    param: Option<String>,
    message: String,
    execution_id: Option<String>,
    retry_after: Option<std::time::Duration>,
}

impl DoorError {
    fn invalid(code: &str, message: impl Into<String>) -> Self {
        DoorError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: code.to_string(),
            param: None,
            message: message.into(),
            execution_id: None,
            retry_after: None,
        }
    }

    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl From<wire::Refused> for DoorError {
    fn from(r: wire::Refused) -> Self {
        let status = match r.code {
            "model_not_found" => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        DoorError {
            status,
            param: r.param,
            ..DoorError::invalid(r.code, r.message)
        }
    }
}

impl From<ApiError> for DoorError {
    fn from(e: ApiError) -> Self {
        use ErrorCode::*;
        let status = e.code.status();
        let (status, kind, code) = match e.code {
            Unauthorized => (status, "invalid_request_error", "invalid_api_key".into()),
            Forbidden => (status, "permission_denied", "permission_denied".into()),
            // What a client named as its model is not there to call: no such pod or provider,
            // no key for the provider, or a model the provider does not have.
            NotFound | UnknownModel | UnknownProvider | UnknownPluginVersion
            | MissingProviderKey => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found".into(),
            ),
            RateLimited => (status, "rate_limit_exceeded", "rate_limit_exceeded".into()),
            // OpenAI's SDKs read a spent quota as a 429 `insufficient_quota`.
            BudgetExhausted => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota".into(),
            ),
            code if status.is_client_error() => (
                status,
                "invalid_request_error",
                code.as_str().to_ascii_lowercase(),
            ),
            code => (status, "api_error", code.as_str().to_ascii_lowercase()),
        };
        DoorError {
            status,
            kind,
            code,
            param: None,
            message: e.message,
            execution_id: e.execution_id,
            retry_after: e.retry_after,
        }
    }
}

impl From<ExecError> for DoorError {
    fn from(e: ExecError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<StoreError> for DoorError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for DoorError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(id) = self.execution_id.as_deref().and_then(header_value) {
            headers.insert("x-pods-execution-id", id);
        }
        if let Some(after) = self.retry_after {
            headers.insert(header::RETRY_AFTER, after.as_secs().max(1).into());
        }
        response
    }
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// The caller and the workspace it acts in: a key's own, or `X-Pods-Workspace` for a token.
async fn caller_in_workspace(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<std::net::IpAddr>,
) -> Result<(Caller, String), DoorError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = state
        .authenticate(crate::auth::bearer(authorization), address)
        .await?;
    let named = headers
        .get(WORKSPACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ws = match (&caller.api_key, named) {
        (_, Some(ws)) => ws,
        (Some(key), None) => key.workspace_id.clone(),
        (None, None) => {
            return Err(DoorError::invalid(
                "missing_workspace",
                "with a token, name the workspace in the X-Pods-Workspace header (or use a workspace API key)",
            ));
        }
    };
    Ok((caller, ws))
}

/// `POST /v1/chat/completions`.
async fn chat_completions(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, DoorError> {
    let (caller, ws) = caller_in_workspace(&state, &headers, address).await?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        DoorError::invalid("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    let call = wire::read(&body)?;
    let created = now_ms() / 1000;
    // A replay runs nothing: it is answered before the limits on running.
    let idempotency = idempotency(&headers, &caller, &call.request)?;
    if let Some(key) = &idempotency {
        state.access(&ws, &caller, Role::Member).await?;
        if let Some(e) = recorded(&state, &ws, key).await? {
            let mut replay = answer_recorded(&call, created, e);
            replay
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(replay);
        }
    }
    state.may_run(&caller).await?;
    let who = caller.principal();
    let started = match state
        .executor
        .start(&ws, &who, &call.request, idempotency.clone())
        .await
    {
        Err(ExecError::Store(StoreError::IdempotencyTaken)) => {
            // The same key at the same moment: the first request's execution is the answer.
            let key = idempotency.as_ref().ok_or(StoreError::IdempotencyTaken)?;
            let e = recorded(&state, &ws, key)
                .await?
                .ok_or(StoreError::IdempotencyTaken)?;
            return Ok(answer_recorded(&call, created, e));
        }
        other => other?,
    };
    let execution_id = started.ids().execution_id.clone();
    if !call.stream {
        let result = state
            .executor
            .run(started.running, started.resolved, None, |_| {})
            .await?;
        return Ok(answer(&call, created, &result));
    }

    // Streaming: the execution runs in its own task, so a client who goes away does not stop it
    // from being saved (and billed) once.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (model, id) = (call.model.clone(), execution_id.clone());
    let chunk = move |choice: Option<Value>| wire::chunk(&model, created, &id, choice);
    let first = wire::delta(json!({"role": "assistant", "content": ""}), None);
    let _ = tx.send(data(&chunk(Some(first))));
    let executor = state.executor.clone();
    let include_usage = call.include_usage;
    tokio::spawn(async move {
        let deltas = (tx.clone(), chunk.clone());
        let outcome = executor
            .run(started.running, started.resolved, None, move |d| {
                let mut delta = serde_json::Map::new();
                if !d.text.is_empty() {
                    delta.insert("content".into(), json!(d.text));
                }
                if !d.reasoning.is_empty() {
                    // DeepSeek's and vLLM's name for it; OpenAI's own clients ignore it.
                    delta.insert("reasoning_content".into(), json!(d.reasoning));
                }
                if !delta.is_empty() {
                    let choice = wire::delta(Value::Object(delta), None);
                    let _ = deltas.0.send(data(&(deltas.1)(Some(choice))));
                }
            })
            .await;
        match outcome {
            Ok(result) => {
                for event in closing_chunks(&chunk, &result, include_usage) {
                    let _ = tx.send(event);
                }
            }
            Err(e) => {
                let error = DoorError::from(e);
                let mut body = error.body();
                body["pods"] = json!({"executionId": error.execution_id});
                let _ = tx.send(data(&body));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Some(id) = header_value(&execution_id) {
        response.headers_mut().insert("x-pods-execution-id", id);
    }
    Ok(response)
}

fn data(value: &impl serde::Serialize) -> Event {
    Event::default().data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}

/// The end of a stream: the finish reason, the usage (when asked for, with Pods' execution id
/// and cost), `[DONE]`.
fn closing_chunks(
    chunk: &impl Fn(Option<Value>) -> serde_json::Map<String, Value>,
    result: &ExecutionResult,
    include_usage: bool,
) -> Vec<Event> {
    let finish = wire::delta(json!({}), Some(wire::finish_reason(result.finish_reason)));
    let mut events = vec![data(&chunk(Some(finish)))];
    if include_usage {
        let mut last = chunk(None);
        last.insert("usage".into(), json!(wire::usage(&result.usage)));
        last.insert(
            "pods".into(),
            json!({"executionId": result.execution_id, "costUsd": cost_usd(result)}),
        );
        events.push(data(&last));
    }
    events.push(Event::default().data("[DONE]"));
    events
}

fn cost_usd(result: &ExecutionResult) -> Option<String> {
    result.cost.map(|c| c.total_cost.to_string())
}

/// A finished call, as the client asked for it: a `chat.completion`, or its stream.
fn answer(call: &wire::ChatCall, created: i64, result: &ExecutionResult) -> Response {
    let mut response = if call.stream {
        let chunk = |choice| wire::chunk(&call.model, created, &result.execution_id, choice);
        let content = json!({"role": "assistant", "content": result.content});
        let mut events = vec![data(&chunk(Some(wire::delta(content, None))))];
        events.extend(closing_chunks(&chunk, result, call.include_usage));
        Sse::new(futures_util::stream::iter(
            events.into_iter().map(Ok::<_, Infallible>),
        ))
        .into_response()
    } else {
        let mut response = Json(wire::completion(&call.model, created, result)).into_response();
        if let Some(cost) = cost_usd(result).as_deref().and_then(header_value) {
            response.headers_mut().insert("x-pods-cost-usd", cost);
        }
        response
    };
    if let Some(id) = header_value(&result.execution_id) {
        response.headers_mut().insert("x-pods-execution-id", id);
    }
    response
}

/// An execution recorded under the request's `Idempotency-Key`, answered again.
fn answer_recorded(call: &wire::ChatCall, created: i64, e: crate::store::Execution) -> Response {
    match recorded_outcome(e) {
        Ok(result) => answer(call, created, &result),
        Err(error) => DoorError::from(error).into_response(),
    }
}

/// `GET /v1/models`: `provider/model` for every provider the workspace has a key for — the
/// models its plugin's manifest lists and the ones priced today.
async fn models(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
) -> Result<Json<Value>, DoorError> {
    let (caller, ws) = caller_in_workspace(&state, &headers, address).await?;
    state.access(&ws, &caller, Role::Viewer).await?;
    let mut ids = std::collections::BTreeSet::new();
    for key in state.store.key_summaries(&ws).await? {
        let provider = key.provider;
        if let Ok(plugin) = state.plugins.provider(&provider, None) {
            for model in &plugin.manifest().models {
                ids.insert((provider.clone(), model.id.clone()));
            }
        }
        for price in state.store.prices_in_force(&provider, now_ms()).await? {
            ids.insert((provider.clone(), price.model));
        }
    }
    let data: Vec<Value> = ids
        .into_iter()
        .map(|(provider, model)| {
            json!({"id": format!("{provider}/{model}"), "object": "model", "created": 0, "owned_by": provider})
        })
        .collect();
    Ok(Json(json!({"object": "list", "data": data})))
}
