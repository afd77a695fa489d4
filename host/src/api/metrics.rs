//! Operator views: queue metrics as JSON and everything in Prometheus text format. Both need a
//! system admin's token (Prometheus sends it with `authorization: Bearer …`).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiError, AppState, Caller};
use crate::queue::QueueCounts;

pub fn api_routes() -> Router<AppState> {
    Router::new().route("/queue/metrics", get(queue_metrics))
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(prometheus))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueMetrics {
    /// `embedded` (the SQL store), `redis` or `sqs`.
    pub backend: &'static str,
    #[serde(flatten)]
    pub jobs: QueueCounts,
    /// Executions by status, all workspaces.
    #[schema(value_type = Object)]
    pub executions: serde_json::Map<String, serde_json::Value>,
}

#[utoipa::path(get, path = "/api/v1/queue/metrics", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = QueueMetrics), (status = 403, description = "Not a system admin")))]
pub async fn queue_metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QueueMetrics>, ApiError> {
    state.require_admin(&caller)?;
    let jobs = state.queue.metrics().await?;
    let executions = state
        .store
        .execution_counts()
        .await?
        .into_iter()
        .map(|(status, n)| (status, n.into()))
        .collect();
    Ok(Json(QueueMetrics {
        backend: state.queue.backend(),
        jobs,
        executions,
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format"), (status = 403)))]
pub async fn prometheus(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    state.require_admin(&caller)?;
    let jobs = state.queue.metrics().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP pods_queue_jobs Jobs in the queue by state.\n# TYPE pods_queue_jobs gauge"
    );
    for (label, n) in [
        ("waiting", jobs.waiting),
        ("delayed", jobs.delayed),
        ("active", jobs.active),
    ] {
        let _ = writeln!(out, "pods_queue_jobs{{state=\"{label}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP pods_executions Executions by status.\n# TYPE pods_executions gauge"
    );
    for (status, n) in state.store.execution_counts().await? {
        let _ = writeln!(out, "pods_executions{{status=\"{status}\"}} {n}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
