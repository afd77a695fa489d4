//! The pod store behaves the same in SQL and in DynamoDB (moto): versions, `expectedVersion`
//! conflicts (also between concurrent edits, where the stand-in is atomic), not-found, and deletes that take a flow's pods.

use pods::pod_store::{DynamoPods, PodStore};
use pods::store::{PodConfig, Store, StoreError};
use pods_e2e::{scratch, services};

async fn sql(name: &str) -> (Store, PodStore) {
    let path = scratch(&format!("podstore-{name}")).join("pods.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open SQLite");
    (store.clone(), PodStore::Sql(store))
}

async fn dynamodb(name: &str) -> (Store, PodStore) {
    let (store, _) = sql(name).await;
    let client = pods::aws::AwsSettings::local(services::moto()).dynamodb();
    let items = DynamoPods::open(client, &services::unique(name))
        .await
        .expect("make a DynamoDB table in moto");
    (store.clone(), PodStore::Dynamo { store, items })
}

fn config(name: &str) -> PodConfig {
    PodConfig {
        name: name.into(),
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        user_prompt: Some("hi".into()),
        temperature: Some(0.5),
        ..PodConfig::default()
    }
}

/// Whether the backend under test makes a conditional write atomic. DynamoDB does, but moto
/// (threaded werkzeug, no lock between a condition's check and its write) lets two concurrent
/// conditional updates of one item both succeed now and then; against moto the race below would
/// test moto, so there the two editors come one after the other.
#[derive(PartialEq)]
enum Writes {
    Atomic,
    AtomicOnlyInTheRealService,
}

async fn behaves_like_a_pod_store((store, pods): (Store, PodStore), writes: Writes) {
    let user = store
        .create_user("pods@pods.test", "P", false)
        .await
        .expect("user");
    let ws = store
        .create_workspace("w", &user.id)
        .await
        .expect("workspace")
        .id;
    let flow = store.create_flow(&ws, "f", "").await.expect("flow").id;
    let other_flow = store.create_flow(&ws, "g", "").await.expect("flow").id;

    let a = pods.create(&ws, &flow, &config("a")).await.expect("create");
    let b = pods.create(&ws, &flow, &config("b")).await.expect("create");
    let c = pods
        .create(&ws, &other_flow, &config("c"))
        .await
        .expect("create");
    assert_eq!((a.version, a.config.name.as_str()), (1, "a"));
    assert!(matches!(
        pods.create(&ws, "no-such-flow", &config("x")).await,
        Err(StoreError::NotFound)
    ));

    let got = pods.get(&ws, &a.id).await.expect("get");
    assert_eq!(
        (got.config, got.flow_id.as_str(), got.version),
        (config("a"), flow.as_str(), 1)
    );
    assert!(matches!(
        pods.get(&ws, "nope").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        pods.get("another-ws", &a.id).await,
        Err(StoreError::NotFound)
    ));
    let listed: Vec<String> = pods
        .list(&ws, &flow)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, vec![a.id.clone(), b.id.clone()]);

    // Versions: a blind update bumps it; a stale expectedVersion is refused.
    let updated = pods
        .update(&ws, &a.id, &config("a2"), None)
        .await
        .expect("update");
    assert_eq!((updated.version, updated.config.name.as_str()), (2, "a2"));
    let updated = pods
        .update(&ws, &a.id, &config("a3"), Some(2))
        .await
        .expect("update");
    assert_eq!(updated.version, 3);
    assert!(matches!(
        pods.update(&ws, &a.id, &config("lost"), Some(2)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        pods.update(&ws, "nope", &config("x"), None).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(pods.get(&ws, &a.id).await.expect("get").config.name, "a3");

    // Two editors who both read version 3: one wins, the other is told.
    let (first, second) = (config("one"), config("two"));
    let (one, two) = if writes == Writes::Atomic {
        tokio::join!(
            pods.update(&ws, &a.id, &first, Some(3)),
            pods.update(&ws, &a.id, &second, Some(3)),
        )
    } else {
        let one = pods.update(&ws, &a.id, &first, Some(3)).await;
        (one, pods.update(&ws, &a.id, &second, Some(3)).await)
    };
    let wins = [&one, &two].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{one:?} / {two:?}");
    assert!(
        [&one, &two]
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_))))
    );
    let winner = if one.is_ok() { "one" } else { "two" };
    let now = pods.get(&ws, &a.id).await.expect("get");
    assert_eq!((now.version, now.config.name.as_str()), (4, winner));

    // Deletes: one pod, then a flow with what is left of its pods.
    pods.delete(&ws, &b.id).await.expect("delete");
    assert!(matches!(
        pods.get(&ws, &b.id).await,
        Err(StoreError::NotFound)
    ));
    pods.delete_flow(&ws, &flow).await.expect("delete flow");
    assert!(matches!(
        pods.get(&ws, &a.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        pods.get(&ws, &c.id)
            .await
            .expect("the other flow's pod")
            .config
            .name,
        "c"
    );
}

#[tokio::test]
async fn sql_pod_store() {
    behaves_like_a_pod_store(sql("sql").await, Writes::Atomic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_pod_store() {
    behaves_like_a_pod_store(
        dynamodb("dynamodb").await,
        Writes::AtomicOnlyInTheRealService,
    )
    .await;
}
