//! `kill -9` in the middle of 200 queued executions: after a restart every execution ends in
//! exactly one terminal state and is billed exactly once.

use std::time::Duration;

use pods_e2e::mock::MockProvider;
use pods_e2e::services::{QueueKind, queue_env, with_queue};
use pods_e2e::{Backend, Client, Server};
use serde_json::json;

#[tokio::test]
async fn sigkill_mid_run_loses_nothing_and_bills_once_on_sqlite() {
    sigkill_mid_run(Backend::Sqlite, QueueKind::Embedded).await;
}

#[tokio::test]
async fn sigkill_mid_run_loses_nothing_and_bills_once_on_postgres() {
    sigkill_mid_run(Backend::Postgres, QueueKind::Embedded).await;
}

#[tokio::test]
async fn sigkill_mid_run_loses_nothing_and_bills_once_on_redis() {
    sigkill_mid_run(Backend::Postgres, QueueKind::Redis).await;
}

#[tokio::test]
async fn sigkill_mid_run_loses_nothing_and_bills_once_on_sqs() {
    sigkill_mid_run(Backend::Sqlite, QueueKind::Sqs).await;
}

async fn sigkill_mid_run(backend: Backend, queue: QueueKind) {
    const TOTAL: usize = 200;
    let mock = MockProvider::start().await;
    let name = format!("crash_{backend:?}_{queue:?}").to_lowercase();
    let queue_env = queue_env(queue, &name);
    let env = with_queue(
        &queue_env,
        // Accept all 200 first (no workers), so the kill lands mid-run on every backend.
        &[("PODS_LEASE_SECS", "2"), ("PODS_WORKERS", "0")],
    );
    let server = Server::start(&name, backend, &env).await;
    let (client, ws, _) = server.user_with_workspace("crash@pods.test", false);
    let (_, pod) = client
        .openai_pod(
            &ws,
            "sk-crash",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini-delay",
        )
        .await;

    let mut ids = Vec::with_capacity(TOTAL);
    for _ in 0..TOTAL {
        ids.push(client.enqueue(&ws, json!({"podId": pod})).await);
    }
    // Workers on: let them get going (10 at a time, 100 ms each), then kill -9 mid-run.
    let server = server.restart_with(&[("PODS_WORKERS", "10")]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_kill = mock.seen().len();
    assert!(
        before_kill > 0 && before_kill < TOTAL,
        "killed mid-run: {before_kill} calls so far"
    );
    let server = server.restart_with(&[]).await;
    let client = Client::new(&server.url, &server.token("crash@pods.test"));

    let statuses = client
        .wait_until_finished(&ws, &ids, Duration::from_secs(60))
        .await;
    let completed = statuses.iter().filter(|s| *s == "COMPLETED").count();
    assert_eq!(completed, TOTAL, "every execution completed: {statuses:?}");
    let keys = client
        .get(&format!("/api/v1/workspaces/{ws}/provider-keys"))
        .await;
    assert_eq!(keys.body[0]["requests"], TOTAL, "billed exactly once each");
    let calls = mock.seen().len();
    println!(
        "{backend:?}, {queue:?} queue: {TOTAL} accepted, {completed} completed, 0 lost, 0 double-billed; {calls} provider calls ({} re-run after the kill)",
        calls - TOTAL
    );
    assert!(calls >= TOTAL);
}
