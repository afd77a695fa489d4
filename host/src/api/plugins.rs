//! Provider plugins at run time. Members list them; system admins upload a new plugin or
//! version, reload one from its source, unload one (or one version), set its limits, and watch
//! the operator events. A load is swapped in only once it compiled and passed every check;
//! executions already running finish on the version they started with.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Body, Caller};
use crate::domain::ErrorCode;
use crate::plugins::{LoadError, PluginInfo, PluginLimits, Swapped};

pub fn routes(max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/plugins",
            get(list_plugins)
                .post(upload_plugin)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/plugins/events", get(plugin_events))
        .route("/plugins/{id}", axum::routing::delete(delete_plugin))
        .route("/plugins/{id}/reload", post(reload_plugin))
        .route(
            "/plugins/{id}/limits",
            get(get_limits).put(put_limits).delete(delete_limits),
        )
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Every loaded plugin version: manifest, state (active or loaded), source, load time, calls, errors, limits")))]
pub async fn list_plugins(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<serde_json::Value> {
    let plugins: Vec<PluginInfo> = state.plugins.list();
    Json(json!({ "plugins": plugins }))
}

fn swapped(s: Swapped) -> Json<serde_json::Value> {
    Json(json!({"plugin": s.manifest, "replaced": s.replaced, "active": s.active}))
}

fn load_error(e: LoadError) -> ApiError {
    let code = match &e {
        LoadError::TooLarge { .. } => ErrorCode::PluginTooLarge,
        LoadError::Timeout(_) => ErrorCode::PluginCompileTimeout,
        LoadError::NoRuntime => ErrorCode::PluginsReadOnly,
        LoadError::Refused(_) | LoadError::Io(_) => ErrorCode::PluginInvalid,
        LoadError::Conformance { .. } => ErrorCode::PluginNonconformant,
        LoadError::NotLoaded(_) => ErrorCode::NotFound,
        LoadError::Builtin(_) => ErrorCode::Conflict,
    };
    ApiError::new(code, e.to_string())
}

#[utoipa::path(post, path = "/api/v1/plugins", tag = "system", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "A provider plugin component"),
    responses((status = 201, description = "Loaded: {plugin, replaced, active}"),
        (status = 400, description = "PLUGIN_INVALID or PLUGIN_NONCONFORMANT, with why"),
        (status = 403), (status = 413, description = "PLUGIN_TOO_LARGE")))]
pub async fn upload_plugin(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    state.require_admin(&caller)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::PluginTooLarge,
            format!(
                "the plugin is larger than the limit of {} bytes (PODS_PLUGIN_MAX_BYTES)",
                state.plugins.limits().max_bytes
            ),
        ),
        _ => ApiError::new(ErrorCode::BadBody, e.body_text()),
    })?;
    let loaded = state.plugins.upload(body.to_vec()).await;
    let loaded = loaded.map_err(load_error)?;
    let detail = json!({"version": loaded.manifest.version, "bytes": body.len()});
    state
        .audit(&caller, None, "plugin.upload", &loaded.manifest.id, detail)
        .await;
    Ok((StatusCode::CREATED, swapped(loaded)))
}

#[utoipa::path(post, path = "/api/v1/plugins/{id}/reload", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Compiled and checked again from its source: {plugin, replaced, active}"),
        (status = 400, description = "Refused; the loaded version keeps serving"), (status = 403), (status = 404)))]
pub async fn reload_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.require_admin(&caller)?;
    let reloaded = state.plugins.reload(&id).await.map_err(load_error)?;
    let detail = json!({"version": reloaded.manifest.version});
    state
        .audit(&caller, None, "plugin.reload", &id, detail)
        .await;
    Ok(swapped(reloaded))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct VersionQuery {
    /// Unload only this version (default: every version of the plugin).
    pub version: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/plugins/{id}", tag = "system", security(("bearer" = [])),
    params(VersionQuery),
    responses((status = 204, description = "Unloaded; running executions finish; a built-in that a same version shadowed serves again"), (status = 403), (status = 404),
        (status = 409, description = "CONFLICT: only built-in versions are left, and built-ins cannot be unloaded")))]
pub async fn delete_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<StatusCode, ApiError> {
    state.require_admin(&caller)?;
    match state.plugins.remove(&id, q.version.as_deref()) {
        Ok(0) => Err(ApiError::not_found("plugin")),
        Ok(_) => {
            let detail = json!({"version": q.version});
            state
                .audit(&caller, None, "plugin.delete", &id, detail)
                .await;
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => Err(ApiError::new(ErrorCode::Conflict, e.to_string())),
    }
}

#[utoipa::path(get, path = "/api/v1/plugins/{id}/limits", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = PluginLimits, description = "The limits in force (`{}`: the server's defaults)"), (status = 403)))]
pub async fn get_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PluginLimits>, ApiError> {
    state.require_admin(&caller)?;
    Ok(Json(state.plugins.limits_of(&id).unwrap_or_default()))
}

#[utoipa::path(put, path = "/api/v1/plugins/{id}/limits", tag = "system", security(("bearer" = [])),
    request_body = PluginLimits,
    responses((status = 200, body = PluginLimits, description = "Stored; calls that start from now run under them"),
        (status = 400, description = "INVALID_FIELD"), (status = 403)))]
pub async fn put_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(limits): Body<PluginLimits>,
) -> Result<Json<PluginLimits>, ApiError> {
    state.require_admin(&caller)?;
    let registry = &state.plugins;
    let max_mb = (registry.default_limits().memory_cap >> 20) as u32;
    limits
        .validate(max_mb)
        .map_err(|why| ApiError::new(ErrorCode::InvalidField, why))?;
    let stored = serde_json::to_string(&limits).unwrap_or_default();
    state.store.set_plugin_limits(&id, &stored).await?;
    registry.set_limits(&id, Some(limits.clone()));
    let detail = serde_json::to_value(&limits).unwrap_or_else(|_| json!({}));
    state
        .audit(&caller, None, "plugin.limits", &id, detail)
        .await;
    Ok(Json(limits))
}

#[utoipa::path(delete, path = "/api/v1/plugins/{id}/limits", tag = "system", security(("bearer" = [])),
    responses((status = 204, description = "Back to the limits file's (or the server's defaults)"), (status = 403), (status = 404)))]
pub async fn delete_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.require_admin(&caller)?;
    if !state.store.delete_plugin_limits(&id).await? {
        return Err(ApiError::not_found("plugin limits"));
    }
    state.plugins.set_limits(&id, None);
    state
        .audit(&caller, None, "plugin.limits", &id, json!({"reset": true}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/plugins/events", tag = "system", security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream",
        description = "The last 100 operator events, then each as it happens: plugin:loaded, plugin:replaced, plugin:refused, plugin:unloaded, plugin:limits"),
        (status = 403)))]
pub async fn plugin_events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    state.require_admin(&caller)?;
    let (recent, rx) = state.plugins.subscribe();
    let event = |e: &crate::plugins::PluginEvent| {
        Ok::<_, Infallible>(
            Event::default()
                .event(e.kind)
                .data(serde_json::to_string(e).unwrap_or_else(|_| "{}".into())),
        )
    };
    let recent = futures_util::stream::iter(recent.iter().map(event).collect::<Vec<_>>());
    let live = futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((event(&e), rx)),
                // A subscriber that fell behind skips what it missed.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    Ok(Sse::new(recent.chain(live))
        .keep_alive(KeepAlive::default())
        .into_response())
}
