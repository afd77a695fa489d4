//! Logs and traces. Logs go to stderr (text, or JSON lines with `PODS_LOG_FORMAT=json`). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (with the other standard `OTEL_*` variables:
//! `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_SCHEDULE_DELAY`, …), the same spans
//! — a request's, an execution's and their steps — are also exported as OpenTelemetry traces over
//! OTLP/HTTP, and W3C `traceparent` is read from requests and sent to providers.
//!
//! Spans carry ids, providers and models — never prompts, answers or keys.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Keeps the trace exporter running; dropping it flushes what is left.
pub struct Telemetry {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take()
            && let Err(e) = traces.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

/// Installs logging (and tracing, when an OTLP endpoint is configured) for the process.
pub fn init() -> Result<Telemetry, String> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // Each layer has its filter: `RUST_LOG` says what is logged, not what is traced.
    let logs = match std::env::var("PODS_LOG_FORMAT").as_deref() {
        Ok("json") => logs.json().with_span_list(true).with_filter(filter).boxed(),
        Ok("text") | Err(_) => logs.with_filter(filter).boxed(),
        Ok(other) => return Err(format!("PODS_LOG_FORMAT={other:?}: use json or text")),
    };
    let traces = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => Some(tracer_provider()?),
        _ => None,
    };
    let registry = tracing_subscriber::registry().with(logs);
    // Not an `Option` layer: an absent one declares interest in every callsite, and the
    // registry would then build every span of every crate only for the log filter to drop it.
    let installed = match &traces {
        Some(provider) => {
            let otel = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("pods"))
                // Only our own spans: a dependency's would add noise (and could carry what ours
                // leave out). A static filter, decided once per callsite.
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("pods", tracing::Level::INFO),
                );
            registry.with(otel).try_init()
        }
        None => registry.try_init(),
    };
    installed.map_err(|e| e.to_string())?;
    Ok(Telemetry { traces })
}

fn tracer_provider() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP trace exporter: {e}"))?;
    let service =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| env!("CARGO_PKG_NAME").to_string());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Continues the trace a request's `traceparent` names, if any, in `span`.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        // Without an OTLP endpoint there is no OpenTelemetry layer: nothing to continue.
        let _ = span.set_parent(parent);
    }
}

/// Adds the current span's `traceparent` to an outgoing request (a provider call), so the
/// provider's side of the trace joins ours.
pub fn propagate(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
