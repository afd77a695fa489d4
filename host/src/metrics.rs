//! The server's metrics, in Prometheus' OpenMetrics text (`GET /metrics`), through the
//! `prometheus-client` crate. Everything is counted as it happens — a scrape reads counters, it
//! scans no table. Label values are bounded: routes are templates, models no plugin manifest or
//! price row knows are `other`, error codes come from one enum.
//!
//! One set per process ([`get`]): each node reports its own, and Prometheus adds them up.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's template (`/api/v1/workspaces/{ws}/executions`), or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

/// One execution's kind: who ran it, and how it was asked for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    /// The model, or `other` when no manifest or price row knows it.
    pub model: String,
    /// `sync`, `stream` or `async` (queued).
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub provider: String,
    pub model: String,
    pub mode: String,
    /// `completed`, `error`, `cancelled`, or `retried` (queued again to try later).
    pub outcome: String,
    /// The error code (`provider_server_error`, …); empty unless it failed.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    /// `prompt`, `cached`, `completion` or `reasoning`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
    pub version: String,
    /// `build_request`, `parse_response`, `stream_start`, `stream_push`, `stream_finish`, `extract`.
    pub call: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginErrorLabels {
    pub plugin: String,
    pub version: String,
    /// `trap`, `timeout`, `memory`, `busy` or `misuse`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from half a millisecond to two minutes.
fn latency() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 120.0,
    ])
}

/// Seconds, from 50 µs to a second: the host's own share of a call, and plugin calls.
fn overhead() -> Histogram {
    Histogram::new([
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Histograms<RouteLabels>,
    pub executions: Family<OutcomeLabels, Counter>,
    pub execution_seconds: Histograms<CallLabels>,
    pub first_token_seconds: Histograms<CallLabels>,
    pub provider_seconds: Histograms<CallLabels>,
    pub added_seconds: Histograms<CallLabels>,
    pub tokens: Family<TokenLabels, Counter>,
    pub cost_usd: Family<ModelLabels, Counter<f64, AtomicU64>>,
    pub plugin_calls: Family<PluginLabels, Counter>,
    pub plugin_seconds: Histograms<PluginLabels>,
    pub plugin_errors: Family<PluginErrorLabels, Counter>,
    pub queue_jobs: Family<StateLabels, Gauge>,
    pub queue_oldest_waiting_seconds: Gauge<f64, AtomicU64>,
    pub queue_retries: Counter,
    pub queue_dead_letters: Counter,
    pub websocket_clients: Gauge,
    pub websocket_dropped: Family<ReasonLabels, Counter>,
    pub store_write_seconds: Histogram,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("pods");
        let m = Metrics {
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency),
            executions: Family::default(),
            execution_seconds: Family::new_with_constructor(latency),
            first_token_seconds: Family::new_with_constructor(latency),
            provider_seconds: Family::new_with_constructor(latency),
            added_seconds: Family::new_with_constructor(overhead),
            tokens: Family::default(),
            cost_usd: Family::default(),
            plugin_calls: Family::default(),
            plugin_seconds: Family::new_with_constructor(overhead),
            plugin_errors: Family::default(),
            queue_jobs: Family::default(),
            queue_oldest_waiting_seconds: Gauge::default(),
            queue_retries: Counter::default(),
            queue_dead_letters: Counter::default(),
            websocket_clients: Gauge::default(),
            websocket_dropped: Family::default(),
            store_write_seconds: overhead(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (a stream: until its headers)",
            m.http_seconds.clone(),
        );
        r.register(
            "executions",
            "Executions that ended (or were queued again), by outcome",
            m.executions.clone(),
        );
        r.register(
            "execution_duration_seconds",
            "An execution from its resolution to its settling",
            m.execution_seconds.clone(),
        );
        r.register(
            "execution_first_token_seconds",
            "A streamed execution's time to its first token",
            m.first_token_seconds.clone(),
        );
        r.register(
            "execution_provider_seconds",
            "Time waiting on the provider (the HTTP exchange, plugin work excluded)",
            m.provider_seconds.clone(),
        );
        r.register(
            "execution_added_seconds",
            "What Pods added to an execution: everything but the provider",
            m.added_seconds.clone(),
        );
        r.register(
            "tokens",
            "Tokens used, by provider, model and kind",
            m.tokens.clone(),
        );
        r.register(
            "cost_usd",
            "Cost of executions in USD, by provider and model",
            m.cost_usd.clone(),
        );
        r.register(
            "plugin_calls",
            "Calls into plugins, by plugin, version and call",
            m.plugin_calls.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "Time in plugin calls",
            m.plugin_seconds.clone(),
        );
        r.register(
            "plugin_errors",
            "Plugin calls that failed in the sandbox (trap, deadline, memory, busy)",
            m.plugin_errors.clone(),
        );
        r.register(
            "queue_jobs",
            "Jobs in the queue by state (read from the backend when scraped)",
            m.queue_jobs.clone(),
        );
        r.register("queue_oldest_waiting_seconds", "Age of the oldest job waiting to be taken (embedded and Redis queues; 0 when none waits)", m.queue_oldest_waiting_seconds.clone());
        r.register(
            "queue_retries",
            "Queued executions put back to try again",
            m.queue_retries.clone(),
        );
        r.register(
            "queue_dead_letters",
            "Queued executions given up on (attempts exhausted)",
            m.queue_dead_letters.clone(),
        );
        r.register(
            "websocket_clients",
            "Open WebSocket subscriptions",
            m.websocket_clients.clone(),
        );
        r.register(
            "websocket_dropped",
            "WebSocket clients closed by the server, by reason",
            m.websocket_dropped.clone(),
        );
        r.register(
            "store_write_seconds",
            "Time of a write to the store (group commit included)",
            m.store_write_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Everything, as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds, as histograms take them.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_counted_is_rendered_with_its_labels() {
        let m = Metrics::new();
        let labels = ModelLabels {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
        };
        m.cost_usd.get_or_create(&labels).inc_by(0.25);
        m.added_seconds
            .get_or_create(&CallLabels {
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                mode: "sync".into(),
            })
            .observe(0.0003);
        let text = m.render();
        assert!(
            text.contains(r#"pods_cost_usd_total{provider="openai",model="gpt-4o-mini"} 0.25"#),
            "{text}"
        );
        assert!(text.contains(r#"pods_execution_added_seconds_bucket{le="0.0005",provider="openai",model="gpt-4o-mini",mode="sync"} 1"#) || text.contains(r#"pods_execution_added_seconds_bucket{provider="openai",model="gpt-4o-mini",mode="sync",le="0.0005"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// The Grafana dashboard in docs/ asks only for metrics this module has.
    #[test]
    fn the_dashboard_queries_metrics_that_exist() {
        let dashboard = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/grafana-dashboard.json"
        ))
        .expect("docs/grafana-dashboard.json");
        let _: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
        let m = Metrics::new();
        // Every family, with one series, so each name is in the text.
        let call = CallLabels {
            provider: "p".into(),
            model: "m".into(),
            mode: "sync".into(),
        };
        for h in [
            &m.execution_seconds,
            &m.first_token_seconds,
            &m.provider_seconds,
            &m.added_seconds,
        ] {
            h.get_or_create(&call).observe(0.1);
        }
        let route = RouteLabels {
            route: "/r".into(),
            method: "GET".into(),
        };
        m.http_seconds.get_or_create(&route).observe(0.1);
        m.http_requests
            .get_or_create(&HttpLabels {
                route: "/r".into(),
                method: "GET".into(),
                status: "200".into(),
            })
            .inc();
        m.executions
            .get_or_create(&OutcomeLabels {
                provider: "p".into(),
                model: "m".into(),
                mode: "sync".into(),
                outcome: "completed".into(),
                code: String::new(),
            })
            .inc();
        m.tokens
            .get_or_create(&TokenLabels {
                provider: "p".into(),
                model: "m".into(),
                kind: "prompt".into(),
            })
            .inc();
        m.cost_usd
            .get_or_create(&ModelLabels {
                provider: "p".into(),
                model: "m".into(),
            })
            .inc_by(1.0);
        let plugin = PluginLabels {
            plugin: "x".into(),
            version: "1".into(),
            call: "c".into(),
        };
        m.plugin_calls.get_or_create(&plugin).inc();
        m.plugin_seconds.get_or_create(&plugin).observe(0.1);
        m.plugin_errors
            .get_or_create(&PluginErrorLabels {
                plugin: "x".into(),
                version: "1".into(),
                kind: "trap".into(),
            })
            .inc();
        m.queue_jobs
            .get_or_create(&StateLabels {
                state: "waiting".into(),
            })
            .set(0);
        m.websocket_dropped
            .get_or_create(&ReasonLabels {
                reason: "too_slow".into(),
            })
            .inc();
        let text = m.render();
        let mut asked = 0;
        for (i, _) in dashboard.match_indices("pods_") {
            let name: String = dashboard[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            asked += 1;
            assert!(
                text.lines().any(|line| line.starts_with(&name)),
                "the dashboard asks for {name}, which /metrics does not have"
            );
        }
        assert!(asked > 10, "{asked}");
    }
}
