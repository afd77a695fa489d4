//! Provider plugins at run time: list them (members), upload a new one or a new version, and
//! unload one (system admins). An upload is swapped in only once it compiled and passed every
//! check; executions already running finish on the version they started with.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState, Caller};
use crate::plugins::{LoadError, PluginInfo};

pub fn routes(max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/plugins",
            get(list_plugins)
                .post(upload_plugin)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/plugins/{id}", delete(delete_plugin))
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "The loaded provider plugins: manifest, source, load time")))]
pub async fn list_plugins(
    State(state): State<AppState>,
    _caller: Caller,
) -> Json<serde_json::Value> {
    let plugins: Vec<PluginInfo> = state.executor.plugins().list();
    Json(json!({ "plugins": plugins }))
}

#[utoipa::path(post, path = "/api/v1/plugins", tag = "system", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "A provider plugin component"),
    responses((status = 201, description = "Loaded: {plugin, replaced}"), (status = 400, description = "PLUGIN_INVALID, with why"),
        (status = 403), (status = 413, description = "PLUGIN_TOO_LARGE")))]
pub async fn upload_plugin(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    state.require_admin(&caller).await?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PLUGIN_TOO_LARGE",
            format!(
                "the plugin is larger than the limit of {} bytes (PODS_PLUGIN_MAX_BYTES)",
                state.executor.plugins().limits().max_bytes
            ),
        ),
        status => ApiError::new(status, "INVALID_BODY", e.body_text()),
    })?;
    match state.executor.plugins().load(body.to_vec()).await {
        Ok(swapped) => Ok((
            StatusCode::CREATED,
            Json(json!({"plugin": swapped.manifest, "replaced": swapped.replaced})),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "plugin upload refused");
            let (status, code) = match &e {
                LoadError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "PLUGIN_TOO_LARGE"),
                LoadError::Timeout(_) => (StatusCode::BAD_REQUEST, "PLUGIN_COMPILE_TIMEOUT"),
                LoadError::NoRuntime => (StatusCode::SERVICE_UNAVAILABLE, "PLUGINS_READ_ONLY"),
                LoadError::Refused(_) => (StatusCode::BAD_REQUEST, "PLUGIN_INVALID"),
            };
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

#[utoipa::path(delete, path = "/api/v1/plugins/{id}", tag = "system", security(("bearer" = [])),
    responses((status = 204, description = "Unloaded; running executions finish"), (status = 403), (status = 404)))]
pub async fn delete_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.require_admin(&caller).await?;
    if state.executor.plugins().remove(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("plugin"))
    }
}
