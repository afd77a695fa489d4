//! `async: true`: the queue and its workers — durable across restarts, retried when a retry may
//! help, cancellable, billed once. Runs on SQLite and PostgreSQL, and on each queue backend.

use std::time::{Duration, Instant};

use pods_e2e::mock::{MockProvider, OPENAI_ANSWER};
use pods_e2e::services::{QueueKind, queue_env, with_queue};
use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};

struct Setup {
    client: Client,
    ws: String,
    pod: String,
}

async fn setup(server: &Server, mock: &MockProvider, email: &str) -> Setup {
    let (client, ws, _) = server.user_with_workspace(email, false);
    let (_, pod) = client
        .openai_pod(&ws, "sk-queue", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    Setup { client, ws, pod }
}

async fn enqueue(s: &Setup, extra: Value) -> String {
    let mut body = json!({"podId": s.pod, "async": true});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let started = Instant::now();
    let r = s
        .client
        .post(&format!("/api/v1/workspaces/{}/executions", s.ws), body)
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "queued");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "202 took {:?}",
        started.elapsed()
    );
    r.body["executionId"].as_str().expect("id").to_string()
}

async fn execution(s: &Setup, id: &str) -> Value {
    s.client
        .get(&format!("/api/v1/workspaces/{}/executions/{id}", s.ws))
        .await
        .body
}

/// Polls until the execution's status is one of `statuses`.
async fn wait_for(s: &Setup, id: &str, statuses: &[&str], within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let e = execution(s, id).await;
        if statuses.iter().any(|st| e["status"] == *st) {
            return e;
        }
        assert!(
            started.elapsed() < within,
            "execution {id} stayed {} (wanted {statuses:?})",
            e["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn queued_executions_run_survive_a_restart_and_cancel_on_sqlite() {
    queued(Backend::Sqlite, QueueKind::Embedded).await;
}

#[tokio::test]
async fn queued_executions_run_survive_a_restart_and_cancel_on_postgres() {
    queued(Backend::Postgres, QueueKind::Embedded).await;
}

#[tokio::test]
async fn queued_executions_run_survive_a_restart_and_cancel_on_redis() {
    queued(Backend::Postgres, QueueKind::Redis).await;
}

#[tokio::test]
async fn queued_executions_run_survive_a_restart_and_cancel_on_sqs() {
    queued(Backend::Sqlite, QueueKind::Sqs).await;
}

async fn queued(backend: Backend, queue: QueueKind) {
    let mock = MockProvider::start().await;
    let name = format!("queue_{backend:?}_{queue:?}").to_lowercase();
    let queue_env = queue_env(queue, &name);
    // No workers at first: jobs stay queued.
    let server = Server::start(
        &name,
        backend,
        &with_queue(&queue_env, &[("PODS_WORKERS", "0"), mock.egress()]),
    )
    .await;
    let s = setup(&server, &mock, "queue@pods.test").await;
    let keep = enqueue(&s, json!({})).await;
    let drop_it = enqueue(&s, json!({})).await;
    let queued = execution(&s, &keep).await;
    assert_eq!(queued["status"], "QUEUED");
    // Where its job stands, when the backend can tell.
    let job = if queue == QueueKind::Embedded {
        json!("waiting")
    } else {
        Value::Null
    };
    assert_eq!(queued["job"], job, "{queued}");

    // Cancel a queued execution: 204, then 409 for a second try; it never runs.
    let ws = s.ws.clone();
    let url = |id: &str| format!("/api/v1/workspaces/{ws}/executions/{id}");
    assert_eq!(s.client.delete(&url(&drop_it)).await.status, 204);
    assert_eq!(execution(&s, &drop_it).await["status"], "CANCELLED");
    let again = s.client.delete(&url(&drop_it)).await;
    assert_eq!(
        (again.status, again.body["error"]["code"].as_str()),
        (409, Some("ALREADY_FINISHED"))
    );
    assert_eq!(s.client.delete(&url("no-such-execution")).await.status, 404);

    // Restart with workers: the queued one runs (the queue is durable), the cancelled one does not.
    let server = server.restart_with(&[("PODS_WORKERS", "4")]).await;
    let s = Setup {
        client: Client::new(&server.url, &server.token("queue@pods.test")),
        ..s
    };
    let done = wait_for(&s, &keep, &["COMPLETED"], Duration::from_secs(20)).await;
    assert_eq!(done["content"], OPENAI_ANSWER);
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["costInUsd"], "0.0000096");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(execution(&s, &drop_it).await["status"], "CANCELLED");
    assert_eq!(
        mock.seen().len(),
        1,
        "only the kept execution reached the provider"
    );

    // A running execution is aborted by cancel, and its late result is never saved.
    let slow = enqueue(&s, json!({"model": "gpt-4o-mini-slow"})).await;
    wait_for(&s, &slow, &["RUNNING"], Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.client.delete(&url(&slow)).await.status, 204);
    let cancelled = execution(&s, &slow).await;
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["costInUsd"], Value::Null);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(execution(&s, &slow).await["status"], "CANCELLED");
    let keys = s
        .client
        .get(&format!("/api/v1/workspaces/{}/provider-keys", s.ws))
        .await;
    assert_eq!(
        keys.body[0]["requests"], 1,
        "the cancelled execution is not billed"
    );
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_and_billed_once() {
    retries(QueueKind::Embedded).await;
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_and_billed_once_on_redis() {
    retries(QueueKind::Redis).await;
}

#[tokio::test]
async fn retryable_failures_are_retried_with_backoff_and_billed_once_on_sqs() {
    retries(QueueKind::Sqs).await;
}

#[tokio::test]
async fn retries_wait_the_documented_backoff() {
    backoff(QueueKind::Embedded).await;
}

#[tokio::test]
async fn retries_wait_the_documented_backoff_on_redis() {
    backoff(QueueKind::Redis).await;
}

#[tokio::test]
async fn retries_wait_the_documented_backoff_on_sqs() {
    backoff(QueueKind::Sqs).await;
}

/// With the default base (2 s): the gaps between attempts are 2 s then 4 s, each ±25 %, on every
/// backend (to its granularity: SQS hides a message for whole seconds), plus a little scheduling.
async fn backoff(queue: QueueKind) {
    let mock = MockProvider::start().await;
    let name = format!("queue_backoff_{queue:?}").to_lowercase();
    let queue_env = queue_env(queue, &name);
    let server = Server::start(
        &name,
        Backend::Sqlite,
        &with_queue(&queue_env, &[mock.egress()]),
    )
    .await;
    let s = setup(&server, &mock, "backoff@pods.test").await;
    // Four executions, so a schedule rounded to whole seconds shows (it would take the jitter
    // above the nominal delay to the next second).
    let mut ids = vec![];
    for i in 0..4 {
        ids.push(
            enqueue(
                &s,
                json!({"model": format!("gpt-4o-mini-{i}-server-error")}),
            )
            .await,
        );
    }
    for id in &ids {
        let failed = wait_for(&s, id, &["ERROR", "COMPLETED"], Duration::from_secs(30)).await;
        assert_eq!(failed["attempts"], 3, "{failed}");
    }
    let seen = mock.seen();
    for i in 0..4 {
        let model = format!("gpt-4o-mini-{i}-server-error");
        let times: Vec<Instant> = seen
            .iter()
            .filter(|r| r.body["model"] == model)
            .map(|r| r.at)
            .collect();
        assert_eq!(times.len(), 3);
        let gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        // Whole seconds on SQS: a delay is rounded to the nearest second there.
        let grain = if queue == QueueKind::Sqs { 0.5 } else { 0.0 };
        for (gap, nominal) in gaps.iter().zip([2.0, 4.0]) {
            let (low, high) = (nominal * 0.75 - grain, nominal * 1.25 + grain + 0.4);
            assert!(
                (low..=high).contains(gap),
                "{queue:?}: gaps {gaps:?}, {gap} not in {low}..{high}"
            );
        }
    }
}

async fn retries(queue: QueueKind) {
    let mock = MockProvider::start().await;
    let name = format!("queue_retry_{queue:?}").to_lowercase();
    let queue_env = queue_env(queue, &name);
    let server = Server::start(
        &name,
        Backend::Sqlite,
        &with_queue(&queue_env, &[("PODS_RETRY_BASE_MS", "100"), mock.egress()]),
    )
    .await;
    let s = setup(&server, &mock, "retry@pods.test").await;

    // 429 (retry-after 1 s), then 500, then success.
    let started = Instant::now();
    let flaky = enqueue(&s, json!({"model": "gpt-4o-mini-flaky"})).await;
    let done = wait_for(&s, &flaky, &["COMPLETED", "ERROR"], Duration::from_secs(20)).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["attempts"], 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after was honoured"
    );
    assert_eq!(
        mock.seen()
            .iter()
            .filter(|r| r.body["model"] == "gpt-4o-mini-flaky")
            .count(),
        3
    );
    let keys = s
        .client
        .get(&format!("/api/v1/workspaces/{}/provider-keys", s.ws))
        .await;
    assert_eq!(keys.body[0]["requests"], 1, "billed once");

    // A 400 is not retried.
    let bad = enqueue(&s, json!({"model": "gpt-4o-mini-bad-request"})).await;
    let failed = wait_for(&s, &bad, &["ERROR", "COMPLETED"], Duration::from_secs(10)).await;
    assert_eq!(failed["status"], "ERROR");
    assert_eq!(failed["errorCode"], "PROVIDER_INVALID_REQUEST");
    assert_eq!(failed["attempts"], 1);

    // A rate limit that never clears ends as ERROR after the last attempt.
    let limited = enqueue(&s, json!({"model": "gpt-4o-mini-rate-limited"})).await;
    let failed = wait_for(
        &s,
        &limited,
        &["ERROR", "COMPLETED"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(failed["errorCode"], "PROVIDER_RATE_LIMITED");
    assert_eq!(failed["attempts"], 3);
}

#[tokio::test]
async fn api_and_worker_nodes_split_the_work_and_admins_see_queue_metrics() {
    let mock = MockProvider::start().await;
    let api = Server::start(
        "queue_roles",
        Backend::Postgres,
        &[("PODS_ROLE", "api"), mock.egress()],
    )
    .await;
    let s = setup(&api, &mock, "roles@pods.test").await;
    let id = enqueue(&s, json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        execution(&s, &id).await["status"],
        "QUEUED",
        "an API node runs no workers"
    );

    let (admin, _, _) = api.user_with_workspace("metrics-admin@pods.test", true);
    let metrics = admin.get("/api/v1/queue/metrics").await;
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    assert_eq!(
        (
            metrics.body["backend"].as_str(),
            metrics.body["waiting"].as_i64()
        ),
        (Some("embedded"), Some(1))
    );
    assert_eq!(
        s.client.get("/api/v1/queue/metrics").await.status,
        403,
        "members are not admins"
    );

    // A worker node on the same database picks the job up.
    let worker = api.another(&[("PODS_ROLE", "worker")]).await;
    let done = wait_for(&s, &id, &["COMPLETED"], Duration::from_secs(20)).await;
    assert_eq!(done["content"], OPENAI_ANSWER);
    let worker_admin = Client::new(&worker.url, &worker.token("metrics-admin@pods.test"));
    let text = worker_admin.get("/metrics").await.text;
    assert!(
        text.contains(r#"pods_executions_total{provider="openai",model="gpt-4o-mini",mode="async",outcome="completed",code=""} 1"#),
        "{text}"
    );
    assert!(
        text.contains("pods_queue_jobs{state=\"waiting\"} 0"),
        "{text}"
    );
    assert_eq!(
        worker_admin.get("/api/v1/workspaces").await.status,
        404,
        "a worker node serves no API"
    );
}

// Multi-threaded: the test blocks in `terminate` while its own mock provider must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_executions_finish() {
    let mock = MockProvider::start().await;
    let mut server = Server::start("queue_shutdown", Backend::Sqlite, &[mock.egress()]).await;
    let s = setup(&server, &mock, "shutdown@pods.test").await;
    let slow = enqueue(&s, json!({"model": "gpt-4o-mini-slow"})).await;
    wait_for(&s, &slow, &["RUNNING"], Duration::from_secs(10)).await;
    // SIGTERM while the 5 s call runs: the process waits for it, saves it, then exits.
    let took = server.terminate();
    assert!(
        took >= Duration::from_secs(3),
        "exited after {took:?}, before the call finished"
    );
    assert!(
        took < Duration::from_secs(20),
        "waited {took:?}: the call should have finished in ~5 s"
    );
    let server = server.restart_with(&[("PODS_WORKERS", "0")]).await;
    let s = Setup {
        client: Client::new(&server.url, &server.token("shutdown@pods.test")),
        ..s
    };
    let done = execution(&s, &slow).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(mock.seen().len(), 1);
}
