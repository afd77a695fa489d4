//! The execution pipeline: validate → load the pod → resolve context and interpolate → open the
//! workspace's provider key → record the execution → call the provider through its plugin →
//! price the usage → save the result and the key's usage, once.
//!
//! [`Executor::prepare`] does everything up to recording the execution, so a request that cannot
//! run (unknown provider, missing key, …) leaves no row behind; [`Executor::run`] does the rest.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::context;
use crate::cost;
use crate::egress::{Answer, CallError, Egress, Target};
use crate::events::{Event, Hub};
use crate::plugins::types::{
    ChatRequest, Completion, FinishReason, Message, ResponseFormat, StreamDelta, Usage,
};
use crate::plugins::{Missing, Plugin, Registry};
use crate::pod_store::PodStore;
use crate::queue::{Job, Queue};
use crate::store::{
    Cancelled, Cost, ExecutionStatus, FinishedExecution, NewExecution, Role, SYNC_LEASE_OWNER,
    Store, StoreError, now_ms,
};
use crate::vault::{Binding, Sealed, Vault, VaultError};
use crate::workspace_config::{self, View};

/// How many times an execution is resolved when its workspace's configuration keeps changing
/// under it; the last time, it is recorded whatever the version (what it read is fresh).
const RESOLVE_ATTEMPTS: usize = 3;

/// How a resolved execution is recorded.
#[derive(Clone, Copy)]
enum Record {
    /// RUNNING, leased to the caller for this long.
    Running(std::time::Duration),
    /// QUEUED, for a worker to take within this long.
    Queued(std::time::Duration),
}

/// Where an executor sends jobs and events.
pub struct Backends {
    pub pods: PodStore,
    pub queue: Arc<dyn Queue>,
    pub events: Hub,
    /// How long a queued execution may wait for a worker before the sweeper queues it again.
    pub queue_grace: std::time::Duration,
}

/// `POST /workspaces/{ws}/executions`: which pod to run, and per-execution overrides of its config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteRequest {
    pub pod_id: String,
    /// The conversation; default: the pod's user prompt as one user message.
    pub messages: Option<Vec<MessageInput>>,
    /// Provider id (`openai`, `anthropic`, `gemini`; case-insensitive); default: the pod's.
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9-]*$")]
    pub provider: Option<String>,
    #[schema(pattern = "\\S")]
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    #[schema(value_type = Option<ResponseFormat>)]
    pub response_format: Option<ResponseFormat>,
    pub thinking_budget: Option<u32>,
    /// Queue the execution and return at once (202).
    #[serde(rename = "async", default)]
    pub run_async: bool,
    /// Answer with a `text/event-stream` of start / token / done / error events; with `async`,
    /// stream the provider call and send its tokens to the flow's WebSocket as `execution:delta`.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageInput {
    /// `system`, `user` or `assistant`.
    #[schema(value_type = String, pattern = "^(system|user|assistant)$")]
    pub role: crate::plugins::types::Role,
    pub content: String,
}

/// Token counts as the API shows them; `null` = not reported by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens(),
            reasoning_tokens: u.reasoning_tokens,
            cached_tokens: u.cached_tokens,
            cache_write_tokens: u.cache_write_tokens,
        }
    }
}

/// A finished execution's result.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResult {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub content: String,
    pub reasoning: Option<String>,
    pub usage: UsageView,
    /// `null` when the model has no price (see `warnings`).
    pub cost: Option<Cost>,
    #[schema(value_type = Option<String>)]
    pub finish_reason: Option<FinishReason>,
    /// The model that answered, as the provider named it.
    pub model: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller is a member of the workspace, with too weak a role.
    #[error("this needs the {} role; you are {}", needed.as_str(), actual.as_str())]
    Forbidden { needed: Role, actual: Role },
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the workspace's {provider} key cannot be decrypted: {error}")]
    Vault { provider: String, error: VaultError },
    /// The execution ran and failed; it is stored with the error.
    #[error("{error}")]
    Failed {
        execution_id: String,
        error: CallError,
    },
    /// The execution was cancelled while it ran; nothing of its result was saved.
    #[error("execution {execution_id} was cancelled")]
    Cancelled { execution_id: String },
    /// A queued attempt failed in a way a retry may fix; the execution is QUEUED again.
    #[error("{error} (will retry)")]
    Retry {
        execution_id: String,
        error: CallError,
    },
}

/// A pod's `outputExtractor`: `/pointer` is the provider plugin's own extractor's argument;
/// `ID` or `ID:ARGS` names an extractor plugin. Returns (extractor plugin id, argument).
pub fn split_extractor(setting: &str) -> (Option<&str>, Option<&str>) {
    if setting.starts_with('/') {
        return (None, Some(setting));
    }
    match setting.split_once(':') {
        Some((id, args)) => (Some(id), Some(args)),
        None => (Some(setting), None),
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ExecError {
    ExecError::Invalid {
        code,
        message: message.into(),
    }
}

/// An execution recorded as RUNNING, ready to call its provider.
pub struct Prepared {
    pub execution_id: String,
    pub pod_id: String,
    pub flow_id: String,
    workspace_id: String,
    provider: String,
    plugin: Plugin,
    request: ChatRequest,
    target: Target,
    extractor: Option<String>,
    warnings: Vec<String>,
    /// Set by the queue's worker when attempts remain: a retryable failure re-queues instead of
    /// ending the execution.
    pub retry_allowed: bool,
    /// A synchronous execution's lease, renewed while it runs (a queued one's worker renews its
    /// own).
    sync_lease: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    plugins: Registry,
    egress: Egress,
    vault: Vault,
    pods: PodStore,
    queue: Arc<dyn Queue>,
    /// How long a queued execution may wait for a worker before the sweeper queues it again.
    queue_grace: std::time::Duration,
    events: Hub,
    config: workspace_config::Cache,
}

impl Executor {
    /// An executor on the embedded queue, with events for this process only.
    pub fn new(store: Store, plugins: Registry, egress: Egress, vault: Vault) -> Self {
        let queue = Arc::new(crate::queue::Embedded::new(store.clone()));
        Executor::with(
            store.clone(),
            plugins,
            egress,
            vault,
            Backends {
                pods: PodStore::Sql(store),
                queue,
                events: Hub::default(),
                queue_grace: std::time::Duration::from_secs(30),
            },
        )
    }

    pub fn with(
        store: Store,
        plugins: Registry,
        egress: Egress,
        vault: Vault,
        backends: Backends,
    ) -> Self {
        Executor {
            inner: Arc::new(Inner {
                config: workspace_config::Cache::new(store.clone(), backends.pods.clone()),
                store,
                plugins,
                egress,
                vault,
                pods: backends.pods,
                queue: backends.queue,
                queue_grace: backends.queue_grace,
                events: backends.events,
            }),
        }
    }

    /// Checks that the caller may run pods in `ws`, validates the request and records the
    /// execution as RUNNING. Nothing is written if it cannot run.
    pub async fn prepare(
        &self,
        ws: &str,
        user_id: &str,
        req: &ExecuteRequest,
    ) -> Result<Prepared, ExecError> {
        let lease = self.inner.queue_grace;
        let mut prepared = self
            .resolve_and_record(ws, user_id, req, Record::Running(lease))
            .await?;
        prepared.sync_lease = Some(lease);
        self.publish(Event::new(
            "execution:running",
            "RUNNING",
            &prepared.execution_id,
            &prepared.pod_id,
            &prepared.flow_id,
        ));
        Ok(prepared)
    }

    /// Checks that the caller may run pods in `ws`, validates the request and records it as
    /// QUEUED with its job; a worker runs it. Returns the execution id.
    pub async fn enqueue(
        &self,
        ws: &str,
        user_id: &str,
        req: &ExecuteRequest,
    ) -> Result<String, ExecError> {
        let grace = self.inner.queue_grace;
        let prepared = self
            .resolve_and_record(ws, user_id, req, Record::Queued(grace))
            .await?;
        let id = prepared.execution_id;
        // Published before the job exists, so no worker's event can overtake it.
        self.publish(Event::new(
            "execution:queued",
            "QUEUED",
            &id,
            &prepared.pod_id,
            &prepared.flow_id,
        ));
        let job = Job {
            execution_id: id.clone(),
            workspace_id: ws.to_string(),
        };
        if let Err(e) = self.inner.queue.add(&job, std::time::Duration::ZERO).await {
            // The execution is recorded; the sweeper queues it once the queue is back.
            tracing::warn!(execution = %id, error = %e, "adding a job failed; the sweeper will retry");
        }
        Ok(id)
    }

    /// Resolves the execution from the workspace's cached configuration and records it, if
    /// that configuration is still current; else reads it again and starts over.
    async fn resolve_and_record(
        &self,
        ws: &str,
        user_id: &str,
        req: &ExecuteRequest,
        record: Record,
    ) -> Result<Prepared, ExecError> {
        let (config, store) = (&self.inner.config, &self.inner.store);
        let fresh = || async { config.fresh(ws).await.map_err(not_found("workspace")) };
        let (mut view, mut cached) = config.view(ws).await.map_err(not_found("workspace"))?;
        let mut attempt = 1;
        loop {
            let resolved = match require_role(&view, user_id, Role::Member).await {
                Ok(()) => self.resolve(&view, user_id, req).await,
                Err(e) => Err(e),
            };
            let (mut prepared, mut new) = match resolved {
                // A refusal read from the cache may be out of date: check before giving it.
                Err(e) if cached && !matches!(e, ExecError::Store(_)) => {
                    if config.is_current(&view).await? {
                        return Err(e);
                    }
                    (view, cached) = (fresh().await?, false);
                    continue;
                }
                other => other?,
            };
            new.config_version = view.version.filter(|_| attempt < RESOLVE_ATTEMPTS);
            let recorded = match record {
                Record::Running(lease) => {
                    store.start_execution(&new, lease.as_millis() as i64).await
                }
                Record::Queued(grace) => {
                    store
                        .insert_queued_execution(&new, grace.as_millis() as i64)
                        .await
                }
            };
            match recorded {
                Ok(id) => {
                    prepared.execution_id = id;
                    return Ok(prepared);
                }
                Err(StoreError::ConfigChanged) => {
                    (view, cached) = (fresh().await?, false);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A view of the workspace's configuration read afresh as it is used, for a caller that
    /// records nothing with it (a worker running an execution already recorded).
    pub fn uncached_view(&self, ws: &str) -> View {
        self.inner.config.detached(ws)
    }

    /// Checks everything an execution needs and resolves its prompts from `view`, writing
    /// nothing: the execution to run (without an id yet) and the row that records it.
    pub async fn resolve(
        &self,
        view: &View,
        user_id: &str,
        req: &ExecuteRequest,
    ) -> Result<(Prepared, NewExecution), ExecError> {
        let store = &self.inner.store;
        let ws = view.workspace();
        let pod = view
            .pod(&req.pod_id)
            .await?
            .ok_or(ExecError::NotFound("pod"))?;
        let cfg = &pod.config;

        let provider = req
            .provider
            .as_deref()
            .unwrap_or(&cfg.provider)
            .to_ascii_lowercase();
        // The pod's pinned version holds for its own provider, not for one the request names.
        let pinned = cfg
            .plugin_version
            .as_deref()
            .filter(|_| provider == cfg.provider);
        let plugin = self
            .inner
            .plugins
            .provider(&provider, pinned)
            .map_err(|e| match e {
                Missing::Plugin(_) => invalid("UNKNOWN_PROVIDER", e.to_string()),
                Missing::Version { .. } => invalid("UNKNOWN_PLUGIN_VERSION", e.to_string()),
            })?;
        let model = req
            .model
            .as_deref()
            .unwrap_or(&cfg.model)
            .trim()
            .to_string();
        if model.is_empty() {
            return Err(invalid(
                "MISSING_MODEL",
                "neither the request nor the pod names a model",
            ));
        }
        check_range("temperature", req.temperature.or(cfg.temperature), 0.0, 2.0)?;
        check_range("topP", req.top_p.or(cfg.top_p), 0.0, 1.0)?;

        let Some(stored) = view.key(&provider).await? else {
            return Err(invalid(
                "MISSING_PROVIDER_KEY",
                format!(
                    "this workspace has no {provider} key: PUT /api/v1/workspaces/{ws}/provider-keys/{provider}"
                ),
            ));
        };
        let known = plugin.manifest().models.iter().any(|m| m.id == model)
            || stored.base_url.is_some()
            || cost::find_price(
                &store.prices_in_force(&provider, now_ms()).await?,
                &model,
                None,
            )
            .is_some();
        if !known {
            return Err(invalid(
                "UNKNOWN_MODEL",
                format!(
                    "{provider} has no model {model:?} (configure a base URL on the key for other models)"
                ),
            ));
        }
        let key = self
            .inner
            .vault
            .open(
                &Binding {
                    workspace_id: ws,
                    provider: &provider,
                    key_id: &stored.id,
                },
                &Sealed {
                    ciphertext: stored.ciphertext.clone(),
                    nonce: stored.nonce.clone(),
                    master_key_id: stored.master_key_id.clone(),
                },
            )
            .map_err(|error| ExecError::Vault {
                provider: provider.clone(),
                error,
            })?;

        // Context: every ancestor's output, interpolated into the prompts and messages.
        let edges = view.edges(&pod.flow_id).await?;
        let context = context::resolve(store, ws, &pod.id, &edges).await?;
        let mut warnings = BTreeSet::new();
        let mut fill = |text: &str| context::interpolate(text, &context, &mut warnings);
        let system_prompt = req
            .system_prompt
            .as_deref()
            .or(cfg.system_prompt.as_deref())
            .map(&mut fill);
        let messages: Vec<Message> = match &req.messages {
            Some(messages) if !messages.is_empty() => messages
                .iter()
                .map(|m| Message {
                    role: m.role,
                    content: fill(&m.content),
                })
                .collect(),
            _ => match cfg.user_prompt.as_deref() {
                Some(prompt) if !prompt.trim().is_empty() => vec![Message {
                    role: crate::plugins::types::Role::User,
                    content: fill(prompt),
                }],
                _ => {
                    return Err(invalid(
                        "MISSING_MESSAGES",
                        "send messages, or give the pod a user prompt",
                    ));
                }
            },
        };
        let request = ChatRequest {
            model: model.clone(),
            system_prompt,
            messages,
            temperature: req.temperature.or(cfg.temperature),
            max_tokens: req.max_tokens.or(cfg.max_tokens),
            top_p: req.top_p.or(cfg.top_p),
            response_format: req
                .response_format
                .clone()
                .or_else(|| cfg.response_format.clone()),
            thinking_budget: req.thinking_budget.or(cfg.thinking_budget),
            stream: req.stream,
        };
        let warnings: Vec<String> = warnings.into_iter().collect();

        let new = NewExecution {
            workspace_id: ws.to_string(),
            flow_id: pod.flow_id.clone(),
            pod_id: pod.id.clone(),
            user_id: user_id.to_string(),
            provider: provider.clone(),
            model_id: model,
            streamed: req.stream,
            key_id: Some(stored.id.clone()),
            request_metadata: serde_json::json!({
                "provider": provider,
                "pluginVersion": plugin.manifest().version,
                "baseUrl": stored.base_url,
                "request": request,
                // What was asked, so a queued execution can be resolved again when it runs.
                "execute": req,
            }),
            warnings: warnings.clone(),
            config_version: None,
        };
        let prepared = Prepared {
            execution_id: String::new(),
            pod_id: pod.id,
            flow_id: pod.flow_id,
            workspace_id: ws.to_string(),
            provider,
            plugin,
            request,
            target: Target {
                base_url: stored.base_url,
                key,
            },
            extractor: cfg.output_extractor.clone(),
            warnings,
            retry_allowed: false,
            sync_lease: None,
        };
        Ok((prepared, new))
    }

    /// Cancels a queued or running execution. A running one's provider call is aborted if it
    /// runs in this process; wherever it runs, its result is no longer saved.
    pub async fn cancel(&self, ws: &str, execution_id: &str) -> Result<Cancelled, ExecError> {
        let outcome = self
            .inner
            .store
            .cancel_execution(ws, execution_id)
            .await
            .map_err(not_found("execution"))?;
        if let Cancelled::Now {
            pod_id, flow_id, ..
        } = &outcome
        {
            if let Err(e) = self.inner.queue.cancel(execution_id).await {
                tracing::warn!(execution = %execution_id, error = %e, "dropping a cancelled job failed; its worker will skip it");
            }
            // Whichever node runs it aborts the provider call.
            self.inner.events.request_cancel(execution_id);
            self.publish(Event::new(
                "execution:cancelled",
                "CANCELLED",
                execution_id,
                pod_id,
                flow_id,
            ));
        }
        Ok(outcome)
    }

    /// Calls the provider and saves the outcome. `on_delta` sees streamed increments.
    pub async fn run(
        &self,
        prepared: Prepared,
        mut on_delta: impl FnMut(&StreamDelta),
    ) -> Result<ExecutionResult, ExecError> {
        let (pod_id, flow_id) = (prepared.pod_id.clone(), prepared.flow_id.clone());
        let event = |kind, status, id: &str| Event::new(kind, status, id, &pod_id, &flow_id);
        let result = self.run_inner(prepared, &mut on_delta).await;
        match &result {
            Ok(r) => self.publish(
                event("execution:completed", r.status.as_str(), &r.execution_id).with("result", r),
            ),
            Err(ExecError::Failed {
                execution_id,
                error,
            }) => self.publish(event("execution:error", "ERROR", execution_id).with(
                "error",
                serde_json::json!({"code": error.code(), "message": error.to_string()}),
            )),
            Err(ExecError::Retry {
                execution_id,
                error,
            }) => self.publish(event("execution:queued", "QUEUED", execution_id).with(
                "error",
                serde_json::json!({"code": error.code(), "message": error.to_string()}),
            )),
            _ => {}
        }
        result
    }

    async fn run_inner(
        &self,
        prepared: Prepared,
        mut on_delta: impl FnMut(&StreamDelta),
    ) -> Result<ExecutionResult, ExecError> {
        let Prepared {
            execution_id,
            workspace_id,
            provider,
            plugin,
            request,
            target,
            extractor,
            mut warnings,
            retry_allowed,
            pod_id,
            flow_id,
            sync_lease,
        } = prepared;
        let prepared_ids = (pod_id, flow_id);
        let store = &self.inner.store;
        let cancelled = self.inner.events.cancelled(&execution_id);
        let (events, pod_id, flow_id) = (self.inner.events.clone(), prepared_ids.0, prepared_ids.1);
        let delta_event = |d: &StreamDelta| {
            on_delta(d);
            if !d.text.is_empty() || !d.reasoning.is_empty() {
                events.publish(
                    &Event::new(
                        "execution:delta",
                        "RUNNING",
                        &execution_id,
                        &pod_id,
                        &flow_id,
                    )
                    .with("text", &d.text)
                    .with("reasoning", &d.reasoning),
                );
            }
        };
        // A long synchronous call keeps its lease (a third of it at a time); short ones never
        // write for it.
        let renew = async {
            let Some(lease) = sync_lease else {
                return std::future::pending::<()>().await;
            };
            loop {
                tokio::time::sleep(lease / 3).await;
                let renewed = store
                    .extend_execution(&execution_id, SYNC_LEASE_OWNER, lease.as_millis() as i64)
                    .await;
                if let Err(e) = renewed {
                    tracing::warn!(execution = %execution_id, error = %e, "renewing a synchronous execution's lease failed");
                }
            }
        };
        let outcome = tokio::select! {
            answer = self.inner.egress.call(&plugin, &request, &target, delta_event) => Some(answer),
            _ = cancelled => None,
            _ = renew => None,
        };
        let Some(outcome) = outcome else {
            // Cancelled: the row is already CANCELLED and nothing else is written.
            return Err(ExecError::Cancelled { execution_id });
        };
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) if retry_allowed && error.retryable() => {
                // The worker puts it back in the queue.
                return Err(ExecError::Retry {
                    execution_id,
                    error,
                });
            }
            Err(error) => {
                let failed = FinishedExecution {
                    status: ExecutionStatus::Error,
                    model_name: None,
                    usage: Usage::default(),
                    cost: None,
                    pricing_id: None,
                    content: None,
                    response_metadata: None,
                    warnings,
                    error_code: Some(error.code().to_string()),
                    error_message: Some(error.to_string()),
                    plugin_version: Some(plugin.manifest().version.clone()),
                };
                store.finish_execution(&execution_id, &failed).await?;
                return Err(ExecError::Failed {
                    execution_id,
                    error,
                });
            }
        };
        let Answer { completion, raw } = answer;
        let content = self
            .output(
                &plugin,
                &completion,
                raw.as_deref(),
                extractor.as_deref(),
                &mut warnings,
            )
            .await;

        let prices = store.prices_in_force(&provider, now_ms()).await?;
        let price = cost::find_price(&prices, &request.model, completion.model.as_deref());
        let cost = price.and_then(|p| cost::cost(&completion.usage, p));
        match (price, cost) {
            (None, _) => warnings.push(format!(
                "no price for {provider} model {:?}: cost is null, add one with POST /api/v1/pricing",
                request.model
            )),
            (Some(_), None) => warnings.push("the provider reported no token usage: cost is null".into()),
            _ => {}
        }
        let response_metadata = match &raw {
            Some(bytes) => serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            }),
            None => serde_json::json!({ "streamed": true, "completion": completion }),
        };
        let done = FinishedExecution {
            status: ExecutionStatus::Completed,
            model_name: completion.model.clone(),
            usage: completion.usage,
            cost,
            pricing_id: cost.and(price).map(|p| p.id.clone()),
            content: Some(content.clone()),
            response_metadata: Some(response_metadata),
            warnings: warnings.clone(),
            error_code: None,
            error_message: None,
            plugin_version: Some(plugin.manifest().version.clone()),
        };
        let saved = store.finish_execution(&execution_id, &done).await?;
        let status = if saved {
            ExecutionStatus::Completed
        } else {
            // Cancelled (or finished elsewhere) while the provider was answering.
            store.execution(&workspace_id, &execution_id).await?.status
        };
        Ok(ExecutionResult {
            execution_id,
            status,
            content,
            reasoning: completion.reasoning,
            usage: completion.usage.into(),
            cost,
            finish_reason: completion.finish_reason,
            model: completion.model,
            warnings,
        })
    }

    /// The pod's output: with an output extractor setting and the raw answer at hand, what the
    /// extractor pulls out of it — an extractor plugin's (`ID` or `ID:ARGS`) or the provider
    /// plugin's own (a JSON pointer, `/…`); else the answer text.
    async fn output(
        &self,
        plugin: &Plugin,
        completion: &Completion,
        raw: Option<&[u8]>,
        extractor: Option<&str>,
        warnings: &mut Vec<String>,
    ) -> String {
        let (Some(setting), Some(raw)) = (extractor, raw) else {
            if extractor.is_some() {
                warnings.push("the output extractor applies to non-streamed answers; the streamed text was kept".into());
            }
            return completion.content.clone();
        };
        let (id, args) = split_extractor(setting);
        let extractor = match id {
            Some(id) => self.inner.plugins.extractor(id),
            None => Some(plugin.clone()),
        };
        let extracted = match extractor {
            None => Err(format!(
                "no extractor plugin {:?} is loaded",
                id.unwrap_or_default()
            )),
            Some(extractor) => match extractor.instantiate().await {
                Ok(mut i) => i
                    .extract(&String::from_utf8_lossy(raw), args)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        let args = setting;
        match extracted {
            Ok(Ok(text)) => text,
            Ok(Err(why)) | Err(why) => {
                warnings.push(format!(
                    "output extractor {args:?} failed ({why}); the answer text was kept"
                ));
                completion.content.clone()
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The execution events of this process, for WebSocket subscribers.
    pub fn events(&self) -> &Hub {
        &self.inner.events
    }

    /// Publishes an execution event to the flow's subscribers.
    pub fn publish(&self, event: Event) {
        self.inner.events.publish(&event);
    }

    /// Where pod configs live.
    pub fn pods(&self) -> &PodStore {
        &self.inner.pods
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.queue
    }

    pub fn queue_grace(&self) -> std::time::Duration {
        self.inner.queue_grace
    }

    pub fn plugins(&self) -> &Registry {
        &self.inner.plugins
    }

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }
}

fn not_found(what: &'static str) -> impl Fn(StoreError) -> ExecError {
    move |e| match e {
        StoreError::NotFound => ExecError::NotFound(what),
        other => ExecError::Store(other),
    }
}

/// `NotFound` for a non-member (the workspace is not theirs to know about), `Forbidden` for a
/// member whose role is weaker than `needed`.
async fn require_role(view: &View, user_id: &str, needed: Role) -> Result<(), ExecError> {
    match view.role(user_id).await? {
        None => Err(ExecError::NotFound("workspace")),
        Some(actual) if actual < needed => Err(ExecError::Forbidden { needed, actual }),
        Some(_) => Ok(()),
    }
}

fn check_range(field: &str, value: Option<f64>, min: f64, max: f64) -> Result<(), ExecError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(invalid(
            "INVALID_FIELD",
            format!("{field} must be between {min} and {max}, got {v}"),
        )),
        _ => Ok(()),
    }
}
