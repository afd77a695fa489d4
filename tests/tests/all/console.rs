//! The web console in a real browser: Debian's chromium driven by playwright-core
//! (`console/tests/scenarios.mjs`) against a running server whose OpenAI provider points at the
//! local stand-in. Screenshots of each scenario go to the test's scratch folder. Also: the
//! console's pages carry the Content-Security-Policy, and the API's unknown paths stay JSON.

use std::path::Path;
use std::process::Command;

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Client, Server, scratch};
use serde_json::{Value, json};

fn user_with_password(server: &Server, email: &str, password: &str, extra: &[&str]) -> Value {
    let mut args = vec!["admin", "create-user", "--email", email, "--password-stdin"];
    args.extend_from_slice(extra);
    let out = server.cli_stdin(&args, &format!("{password}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_its_pages_under_a_strict_policy_and_leaves_the_api_alone() {
    let server = Server::start("console_routes", Backend::Sqlite, &[]).await;
    let anonymous = Client::new(&server.url, "");
    for page in ["/", "/w/some-workspace/f/some-flow"] {
        let r = anonymous.get(page).await;
        assert_eq!(r.status, 200, "{page}");
        assert!(r.text.contains("<div id=\"app\">"), "{page}");
        let policy = r.headers["content-security-policy"]
            .to_str()
            .expect("policy");
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(!r.text.contains("<script>"), "no inline script");
    }
    for path in ["/api/v1/no-such-thing", "/v1/no-such-thing", "/api"] {
        let r = anonymous.get(path).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{path}"
        );
    }
    assert_eq!(anonymous.get("/health").await.body["status"], "ok");
    let script = anonymous.get("/assets/app.js").await;
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let mock = MockProvider::start().await;
    let server = Server::start("console_browser", Backend::Sqlite, &[mock.egress()]).await;
    let admin = user_with_password(
        &server,
        "admin@console.test",
        "admin passphrase",
        &["--admin", "--workspace", "Console demo"],
    );
    let ws = admin["workspaceId"].as_str().expect("workspace");
    user_with_password(&server, "viewer@console.test", "viewer passphrase", &[]);
    user_with_password(&server, "limited@console.test", "limited passphrase", &[]);
    let out = server.cli(&[
        "admin",
        "add-member",
        "--workspace",
        ws,
        "--user",
        "viewer@console.test",
        "--role",
        "viewer",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner = Client::new(&server.url, admin["token"].as_str().expect("token"));
    let key = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
            json!({"apiKey": "sk-console-key-123456", "baseUrl": mock.url}),
        )
        .await;
    assert_eq!(key.status, 204, "{}", key.text);

    let shots = scratch("console-screenshots");
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console");
    let out = Command::new("node")
        .arg(console.join("tests/scenarios.mjs"))
        .current_dir(&console)
        .env("PODS_URL", &server.url)
        .env("PODS_SHOTS", &shots)
        .env("CHROMIUM", "/usr/bin/chromium")
        .env("WS_NAME", "Console demo")
        .env("ADMIN_EMAIL", "admin@console.test")
        .env("ADMIN_PASSWORD", "admin passphrase")
        .env("VIEWER_EMAIL", "viewer@console.test")
        .env("VIEWER_PASSWORD", "viewer passphrase")
        .env("LIMITED_EMAIL", "limited@console.test")
        .env("PLUGIN_FILE", env!("PODS_HOSTILE_WASM"))
        .output()
        .expect(
            "node runs (tests/services.sh installs Node.js, chromium and console/node_modules)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\nscreenshots: {}", shots.display());
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shot in ["02-sign-in", "04-run-and-stream", "06-spend"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }
}
