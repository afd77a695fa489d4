//! The sandbox: one wasmtime [`Engine`] for the process, plugins compiled once (and cached on
//! disk), and a fresh, cheap instance per execution.
//!
//! Lifecycle: [`Runtime::load`] compiles a component, checks which WIT version it exports, links it
//! (`InstancePre`), calls `manifest()` once and validates it, giving a [`Plugin`]. Each execution
//! calls [`Plugin::instantiate`] for an [`Instance`] of its own — its own store, memory cap and
//! per-call deadline — and drops it when done. A trap, a timeout or a memory blow-up poisons only
//! that instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::manifest::validate;
use super::types::{
    ChatRequest, Completion, HttpRequest, HttpResponse, Manifest, ProviderError, SseEvent,
    StreamDelta,
};
use super::v0_1_0;

/// How often the epoch advances; deadlines are measured in these ticks.
const TICK: Duration = Duration::from_millis(5);

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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            max_instances: 256,
            cache_dir: None,
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
}

impl PluginError {
    pub fn code(&self) -> &'static str {
        "PLUGIN_ERROR"
    }
}

/// The process-wide plugin sandbox.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            // A Rust wasip2 component is a few core instances (its module plus WASI shims).
            .total_core_instances(config.max_instances * 8)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 4)
            .max_memory_size(config.limits.memory_cap);

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
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| invalid("linker", e))?;

        Ok(Runtime {
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            config,
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compiles (or fetches from the cache), links and validates a plugin component.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let component =
            Component::from_binary(&self.engine, wasm).map_err(|e| invalid("component", e))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if !exports.iter().any(|e| e == v0_1_0::PROVIDER_EXPORT) {
            return Err(PluginError::Invalid(format!(
                "it exports [{}], but this host runs provider plugins exporting {}",
                exports.join(", "),
                v0_1_0::PROVIDER_EXPORT
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid("linking", e))?;
        let pre = v0_1_0::PluginPre::new(pre).map_err(|e| invalid("world", e))?;
        let manifest = new_instance(&pre, self.config.limits)?.manifest()?;
        validate(&manifest).map_err(PluginError::Manifest)?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                pre,
                limits: self.config.limits,
                manifest,
            }),
        })
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::Invalid(format!("{what}: {e:#}"))
}

/// A loaded, validated plugin: compiled code plus its manifest. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    pre: v0_1_0::PluginPre<HostState>,
    limits: Limits,
    manifest: Manifest,
}

impl Plugin {
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// A fresh instance with its own store, memory cap and deadline.
    pub fn instantiate(&self) -> Result<Instance, PluginError> {
        new_instance(&self.inner.pre, self.inner.limits)
    }
}

fn new_instance(
    pre: &v0_1_0::PluginPre<HostState>,
    limits: Limits,
) -> Result<Instance, PluginError> {
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
    };
    let mut store = Store::new(pre.engine(), state);
    store.limiter(|s| &mut s.memory);
    store.set_epoch_deadline(deadline_ticks(limits.deadline));
    // Instantiation runs no guest code of ours beyond data initialisers; a failure here is most
    // likely the pool of instance slots being full.
    let bindings = pre
        .instantiate(&mut store)
        .map_err(|e| match e.downcast_ref::<Trap>() {
            Some(_) => classify(e, &store, limits),
            None => PluginError::Instantiate(format!("{e:#}")),
        })?;
    Ok(Instance {
        store,
        bindings,
        limits,
        stream: None,
    })
}

/// One execution's plugin instance. Dropping it frees the instance's slot and memory.
pub struct Instance {
    store: Store<HostState>,
    bindings: v0_1_0::Plugin,
    limits: Limits,
    stream: Option<ResourceAny>,
}

impl Instance {
    pub fn manifest(&mut self) -> Result<Manifest, PluginError> {
        self.arm();
        let r = self
            .bindings
            .pods_provider_provider()
            .call_describe(&mut self.store);
        self.check(r).map(v0_1_0::manifest)
    }

    pub fn build_request(
        &mut self,
        request: &ChatRequest,
        base_url: &str,
    ) -> Result<Result<HttpRequest, ProviderError>, PluginError> {
        self.arm();
        let r = self
            .bindings
            .pods_provider_provider()
            .call_build_request(&mut self.store, &v0_1_0::request(request, base_url));
        self.check(r)
            .map(|r| r.map(v0_1_0::http_request).map_err(v0_1_0::provider_error))
    }

    pub fn parse_response(
        &mut self,
        request: &ChatRequest,
        base_url: &str,
        response: &HttpResponse,
    ) -> Result<Result<Completion, ProviderError>, PluginError> {
        self.arm();
        let r = self.bindings.pods_provider_provider().call_parse_response(
            &mut self.store,
            &v0_1_0::request(request, base_url),
            &v0_1_0::http_response(response),
        );
        self.check(r)
            .map(|r| r.map(v0_1_0::completion).map_err(v0_1_0::provider_error))
    }

    /// Starts reading a streamed answer; feed it with [`Self::stream_push`].
    pub fn stream_start(
        &mut self,
        request: &ChatRequest,
        base_url: &str,
    ) -> Result<(), PluginError> {
        self.arm();
        let r = self
            .bindings
            .pods_provider_provider()
            .stream_parser()
            .call_constructor(&mut self.store, &v0_1_0::request(request, base_url));
        self.stream = Some(self.check(r)?);
        Ok(())
    }

    pub fn stream_push(
        &mut self,
        event: &SseEvent,
    ) -> Result<Result<StreamDelta, ProviderError>, PluginError> {
        let parser = self
            .stream
            .ok_or(PluginError::Misuse("stream_push before stream_start"))?;
        self.arm();
        let r = self
            .bindings
            .pods_provider_provider()
            .stream_parser()
            .call_push(&mut self.store, parser, &v0_1_0::sse_event(event));
        self.check(r)
            .map(|r| r.map(v0_1_0::stream_delta).map_err(v0_1_0::provider_error))
    }

    pub fn stream_finish(&mut self) -> Result<Result<Completion, ProviderError>, PluginError> {
        let parser = self
            .stream
            .take()
            .ok_or(PluginError::Misuse("stream_finish before stream_start"))?;
        self.arm();
        let r = self
            .bindings
            .pods_provider_provider()
            .stream_parser()
            .call_finish(&mut self.store, parser);
        let r = self.check(r)?;
        // The instance is dropped soon anyway; a failed drop only means it was already poisoned.
        let _ = parser.resource_drop(&mut self.store);
        Ok(r.map(v0_1_0::completion).map_err(v0_1_0::provider_error))
    }

    /// Runs the plugin's output extractor on a stored raw response.
    pub fn extract(
        &mut self,
        raw_response: &str,
        args: Option<&str>,
    ) -> Result<Result<String, String>, PluginError> {
        self.arm();
        let r = self.bindings.pods_provider_extractor().call_extract(
            &mut self.store,
            raw_response,
            args,
        );
        self.check(r)
    }

    /// Every call gets the full deadline, measured from its start.
    fn arm(&mut self) {
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.deadline));
    }

    fn check<T>(&self, r: wasmtime::Result<T>) -> Result<T, PluginError> {
        r.map_err(|e| classify(e, &self.store, self.limits))
    }
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

fn deadline_ticks(deadline: Duration) -> u64 {
    // The deadline fires between (ticks-1) and ticks tick periods after being armed.
    (deadline.as_nanos() / TICK.as_nanos()) as u64 + 1
}

/// What a plugin's store holds: an empty WASI context and the memory accounting.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimit,
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

/// Advances the engine's epoch every [`TICK`] so deadlines fire; stops with the runtime.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("pods-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch ticker thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
