//! The real `pods` binary, driven as an operator and a plugin author would.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pods_e2e::{pods_bin, scratch};

fn pods(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(pods_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("run pods")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn plugin_check_passes_every_builtin_plugin() {
    let data = scratch("check-builtins");
    for id in ["openai", "anthropic", "gemini"] {
        let out = pods(&data, &["plugin", "check", id]);
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "{id}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("FAIL"), "{id}:\n{text}");
        let summary = text.lines().last().unwrap_or_default();
        assert!(summary.ends_with(" passed, 0 failed"), "{id}: {summary}");
    }
}

#[test]
fn plugin_check_fails_a_plugin_that_does_not_speak_the_provider_format() {
    let data = scratch("check-hostile");
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/openai/vectors");
    let out = pods(
        &data,
        &[
            "plugin",
            "check",
            env!("PODS_HOSTILE_WASM"),
            "--vectors",
            vectors,
        ],
    );
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL plain:"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap_or_default()
            .starts_with("0 passed"),
        "{text}"
    );
}

#[test]
fn plugin_inspect_prints_the_manifest() {
    let data = scratch("inspect");
    let out = pods(&data, &["plugin", "inspect", env!("PODS_HOSTILE_WASM")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON manifest");
    assert_eq!(manifest["id"], "hostile");
    assert_eq!(manifest["apiVersion"], "0.1.0");
    assert_eq!(
        manifest["allowedHosts"],
        serde_json::json!(["api.hostile.test"])
    );

    let out = pods(&data, &["plugin", "inspect", "/nonexistent.wasm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a built-in plugin"));
}

#[test]
fn serve_answers_health_and_lists_the_builtin_plugins() {
    let data = scratch("serve");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut server = Command::new(pods_bin())
        .args(["--data-dir"])
        .arg(&data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pods serve");

    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let health = loop {
        match http::blocking_get(&format!("{base}/health")) {
            Some(body) => break body,
            None if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            None => {
                let _ = server.kill();
                panic!("pods serve did not answer /health within 30 s");
            }
        }
    };
    let plugins = http::blocking_get(&format!("{base}/api/v1/plugins"));
    let _ = server.kill();
    let _ = server.wait();

    assert_eq!(health["status"], "ok");
    let plugins = plugins.expect("plugin list");
    let ids: Vec<&str> = plugins["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert_eq!(ids, ["anthropic", "gemini", "openai"]);
}

/// A tiny blocking GET for JSON, on a throwaway runtime (the test itself is synchronous).
mod http {
    pub fn blocking_get(url: &str) -> Option<serde_json::Value> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let body = reqwest::get(url).await.ok()?.bytes().await.ok()?;
            serde_json::from_slice(&body).ok()
        })
    }
}
