//! The OpenAPI document, generated from the handlers, at `/api/v1/openapi.json`, and a browsable
//! reference at `/api/v1/docs`.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Pods", description = "Run LLM pods wired into flows. Providers are sandboxed WebAssembly plugins."),
    paths(
        super::health, super::plugins::list_plugins, super::plugins::upload_plugin, super::plugins::delete_plugin,
        super::plugins::reload_plugin, super::plugins::get_limits, super::plugins::put_limits,
        super::plugins::delete_limits, super::plugins::plugin_events,
        super::workspaces::list, super::workspaces::create, super::workspaces::set_member,
        super::flows::list_flows, super::flows::create_flow, super::flows::get_flow, super::flows::update_flow,
        super::flows::delete_flow, super::flows::execution_order, super::ws::subscribe,
        super::flows::list_pods, super::flows::create_pod, super::flows::get_pod, super::flows::update_pod, super::flows::delete_pod,
        super::flows::list_edges, super::flows::create_edge, super::flows::delete_edge,
        super::executions::execute, super::executions::get_execution, super::executions::cancel_execution, super::executions::pod_history,
        super::keys::list, super::keys::put_key, super::keys::delete_key,
        super::pricing::list, super::pricing::add, super::metrics::queue_metrics, super::metrics::prometheus,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub fn routes() -> Router<AppState> {
    let json = document().to_json().unwrap_or_else(|_| "{}".to_string());
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let json = json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json,
                    )
                }
            }),
        )
        .merge(Scalar::with_url("/api/v1/docs", document()))
}
