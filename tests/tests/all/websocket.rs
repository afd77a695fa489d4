//! The flow WebSocket: every event of an execution, in order, to members only.

use pods_e2e::mock::{GEMINI_CHUNKS, MockProvider};
use pods_e2e::ws::{connect, events_until};
use pods_e2e::{Backend, Server, sse_events};
use serde_json::json;

#[tokio::test]
async fn members_see_every_event_of_a_flow_in_order() {
    let mock = MockProvider::start().await;
    let server = Server::start("websocket", Backend::Sqlite, &[mock.egress()]).await;
    let (alice, ws, _) = server.user_with_workspace("ws-alice@pods.test", false);
    let (_bob, _, _) = server.user_with_workspace("ws-bob@pods.test", false);
    let bob_token = server.token("ws-bob@pods.test");
    let alice_token = server.token("ws-alice@pods.test");
    for (provider, base) in [
        ("openai", format!("{}/v1", mock.url)),
        ("gemini", mock.url.clone()),
    ] {
        let r = alice
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/{provider}"),
                json!({"apiKey": "sk-ws", "baseUrl": base}),
            )
            .await;
        assert_eq!(r.status, 204);
    }
    let flow = alice
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "live"}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("flow")
        .to_string();
    let pods = format!("/api/v1/workspaces/{ws}/flows/{flow}/pods");
    let pod = alice
        .post(
            &pods,
            json!({"name": "a", "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "hi"}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("pod")
        .to_string();
    let gem = alice.post(&pods, json!({"name": "g", "provider": "gemini", "model": "gemini-2.5-flash", "userPrompt": "hi"})).await.body["id"].as_str().expect("pod").to_string();
    let path = format!("/api/v1/workspaces/{ws}/flows/{flow}/ws");

    // Not a member, no token, a bad token: refused before the upgrade.
    assert_eq!(
        connect(&server, &format!("{path}?token={bob_token}"))
            .await
            .err(),
        Some(404)
    );
    assert_eq!(connect(&server, &path).await.err(), Some(401));
    assert_eq!(
        connect(&server, &format!("{path}?token=nope")).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(
            &server,
            &format!("/api/v1/workspaces/{ws}/flows/no-such-flow/ws?token={alice_token}")
        )
        .await
        .err(),
        Some(404)
    );

    let mut socket = connect(&server, &format!("{path}?token={alice_token}"))
        .await
        .expect("member connects");

    // A queued execution: queued → running → completed, with the result.
    let queued = alice
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod, "async": true}),
        )
        .await;
    let id = queued.body["executionId"].as_str().expect("id").to_string();
    let events = events_until(&mut socket, &id, "execution:completed").await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "execution:queued",
            "execution:running",
            "execution:completed"
        ]
    );
    let statuses: Vec<&str> = events.iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(statuses, ["QUEUED", "RUNNING", "COMPLETED"]);
    for e in &events {
        assert_eq!(e["podId"], json!(pod));
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{e}"
        );
    }
    assert_eq!(events[2]["result"]["usage"]["promptTokens"], 20);

    // A streamed execution: its deltas arrive on the socket too.
    let streamed = alice
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": gem, "stream": true}),
        )
        .await;
    let start = &sse_events(&streamed.text)[0].1;
    let id = start["executionId"].as_str().expect("id").to_string();
    let events = events_until(&mut socket, &id, "execution:completed").await;
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "execution:delta")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(text, GEMINI_CHUNKS.concat());
    assert_eq!(
        events.first().map(|e| e["type"].clone()),
        Some(json!("execution:running"))
    );

    // A failure is an error event with its code.
    let failed = alice
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod, "model": "gpt-4o-mini-bad-request"}),
        )
        .await;
    let id = failed.body["executionId"].as_str().expect("id").to_string();
    let events = events_until(&mut socket, &id, "execution:error").await;
    assert_eq!(
        events.last().map(|e| e["error"]["code"].clone()),
        Some(json!("PROVIDER_INVALID_REQUEST"))
    );

    // The header works as well as the query parameter.
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("{}{path}", server.url.replace("http://", "ws://")),
    )
    .map(|mut r| {
        r.headers_mut().insert(
            "authorization",
            format!("Bearer {alice_token}").parse().expect("header"),
        );
        r
    })
    .expect("request");
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

/// A client that stops reading is dropped (after the server's 5 s send timeout) while another
/// client on the same flow, and the API, go on as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_and_holds_up_nobody() {
    use futures_util::StreamExt;
    use std::time::{Duration, Instant};

    const EXECUTIONS: usize = 60;
    let mock = MockProvider::start().await;
    let server = Server::start(
        "websocket_slow",
        Backend::Sqlite,
        &[("PODS_WORKERS", "4"), mock.egress()],
    )
    .await;
    let (client, ws, _) = server.user_with_workspace("ws-slow@pods.test", false);
    let (flow, pod) = client
        .openai_pod(
            &ws,
            "sk-slow",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini-large",
        )
        .await;
    let token = server.token("ws-slow@pods.test");
    let path = format!("/api/v1/workspaces/{ws}/flows/{flow}/ws?token={token}");
    let mut slow = pods_e2e::ws::connect_with_small_buffer(&server, &path, 4096).await;
    let fast = connect(&server, &path).await.expect("connects");
    // The fast client reads all along, counting results.
    let reader = tokio::spawn(async move {
        let mut fast = fast;
        let mut results = Vec::new();
        while results.len() < EXECUTIONS {
            let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_secs(30), fast.next()).await
            else {
                break;
            };
            let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
                continue;
            };
            let event: serde_json::Value = serde_json::from_str(&text).expect("JSON event");
            if event["type"] == "execution:completed" {
                results.push(event["result"]["content"].as_str().map(str::len));
            }
        }
        results
    });

    // 60 answers of 256 KiB: 15 MiB of events, more than the slow client's socket can hold.
    let started = Instant::now();
    for _ in 0..EXECUTIONS {
        client.enqueue(&ws, json!({"podId": pod})).await;
    }
    let results = reader.await.expect("reader");
    let took = started.elapsed();
    assert_eq!(results.len(), EXECUTIONS, "the fast client missed results");
    assert!(
        results
            .iter()
            .all(|r| *r == Some(pods_e2e::mock::LARGE_ANSWER_BYTES))
    );
    assert!(
        took < Duration::from_secs(30),
        "the fast client waited {took:?}"
    );
    let asked = Instant::now();
    assert_eq!(client.get("/health").await.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "the API stalled");

    // The slow client: what its socket held, then the end, well short of every event.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut completed = 0;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = slow.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                completed += usize::from(text.contains("\"execution:completed\""));
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server never dropped the slow client");
    assert!(
        completed < EXECUTIONS,
        "the slow client got all {completed} results: it was not slow"
    );
}
