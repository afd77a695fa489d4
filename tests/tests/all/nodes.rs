//! More than one node: two `pods` processes on one PostgreSQL and one Redis. Node A serves the
//! API and runs no workers; node B runs them. A client of A sees, in order, every event of the
//! executions B runs; a cancel sent to A aborts the call running on B; and jobs lost from Redis
//! are queued again by the sweeper.

use std::time::{Duration, Instant};

use pods_e2e::mock::{GEMINI_CHUNKS, MockProvider, OPENAI_ANSWER};
use pods_e2e::services::{QueueKind, queue_env, with_queue};
use pods_e2e::ws::{connect, events_until};
use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};

async fn status_of(client: &Client, ws: &str, id: &str) -> Value {
    client
        .get(&format!("/api/v1/workspaces/{ws}/executions/{id}"))
        .await
        .body
}

async fn wait_for(client: &Client, ws: &str, id: &str, status: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let e = status_of(client, ws, id).await;
        if e["status"] == status {
            return e;
        }
        assert!(
            started.elapsed() < within,
            "{id} stayed {} (wanted {status})",
            e["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_events_cancels_and_lost_jobs() {
    let mock = MockProvider::start().await;
    let queue = queue_env(QueueKind::Redis, "nodes");
    let prefix = queue
        .iter()
        .find(|(k, _)| *k == "PODS_REDIS_PREFIX")
        .map(|(_, v)| v.clone())
        .expect("a prefix");
    let env = with_queue(
        &queue,
        &[
            ("PODS_WORKERS", "0"),
            ("PODS_LEASE_SECS", "2"),
            mock.egress(),
        ],
    );
    let node_a = Server::start("nodes", Backend::Postgres, &env).await;
    let (client, ws, _) = node_a.user_with_workspace("nodes@pods.test", false);
    let (flow, pod) = client
        .openai_pod(&ws, "sk-nodes", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let r = client
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/gemini"),
            json!({"apiKey": "sk-gem", "baseUrl": mock.url}),
        )
        .await;
    assert_eq!(r.status, 204);
    let gem = client
        .post(
            &format!("/api/v1/workspaces/{ws}/flows/{flow}/pods"),
            json!({"name": "g", "provider": "gemini", "model": "gemini-2.5-flash", "userPrompt": "hi"}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("pod")
        .to_string();
    let enqueue = |body: Value| client.enqueue(&ws, body);

    // Jobs lost from Redis (as by a FLUSHALL) before any worker saw them.
    let lost = [
        enqueue(json!({"podId": pod, "async": true})).await,
        enqueue(json!({"podId": pod, "async": true})).await,
    ];
    let deleted = std::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "6379",
            "DEL",
            &format!("{prefix}:jobs"),
        ])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&deleted.stdout).trim(), "1");

    // Node B: workers only. Its sweeper queues the lost executions again and they run.
    let node_b = node_a
        .another(&[("PODS_WORKERS", "4"), ("PODS_ROLE", "worker")])
        .await;
    for id in &lost {
        let done = wait_for(&client, &ws, id, "COMPLETED", Duration::from_secs(20)).await;
        assert_eq!(done["content"], OPENAI_ANSWER);
    }

    // A client of node A sees every event of a streamed execution node B runs, in order.
    let token = node_a.token("nodes@pods.test");
    let mut socket = connect(
        &node_a,
        &format!("/api/v1/workspaces/{ws}/flows/{flow}/ws?token={token}"),
    )
    .await
    .expect("member connects");
    let id = enqueue(json!({"podId": gem, "async": true, "stream": true})).await;
    let events = events_until(&mut socket, &id, "execution:completed").await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let deltas = GEMINI_CHUNKS.len();
    let mut expected = vec!["execution:queued", "execution:running"];
    expected.extend(std::iter::repeat_n("execution:delta", deltas));
    expected.push("execution:completed");
    assert_eq!(kinds, expected);
    let text: String = events.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(text, GEMINI_CHUNKS.concat());
    assert_eq!(
        events.last().map(|e| e["result"]["content"].clone()),
        Some(json!(GEMINI_CHUNKS.concat()))
    );

    // Cancel through node A while node B runs a 5 s call: B aborts it at once, so its job is
    // settled long before the call would have ended, and nothing is saved or billed.
    let slow = enqueue(json!({"podId": pod, "async": true, "model": "gpt-4o-mini-slow"})).await;
    wait_for(&client, &ws, &slow, "RUNNING", Duration::from_secs(10)).await;
    let cancelled_at = Instant::now();
    let r = client
        .delete(&format!("/api/v1/workspaces/{ws}/executions/{slow}"))
        .await;
    assert_eq!(r.status, 204);
    let events = events_until(&mut socket, &slow, "execution:cancelled").await;
    assert_eq!(
        events.last().map(|e| e["status"].clone()),
        Some(json!("CANCELLED"))
    );
    let (admin, _, _) = node_a.user_with_workspace("nodes-admin@pods.test", true);
    loop {
        let metrics = admin.get("/api/v1/queue/metrics").await.body;
        assert_eq!(metrics["backend"], "redis");
        if metrics["active"] == 0 {
            break;
        }
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(3),
            "node B kept running the cancelled call: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = status_of(&client, &ws, &slow).await;
    assert_eq!(after["status"], "CANCELLED");
    assert_eq!(after["costInUsd"], Value::Null);
    let keys = client
        .get(&format!("/api/v1/workspaces/{ws}/provider-keys"))
        .await;
    let openai = keys
        .body
        .as_array()
        .and_then(|k| k.iter().find(|k| k["provider"] == "openai"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        openai["requests"], 2,
        "the two recovered executions, not the cancelled one"
    );
    drop(node_b);
}

/// Reads every event from `socket` until each of `ids` has had a `last` event (or none came for
/// 30 s); returns the types each execution's events came in.
async fn kinds_until_all(
    socket: &mut pods_e2e::ws::Socket,
    ids: &std::collections::HashSet<String>,
    last: &str,
) -> std::collections::HashMap<String, Vec<String>> {
    use futures_util::StreamExt;
    let mut kinds: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut finished = 0;
    while finished < ids.len() {
        // No event for a long while: report what arrived (the assertions say what is missing).
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(30), socket.next()).await
        else {
            break;
        };
        let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).expect("JSON event");
        let (Some(id), Some(kind)) = (event["executionId"].as_str(), event["type"].as_str()) else {
            continue;
        };
        if !ids.contains(id) {
            continue;
        }
        finished += usize::from(kind == last);
        kinds
            .entry(id.to_string())
            .or_default()
            .push(kind.to_string());
    }
    kinds
}

/// Three nodes on PostgreSQL and Redis (queue and events): an API-only node, a worker node and
/// an all-role node. The all-role node is kept busy streaming synchronous executions (its event
/// relay always has a backlog) while 200 queued executions, enqueued through both API nodes,
/// run on the worker node and the all-role node. A WebSocket client on each API-serving node
/// sees `queued → running → completed`, in that order, for every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_delivers_each_executions_events_in_order_while_one_streams() {
    const QUEUED: usize = 200;
    let mock = MockProvider::start().await;
    let queue = queue_env(QueueKind::Redis, "order");
    let env = with_queue(
        &queue,
        &[
            ("PODS_WORKERS", "0"),
            ("PODS_ROLE", "api"),
            ("EVENTS_BACKEND", "redis"),
            mock.egress(),
        ],
    );
    let api = Server::start("order", Backend::Postgres, &env).await;
    let worker = api
        .another(&[("PODS_WORKERS", "8"), ("PODS_ROLE", "worker")])
        .await;
    let all = api
        .another(&[("PODS_WORKERS", "4"), ("PODS_ROLE", "all")])
        .await;
    let (client, ws, _) = api.user_with_workspace("order@pods.test", false);
    let (flow, pod) = client
        .openai_pod(&ws, "sk-order", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    // The streaming load runs in another flow, so the watched flow's clients see only the
    // queued executions' events (the relay carries both).
    let (_, long) = client
        .openai_pod(
            &ws,
            "sk-order",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini-long",
        )
        .await;
    let on_all = client.with_base(&all.url);

    let token = api.token("order@pods.test");
    let path = format!("/api/v1/workspaces/{ws}/flows/{flow}/ws?token={token}");
    let mut sockets = vec![
        connect(&api, &path)
            .await
            .expect("a client of the API node"),
        connect(&all, &path)
            .await
            .expect("a client of the all-role node"),
    ];

    // The all-role node streams, over and over, until the queued executions are done.
    let streaming = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let (on_all, ws, long, streaming) =
                (on_all.clone(), ws.clone(), long.clone(), streaming.clone());
            tokio::spawn(async move {
                let mut streamed = 0;
                while streaming.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = on_all
                        .post(
                            &format!("/api/v1/workspaces/{ws}/executions"),
                            json!({"podId": long, "stream": true}),
                        )
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                    streamed += 1;
                }
                streamed
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut ids = std::collections::HashSet::new();
    for i in 0..QUEUED {
        let through = if i % 2 == 0 { &client } else { &on_all };
        ids.insert(
            through
                .enqueue(&ws, json!({"podId": pod, "async": true}))
                .await,
        );
    }
    let mut seen = vec![];
    for socket in &mut sockets {
        seen.push(kinds_until_all(socket, &ids, "execution:completed").await);
    }
    streaming.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut streamed = 0;
    for stream in streams {
        streamed += stream.await.expect("the streaming load");
    }
    assert!(streamed > 0, "the all-role node streamed meanwhile");

    for (node, kinds) in ["api", "all"].iter().zip(&seen) {
        let out_of_order: Vec<_> = kinds
            .iter()
            .filter(|(_, k)| {
                *k != &[
                    "execution:queued",
                    "execution:running",
                    "execution:completed",
                ]
            })
            .collect();
        assert!(
            out_of_order.is_empty(),
            "{} of {QUEUED} executions out of order on the {node} node (while {streamed} streams ran), e.g. {:?}",
            out_of_order.len(),
            out_of_order.first()
        );
    }
    drop((worker, all));
}
