//! The sweeper: an execution whose job was lost is queued again, once; one that used all its
//! attempts is ended as ATTEMPTS_EXHAUSTED.

use pods::domain::ExecutionStatus;
use pods::events::Hub;
use pods::ledger::Ledger;
use pods::queue::{Embedded, Queue};
use pods::store::{Claim, NewExecution, Store};
use pods::worker::{WorkerConfig, sweep_once};
use pods_e2e::scratch;

/// A store with a workspace, its ledger and its embedded queue.
async fn setup(name: &str) -> (Store, Ledger, Embedded, String) {
    let path = scratch(name).join("pods.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("store");
    let user = store
        .create_user("sweep@pods.test", "S", false)
        .await
        .expect("user");
    let ws = store
        .create_workspace("w", &user.id)
        .await
        .expect("workspace")
        .id;
    let ledger = Ledger::new(store.clone(), Hub::default());
    (store.clone(), ledger, Embedded::new(store), ws)
}

fn execution(ws: &str) -> NewExecution {
    NewExecution {
        workspace_id: ws.into(),
        pod_id: "p".into(),
        provider: "openai".into(),
        model_id: "gpt-4o-mini".into(),
        ..NewExecution::default()
    }
}

#[tokio::test]
async fn a_lost_job_is_queued_again_once_and_an_exhausted_execution_ends() {
    let (store, ledger, queue, ws) = setup("sweeper").await;
    let config = WorkerConfig::default();

    // Recorded, but its job never reached the queue, and its deadline has passed.
    let lost = store
        .insert_queued_execution(&execution(&ws), -1)
        .await
        .expect("insert");
    assert_eq!(
        sweep_once(&ledger, &queue, &config).await.expect("sweep"),
        1
    );
    let metrics = queue.metrics().await.expect("metrics");
    assert_eq!(metrics.waiting, 1, "the job is back: {metrics:?}");
    assert_eq!(
        sweep_once(&ledger, &queue, &config).await.expect("sweep"),
        0,
        "queued once, with a new deadline"
    );
    assert_eq!(
        store.execution(&ws, &lost).await.expect("row").status,
        ExecutionStatus::Queued
    );

    // Running under a lease that ran out, with every attempt used: ended, not queued again.
    let exhausted = store
        .insert_queued_execution(&execution(&ws), 60_000)
        .await
        .expect("insert");
    let claim = store
        .claim_execution(&exhausted, "a-dead-worker", -1)
        .await
        .expect("claim");
    assert!(matches!(claim, Claim::Run(_)));
    let one_attempt = WorkerConfig {
        max_attempts: 1,
        ..WorkerConfig::default()
    };
    assert_eq!(
        sweep_once(&ledger, &queue, &one_attempt)
            .await
            .expect("sweep"),
        1
    );
    let ended = store.execution(&ws, &exhausted).await.expect("row");
    assert_eq!(ended.status, ExecutionStatus::Error);
    assert_eq!(ended.error_code.as_deref(), Some("ATTEMPTS_EXHAUSTED"));
}

/// A synchronous execution whose node died mid-call (its lease ran out, nobody renewed it) is
/// ended as `INTERRUPTED` — never run again, since no caller waits for it — and one still
/// renewed is left alone.
#[tokio::test]
async fn an_interrupted_synchronous_execution_is_ended_not_rerun() {
    let (store, ledger, queue, ws) = setup("sweeper_sync").await;
    let config = WorkerConfig::default();
    let orphan = store
        .start_execution(&execution(&ws), -1)
        .await
        .expect("insert");
    let alive = store
        .start_execution(&execution(&ws), 60_000)
        .await
        .expect("insert");
    assert_eq!(
        sweep_once(&ledger, &queue, &config).await.expect("sweep"),
        1
    );
    let ended = store.execution(&ws, &orphan).await.expect("row");
    assert_eq!(ended.status, ExecutionStatus::Error);
    assert_eq!(ended.error_code.as_deref(), Some("INTERRUPTED"));
    assert_eq!(queue.metrics().await.expect("metrics").waiting, 0);
    assert_eq!(
        store.execution(&ws, &alive).await.expect("row").status,
        ExecutionStatus::Running
    );
}
