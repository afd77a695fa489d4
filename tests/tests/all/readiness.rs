//! `/ready`: 200 while every backend answers; 503 naming the one that does not — here a Redis
//! of the test's own, stopped under a running server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pods_e2e::{Backend, Server};

#[tokio::test]
async fn ready_names_the_backend_that_does_not_answer() {
    let embedded = Server::start("ready_embedded", Backend::Sqlite, &[]).await;
    let ready = reqwest::get(format!("{}/ready", embedded.url))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&ready.bytes().await.expect("body")).expect("json");
    assert_eq!(body["ready"], true, "{body}");
    for check in ["store", "queue", "events", "plugins"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }

    // A Redis of this test's own, for the queue.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("redis://127.0.0.1:{port}");
    let server = Server::start(
        "ready_redis",
        Backend::Sqlite,
        &[("QUEUE_BACKEND", "redis"), ("REDIS_URL", &url)],
    )
    .await;
    let ready = reqwest::get(format!("{}/ready", server.url))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);

    let _ = redis.kill();
    let _ = redis.wait();
    let ready = reqwest::get(format!("{}/ready", server.url))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value =
        serde_json::from_slice(&ready.bytes().await.expect("body")).expect("json");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["checks"]["queue"], "unreachable", "{body}");
    assert_eq!(body["checks"]["store"], "ok", "{body}");
    assert!(
        body["failing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|n| n == "queue")),
        "{body}"
    );
    // /health is about the process, and stays up.
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}
