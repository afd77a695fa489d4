//! Flows, pods and edges.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Body, Caller};
use crate::context;
use crate::domain::ErrorCode;
use crate::domain::{ResponseFormat, Role};
use crate::store::{Edge, Flow, Pod, PodConfig, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{ws}/flows", get(list_flows).post(create_flow))
        .route(
            "/workspaces/{ws}/flows/{flow_id}",
            get(get_flow).patch(update_flow).delete(delete_flow),
        )
        .route(
            "/workspaces/{ws}/flows/{flow_id}/execution-order",
            get(execution_order),
        )
        .route(
            "/workspaces/{ws}/flows/{flow_id}/pods",
            get(list_pods).post(create_pod),
        )
        .route(
            "/workspaces/{ws}/pods/{pod_id}",
            get(get_pod).patch(update_pod).delete(delete_pod),
        )
        .route(
            "/workspaces/{ws}/flows/{flow_id}/edges",
            get(list_edges).post(create_edge),
        )
        .route("/workspaces/{ws}/edges/{edge_id}", delete(delete_edge))
}

fn missing(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowInput {
    #[schema(pattern = "\\S")]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowPatch {
    #[schema(pattern = "\\S")]
    pub name: Option<String>,
    pub description: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows", tag = "flows", security(("bearer" = [])), responses((status = 200, body = [Flow])))]
pub async fn list_flows(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Json<Vec<Flow>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    Ok(Json(state.store.flows(&ws).await?))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flows", tag = "flows", security(("bearer" = [])),
    request_body = FlowInput, responses((status = 201, body = Flow)))]
pub async fn create_flow(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Body(body): Body<FlowInput>,
) -> Result<(StatusCode, Json<Flow>), ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    if body.name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "name must not be empty",
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .store
                .create_flow(&ws, body.name.trim(), &body.description)
                .await?,
        ),
    ))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}", tag = "flows", security(("bearer" = [])), responses((status = 200, body = Flow)))]
pub async fn get_flow(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
) -> Result<Json<Flow>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    Ok(Json(
        state
            .store
            .flow(&ws, &flow_id)
            .await
            .map_err(missing("flow"))?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{ws}/flows/{flow_id}", tag = "flows", security(("bearer" = [])),
    request_body = FlowPatch, responses((status = 200, body = Flow)))]
pub async fn update_flow(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
    Body(body): Body<FlowPatch>,
) -> Result<Json<Flow>, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    let flow = state
        .store
        .flow(&ws, &flow_id)
        .await
        .map_err(missing("flow"))?;
    let name = body.name.unwrap_or(flow.name);
    if name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "name must not be empty",
        ));
    }
    let description = body.description.unwrap_or(flow.description);
    Ok(Json(
        state
            .store
            .update_flow(&ws, &flow_id, name.trim(), &description)
            .await
            .map_err(missing("flow"))?,
    ))
}

/// `409` while a run of the flow is under way: its pods must stay.
async fn refuse_during_run(state: &AppState, ws: &str, flow_id: &str) -> Result<(), ApiError> {
    if state.store.flow_has_active_run(ws, flow_id).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a run of this flow is under way: cancel it or let it finish first",
        ));
    }
    Ok(())
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/flows/{flow_id}", tag = "flows", security(("bearer" = [])),
    responses((status = 204), (status = 409, description = "CONFLICT: a run of the flow is under way")))]
pub async fn delete_flow(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    refuse_during_run(&state, &ws, &flow_id).await?;
    state
        .pods
        .delete_flow(&ws, &flow_id)
        .await
        .map_err(missing("flow"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOrder {
    /// Pod ids; every pod comes after the pods it reads from.
    pub order: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/execution-order", tag = "flows", security(("bearer" = [])),
    responses((status = 200, body = ExecutionOrder)))]
pub async fn execution_order(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
) -> Result<Json<ExecutionOrder>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    state
        .store
        .flow(&ws, &flow_id)
        .await
        .map_err(missing("flow"))?;
    let pods = state.pods.list(&ws, &flow_id).await?;
    let edges = state.store.edges(&ws, &flow_id).await?;
    let order = context::execution_order(&pods, &edges)
        .ok_or_else(|| ApiError::new(ErrorCode::EdgeCycle, "the flow's edges form a cycle"))?;
    Ok(Json(ExecutionOrder { order }))
}

/// A pod's settings; on PATCH every field is optional and `null` clears an optional one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodInput {
    #[schema(pattern = "\\S")]
    pub name: Option<String>,
    /// A loaded provider plugin's id.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]*$")]
    pub provider: Option<String>,
    #[schema(pattern = "\\S")]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub user_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<f64>, minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<Option<f64>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<u32>)]
    pub max_tokens: Option<Option<u32>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<f64>, minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<Option<f64>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<ResponseFormat>)]
    pub response_format: Option<Option<ResponseFormat>>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<u32>)]
    pub thinking_budget: Option<Option<u32>>,
    /// A JSON pointer into the provider's raw answer (`/…`), or `ID[:ARGS]` of a loaded extractor
    /// plugin (`json-field:/summary`).
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>, pattern = "^(/.*|[a-z0-9][a-z0-9-]*(:.*)?)$")]
    pub output_extractor: Option<Option<String>>,
    /// Pin the provider plugin's version (it must be loaded); `null` = the newest loaded.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]+\\.[0-9]+\\.[0-9]+")]
    pub plugin_version: Option<Option<String>>,
    /// PATCH only: refuse the update (409) unless the pod is still at this version.
    pub expected_version: Option<i64>,
}

/// Present-but-null becomes `Some(None)` (clear the field); absent stays `None` (keep it).
fn patch<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl PodInput {
    fn apply(self, mut c: PodConfig) -> PodConfig {
        if let Some(v) = self.name {
            c.name = v;
        }
        if let Some(v) = self.provider {
            c.provider = v.to_ascii_lowercase();
        }
        if let Some(v) = self.model {
            c.model = v;
        }
        if let Some(v) = self.system_prompt {
            c.system_prompt = v;
        }
        if let Some(v) = self.user_prompt {
            c.user_prompt = v;
        }
        if let Some(v) = self.temperature {
            c.temperature = v;
        }
        if let Some(v) = self.max_tokens {
            c.max_tokens = v;
        }
        if let Some(v) = self.top_p {
            c.top_p = v;
        }
        if let Some(v) = self.response_format {
            c.response_format = v;
        }
        if let Some(v) = self.thinking_budget {
            c.thinking_budget = v;
        }
        if let Some(v) = self.output_extractor {
            c.output_extractor = v;
        }
        if let Some(v) = self.plugin_version {
            c.plugin_version = v;
        }
        c
    }
}

/// A pod's settings, checked as every execution of it will be ([`crate::execution::check_pod`]),
/// plus what only a saved pod has: a name, a model, a loaded output extractor.
/// A pod as written, with what the canvas should show about it (`warnings`, when any).
#[derive(Serialize, utoipa::ToSchema)]
pub struct PodWritten {
    #[serde(flatten)]
    pod: Pod,
    /// E.g. a model that no plugin manifest and no price row knows: it may still run (an
    /// OpenAI-compatible server behind a key's base URL), but its cost is not counted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// Checks a pod's settings; what is allowed but doubtful comes back as warnings.
async fn validate_pod(state: &AppState, c: &PodConfig) -> Result<Vec<String>, ApiError> {
    if c.name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "name must not be empty",
        ));
    }
    if c.model.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidField,
            "model must not be empty",
        ));
    }
    let plugin = crate::execution::check_pod(
        &state.plugins,
        &c.provider,
        c.plugin_version.as_deref(),
        c.temperature,
        c.top_p,
    )?;
    if let Some(setting) = &c.output_extractor
        && let (Some(id), _) = crate::execution::split_extractor(setting)
        && state.plugins.extractor(id).is_none()
    {
        return Err(ApiError::new(
            ErrorCode::UnknownExtractor,
            format!(
                "outputExtractor {setting:?} names no loaded extractor plugin {id:?}; use ID[:ARGS] for an extractor plugin (e.g. json-field:/summary) or a JSON pointer (/…) for the provider's own"
            ),
        ));
    }
    let provider = c.provider.to_ascii_lowercase();
    let model = c.model.trim();
    let known = crate::execution::is_known_model(&state.store, &plugin, &provider, model).await?;
    Ok(if known {
        vec![]
    } else {
        vec![format!(
            "{provider} has no model {model:?} in its plugin's manifest or the pricing table: it runs only with a key whose base URL serves it, and its cost is not counted until a price is added"
        )]
    })
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/pods", tag = "pods", security(("bearer" = [])), responses((status = 200, body = [Pod])))]
pub async fn list_pods(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
) -> Result<Json<Vec<Pod>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    state
        .store
        .flow(&ws, &flow_id)
        .await
        .map_err(missing("flow"))?;
    Ok(Json(state.pods.list(&ws, &flow_id).await?))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/pods", tag = "pods", security(("bearer" = [])),
    request_body = PodInput, responses((status = 201, body = PodWritten)))]
pub async fn create_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
    Body(body): Body<PodInput>,
) -> Result<(StatusCode, Json<PodWritten>), ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    let config = body.apply(PodConfig::default());
    let warnings = validate_pod(&state, &config).await?;
    let pod = state
        .pods
        .create(&ws, &flow_id, &config)
        .await
        .map_err(missing("flow"))?;
    Ok((StatusCode::CREATED, Json(PodWritten { pod, warnings })))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/pods/{pod_id}", tag = "pods", security(("bearer" = [])), responses((status = 200, body = Pod)))]
pub async fn get_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, pod_id)): Path<(String, String)>,
) -> Result<Json<Pod>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    Ok(Json(
        state.pods.get(&ws, &pod_id).await.map_err(missing("pod"))?,
    ))
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{ws}/pods/{pod_id}", tag = "pods", security(("bearer" = [])),
    request_body = PodInput, responses((status = 200, body = PodWritten), (status = 409, description = "expectedVersion is stale")))]
pub async fn update_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, pod_id)): Path<(String, String)>,
    Body(body): Body<PodInput>,
) -> Result<Json<PodWritten>, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    let pod = state.pods.get(&ws, &pod_id).await.map_err(missing("pod"))?;
    let expected = body.expected_version;
    let config = body.apply(pod.config);
    let warnings = validate_pod(&state, &config).await?;
    let pod = state
        .pods
        .update(&ws, &pod_id, &config, expected)
        .await
        .map_err(missing("pod"))?;
    Ok(Json(PodWritten { pod, warnings }))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/pods/{pod_id}", tag = "pods", security(("bearer" = [])),
    responses((status = 204), (status = 409, description = "CONFLICT: a run of its flow is under way")))]
pub async fn delete_pod(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, pod_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    let pod = state.pods.get(&ws, &pod_id).await.map_err(missing("pod"))?;
    refuse_during_run(&state, &ws, &pod.flow_id).await?;
    state
        .pods
        .delete(&ws, &pod_id)
        .await
        .map_err(missing("pod"))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeInput {
    pub source_pod_id: String,
    pub target_pod_id: String,
    /// Read this execution of the source pod instead of its latest output.
    pub pinned_execution_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/edges", tag = "edges", security(("bearer" = [])), responses((status = 200, body = [Edge])))]
pub async fn list_edges(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
) -> Result<Json<Vec<Edge>>, ApiError> {
    state.access(&ws, &caller, Role::Viewer).await?;
    state
        .store
        .flow(&ws, &flow_id)
        .await
        .map_err(missing("flow"))?;
    Ok(Json(state.store.edges(&ws, &flow_id).await?))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{ws}/flows/{flow_id}/edges", tag = "edges", security(("bearer" = [])),
    request_body = EdgeInput, responses((status = 201, body = Edge), (status = 400, description = "EDGE_CYCLE: the edge would close a cycle"),
        (status = 409, description = "CONFLICT: the two pods are joined already")))]
pub async fn create_edge(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, flow_id)): Path<(String, String)>,
    Body(body): Body<EdgeInput>,
) -> Result<(StatusCode, Json<Edge>), ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    let store = state.store;
    store.flow(&ws, &flow_id).await.map_err(missing("flow"))?;
    for pod_id in [&body.source_pod_id, &body.target_pod_id] {
        let pod = state.pods.get(&ws, pod_id).await.map_err(missing("pod"))?;
        if pod.flow_id != flow_id {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                format!("pod {pod_id} belongs to another flow"),
            ));
        }
    }
    if let Some(execution) = &body.pinned_execution_id {
        let pinned = store
            .execution(&ws, execution)
            .await
            .map_err(missing("pinned execution"))?;
        if pinned.pod_id != body.source_pod_id {
            return Err(ApiError::new(
                ErrorCode::InvalidField,
                "the pinned execution is not one of the source pod's",
            ));
        }
    }
    let edges = store.edges(&ws, &flow_id).await?;
    if context::would_cycle(&edges, &body.source_pod_id, &body.target_pod_id) {
        return Err(ApiError::new(
            ErrorCode::EdgeCycle,
            "this edge would close a cycle: a pod cannot read its own output",
        ));
    }
    let edge = store
        .create_edge(
            &ws,
            &flow_id,
            &body.source_pod_id,
            &body.target_pod_id,
            body.pinned_execution_id.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(edge)))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{ws}/edges/{edge_id}", tag = "edges", security(("bearer" = [])), responses((status = 204)))]
pub async fn delete_edge(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, edge_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.access(&ws, &caller, Role::Member).await?;
    state
        .store
        .delete_edge(&ws, &edge_id)
        .await
        .map_err(missing("edge"))?;
    Ok(StatusCode::NO_CONTENT)
}
