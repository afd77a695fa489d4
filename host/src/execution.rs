//! The execution pipeline: resolve a request (the pod, its provider plugin and model, the
//! workspace's key, the upstream context) into an immutable [`Resolved`] execution, record it
//! through the [`Ledger`], call the provider through its plugin, price the usage and settle it.
//!
//! A request that cannot run (unknown provider, missing key, …) is refused before anything is
//! recorded. Every status change goes through the ledger; this module decides *which* one.
//!
//! - synchronous: [`Executor::start`] records it RUNNING, [`Executor::run`] calls and settles;
//! - queued: [`Executor::enqueue`] records it QUEUED and adds its job; a worker claims it through
//!   the ledger and hands it to [`Executor::run_claimed`], which resolves the stored
//!   [`QueuedRequest`] afresh and runs it, or puts it back for a retry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::context;
use crate::cost;
use crate::domain::{
    ChatRequest, Completion, Denied, ErrorCode, ExecuteRequest, ExecutionResult, ExecutionStatus,
    KeyScope, Message, MessageRole, Principal, QueuedRequest, Role, StreamDelta, check_sampling,
    now_ms,
};
use crate::egress::{Answer, CallError, Egress, Target};
use crate::ledger::{Failure, Ids, Ledger, Running};
use crate::limiter::{Limiter, Rate, api_key_bucket};
use crate::plugins::{Missing, Plugin, Registry};
use crate::queue::{Job, Queue};
use crate::store::{
    Cancelled, Execution, FinishedExecution, Idempotency, NewExecution, Pod, PodConfig, Store,
    StoreError,
};
use crate::vault::{Binding, Sealed, Secret, Vault, VaultError};
use crate::workspace_config::{self, View};

/// How many times an execution is resolved when its workspace's configuration keeps changing
/// under it; the last time, it is recorded whatever the version (what it read is fresh).
const RESOLVE_ATTEMPTS: usize = 3;

/// How a resolved execution is recorded.
#[derive(Clone, Copy)]
enum Record<'a> {
    /// RUNNING, leased to this node.
    Running,
    /// QUEUED, for a worker; a pod of this flow run, if one.
    Queued { run_id: Option<&'a str> },
}

/// What an executor works with.
pub struct Services {
    pub store: Store,
    pub plugins: Registry,
    pub egress: Egress,
    pub vault: Vault,
    pub pods: crate::pod_store::PodStore,
    pub queue: Arc<dyn Queue>,
    pub ledger: Ledger,
    /// A synchronous execution's lease, and how long a queued one may wait for a worker before
    /// the sweeper queues it again.
    pub lease: Duration,
    /// Counts what API keys' calls used against their tokens-a-minute limits.
    pub limiter: Arc<Limiter>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller is a member of the workspace, with too weak a role.
    #[error(transparent)]
    Forbidden(Denied),
    #[error("{message}")]
    Invalid { code: ErrorCode, message: String },
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
    /// A queued attempt failed in a way a retry may fix; the execution is QUEUED again, due
    /// after `delay`.
    #[error("{error} (will retry)")]
    Retry {
        execution_id: String,
        error: CallError,
        delay: Duration,
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

fn invalid(code: ErrorCode, message: impl Into<String>) -> ExecError {
    ExecError::Invalid {
        code,
        message: message.into(),
    }
}

/// An execution resolved from its request and the workspace's configuration: everything the
/// provider call needs, read once and not changed after.
pub struct Resolved {
    pub pod_id: String,
    pub flow_id: String,
    workspace_id: String,
    provider: String,
    plugin: Plugin,
    request: ChatRequest,
    target: Target,
    extractor: Option<String>,
    warnings: Vec<String>,
    /// The API key whose tokens-a-minute bucket the call's usage is taken from.
    tokens_bucket: Option<(String, Rate)>,
    /// When its resolution began (its metrics' durations start here).
    begun: std::time::Instant,
    /// The model as metrics name it: itself if a manifest or price row knows it, else `other`.
    model_label: String,
    /// Run by a worker (queued), not for a waiting caller.
    queued: bool,
}

/// A synchronous execution recorded as RUNNING, ready to call its provider.
pub struct Started {
    pub running: Running,
    pub resolved: Resolved,
}

impl Started {
    pub fn ids(&self) -> &Ids {
        self.running.ids()
    }
}

/// What a queued attempt may do when it fails in a way a retry may fix.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// The backoff before the next attempt (the provider's `retry-after` wins if longer).
    pub backoff: Duration,
    /// How long the retried execution may wait for a worker once due.
    pub grace: Duration,
}

/// How a claimed attempt ended, for the worker to settle its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The execution reached a final status (or was cancelled): ack the job.
    Done,
    /// It is QUEUED again: put the job back, due after this long.
    RetryAfter(Duration),
}

#[derive(Clone)]
pub struct Executor {
    inner: Arc<Services>,
    config: workspace_config::Cache,
}

impl Executor {
    pub fn new(services: Services) -> Self {
        Executor {
            config: workspace_config::Cache::new(services.store.clone(), services.pods.clone()),
            inner: Arc::new(services),
        }
    }

    /// Checks that the caller may run pods in `ws`, validates the request and records the
    /// execution as RUNNING. Nothing is written if it cannot run.
    pub async fn start(
        &self,
        ws: &str,
        who: &Principal,
        req: &ExecuteRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Started, ExecError> {
        let (resolved, recorded) = self
            .resolve_and_record(ws, who, req, Record::Running, idempotency)
            .await?;
        match recorded {
            Recorded::Running(running) => Ok(Started { running, resolved }),
            Recorded::Queued(_) => unreachable!("recorded as asked"),
        }
    }

    /// Checks that the caller may run pods in `ws`, validates the request and records it as
    /// QUEUED with its job; a worker runs it. Returns the execution id.
    pub async fn enqueue(
        &self,
        ws: &str,
        who: &Principal,
        req: &ExecuteRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<String, ExecError> {
        self.enqueue_for(ws, who, req, None, idempotency).await
    }

    /// Queues a pod of a flow run: its context comes from the run's own executions.
    pub async fn enqueue_run_pod(
        &self,
        ws: &str,
        who: &Principal,
        req: &ExecuteRequest,
        run_id: &str,
        run_created_at: i64,
    ) -> Result<String, ExecError> {
        self.enqueue_for(ws, who, req, Some((run_id, run_created_at)), None)
            .await
    }

    async fn enqueue_for(
        &self,
        ws: &str,
        who: &Principal,
        req: &ExecuteRequest,
        run: Option<(&str, i64)>,
        idempotency: Option<Idempotency>,
    ) -> Result<String, ExecError> {
        let run_id = run.map(|(id, _)| id);
        let (_, recorded) = self
            .resolve_and_record(ws, who, req, Record::Queued { run_id }, idempotency)
            .await?;
        let Recorded::Queued(ids) = recorded else {
            unreachable!("recorded as asked")
        };
        // Every node has the `queued` event by now: no worker's `running` can overtake it.
        let job = Job {
            execution_id: ids.execution_id.clone(),
            workspace_id: ws.to_string(),
        };
        let added = match run {
            // A run's pods queue in the run's place in line.
            Some((_, since)) => self.inner.queue.add_in_line(&job, since).await,
            None => self.inner.queue.add(&job, Duration::ZERO).await,
        };
        if let Err(e) = added {
            // The execution is recorded; the sweeper queues it once the queue is back.
            tracing::warn!(execution = %ids.execution_id, error = %e, "adding a job failed; the sweeper will retry");
        }
        Ok(ids.execution_id)
    }

    /// Resolves the execution from the workspace's cached configuration and records it, if
    /// that configuration is still current; else reads it again and starts over.
    async fn resolve_and_record(
        &self,
        ws: &str,
        who: &Principal,
        req: &ExecuteRequest,
        record: Record<'_>,
        idempotency: Option<Idempotency>,
    ) -> Result<(Resolved, Recorded), ExecError> {
        let (config, ledger) = (&self.config, &self.inner.ledger);
        let fresh = || async { config.fresh(ws).await.map_err(not_found("workspace")) };
        let (mut view, mut cached) = config.view(ws).await.map_err(not_found("workspace"))?;
        let mut attempt = 1;
        loop {
            let resolved = match require_role(&view, who, Role::Member).await {
                Ok(()) => {
                    let run_id = match record {
                        Record::Queued { run_id } => run_id,
                        Record::Running => None,
                    };
                    self.resolve(&view, who, req, run_id).await
                }
                Err(e) => Err(e),
            };
            let (resolved, mut new) = match resolved {
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
            new.config_version = Some(view.version).filter(|_| attempt < RESOLVE_ATTEMPTS);
            new.idempotency = idempotency.clone();
            let lease = self.inner.lease;
            let recorded = match record {
                Record::Running => ledger
                    .record_running(&new, lease)
                    .await
                    .map(Recorded::Running),
                Record::Queued { run_id } => {
                    new.queued = Some(QueuedRequest(req.clone()));
                    new.run_id = run_id.map(str::to_string);
                    ledger
                        .record_queued(&new, lease)
                        .await
                        .map(Recorded::Queued)
                }
            };
            match recorded {
                Ok(recorded) => return Ok((resolved, recorded)),
                Err(StoreError::ConfigChanged) => {
                    (view, cached) = (fresh().await?, false);
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Checks everything an execution needs and resolves its prompts from `view`, writing
    /// nothing: the execution to run and the row that records it.
    #[tracing::instrument(name = "resolve", skip_all)]
    pub async fn resolve(
        &self,
        view: &View,
        who: &Principal,
        req: &ExecuteRequest,
        run_id: Option<&str>,
    ) -> Result<(Resolved, NewExecution), ExecError> {
        let begun = std::time::Instant::now();
        let store = &self.inner.store;
        let ws = view.workspace();
        // No pod (the OpenAI-compatible door's `provider/model`): the request says everything,
        // and its text is sent as it is (no `{{…}}` context to fill in).
        let podless = req.pod_id.is_empty();
        let pod = match podless {
            true => Pod {
                id: String::new(),
                flow_id: String::new(),
                config: PodConfig::default(),
                version: 0,
                created_at: 0,
                updated_at: 0,
            },
            false => view
                .pod(&req.pod_id)
                .await?
                .ok_or(ExecError::NotFound("pod"))?,
        };
        let cfg = &pod.config;
        if podless && req.provider.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                ErrorCode::UnknownProvider,
                "a call without a pod names its provider",
            ));
        }

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
        let plugin = check_pod(
            &self.inner.plugins,
            &provider,
            pinned,
            req.temperature.or(cfg.temperature),
            req.top_p.or(cfg.top_p),
        )?;
        let model = req
            .model
            .as_deref()
            .unwrap_or(&cfg.model)
            .trim()
            .to_string();
        if model.is_empty() {
            return Err(invalid(
                ErrorCode::MissingModel,
                "neither the request nor the pod names a model",
            ));
        }

        let Some(stored) = view.key(&provider).await? else {
            return Err(invalid(
                ErrorCode::MissingProviderKey,
                format!(
                    "this workspace has no {provider} key: PUT /api/v1/workspaces/{ws}/provider-keys/{provider}"
                ),
            ));
        };
        let listed = known_model(store, &plugin, &provider, &model).await?;
        let known = stored.base_url.is_some() || listed.is_some();
        // Metrics name only models something knows: a tenant cannot mint label values.
        let model_label = listed.unwrap_or_else(|| "other".to_string());
        // Under a key's monthly budget, a call with no price would be free of it: refused.
        if who
            .api_key
            .as_ref()
            .is_some_and(|key| key.monthly_budget_usd.is_some())
        {
            let prices = store.prices_in_force(&provider, now_ms()).await?;
            if cost::find_price(&prices, &model, None).is_none() {
                return Err(invalid(
                    ErrorCode::UnpricedModelUnderBudget,
                    format!(
                        "{provider}/{model} has no price: a key with a monthly budget cannot run it (add a price, or use a key without a budget)"
                    ),
                ));
            }
        }
        if !known {
            return Err(invalid(
                ErrorCode::UnknownModel,
                format!(
                    "{provider} has no model {model:?} (configure a base URL on the key for other models)"
                ),
            ));
        }
        let secret = self
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
            .map(Secret::split)
            .map_err(|error| ExecError::Vault {
                provider: provider.clone(),
                error,
            })?;

        // Context: every ancestor's output, interpolated into the prompts and messages.
        let context = match podless {
            true => context::Context::default(),
            false => {
                let edges = view.edges(&pod.flow_id).await?;
                context::resolve(store, ws, &pod.id, &edges, run_id).await?
            }
        };
        let mut warnings = BTreeSet::new();
        let mut fill = |text: &str| match podless {
            true => text.to_string(),
            false => context::interpolate(text, &context, &mut warnings),
        };
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
                    role: MessageRole::User,
                    content: fill(prompt),
                }],
                _ => {
                    return Err(invalid(
                        ErrorCode::MissingMessages,
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
            user_id: who.user_id.clone(),
            provider: provider.clone(),
            model_id: model,
            streamed: req.stream,
            key_id: Some(stored.id.clone()),
            request_metadata: serde_json::json!({
                "provider": provider,
                "pluginVersion": plugin.manifest().version,
                "baseUrl": stored.base_url,
                "request": request,
            }),
            warnings: warnings.clone(),
            queued: None,
            config_version: None,
            run_id: None,
            api_key_id: who.api_key.as_ref().map(|key| key.id.clone()),
            idempotency: None,
            request_id: crate::request_id::current(),
        };
        let resolved = Resolved {
            pod_id: pod.id,
            flow_id: pod.flow_id,
            workspace_id: ws.to_string(),
            provider,
            plugin,
            request,
            // A sealed base URL is the whole one; the stored one is then its redacted form.
            target: Target {
                base_url: secret.base_url.or(stored.base_url),
                key: secret.key,
                workspace: Some(ws.to_string()),
            },
            extractor: cfg.output_extractor.clone(),
            warnings,
            tokens_bucket: who.api_key.as_ref().and_then(|key| {
                key.tpm
                    .map(|tpm| (api_key_bucket(&key.id, "tpm"), Rate::per_minute(tpm)))
            }),
            begun,
            model_label,
            // A worker's run says so (`run_claimed`).
            queued: false,
        };
        Ok((resolved, new))
    }

    /// Cancels a queued or running execution. A running one's provider call is aborted on
    /// whichever node runs it; wherever it runs, its result is no longer saved.
    pub async fn cancel(&self, ws: &str, execution_id: &str) -> Result<Cancelled, ExecError> {
        let outcome = self
            .inner
            .ledger
            .cancel(ws, execution_id)
            .await
            .map_err(not_found("execution"))?;
        if matches!(outcome, Cancelled::Now { .. })
            && let Err(e) = self.inner.queue.cancel(execution_id).await
        {
            tracing::warn!(execution = %execution_id, error = %e, "dropping a cancelled job failed; its worker will skip it");
        }
        Ok(outcome)
    }

    /// Runs one attempt of a queued execution its worker has claimed: resolves its stored
    /// request afresh and runs it — or ends it, if it used up its attempts or no longer
    /// resolves (its pod or key was deleted meanwhile). `Err` only when the store failed: the
    /// row keeps its lease and the job comes back.
    pub async fn run_claimed(
        &self,
        running: Running,
        execution: &Execution,
        max_attempts: i64,
        retry: Retry,
    ) -> Result<AttemptOutcome, StoreError> {
        let attempt = execution.attempts;
        if attempt > max_attempts {
            // Its workers kept dying mid-run: stop trying.
            let failure = Failure::new(
                ErrorCode::AttemptsExhausted,
                format!("no attempt of {max_attempts} finished"),
            );
            running.fail(&failure, vec![], None).await?;
            crate::metrics::get().queue_dead_letters.inc();
            return Ok(AttemptOutcome::Done);
        }
        let resolved = match &execution.queued_request {
            Some(QueuedRequest(request)) => match self
                .config
                .at(&execution.workspace_id, running.config_version())
                .await
                .map_err(not_found("workspace"))
            {
                Ok(view) => {
                    let who = self.queued_principal(execution).await?;
                    self.resolve(&view, &who, request, execution.run_id.as_deref())
                        .await
                        .map(|(resolved, _)| resolved)
                }
                Err(e) => Err(e),
            },
            None => Err(invalid(
                ErrorCode::InvalidField,
                "the queued request could not be read back",
            )),
        };
        let mut resolved = match resolved {
            Ok(resolved) => resolved,
            Err(ExecError::Store(e)) => return Err(e),
            Err(e) => {
                // What made it valid at enqueue time changed (pod or key deleted, …): fail it.
                let failure = match &e {
                    ExecError::Invalid { code, message } => Failure::new(*code, message.clone()),
                    other => Failure::new(ErrorCode::InvalidRequest, other.to_string()),
                };
                running.fail(&failure, vec![], None).await?;
                return Ok(AttemptOutcome::Done);
            }
        };
        let retry = (attempt < max_attempts).then_some(retry);
        resolved.queued = true;
        match self.run(running, resolved, retry, |_| {}).await {
            Err(ExecError::Retry { error, delay, .. }) => {
                tracing::info!(execution = %execution.id, attempt, ?delay, error = %error, "retrying");
                Ok(AttemptOutcome::RetryAfter(delay))
            }
            Err(ExecError::Store(e)) => Err(e),
            // Completed, failed for good, or cancelled: the execution row says which.
            _ => Ok(AttemptOutcome::Done),
        }
    }

    /// Calls the provider and settles the execution through the ledger. `on_delta` sees
    /// streamed increments (which also go to the flow's clients). With `retry`, a failure a
    /// retry may fix puts the execution back in the queue instead of ending it.
    pub async fn run(
        &self,
        running: Running,
        resolved: Resolved,
        retry: Option<Retry>,
        on_delta: impl FnMut(&StreamDelta),
    ) -> Result<ExecutionResult, ExecError> {
        use tracing::Instrument as _;
        // What it logs says which execution (never its prompts or keys).
        let span = tracing::info_span!(
            "execution",
            execution_id = %running.ids().execution_id,
            workspace_id = %resolved.workspace_id,
            provider = %resolved.provider,
            model = %resolved.request.model,
        );
        let labels = crate::metrics::CallLabels {
            provider: resolved.provider.clone(),
            model: resolved.model_label.clone(),
            mode: match (resolved.queued, resolved.request.stream) {
                (true, _) => "async",
                (false, true) => "stream",
                (false, false) => "sync",
            }
            .into(),
        };
        let begun = resolved.begun;
        let mut first_token = None;
        let mut provider_time = None;
        let mut on_delta = on_delta;
        let watched = |d: &StreamDelta| {
            if first_token.is_none() && !(d.text.is_empty() && d.reasoning.is_empty()) {
                first_token = Some(begun.elapsed());
            }
            on_delta(d);
        };
        let outcome = self
            .call_and_settle(running, resolved, retry, watched, &mut provider_time)
            .instrument(span)
            .await;
        record(
            &labels,
            &outcome,
            begun.elapsed(),
            provider_time,
            first_token,
        );
        outcome
    }

    async fn call_and_settle(
        &self,
        running: Running,
        resolved: Resolved,
        retry: Option<Retry>,
        mut on_delta: impl FnMut(&StreamDelta),
        provider_time: &mut Option<Duration>,
    ) -> Result<ExecutionResult, ExecError> {
        let Resolved {
            workspace_id,
            provider,
            plugin,
            request,
            target,
            extractor,
            mut warnings,
            tokens_bucket,
            ..
        } = resolved;
        let store = &self.inner.store;
        let execution_id = running.ids().execution_id.clone();
        let cancelled = running.cancelled();
        let delta = |d: &StreamDelta| {
            on_delta(d);
            running.delta(d);
        };
        let outcome = tokio::select! {
            answer = self.inner.egress.call(&plugin, &request, &target, delta) => Some(answer),
            _ = cancelled => None,
        };
        let Some(outcome) = outcome else {
            // Cancelled: the row is already CANCELLED and nothing else is written.
            return Err(ExecError::Cancelled { execution_id });
        };
        let plugin_version = Some(plugin.manifest().version.clone());
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                let failure = Failure::new(error.code(), error.to_string());
                if let Some(retry) = retry.filter(|_| error.retryable()) {
                    let delay = retry.backoff.max(error.retry_after().unwrap_or_default());
                    running
                        .requeue(&failure, now_ms() + millis(delay), retry.grace)
                        .await?;
                    return Err(ExecError::Retry {
                        execution_id,
                        error,
                        delay,
                    });
                }
                running.fail(&failure, warnings, plugin_version).await?;
                return Err(ExecError::Failed {
                    execution_id,
                    error,
                });
            }
        };
        let Answer {
            mut completion,
            raw,
            provider_time: waited,
        } = answer;
        *provider_time = Some(waited);
        if let Some((bucket, rate)) = &tokens_bucket {
            let used = completion.usage.total_tokens().unwrap_or(0);
            let used = u32::try_from(used).unwrap_or(u32::MAX);
            self.inner.limiter.charge(bucket, *rate, used).await;
        }
        // A NUL cannot be stored as text on every database (PostgreSQL refuses it): replaced,
        // the same on every backend, and said so.
        let mut nul = replace_nul(&mut completion.content);
        if let Some(reasoning) = &mut completion.reasoning {
            nul |= replace_nul(reasoning);
        }
        let content = self
            .output(
                &plugin,
                target.workspace.as_deref(),
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
        let mut content = content;
        nul |= replace_nul(&mut content);
        if nul {
            warnings.push(
                "the provider's answer contained NUL characters; each was replaced by U+FFFD"
                    .into(),
            );
        }
        let response_metadata = match &raw {
            Some(bytes) => serde_json::from_slice(bytes).unwrap_or_else(|_| {
                let mut text = String::from_utf8_lossy(bytes).into_owned();
                replace_nul(&mut text);
                serde_json::Value::String(text)
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
            plugin_version,
        };
        let result = ExecutionResult {
            execution_id,
            status: ExecutionStatus::Completed,
            content: content.clone(),
            reasoning: completion.reasoning.clone(),
            usage: completion.usage.into(),
            cost,
            finish_reason: completion.finish_reason,
            model: completion.model.clone(),
            warnings,
        };
        if running.complete(&done, &result).await? {
            return Ok(result);
        }
        // Cancelled (or finished elsewhere) while the provider was answering.
        let status = store
            .execution(&workspace_id, &result.execution_id)
            .await?
            .status;
        Ok(ExecutionResult { status, ..result })
    }

    /// Who a queued execution runs as: its user, and the API key it was started with (whose
    /// limits were checked when it was queued; what it uses still counts against its tokens a
    /// minute).
    async fn queued_principal(&self, execution: &Execution) -> Result<Principal, StoreError> {
        let Some(key_id) = &execution.api_key_id else {
            return Ok(Principal::user(&execution.user_id));
        };
        Ok(Principal {
            user_id: execution.user_id.clone(),
            api_key: Some(KeyScope {
                id: key_id.clone(),
                workspace_id: execution.workspace_id.clone(),
                role: Role::Member,
                tpm: self.inner.store.api_key_tpm(key_id).await?,
                monthly_budget_usd: None,
            }),
        })
    }

    /// The pod's output: with an output extractor setting and the raw answer at hand, what the
    /// extractor pulls out of it — an extractor plugin's (`ID` or `ID:ARGS`) or the provider
    /// plugin's own (a JSON pointer, `/…`); else the answer text.
    async fn output(
        &self,
        plugin: &Plugin,
        workspace: Option<&str>,
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
            Some(extractor) => match extractor.instantiate(workspace).await {
                Ok(mut i) => i
                    .extract(&String::from_utf8_lossy(raw), args)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        let args = setting;
        let cap = self.inner.egress.caps().text_bytes;
        let extracted = match extracted {
            Ok(Ok(text)) if text.len() > cap => Err(format!(
                "PLUGIN_OUTPUT_TOO_LARGE: {} bytes > {cap}",
                text.len()
            )),
            other => other.and_then(|r| r),
        };
        match extracted {
            Ok(text) => text,
            Err(why) => {
                warnings.push(format!(
                    "output extractor {args:?} failed ({why}); the answer text was kept"
                ));
                completion.content.clone()
            }
        }
    }
}

/// The outcome of recording.
enum Recorded {
    Running(Running),
    Queued(Ids),
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn not_found(what: &'static str) -> impl Fn(StoreError) -> ExecError {
    move |e| match e {
        StoreError::NotFound => ExecError::NotFound(what),
        other => ExecError::Store(other),
    }
}

/// An execution's ending in the metrics: its outcome, durations, tokens and cost. What the
/// host added is its whole time less the provider's (known when the provider answered).
fn record(
    labels: &crate::metrics::CallLabels,
    outcome: &Result<ExecutionResult, ExecError>,
    total: Duration,
    provider: Option<Duration>,
    first_token: Option<Duration>,
) {
    use rust_decimal::prelude::ToPrimitive as _;
    let m = crate::metrics::get();
    let (ended, code) = match outcome {
        Ok(r) if r.status == ExecutionStatus::Completed => ("completed", None),
        Ok(_) | Err(ExecError::Cancelled { .. }) => ("cancelled", None),
        Err(ExecError::Retry { error, .. }) => {
            m.queue_retries.inc();
            ("retried", Some(error.code()))
        }
        Err(ExecError::Failed { error, .. }) => ("error", Some(error.code())),
        Err(ExecError::Invalid { code, .. }) => ("error", Some(*code)),
        Err(ExecError::Store(_)) => ("error", Some(ErrorCode::StoreUnavailable)),
        Err(_) => ("error", Some(ErrorCode::Internal)),
    };
    m.executions
        .get_or_create(&crate::metrics::OutcomeLabels {
            provider: labels.provider.clone(),
            model: labels.model.clone(),
            mode: labels.mode.clone(),
            outcome: ended.into(),
            code: code.map_or_else(String::new, |c| c.as_str().to_ascii_lowercase()),
        })
        .inc();
    m.execution_seconds
        .get_or_create(labels)
        .observe(total.as_secs_f64());
    if let Some(provider) = provider {
        m.provider_seconds
            .get_or_create(labels)
            .observe(provider.as_secs_f64());
        m.added_seconds
            .get_or_create(labels)
            .observe(total.saturating_sub(provider).as_secs_f64());
    }
    if let Some(first) = first_token {
        m.first_token_seconds
            .get_or_create(labels)
            .observe(first.as_secs_f64());
    }
    let Ok(result) = outcome else { return };
    let model = crate::metrics::ModelLabels {
        provider: labels.provider.clone(),
        model: labels.model.clone(),
    };
    let u = &result.usage;
    for (kind, n) in [
        ("prompt", u.prompt_tokens),
        ("cached", u.cached_tokens),
        ("completion", u.completion_tokens),
        ("reasoning", u.reasoning_tokens),
    ] {
        if let Some(n) = n.filter(|n| *n > 0) {
            m.tokens
                .get_or_create(&crate::metrics::TokenLabels {
                    provider: model.provider.clone(),
                    model: model.model.clone(),
                    kind: kind.into(),
                })
                .inc_by(n);
        }
    }
    if let Some(cost) = result.cost.and_then(|c| c.total_cost.to_f64()) {
        m.cost_usd.get_or_create(&model).inc_by(cost);
    }
}

/// `NotFound` for a non-member (the workspace is not theirs to know about), `Forbidden` for a
/// member whose role is weaker than `needed`.
async fn require_role(view: &View, who: &Principal, needed: Role) -> Result<(), ExecError> {
    let role = who.role_in(view.workspace(), view.role(&who.user_id).await?);
    crate::domain::member::require(role, needed)?;
    Ok(())
}

impl From<Denied> for ExecError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::NotMember => ExecError::NotFound("workspace"),
            too_weak => ExecError::Forbidden(too_weak),
        }
    }
}

/// Whether the provider's plugin manifest or today's pricing table knows the model (without
/// either, it runs only behind a key's base URL, and its cost is not counted).
pub async fn is_known_model(
    store: &Store,
    plugin: &Plugin,
    provider: &str,
    model: &str,
) -> Result<bool, StoreError> {
    Ok(known_model(store, plugin, provider, model).await?.is_some())
}

/// The name that knows `model`: its manifest entry, or the price row that prices it (a dated
/// `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`); `None` if neither does. Metrics label
/// executions with it, so their series are bounded by manifests and price rows.
pub async fn known_model(
    store: &Store,
    plugin: &Plugin,
    provider: &str,
    model: &str,
) -> Result<Option<String>, StoreError> {
    if plugin.manifest().models.iter().any(|m| m.id == model) {
        return Ok(Some(model.to_string()));
    }
    let prices = store.prices_in_force(provider, now_ms()).await?;
    Ok(cost::find_price(&prices, model, None).map(|p| p.model.clone()))
}

/// The one check of what a pod runs with, when it is saved and when it runs: its provider
/// plugin (at the pinned version, if any) is loaded, and its sampling settings are in range.
/// Returns the plugin.
pub fn check_pod(
    plugins: &Registry,
    provider: &str,
    plugin_version: Option<&str>,
    temperature: Option<f64>,
    top_p: Option<f64>,
) -> Result<Plugin, ExecError> {
    let plugin = plugins
        .provider(provider, plugin_version)
        .map_err(|e| match e {
            Missing::Plugin(_) => invalid(ErrorCode::UnknownProvider, e.to_string()),
            Missing::Version { .. } => invalid(ErrorCode::UnknownPluginVersion, e.to_string()),
        })?;
    check_sampling(temperature, top_p).map_err(|why| invalid(ErrorCode::InvalidField, why))?;
    Ok(plugin)
}

/// Replaces every NUL in `text` by U+FFFD; whether there was one.
fn replace_nul(text: &mut String) -> bool {
    if !text.contains('\0') {
        return false;
    }
    *text = text.replace('\0', "\u{FFFD}");
    true
}

#[cfg(test)]
mod tests {
    use super::replace_nul;

    #[test]
    fn nul_is_replaced_and_reported() {
        let mut clean = "plain".to_string();
        assert!(!replace_nul(&mut clean));
        let mut dirty = "a\0b\0".to_string();
        assert!(replace_nul(&mut dirty));
        assert_eq!(dirty, "a\u{FFFD}b\u{FFFD}");
    }
}
