//! Executions cache their workspace's configuration; it must never run on configuration that
//! changed. On SQLite and PostgreSQL: every kind of configuration write bumps the workspace's
//! version (cascades too) and nothing else does; an insert stamped with an old version writes
//! nothing; and a node whose cache is warm sees another node's changes on its very next call.

use pods::domain::Role;
use pods::pod_store::PodStore;
use pods::store::{NewExecution, PodConfig, Store, StoreError, StoredKey};
use pods_e2e::mock::{MockProvider, OPENAI_ANSWER};
use pods_e2e::{Backend, Server, fresh_postgres_database, scratch};
use serde_json::json;
use std::time::Duration;

async fn store(name: &str, backend: Backend) -> Store {
    let url = match backend {
        Backend::Sqlite => format!(
            "sqlite://{}",
            scratch(&format!("config-{name}")).join("pods.db").display()
        ),
        Backend::Postgres => fresh_postgres_database(&format!("config_{name}")).await,
    };
    Store::connect(&url).await.expect("open the store")
}

fn key(ws: &str, id: &str) -> StoredKey {
    StoredKey {
        id: id.into(),
        workspace_id: ws.into(),
        provider: "openai".into(),
        ciphertext: "c".into(),
        nonce: "n".into(),
        master_key_id: "k1".into(),
        hint: "…abcd".into(),
        base_url: None,
        updated_at: 0,
    }
}

fn execution(ws: &str, version: Option<i64>) -> NewExecution {
    NewExecution {
        workspace_id: ws.into(),
        pod_id: "p".into(),
        provider: "openai".into(),
        model_id: "gpt-4o-mini".into(),
        config_version: version,
        ..NewExecution::default()
    }
}

async fn versions_follow_configuration_writes(backend: Backend) {
    let name = format!("{backend:?}").to_lowercase();
    let store = store(&name, backend).await;
    let pods = PodStore::Sql(store.clone());
    let owner = store
        .create_user("o@pods.test", "O", false)
        .await
        .expect("user");
    let other = store
        .create_user("m@pods.test", "M", false)
        .await
        .expect("user");
    let ws = store.create_workspace("w", &owner.id).await.expect("ws").id;
    let bystander = store.create_workspace("b", &other.id).await.expect("ws").id;
    let version = || async { store.config_version(&ws).await.expect("version") };
    let mut last = version().await.expect("the workspace has a version");

    // Each step must move the version on.
    let mut moved = async |what: &str| {
        let now = version().await.expect("version");
        assert!(
            now > last,
            "{what} did not bump the version ({last} → {now})"
        );
        last = now;
    };
    store
        .set_member(&ws, &other.id, Role::Member)
        .await
        .expect("add");
    moved("adding a member").await;
    store
        .set_member(&ws, &other.id, Role::Viewer)
        .await
        .expect("role");
    moved("changing a role").await;
    let flow = store.create_flow(&ws, "f", "").await.expect("flow").id;
    let config = PodConfig {
        name: "a".into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        ..PodConfig::default()
    };
    let a = pods.create(&ws, &flow, &config).await.expect("pod");
    moved("creating a pod").await;
    let b = pods.create(&ws, &flow, &config).await.expect("pod");
    moved("creating a pod").await;
    let edited = PodConfig {
        user_prompt: Some("new".into()),
        ..config.clone()
    };
    pods.update(&ws, &a.id, &edited, None).await.expect("edit");
    moved("editing a pod").await;
    let edge = store
        .create_edge(&ws, &flow, &a.id, &b.id, None)
        .await
        .expect("edge");
    moved("adding an edge").await;
    store.delete_edge(&ws, &edge.id).await.expect("edge gone");
    moved("deleting an edge").await;
    store.put_key(&key(&ws, "key-1")).await.expect("key");
    moved("storing a key").await;
    store.put_key(&key(&ws, "key-1")).await.expect("key again");
    moved("replacing a key").await;
    store.delete_key(&ws, "openai").await.expect("key gone");
    moved("deleting a key").await;
    pods.delete(&ws, &b.id).await.expect("pod gone");
    moved("deleting a pod").await;
    store
        .create_edge(&ws, &flow, &a.id, &a.id, None)
        .await
        .expect("edge");
    moved("adding an edge").await;
    store.delete_flow(&ws, &flow).await.expect("flow gone");
    moved("deleting a flow (its pods and edges cascade)").await;

    // Executions, and other workspaces' changes, leave it alone.
    let stamped = store
        .start_execution(&execution(&ws, Some(last)), 60_000)
        .await
        .expect("an insert at the current version is written");
    store
        .set_member(&bystander, &owner.id, Role::Member)
        .await
        .expect("elsewhere");
    assert_eq!(
        version().await,
        Some(last),
        "executions or other workspaces bumped it"
    );

    // A stale stamp writes nothing.
    store
        .set_member(&ws, &other.id, Role::Member)
        .await
        .expect("role");
    let before = store.execution(&ws, &stamped).await.expect("row");
    assert_eq!(before.pod_id, "p");
    for queued in [false, true] {
        let stale = execution(&ws, Some(last));
        let written = if queued {
            store.insert_queued_execution(&stale, 60_000).await
        } else {
            store.start_execution(&stale, 60_000).await
        };
        assert!(
            matches!(written, Err(StoreError::ConfigChanged)),
            "{written:?}"
        );
    }
    let history = store.pod_executions(&ws, "p", 10).await.expect("history");
    assert_eq!(history.len(), 1, "a stale insert left a row");
    assert!(matches!(
        store
            .start_execution(&execution("no-such-workspace", Some(0)), 60_000)
            .await,
        Err(StoreError::ConfigChanged)
    ));
}

#[tokio::test]
async fn versions_follow_configuration_writes_on_sqlite() {
    versions_follow_configuration_writes(Backend::Sqlite).await;
}

#[tokio::test]
async fn versions_follow_configuration_writes_on_postgres() {
    versions_follow_configuration_writes(Backend::Postgres).await;
}

/// Node A runs a pod (its cache is now warm); node B changes the configuration; A's next call
/// must see each change.
async fn another_nodes_changes_are_seen_at_once(backend: Backend) {
    let name = format!("config_nodes_{}", format!("{backend:?}").to_lowercase());
    let mock = MockProvider::start().await;
    let a = Server::start(&name, backend, &[mock.egress()]).await;
    let b = a.another(&[]).await;
    let (owner_a, ws, _) = a.user_with_workspace("owner@pods.test", false);
    let owner_b = owner_a.with_base(&b.url);
    let (_, _, member_id) = a.user_with_workspace("member@pods.test", false);
    let member_a = owner_a.with_token(&a.token("member@pods.test"));
    let (_, pod) = owner_a
        .openai_pod(&ws, "sk-first", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let set_role = async |role: &str| {
        let r = owner_b
            .put(
                &format!("/api/v1/workspaces/{ws}/members/{member_id}"),
                json!({"role": role}),
            )
            .await;
        assert!(r.status < 300, "{}", r.text);
    };
    set_role("member").await;
    let run = async || {
        member_a
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": pod}),
            )
            .await
    };
    let first = run().await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["content"], OPENAI_ANSWER);

    // The pod's prompt.
    let edited = owner_b
        .patch(
            &format!("/api/v1/workspaces/{ws}/pods/{pod}"),
            json!({"userPrompt": "changed on node B"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(run().await.status, 200);
    let seen = mock.last("/chat/completions");
    assert_eq!(seen.body["messages"][0]["content"], "changed on node B");

    // The key.
    let replaced = owner_b
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
            json!({"apiKey": "sk-second", "baseUrl": format!("{}/v1", mock.url)}),
        )
        .await;
    assert_eq!(replaced.status, 204, "{}", replaced.text);
    assert_eq!(run().await.status, 200);
    let seen = mock.last("/chat/completions");
    assert_eq!(seen.headers["authorization"], "Bearer sk-second");

    // The member's role: a viewer may not run pods.
    set_role("viewer").await;
    let refused = run().await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    set_role("member").await;
    assert_eq!(run().await.status, 200);

    // The key, gone.
    let deleted = owner_b
        .delete(&format!("/api/v1/workspaces/{ws}/provider-keys/openai"))
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let refused = run().await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["code"], "MISSING_PROVIDER_KEY");

    // Nothing was recorded for the refused calls: four ran.
    let history = owner_a
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/pod/{pod}?limit=100"
        ))
        .await;
    assert_eq!(
        history.body.as_array().map(Vec::len),
        Some(4),
        "{}",
        history.text
    );
}

#[tokio::test]
async fn another_nodes_changes_are_seen_at_once_on_sqlite() {
    another_nodes_changes_are_seen_at_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn another_nodes_changes_are_seen_at_once_on_postgres() {
    another_nodes_changes_are_seen_at_once(Backend::Postgres).await;
}

/// A queued execution runs on the configuration as it is when a worker takes it, not as the
/// worker's warm cache had it: the worker trusts its cache only at the version its claim read.
/// Node A runs the only worker; node B (no workers) edits the pod while its execution waits.
async fn a_worker_runs_on_configuration_changed_while_queued(backend: Backend) {
    let name = format!("config_queued_{}", format!("{backend:?}").to_lowercase());
    let mock = MockProvider::start().await;
    let a = Server::start(
        &name,
        backend,
        &[
            mock.egress(),
            ("PODS_WORKERS", "1"),
            ("PODS_WORKERS_MAX", "1"),
        ],
    )
    .await;
    let b = a.another(&[("PODS_WORKERS", "0")]).await;
    let (owner_a, ws, _) = a.user_with_workspace("owner@pods.test", false);
    let owner_b = owner_a.with_base(&b.url);
    let base = format!("{}/v1", mock.url);
    let (_, busy) = owner_a
        .openai_pod(&ws, "sk", &base, "gpt-4o-mini-half")
        .await;
    let (_, pod) = owner_a.openai_pod(&ws, "sk", &base, "gpt-4o-mini").await;
    let enqueue = async |pod: &str| {
        let r = owner_a
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": pod, "async": true}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.body["executionId"].as_str().expect("id").to_string()
    };
    // The worker's cache is warm with the pod as it is.
    let warm = enqueue(&pod).await;
    owner_a
        .wait_until_finished(&ws, &[warm], Duration::from_secs(20))
        .await;
    assert_eq!(
        mock.last("/chat/completions").body["messages"][0]["content"],
        "hi"
    );

    // The only worker is busy for 500 ms; the execution waits behind it while B edits the pod.
    let blocker = enqueue(&busy).await;
    let queued = enqueue(&pod).await;
    let edited = owner_b
        .patch(
            &format!("/api/v1/workspaces/{ws}/pods/{pod}"),
            json!({"userPrompt": "changed while queued"}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    let statuses = owner_a
        .wait_until_finished(&ws, &[blocker, queued], Duration::from_secs(20))
        .await;
    assert_eq!(statuses, ["COMPLETED", "COMPLETED"]);
    let seen = mock.last("/chat/completions");
    assert_eq!(seen.body["model"], "gpt-4o-mini");
    assert_eq!(seen.body["messages"][0]["content"], "changed while queued");
}

#[tokio::test]
async fn a_worker_runs_on_configuration_changed_while_queued_on_sqlite() {
    a_worker_runs_on_configuration_changed_while_queued(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_worker_runs_on_configuration_changed_while_queued_on_postgres() {
    a_worker_runs_on_configuration_changed_while_queued(Backend::Postgres).await;
}
