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
        super::health, super::ready, super::plugins::list_plugins, super::plugins::upload_plugin, super::plugins::delete_plugin,
        super::plugins::reload_plugin, super::plugins::get_limits, super::plugins::put_limits,
        super::plugins::delete_limits, super::plugins::plugin_events,
        super::workspaces::list, super::workspaces::create, super::workspaces::members,
        super::workspaces::set_member, super::workspaces::remove_member,
        super::flows::list_flows, super::flows::create_flow, super::flows::get_flow, super::flows::update_flow,
        super::flows::delete_flow, super::flows::execution_order, super::ws::subscribe, super::ws::subscribe_workspace,
        super::flows::list_pods, super::flows::create_pod, super::flows::get_pod, super::flows::update_pod, super::flows::delete_pod,
        super::flows::list_edges, super::flows::create_edge, super::flows::delete_edge,
        super::executions::execute, super::executions::workspace_history, super::executions::get_execution, super::executions::cancel_execution, super::executions::pod_history,
        super::keys::list, super::keys::put_key, super::keys::delete_key,
        super::api_keys::create, super::api_keys::list, super::api_keys::revoke,
        super::pricing::list, super::pricing::add, super::metrics::queue_metrics, super::metrics::prometheus,
        super::users::disable, super::users::enable, super::users::all_audit, super::users::workspace_audit,
        super::runs::start_run, super::runs::list_runs, super::runs::get_run, super::runs::cancel_run,
        super::runs::resume_run, super::runs::estimate, super::sign_in::login, super::sign_in::ws_ticket,
        super::usage::usage,
    ),
    modifiers(&BearerAuth, &ErrorResponses)
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
                    .bearer_format("JWT, or a workspace API key (pods_…)")
                    .build(),
            ),
        );
    }
}

/// The error answers every handler can give, documented once for all: `401`/`403` where a token
/// is needed, `404` where the path names something, `400`/`413`/`415` where a JSON body is read,
/// each with the `{error: {code, message}, executionId?}` body — as is every other 4xx/5xx a
/// route documents without a body of its own.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let text = || ObjectBuilder::new().schema_type(Type::String);
        let error = ObjectBuilder::new()
            .property(
                "error",
                ObjectBuilder::new()
                    .property("code", text())
                    .property("message", text())
                    .required("code")
                    .required("message"),
            )
            .property(
                "executionId",
                text().description(Some(
                    "The execution the error ended, when one was recorded (a provider failure, a timeout, a cancel)",
                )),
            )
            .required("error");
        openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .insert("Error".into(), error.into());
        let response = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Error")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| response(description).into());
                };
                add(
                    "503",
                    "STORE_UNAVAILABLE or QUEUE_UNAVAILABLE: a backend is down or full; try again",
                );
                if secured {
                    add(
                        "401",
                        "UNAUTHORIZED: no valid bearer token, or its user is unknown or disabled",
                    );
                    add(
                        "429",
                        "RATE_LIMITED: too many failed authentications from this address (or, on the execution route, executions by this user); `Retry-After` says when to retry",
                    );
                    add("403", "FORBIDDEN: the caller's role does not allow this");
                }
                if path.contains('{') {
                    // Ids are opaque: a malformed one is an unknown one.
                    add(
                        "404",
                        "NOT_FOUND: it does not exist (a malformed id is an unknown one), or not in a workspace of the caller's",
                    );
                }
                let queried =
                    operation.parameters.iter().flatten().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    });
                if queried {
                    add("400", "INVALID_FIELD: a malformed query parameter");
                }
                if json_body {
                    add(
                        "400",
                        "MALFORMED_JSON, INVALID_UTF8, INVALID_FIELD or a rule the request breaks",
                    );
                    add("413", "BODY_TOO_LARGE");
                    add("415", "UNSUPPORTED_MEDIA_TYPE: send application/json");
                }
                // A route's own error statuses answer the same body.
                for (status, answer) in operation.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(answer) = answer
                        && answer.content.is_empty()
                        && (status.starts_with('4') || status.starts_with('5'))
                    {
                        answer.content.insert(
                            "application/json".into(),
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Error")))
                                .build(),
                        );
                    }
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as this server serves it: limits fixed at start (the most memory a plugin may be
/// given) are written into the schemas, so what the document allows the server accepts.
pub fn routes(max_plugin_memory_mb: u32) -> Router<AppState> {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    if let Some(memory) =
        doc.pointer_mut("/components/schemas/PluginLimits/properties/memoryMb/maximum")
    {
        *memory = max_plugin_memory_mb.into();
    }
    let json = doc.to_string();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TEMPERATURE, TOP_P};

    /// The schema attributes state the ranges as literals; they must be the ranges the one
    /// check (`domain::check_sampling`) applies, in every schema that has the field.
    #[test]
    fn the_document_states_the_ranges_the_server_checks() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut checked = 0;
        for (field, range) in [("temperature", TEMPERATURE), ("topP", TOP_P)] {
            for (name, schema) in schemas {
                let Some(property) = schema["properties"].get(field) else {
                    continue;
                };
                let stated = (property["minimum"].as_f64(), property["maximum"].as_f64());
                assert_eq!(
                    stated,
                    (Some(*range.start()), Some(*range.end())),
                    "{name}.{field}"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 4,
            "pods and executions state both ranges ({checked} found)"
        );
    }
}
