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
    assert!(matches!(claim, Claim::Run(..)));
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

/// Retention deletes finished executions past their time, a batch at a time — but never a pod's
/// latest completed one (downstream pods read it), one an edge pins, or one still running — and
/// leaves the usage totals.
#[tokio::test]
async fn retention_deletes_old_finished_executions_and_keeps_what_is_still_read() {
    use pods::domain::{ErrorCode, Usage};
    use pods::store::{FinishedExecution, PodConfig};

    let (store, _, _, ws) = setup("retention").await;
    let flow = store.create_flow(&ws, "f", "").await.expect("flow").id;
    let pod = |name: &str| PodConfig {
        name: name.into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        ..PodConfig::default()
    };
    let a = store
        .create_pod(&ws, &flow, &pod("a"))
        .await
        .expect("pod")
        .id;
    let b = store
        .create_pod(&ws, &flow, &pod("b"))
        .await
        .expect("pod")
        .id;
    let run = |pod_id: &str| NewExecution {
        pod_id: pod_id.to_string(),
        flow_id: flow.clone(),
        ..execution(&ws)
    };
    let completed = FinishedExecution {
        status: ExecutionStatus::Completed,
        model_name: None,
        usage: Usage {
            prompt_tokens: Some(1),
            ..Usage::default()
        },
        cost: None,
        pricing_id: None,
        content: Some("out".into()),
        response_metadata: None,
        warnings: vec![],
        error_code: None,
        error_message: None,
        plugin_version: None,
    };
    let finish = |id: String, done: FinishedExecution| {
        let store = store.clone();
        async move {
            assert!(store.finish_execution(&id, &done).await.expect("finish"));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            id
        }
    };
    let mut a_runs = vec![];
    for _ in 0..3 {
        let id = store
            .start_execution(&run(&a), 60_000)
            .await
            .expect("start");
        a_runs.push(finish(id, completed.clone()).await);
    }
    let a_failed = store
        .start_execution(&run(&a), 60_000)
        .await
        .expect("start");
    let a_failed = finish(
        a_failed,
        FinishedExecution::failed(ErrorCode::ProviderServerError, "500".into()),
    )
    .await;
    // An edge b → c pins b's older output.
    let b_old = store
        .start_execution(&run(&b), 60_000)
        .await
        .expect("start");
    let b_old = finish(b_old, completed.clone()).await;
    let b_new = store
        .start_execution(&run(&b), 60_000)
        .await
        .expect("start");
    let b_new = finish(b_new, completed.clone()).await;
    let c = store
        .create_pod(&ws, &flow, &pod("c"))
        .await
        .expect("pod")
        .id;
    store
        .create_edge(&ws, &flow, &b, &c, Some(&b_old))
        .await
        .expect("edge");
    let podless = store
        .start_execution(&execution_without_pod(&ws), 60_000)
        .await
        .expect("start");
    let podless = finish(podless, completed.clone()).await;
    let running = store
        .start_execution(&run(&a), 60_000)
        .await
        .expect("start");

    // Everything finished so far is past a retention of zero.
    let deleted = pods::worker::forget_old(&store, std::time::Duration::ZERO)
        .await
        .expect("retention");
    let gone = |id: &str| {
        let (store, ws, id) = (store.clone(), ws.clone(), id.to_string());
        async move { store.execution(&ws, &id).await.is_err() }
    };
    assert!(
        gone(&a_runs[0]).await && gone(&a_runs[1]).await,
        "a's older outputs"
    );
    assert!(gone(&a_failed).await, "a failed execution");
    assert!(gone(&podless).await, "a call without a pod");
    assert!(!gone(&a_runs[2]).await, "a's latest output stays");
    assert!(!gone(&b_old).await, "a pinned output stays");
    assert!(!gone(&b_new).await, "b's latest output stays");
    assert!(!gone(&running).await, "a running execution stays");
    assert_eq!(deleted, 4);
    // Nothing more to do.
    assert_eq!(
        pods::worker::forget_old(&store, std::time::Duration::ZERO)
            .await
            .expect("retention"),
        0
    );
    // A day's retention keeps all of it.
    assert_eq!(
        pods::worker::forget_old(&store, std::time::Duration::from_secs(86_400))
            .await
            .expect("retention"),
        0
    );
}

fn execution_without_pod(ws: &str) -> NewExecution {
    NewExecution {
        pod_id: String::new(),
        flow_id: String::new(),
        ..execution(ws)
    }
}
