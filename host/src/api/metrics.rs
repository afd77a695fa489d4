//! Operator views: queue metrics as JSON and everything in Prometheus text format. Both need a
//! system admin's token (Prometheus sends it with `authorization: Bearer …`).

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
    responses((status = 200, description = "OpenMetrics text (Prometheus): requests, executions, tokens, cost, plugins, queue, WebSockets, store"), (status = 403)))]
pub async fn prometheus(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    state.require_admin(&caller)?;
    Ok(render(&state).await)
}

/// `GET /metrics` on the operator's own listen address (`PODS_METRICS_LISTEN`): no token, for a
/// scraper inside the network.
pub fn open_routes() -> Router<AppState> {
    Router::new().route(
        "/metrics",
        get(|State(state): State<AppState>| async move { render(&state).await }),
    )
}

/// The metrics, with the queue's gauges read from its backend now (a few counters, no scan of
/// the executions).
async fn render(state: &AppState) -> impl IntoResponse + use<> {
    let metrics = crate::metrics::get();
    match state.queue.metrics().await {
        Ok(jobs) => {
            for (label, n) in [
                ("waiting", jobs.waiting),
                ("delayed", jobs.delayed),
                ("active", jobs.active),
            ] {
                metrics
                    .queue_jobs
                    .get_or_create(&crate::metrics::StateLabels {
                        state: label.into(),
                    })
                    .set(n);
            }
            if let Some(ms) = jobs.oldest_waiting_ms {
                metrics.queue_oldest_waiting_seconds.set(ms as f64 / 1000.0);
            }
        }
        // The rest is still worth scraping; the gauges keep their last values.
        Err(e) => tracing::warn!(error = %e, "reading the queue's counts for /metrics failed"),
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}
