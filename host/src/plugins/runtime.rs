//! The sandbox: one wasmtime [`Engine`] for the process, plugins compiled once (and cached on
//! disk), and a fresh, cheap instance per execution.
//!
//! Lifecycle: [`Runtime::compile`] compiles a component, checks which WIT version it exports and
//! links it (`InstancePre`); [`Runtime::finish`] calls `manifest()` once and validates it, giving a
//! [`Plugin`] ([`Runtime::load`] does both). Each execution calls [`Plugin::instantiate`] for an
//! [`Instance`] of its own — its own store, memory cap and per-call deadline — and drops it when
//! done. A trap, a timeout or a memory blow-up poisons only that instance.
//!
//! Plugins run on wasmtime's async support, so a guest's WASI calls (a panic message written to
//! stderr, a sleep) never block a thread of the server's tokio runtime, and a guest that computes
//! gives its thread back at every epoch tick ([`TICK`]): a spinning plugin delays other tasks by
//! a tick at most, never by its whole deadline. A call's deadline is checked at those ticks (a
//! guest spinning) and by a timer around the call (a guest waiting). Each workspace's calls run
//! under its [`Share`] of the sandbox, so one tenant cannot fill it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Bindings, Pre};
use super::limits::Policy;
use super::manifest::validate;
use super::share::{Share, Shares};
use super::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, Manifest, ProviderError, SseEvent,
    StreamDelta,
};

/// How often the epoch advances while any instance is alive: a computing guest yields its thread
/// this often. With twenty guests computing at once, a request arriving meanwhile waits about ten
/// ticks for a worker thread; at idle the ticker sleeps and costs nothing.
const TICK: Duration = Duration::from_millis(1);

/// What one plugin instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of each single call into a plugin.
    pub deadline: Duration,
    /// Most linear memory one instance may have, in bytes.
    pub memory_cap: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(1),
            memory_cap: 64 << 20,
        }
    }
}

/// Knobs of the sandbox. The defaults suit a server; tests shrink them.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub limits: Limits,
    /// Most plugin instances alive at once in this process (pooling allocator slots).
    pub max_instances: u32,
    /// Where compiled plugins are cached; `None` disables the on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Most plugin calls of one workspace running at once on this node.
    pub workspace_calls: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            max_instances: 256,
            cache_dir: None,
            workspace_calls: default_workspace_calls(),
        }
    }
}

/// Why a plugin call failed. Whatever the cause, it is the plugin's fault and only its own call
/// fails; the API reports all of these as `PLUGIN_ERROR`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin call exceeded its deadline of {0:?}")]
    Timeout(Duration),
    #[error("plugin exceeded its memory cap of {0} bytes")]
    MemoryExhausted(usize),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("not a loadable plugin: {0}")]
    Invalid(String),
    #[error("plugin manifest rejected: {0}")]
    Manifest(String),
    #[error("could not start a plugin instance: {0}")]
    Instantiate(String),
    #[error("plugin misused: {0}")]
    Misuse(&'static str),
    /// The operator's `maxConcurrent` for this plugin is reached; trying later may succeed.
    #[error("plugin {id:?} already runs its limit of {max} instances")]
    Busy { id: String, max: u32 },
}

impl PluginError {
    pub fn code(&self) -> crate::domain::ErrorCode {
        match self {
            PluginError::Busy { .. } => crate::domain::ErrorCode::PluginBusy,
            _ => crate::domain::ErrorCode::PluginError,
        }
    }
}

/// How often a loaded plugin was used: instances started, and calls that failed in the sandbox
/// (trap, deadline, memory, busy). Provider errors a plugin reports are not its failures.
#[derive(Debug, Default)]
pub struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
}

impl Stats {
    /// (calls, errors)
    pub fn get(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// The process-wide plugin sandbox.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    shares: Arc<Shares>,
    ticker: Arc<EpochTicker>,
}

/// The default share of a workspace: as many calls as the machine has cores, so one workspace
/// alone can use the whole machine, and never more.
pub fn default_workspace_calls() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// How much of a freed instance's memory and tables is reset in place rather than released.
const KEEP_RESIDENT: usize = 2 << 20;

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            // Each running call has a fiber stack of its own.
            .total_stacks(config.max_instances)
            // A Rust wasip2 component is a few core instances (its module plus WASI shims).
            .total_core_instances(config.max_instances * 8)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 4)
            .max_memory_size(config.limits.memory_cap)
            // A freed slot is reset by zeroing the pages the call dirtied (found with the
            // PAGEMAP_SCAN ioctl where the kernel has it) rather than by madvise: madvise flushes
            // every core's TLB, and the next call would fault each page back in.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);

        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &config.cache_dir {
            let mut cache = CacheConfig::new();
            cache.with_directory(dir);
            let cache = Cache::new(cache).map_err(|e| invalid("compilation cache", e))?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm).map_err(|e| invalid("engine", e))?;

        // A Rust guest's std imports a few WASI interfaces even when it does no I/O. They are
        // linked against an empty context: no preopened dirs, no env, no args, no sockets.
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| invalid("linker", e))?;

        Ok(Runtime {
            ticker: Arc::new(EpochTicker::start(engine.clone())),
            engine,
            linker,
            shares: Arc::new(Shares::new(config.workspace_calls)),
            config,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compiles (or fetches from the cache), links and validates a plugin component.
    pub async fn load(&self, wasm: &[u8]) -> Result<Plugin, PluginError> {
        self.finish(self.compile(wasm)?).await
    }

    /// The CPU-heavy half of a load (tens of milliseconds; run it off the async threads):
    /// compile, check the exported API version and world, link.
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled, PluginError> {
        let component =
            Component::from_binary(&self.engine, wasm).map_err(|e| invalid("component", e))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid("linking", e))?;
        let pre = Pre::new(pre, &exports)?;
        Ok(Compiled { pre })
    }

    /// The other half of a load: read the manifest (the plugin's first call) and check it.
    pub async fn finish(&self, compiled: Compiled) -> Result<Plugin, PluginError> {
        let pre = compiled.pre;
        let manifest = new_instance(&pre, self.config.limits, &self.ticker)
            .await?
            .manifest()
            .await?;
        validate(&manifest).map_err(PluginError::Manifest)?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                pre,
                limits: self.config.limits,
                manifest,
                stats: Stats::default(),
                shares: self.shares.clone(),
                ticker: self.ticker.clone(),
            }),
            policy: Arc::default(),
        })
    }
}

/// A compiled and linked plugin whose manifest is not read yet.
pub struct Compiled {
    pre: Pre<HostState>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::Invalid(format!("{what}: {e:#}"))
}

/// A loaded, validated plugin: compiled code plus its manifest, under the operator's policy.
/// Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
    policy: Arc<Policy>,
}

struct PluginInner {
    pre: Pre<HostState>,
    limits: Limits,
    manifest: Manifest,
    stats: Stats,
    shares: Arc<Shares>,
    ticker: Arc<EpochTicker>,
}

impl Plugin {
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// The same compiled plugin under another policy.
    pub fn with_policy(&self, policy: Arc<Policy>) -> Plugin {
        Plugin {
            inner: self.inner.clone(),
            policy,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Whether requests may go to `host` at all: `true` unless the operator narrowed the hosts.
    pub fn host_permitted(&self, host: &str) -> bool {
        self.policy
            .setting
            .allowed_hosts
            .as_ref()
            .is_none_or(|hosts| hosts.iter().any(|h| h == host))
    }

    /// The limits each call of this plugin runs under.
    pub fn limits(&self) -> Limits {
        self.policy.limits.unwrap_or(self.inner.limits)
    }

    /// A fresh instance with its own store, memory cap and deadline, whose calls count against
    /// `workspace`'s share (`None`: the operator's own calls, e.g. a conformance run).
    pub async fn instantiate(&self, workspace: Option<&str>) -> Result<Instance, PluginError> {
        let stats = &self.inner.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let permit = match (&self.policy.permits, self.policy.setting.max_concurrent) {
            (Some(permits), Some(max)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    let busy = PluginError::Busy {
                        id: self.inner.manifest.id.clone(),
                        max,
                    };
                    count_error(&self.inner.manifest, &busy);
                    return Err(busy);
                }
            },
            _ => None,
        };
        let mut instance = new_instance(&self.inner.pre, self.limits(), &self.inner.ticker)
            .await
            .inspect_err(|_| {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            })?;
        instance.owner = Some((self.inner.clone(), permit));
        instance.share = workspace.map(|ws| self.inner.shares.of(ws));
        Ok(instance)
    }
}

async fn new_instance(
    pre: &Pre<HostState>,
    limits: Limits,
    ticker: &Arc<EpochTicker>,
) -> Result<Instance, PluginError> {
    // Taken before any guest code runs (instantiation runs data initialisers).
    let ticking = EpochTicker::running(ticker);
    let state = HostState {
        wasi: WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build(),
        table: ResourceTable::new(),
        memory: MemoryLimit {
            cap: limits.memory_cap,
            hit: false,
        },
        call_ends: Instant::now() + limits.deadline,
    };
    let mut store = Store::new(pre.engine(), state);
    store.limiter(|s| &mut s.memory);
    // At each tick a running guest yields its thread; past its call's deadline it is stopped.
    // Tokio's own yield: the worker then checks for I/O before it runs the guest again (with a
    // plain wake-up a busy worker looks for I/O only every 61 polls — 61 ticks of a spinning
    // guest, a third of a second before a new request is even read).
    store.epoch_deadline_callback(|ctx| {
        Ok(if Instant::now() >= ctx.data().call_ends {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
    store.set_epoch_deadline(1);
    // Instantiation runs no guest code of ours beyond data initialisers; a failure here is most
    // likely the pool of instance slots being full.
    let bindings =
        pre.instantiate(&mut store)
            .await
            .map_err(|e| match e.downcast_ref::<Trap>() {
                Some(_) => classify(e, &store, limits),
                None => PluginError::Instantiate(format!("{e:#}")),
            })?;
    Ok(Instance {
        store,
        bindings,
        limits,
        stream: None,
        owner: None,
        share: None,
        poisoned: false,
        call: ("", Instant::now()),
        busy: std::time::Duration::ZERO,
        _ticking: ticking,
    })
}

/// One execution's plugin instance. Dropping it frees the instance's slot, memory and its place
/// under the plugin's `maxConcurrent`.
pub struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    limits: Limits,
    stream: Option<ResourceAny>,
    /// The plugin it came from (for its error count) and its concurrency permit; `None` for the
    /// instance that reads the manifest at load time.
    owner: Option<(Arc<PluginInner>, Option<tokio::sync::OwnedSemaphorePermit>)>,
    /// The workspace's share its calls wait for; `None`: unattributed.
    share: Option<Share>,
    /// A call was abandoned midway (its deadline passed while the guest waited): the store may
    /// hold a half-done call, so nothing more runs in it.
    poisoned: bool,
    /// The call under way (for its metrics) and when it got its turn.
    call: (&'static str, Instant),
    /// Time spent in this instance's calls so far.
    busy: std::time::Duration,
    /// Keeps the epoch ticking while the instance is alive.
    _ticking: Ticking,
}

impl Instance {
    pub async fn manifest(&mut self) -> Result<Manifest, PluginError> {
        self.ready()?;
        let _turn = self.begin("describe").await;
        let r = timed(self.limits, self.bindings.describe(&mut self.store)).await;
        self.settle(r)
    }

    pub async fn build_request(
        &mut self,
        request: &ChatRequest,
        base_url: &str,
    ) -> Result<Result<HttpRequest, ProviderError>, PluginError> {
        self.provider_ready()?;
        let _turn = self.begin("build_request").await;
        let call = self
            .bindings
            .build_request(&mut self.store, request, base_url);
        let r = timed(self.limits, call).await;
        self.settle(r)
    }

    pub async fn parse_response(
        &mut self,
        request: &ChatRequest,
        base_url: &str,
        response: &HttpResponse,
    ) -> Result<Result<Completion, ProviderError>, PluginError> {
        self.provider_ready()?;
        let _turn = self.begin("parse_response").await;
        let call = self
            .bindings
            .parse_response(&mut self.store, request, base_url, response);
        let r = timed(self.limits, call).await;
        self.settle(r)
    }

    /// Starts reading a streamed answer; feed it with [`Self::stream_push`].
    pub async fn stream_start(
        &mut self,
        request: &ChatRequest,
        base_url: &str,
    ) -> Result<(), PluginError> {
        self.provider_ready()?;
        let _turn = self.begin("stream_start").await;
        let call = self.bindings.stream_new(&mut self.store, request, base_url);
        let r = timed(self.limits, call).await;
        self.stream = Some(self.settle(r)?);
        Ok(())
    }

    pub async fn stream_push(
        &mut self,
        event: &SseEvent,
    ) -> Result<Result<StreamDelta, ProviderError>, PluginError> {
        let parser = self
            .stream
            .ok_or(PluginError::Misuse("stream_push before stream_start"))?;
        self.provider_ready()?;
        let _turn = self.begin("stream_push").await;
        let call = self.bindings.stream_push(&mut self.store, parser, event);
        let r = timed(self.limits, call).await;
        self.settle(r)
    }

    pub async fn stream_finish(
        &mut self,
    ) -> Result<Result<Completion, ProviderError>, PluginError> {
        let parser = self
            .stream
            .take()
            .ok_or(PluginError::Misuse("stream_finish before stream_start"))?;
        self.provider_ready()?;
        let _turn = self.begin("stream_finish").await;
        let call = self.bindings.stream_finish(&mut self.store, parser);
        let r = timed(self.limits, call).await;
        let r = self.settle(r)?;
        // The instance is dropped soon anyway; a failed drop only means it was already poisoned.
        let _ = parser.resource_drop_async(&mut self.store).await;
        Ok(r)
    }

    /// Runs the plugin's output extractor on a stored raw response.
    pub async fn extract(
        &mut self,
        raw_response: &str,
        args: Option<&str>,
    ) -> Result<Result<String, String>, PluginError> {
        self.ready()?;
        let _turn = self.begin("extract").await;
        let call = self.bindings.extract(&mut self.store, raw_response, args);
        let r = timed(self.limits, call).await;
        self.settle(r)
    }

    /// [`Self::ready`], for a call only a provider plugin has.
    fn provider_ready(&mut self) -> Result<(), PluginError> {
        if !self.bindings.is_provider() {
            return Err(PluginError::Misuse(
                "an extractor plugin has no provider interface",
            ));
        }
        self.ready()
    }

    /// Refuses a poisoned instance.
    fn ready(&mut self) -> Result<(), PluginError> {
        if self.poisoned {
            return Err(PluginError::Misuse(
                "the instance was abandoned by an earlier call that passed its deadline",
            ));
        }
        Ok(())
    }

    /// Time spent in this instance's calls so far (waits for the workspace's turn excluded).
    pub fn busy(&self) -> std::time::Duration {
        self.busy
    }

    /// Waits for the workspace's turn, then arms the deadline so the call gets all of it. The
    /// call runs while the returned permit lives.
    async fn begin(&mut self, call: &'static str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let turn = match &self.share {
            Some(share) => share.turn().await,
            None => None,
        };
        self.call = (call, Instant::now());
        self.store.data_mut().call_ends = Instant::now() + self.limits.deadline;
        self.store.set_epoch_deadline(1);
        turn
    }

    /// A call's outcome as the host sees it; counts the call, its time and the plugin's
    /// failures.
    fn settle<T>(&mut self, r: Option<wasmtime::Result<T>>) -> Result<T, PluginError> {
        let r = match r {
            Some(r) => r.map_err(|e| classify(e, &self.store, self.limits)),
            None => {
                self.poisoned = true;
                Err(PluginError::Timeout(self.limits.deadline))
            }
        };
        let (call, began) = self.call;
        let took = began.elapsed();
        self.busy += took;
        if let Some((plugin, _)) = &self.owner {
            if r.is_err() {
                plugin.stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            let m = &plugin.manifest;
            let labels = crate::metrics::PluginLabels {
                plugin: m.id.clone(),
                version: m.version.clone(),
                call: call.to_string(),
            };
            let metrics = crate::metrics::get();
            metrics.plugin_calls.get_or_create(&labels).inc();
            metrics
                .plugin_seconds
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
            if let Err(e) = &r {
                count_error(m, e);
            }
        }
        r
    }
}

/// A failure in the sandbox, in the plugin error metrics.
fn count_error(manifest: &Manifest, error: &PluginError) {
    let kind = match error {
        PluginError::Trap(_) => "trap",
        PluginError::Timeout(_) => "timeout",
        PluginError::MemoryExhausted(_) => "memory",
        PluginError::Busy { .. } => "busy",
        _ => "other",
    };
    crate::metrics::get()
        .plugin_errors
        .get_or_create(&crate::metrics::PluginErrorLabels {
            plugin: manifest.id.clone(),
            version: manifest.version.clone(),
            kind: kind.into(),
        })
        .inc();
}

/// Runs a call under the deadline's timer: the epoch interruption stops a guest that spins, this
/// stops one that waits (e.g. sleeps). `None`: the deadline passed and the call was dropped.
async fn timed<T>(limits: Limits, call: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limits.deadline, call).await.ok()
}

fn classify(e: wasmtime::Error, store: &Store<HostState>, limits: Limits) -> PluginError {
    if store.data().memory.hit {
        return PluginError::MemoryExhausted(limits.memory_cap);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout(limits.deadline),
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{e:#}")),
    }
}

/// What a plugin's store holds: an empty WASI context and the memory accounting.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimit,
    /// When the running call passes its deadline.
    call_ends: Instant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses memory growth past the cap, and remembers that it did so that the trap which follows
/// (a Rust guest aborts when allocation fails) is reported as memory exhaustion.
struct MemoryLimit {
    cap: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Plugins need no time: both WASI clocks read zero, so nothing can be timed from inside.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Advances the engine's epoch every [`TICK`] while any instance is alive, so deadlines fire and
/// computing guests yield; with no instance alive the thread parks (no wake-ups at idle).
struct EpochTicker {
    alive: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let (alive, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (alive_seen, stop_seen) = (alive.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("pods-epoch".into())
            .spawn(move || {
                while !stop_seen.load(Ordering::Relaxed) {
                    if alive_seen.load(Ordering::Acquire) == 0 {
                        // An unpark between the check and here makes this return at once.
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch ticker thread");
        EpochTicker {
            alive,
            stop,
            thread: handle.thread().clone(),
        }
    }

    /// Counts an instance alive until the returned guard drops.
    fn running(ticker: &Arc<EpochTicker>) -> Ticking {
        if ticker.alive.fetch_add(1, Ordering::AcqRel) == 0 {
            ticker.thread.unpark();
        }
        Ticking(ticker.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

/// One live instance, as the ticker counts it.
struct Ticking(Arc<EpochTicker>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::AcqRel);
    }
}
