//! The sandbox holds against a hostile plugin: it cannot loop, hoard memory, crash the host, reach
//! a host it did not declare, or see files, environment, time or network.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pods::domain::ErrorCode;
use pods::egress::{CallError, Egress, EgressConfig, Target};
use pods::plugins::types::{ChatRequest, Message, MessageRole};
use pods::plugins::{Limits, Plugin, PluginError, PluginLimits, Policy, Runtime, RuntimeConfig};
use pods::vault::ApiKey;
use pods_e2e::hostile_wasm;

const DEADLINE: Duration = Duration::from_millis(250);
const MEMORY_CAP: usize = 16 << 20;

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: Limits {
            deadline: DEADLINE,
            memory_cap: MEMORY_CAP,
        },
        cache_dir: Some(std::env::temp_dir().join("pods-test-wasm-cache")),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

async fn hostile(runtime: &Runtime) -> Plugin {
    runtime
        .load(&hostile_wasm())
        .await
        .expect("the hostile plugin loads")
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message {
            role: MessageRole::User,
            content: "hi".into(),
        }],
        ..ChatRequest::default()
    }
}

/// What the hostile plugin reported about its attempt (it answers with an error carrying it).
async fn probe(plugin: &Plugin, model: &str) -> String {
    let mut instance = plugin.instantiate(None).await.expect("instance");
    match instance
        .build_request(&request(model), "https://api.hostile.test")
        .await
    {
        Ok(Err(report)) => report.message,
        other => panic!("{model}: expected a report, got {other:?}"),
    }
}

/// A loopback listener that counts the connections it accepts.
async fn counting_listener() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_looping_plugin_is_stopped_by_the_deadline() {
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let mut instance = plugin.instantiate(None).await.expect("instance");
    let started = Instant::now();
    let result = instance
        .build_request(&request("loop"), "https://api.hostile.test")
        .await;
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(PluginError::Timeout(d)) if d == DEADLINE),
        "{result:?}"
    );
    assert!(
        elapsed >= DEADLINE.mul_f32(0.9),
        "stopped too early: {elapsed:?}"
    );
    assert!(
        elapsed < DEADLINE * 2,
        "stopped after {elapsed:?}, more than twice {DEADLINE:?}"
    );
}

/// A plugin that computes gives its thread back at every epoch tick: on a runtime of one thread,
/// another task keeps running while the plugin spins (before, it ran only once the deadline had
/// stopped the plugin).
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_plugin_does_not_hold_the_thread() {
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let beats = Arc::new(AtomicUsize::new(0));
    let counter = beats.clone();
    let heart = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut instance = plugin.instantiate(None).await.expect("instance");
    let result = instance
        .build_request(&request("loop"), "https://api.hostile.test")
        .await;
    heart.abort();
    assert!(matches!(result, Err(PluginError::Timeout(_))), "{result:?}");
    // 250 ms of spinning: 25 beats if the thread were free; a held thread gives 0 or 1.
    let beats = beats.load(Ordering::SeqCst);
    assert!(beats >= 10, "{beats} beats while the plugin spun");
}

/// One workspace's calls run at most its share at once; another workspace's calls do not wait
/// for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workspaces_spinning_calls_do_not_queue_anothers() {
    let runtime = Runtime::new(RuntimeConfig {
        limits: Limits {
            deadline: DEADLINE,
            memory_cap: MEMORY_CAP,
        },
        workspace_calls: 2,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let plugin = hostile(&runtime).await;
    let spinning: Vec<_> = (0..6)
        .map(|_| {
            let plugin = plugin.clone();
            tokio::spawn(async move {
                let mut instance = plugin.instantiate(Some("tenant-a")).await.expect("a");
                let started = Instant::now();
                let r = instance
                    .build_request(&request("loop"), "https://api.hostile.test")
                    .await;
                (r.is_err(), started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut polite = Vec::new();
    for _ in 0..10 {
        let mut instance = plugin.instantiate(Some("tenant-b")).await.expect("b");
        let started = Instant::now();
        let r = instance
            .build_request(&request("polite"), "https://api.hostile.test")
            .await;
        assert!(matches!(r, Ok(Ok(_))), "{r:?}");
        polite.push(started.elapsed());
    }
    let slowest = polite.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(100),
        "tenant b waited {slowest:?} behind tenant a's spinning calls"
    );
    // Tenant a's six calls ran two at a time: the last ones waited for earlier ones to end.
    let mut a = Vec::new();
    for task in spinning {
        a.push(task.await.expect("task"));
    }
    assert!(a.iter().all(|(failed, _)| *failed));
    let longest = a.iter().map(|(_, d)| *d).max().unwrap_or_default();
    assert!(
        longest >= DEADLINE * 2,
        "six calls under a share of two all ran at once ({longest:?})"
    );
}

/// WASI calls that wait (a sleep) or write (stdout, stderr, a panic message) never block or panic
/// a thread of the host's async runtime: the plugin runs on wasmtime's async support.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_or_printing_plugin_cannot_stall_or_crash_the_host() {
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let mut instance = plugin.instantiate(None).await.expect("instance");
    let started = Instant::now();
    let result = instance
        .build_request(&request("sleep"), "https://api.hostile.test")
        .await;
    assert!(
        matches!(result, Err(PluginError::Timeout(d)) if d == DEADLINE),
        "{result:?}"
    );
    assert!(started.elapsed() < DEADLINE * 2, "{:?}", started.elapsed());
    // The abandoned instance refuses further calls; a fresh one works.
    let again = instance
        .build_request(&request("polite"), "https://api.hostile.test")
        .await;
    assert!(matches!(again, Err(PluginError::Misuse(_))), "{again:?}");

    assert_eq!(probe(&plugin, "print").await, "printed");
    let mut trapped = plugin.instantiate(None).await.expect("instance");
    let result = trapped
        .build_request(&request("trap"), "https://api.hostile.test")
        .await;
    assert!(matches!(result, Err(PluginError::Trap(_))), "{result:?}");
    assert_eq!(
        plugin.stats().get(),
        (3, 2),
        "(instances started, failed calls)"
    );
}

/// An operator's policy for one plugin: its own deadline, and a cap on instances alive at once.
#[tokio::test]
async fn a_plugins_policy_sets_its_deadline_and_concurrency() {
    let runtime = runtime();
    let defaults = runtime.config().limits;
    let plugin = hostile(&runtime).await.with_policy(Arc::new(Policy::new(
        PluginLimits {
            deadline_ms: Some(60),
            max_concurrent: Some(2),
            ..PluginLimits::default()
        },
        defaults,
    )));
    let mut first = plugin.instantiate(None).await.expect("first");
    let started = Instant::now();
    let result = first
        .build_request(&request("loop"), "https://api.hostile.test")
        .await;
    assert!(
        matches!(result, Err(PluginError::Timeout(d)) if d == Duration::from_millis(60)),
        "{result:?}"
    );
    assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());
    let _second = plugin.instantiate(None).await.expect("second");
    let third = plugin.instantiate(None).await;
    assert!(
        matches!(&third, Err(e @ PluginError::Busy { max: 2, .. }) if e.code() == ErrorCode::PluginBusy),
        "{:?}",
        third.err()
    );
    drop(first);
    plugin.instantiate(None).await.expect("a place was freed");

    // Its own memory cap, below the runtime's.
    let small = hostile(&runtime).await.with_policy(Arc::new(Policy::new(
        PluginLimits {
            memory_mb: Some(4),
            ..PluginLimits::default()
        },
        defaults,
    )));
    let mut instance = small.instantiate(None).await.expect("instance");
    let result = instance
        .build_request(&request("grow"), "https://api.hostile.test")
        .await;
    assert!(
        matches!(result, Err(PluginError::MemoryExhausted(cap)) if cap == 4 << 20),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_hoarding_plugin_is_stopped_at_the_memory_cap() {
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let mut instance = plugin.instantiate(None).await.expect("instance");
    let result = instance
        .build_request(&request("grow"), "https://api.hostile.test")
        .await;
    assert!(
        matches!(result, Err(PluginError::MemoryExhausted(cap)) if cap == MEMORY_CAP),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_trapping_plugin_fails_only_its_own_call() {
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let mut trapped = plugin.instantiate(None).await.expect("instance");
    let result = trapped
        .build_request(&request("trap"), "https://api.hostile.test")
        .await;
    assert!(matches!(result, Err(PluginError::Trap(_))), "{result:?}");
    assert_eq!(
        PluginError::Trap(String::new()).code(),
        ErrorCode::PluginError
    );

    // The next execution gets a fresh instance of the same plugin and works.
    let mut fresh = plugin.instantiate(None).await.expect("instance");
    let built = fresh
        .build_request(&request("polite"), "https://api.hostile.test")
        .await
        .expect("no trap")
        .expect("a request");
    assert_eq!(built.url, "https://api.hostile.test/echo");

    // And so do the other plugins of the process.
    let (_, openai) = pods::plugins::BUILTIN[0];
    let openai = runtime.load(openai).await.expect("openai loads");
    assert_eq!(openai.manifest().id, "openai");
    openai.instantiate(None).await.expect("openai instance");
}

#[tokio::test]
async fn no_files_environment_or_clock() {
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let file = probe(&plugin, "read-file").await;
    assert!(file.starts_with("Err("), "read /etc/passwd: {file}");
    let dir = probe(&plugin, "list-dir").await;
    assert!(dir.starts_with("Err("), "list /: {dir}");
    let env = probe(&plugin, "read-env").await;
    assert!(
        env.starts_with("vars=[] home=Err(NotPresent)"),
        "env: {env}"
    );
    // Both clocks are frozen at zero: nothing can be timed from inside.
    assert_eq!(probe(&plugin, "clock").await, "Ok(0ns)");
}

#[tokio::test]
async fn no_network_from_inside_the_plugin() {
    let (addr, connections) = counting_listener().await;
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let report = probe(&plugin, &format!("connect:{addr}")).await;
    assert!(report.starts_with("Err("), "connect: {report}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_to_an_undeclared_host_is_refused_before_any_byte() {
    let (addr, connections) = counting_listener().await;
    let (other, _) = counting_listener().await;
    let runtime = runtime();
    let plugin = hostile(&runtime).await;
    let egress = Egress::new(EgressConfig::default()).expect("egress");
    for configured in [None, Some(format!("http://{other}"))] {
        let target = Target {
            base_url: configured.clone(),
            key: ApiKey::new("sk-must-not-leak"),
            workspace: None,
        };
        let result = egress
            .call(
                &plugin,
                &request(&format!("exfil:http://{addr}/steal")),
                &target,
                |_| {},
            )
            .await;
        assert!(
            matches!(&result, Err(CallError::HostNotAllowed { host }) if host == "127.0.0.1"),
            "configured {configured:?}: {result:?}"
        );
        assert_eq!(
            result.map(|_| ()).map_err(|e| e.code()),
            Err(ErrorCode::PluginError)
        );
    }
    // A declared host over plain http would expose the key: refused too.
    let target = Target {
        base_url: None,
        key: ApiKey::new("sk-must-not-leak"),
        workspace: None,
    };
    let result = egress
        .call(
            &plugin,
            &request("exfil:http://api.hostile.test/steal"),
            &target,
            |_| {},
        )
        .await;
    assert!(
        matches!(result, Err(CallError::HostNotAllowed { .. })),
        "{result:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a byte reached the undeclared host"
    );
}

#[tokio::test]
async fn what_is_not_a_provider_component_is_refused_with_a_reason() {
    let runtime = runtime();
    let err = runtime
        .load(b"definitely not wasm")
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, PluginError::Invalid(_)), "{err:?}");
    // A core module (the magic and version of a wasm module, no sections) is not a component.
    let err = runtime
        .load(&[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not a loadable plugin"), "{err}");
}

#[tokio::test]
async fn a_full_instance_pool_refuses_new_instances_until_one_is_freed() {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 2,
        cache_dir: Some(std::env::temp_dir().join("pods-test-wasm-cache")),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let plugin = hostile(&runtime).await;
    let first = plugin.instantiate(None).await.expect("first slot");
    let _second = plugin.instantiate(None).await.expect("second slot");
    let third = plugin.instantiate(None).await;
    assert!(
        matches!(third, Err(PluginError::Instantiate(_))),
        "{:?}",
        third.err()
    );
    drop(first);
    plugin
        .instantiate(None)
        .await
        .expect("a freed slot is reused");
}
