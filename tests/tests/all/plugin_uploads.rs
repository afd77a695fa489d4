//! Operators load plugins into a running server: a new version is swapped in while executions run
//! (none fails), a broken or oversize upload is refused with a reason and the old version keeps
//! serving, and a plugin can be unloaded. System admins only.

use std::time::{Duration, Instant};

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Server, hostile_variant_wasm, hostile_wasm};
use serde_json::{Value, json};

fn builtin(id: &str) -> Vec<u8> {
    pods::plugins::BUILTIN
        .iter()
        .find(|(name, _)| *name == id)
        .map(|(_, wasm)| wasm.to_vec())
        .expect("a built-in plugin")
}

fn plugin<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["plugins"].as_array()?.iter().find(|p| p["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_swap_under_load_and_bad_ones_are_refused() {
    const EXECUTIONS: usize = 200;
    let mock = MockProvider::start().await;
    // Room for the plugins (~170–190 KB), not for much more.
    let server = Server::start(
        "plugin_uploads",
        Backend::Sqlite,
        &[
            ("PODS_PLUGIN_MAX_BYTES", "250000"),
            ("PODS_WORKERS", "10"),
            mock.egress(),
        ],
    )
    .await;
    let (admin, ws, _) = server.user_with_workspace("plugins-admin@pods.test", true);
    let (member, _, _) = server.user_with_workspace("plugins-member@pods.test", false);
    let (_, pod) = admin
        .openai_pod(
            &ws,
            "sk-plugins",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini-delay",
        )
        .await;

    let list = admin.get("/api/v1/plugins").await.body;
    let openai = plugin(&list, "openai").expect("openai is loaded").clone();
    assert_eq!(openai["source"], "builtin");

    // Members may look, not load.
    let r = member
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            builtin("openai"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Refused, each with its reason: (upload, status, code, a phrase of the message).
    let mut oversize = hostile_wasm();
    oversize.resize(300_000, 0);
    let refusals = [
        (
            b"not wasm at all".to_vec(),
            400,
            "PLUGIN_INVALID",
            "component",
        ),
        (
            hostile_variant_wasm("wrong-world"),
            400,
            "PLUGIN_INVALID",
            "it exports []",
        ),
        (
            hostile_variant_wasm("wildcard-host"),
            400,
            "PLUGIN_INVALID",
            "\"*.hostile.test\" is a wildcard",
        ),
        (
            hostile_variant_wasm("trap-in-describe"),
            400,
            "PLUGIN_INVALID",
            "trapped",
        ),
        (
            hostile_variant_wasm("openai-impostor"),
            400,
            "PLUGIN_NONCONFORMANT",
            "openai conformance vectors",
        ),
        (oversize, 413, "PLUGIN_TOO_LARGE", "limit"),
    ];
    for (wasm, status, code, phrase) in refusals {
        let r = admin
            .raw("POST", "/api/v1/plugins", "application/wasm", wasm)
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{}",
            r.text
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(phrase)),
            "{phrase:?} not in {}",
            r.text
        );
    }
    let list = admin.get("/api/v1/plugins").await.body;
    assert!(plugin(&list, "hostile").is_none());
    assert_eq!(
        plugin(&list, "openai"),
        Some(&openai),
        "the old version still serves"
    );

    // A new upload of openai while 200 executions go through it: none fails.
    let mut ids = Vec::new();
    for _ in 0..EXECUTIONS {
        ids.push(admin.enqueue(&ws, json!({"podId": pod})).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            builtin("openai"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        (r.body["plugin"]["id"].as_str(), &r.body["replaced"]),
        (Some("openai"), &openai["version"])
    );
    let statuses = admin
        .wait_until_finished(&ws, &ids, Duration::from_secs(60))
        .await;
    assert!(
        statuses.iter().all(|s| s == "COMPLETED"),
        "failed across the swap: {statuses:?}"
    );
    let list = admin.get("/api/v1/plugins").await.body;
    let swapped = plugin(&list, "openai").expect("openai");
    assert_eq!(swapped["source"], "upload");
    assert_ne!(swapped["loadedAt"], openai["loadedAt"]);

    // Reloading compiles and checks it again from where it came from (here: the kept upload).
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins/openai/reload",
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["plugin"]["id"], "openai");
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins/nope/reload",
            "application/json",
            vec![],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Unloading: the uploaded versions go, the built-in serves again (it cannot be unloaded);
    // a second unload finds only the built-in.
    assert_eq!(admin.delete("/api/v1/plugins/openai").await.status, 204);
    let r = admin
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let versions: Vec<Value> = admin.get("/api/v1/plugins").await.body["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"] == "openai")
        .map(|p| p["source"].clone())
        .collect();
    assert_eq!(versions, [json!("builtin")]);
    let r = admin.delete("/api/v1/plugins/openai").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("CONFLICT"))
    );
    assert_eq!(admin.delete("/api/v1/plugins/nope").await.status, 404);
    assert_eq!(member.delete("/api/v1/plugins/gemini").await.status, 403);
}

/// The plugin folder: a file dropped in is loaded, a broken one refused, a removed one unloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_folder_loads_refuses_and_unloads() {
    let dir = pods_e2e::scratch("plugin_dir").join("plugins.d");
    std::fs::create_dir_all(&dir).expect("plugin folder");
    let server = Server::start(
        "plugin_folder",
        Backend::Sqlite,
        &[("PLUGIN_DIR", dir.to_str().expect("utf-8 path"))],
    )
    .await;
    let (admin, _, _) = server.user_with_workspace("folder-admin@pods.test", true);
    let wait_for = |want: bool| {
        let admin = admin.clone();
        async move {
            let started = Instant::now();
            loop {
                let list = admin.get("/api/v1/plugins").await.body;
                if plugin(&list, "hostile").is_some() == want {
                    return (started.elapsed(), list);
                }
                assert!(started.elapsed() < Duration::from_secs(10), "{list}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    std::fs::write(dir.join("broken.wasm"), b"not a component").expect("write");
    std::fs::write(dir.join("hostile.wasm"), hostile_wasm()).expect("write");
    let (took, list) = wait_for(true).await;
    println!("a dropped plugin served after {took:?}");
    assert_eq!(
        plugin(&list, "hostile").map(|p| p["source"].clone()),
        Some(json!("dir"))
    );
    assert_eq!(
        list["plugins"].as_array().map(Vec::len),
        Some(5),
        "the broken file loaded nothing: {list}"
    );

    std::fs::remove_file(dir.join("hostile.wasm")).expect("remove");
    wait_for(false).await;
}
