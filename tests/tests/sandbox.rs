//! The sandbox holds against a hostile plugin: it cannot loop, hoard memory, crash the host, reach
//! a host it did not declare, or see files, environment, time or network.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pods::egress::{ApiKey, CallError, Egress, EgressConfig, Target};
use pods::plugins::types::{ChatRequest, Message, Role};
use pods::plugins::{Limits, Plugin, PluginError, Runtime, RuntimeConfig};
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

fn hostile(runtime: &Runtime) -> Plugin {
    runtime
        .load(&hostile_wasm())
        .expect("the hostile plugin loads")
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message {
            role: Role::User,
            content: "hi".into(),
        }],
        ..ChatRequest::default()
    }
}

/// What the hostile plugin reported about its attempt (it answers with an error carrying it).
fn probe(plugin: &Plugin, model: &str) -> String {
    let mut instance = plugin.instantiate().expect("instance");
    match instance.build_request(&request(model), "https://api.hostile.test") {
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

#[test]
fn a_looping_plugin_is_stopped_by_the_deadline() {
    let runtime = runtime();
    let plugin = hostile(&runtime);
    let mut instance = plugin.instantiate().expect("instance");
    let started = Instant::now();
    let result = instance.build_request(&request("loop"), "https://api.hostile.test");
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

#[test]
fn a_hoarding_plugin_is_stopped_at_the_memory_cap() {
    let runtime = runtime();
    let plugin = hostile(&runtime);
    let mut instance = plugin.instantiate().expect("instance");
    let result = instance.build_request(&request("grow"), "https://api.hostile.test");
    assert!(
        matches!(result, Err(PluginError::MemoryExhausted(cap)) if cap == MEMORY_CAP),
        "{result:?}"
    );
}

#[test]
fn a_trapping_plugin_fails_only_its_own_call() {
    let runtime = runtime();
    let plugin = hostile(&runtime);
    let mut trapped = plugin.instantiate().expect("instance");
    let result = trapped.build_request(&request("trap"), "https://api.hostile.test");
    assert!(matches!(result, Err(PluginError::Trap(_))), "{result:?}");
    assert_eq!(PluginError::Trap(String::new()).code(), "PLUGIN_ERROR");

    // The next execution gets a fresh instance of the same plugin and works.
    let mut fresh = plugin.instantiate().expect("instance");
    let built = fresh
        .build_request(&request("polite"), "https://api.hostile.test")
        .expect("no trap")
        .expect("a request");
    assert_eq!(built.url, "https://api.hostile.test/echo");

    // And so do the other plugins of the process.
    let (_, openai) = pods::plugins::BUILTIN[0];
    let openai = runtime.load(openai).expect("openai loads");
    assert_eq!(openai.manifest().id, "openai");
    openai.instantiate().expect("openai instance");
}

#[test]
fn no_files_environment_or_clock() {
    let runtime = runtime();
    let plugin = hostile(&runtime);
    let file = probe(&plugin, "read-file");
    assert!(file.starts_with("Err("), "read /etc/passwd: {file}");
    let dir = probe(&plugin, "list-dir");
    assert!(dir.starts_with("Err("), "list /: {dir}");
    let env = probe(&plugin, "read-env");
    assert!(
        env.starts_with("vars=[] home=Err(NotPresent)"),
        "env: {env}"
    );
    // Both clocks are frozen at zero: nothing can be timed from inside.
    assert_eq!(probe(&plugin, "clock"), "Ok(0ns)");
}

#[tokio::test]
async fn no_network_from_inside_the_plugin() {
    let (addr, connections) = counting_listener().await;
    let runtime = runtime();
    let plugin = hostile(&runtime);
    let report = probe(&plugin, &format!("connect:{addr}"));
    assert!(report.starts_with("Err("), "connect: {report}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_to_an_undeclared_host_is_refused_before_any_byte() {
    let (addr, connections) = counting_listener().await;
    let (other, _) = counting_listener().await;
    let runtime = runtime();
    let plugin = hostile(&runtime);
    let egress = Egress::new(EgressConfig::default()).expect("egress");
    for configured in [None, Some(format!("http://{other}"))] {
        let target = Target {
            base_url: configured.clone(),
            key: ApiKey::new("sk-must-not-leak"),
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
            Err("PLUGIN_ERROR")
        );
    }
    // A declared host over plain http would expose the key: refused too.
    let target = Target {
        base_url: None,
        key: ApiKey::new("sk-must-not-leak"),
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

#[test]
fn what_is_not_a_provider_component_is_refused_with_a_reason() {
    let runtime = runtime();
    let err = runtime.load(b"definitely not wasm").err().expect("refused");
    assert!(matches!(err, PluginError::Invalid(_)), "{err:?}");
    // A core module (the magic and version of a wasm module, no sections) is not a component.
    let err = runtime
        .load(&[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
        .err()
        .expect("refused");
    assert!(err.to_string().contains("not a loadable plugin"), "{err}");
}

#[test]
fn a_full_instance_pool_refuses_new_instances_until_one_is_freed() {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 2,
        cache_dir: Some(std::env::temp_dir().join("pods-test-wasm-cache")),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let plugin = hostile(&runtime);
    let first = plugin.instantiate().expect("first slot");
    let _second = plugin.instantiate().expect("second slot");
    let third = plugin.instantiate();
    assert!(
        matches!(third, Err(PluginError::Instantiate(_))),
        "{:?}",
        third.err()
    );
    drop(first);
    plugin.instantiate().expect("a freed slot is reused");
}
