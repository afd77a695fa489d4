//! WebSocket delivery latency: N clients watch one flow; executions are queued one by one and
//! each client's arrival time of the `execution:queued` event is compared with the moment the
//! request that publishes it was sent.
//!
//! `cargo bench -p pods --bench suite -- websocket`: 1,000 clients and 20 executions, then 10,000 clients
//! and 10 executions. Under `cargo test`:
//! 50 clients, 3 executions. Targets: p99 under 50 ms with 1,000 clients, under 200 ms with 10,000
//! (printed as a met / missed row).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Bench, ms, pct};
use futures_util::StreamExt;
use serde_json::{Value, json};

pub fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    crate::common::runtime().block_on(run(full));
}

type Arrivals = Arc<Mutex<HashMap<String, Vec<Instant>>>>;

async fn run(full: bool) {
    let plan: &[(usize, usize)] = if full {
        &[(1000, 20), (10_000, 10)]
    } else {
        &[(50, 3)]
    };
    for &(clients, executions) in plan {
        fan_out(clients, executions).await;
    }
}

async fn fan_out(clients: usize, executions: usize) {
    let bench = Bench::start("websocket", &[("PODS_WORKERS", "10")]).await;
    let url = format!(
        "{}/api/v1/workspaces/{}/flows/{}/ws?token={}",
        bench.base.replace("http://", "ws://"),
        bench.ws,
        bench.flow,
        bench.token
    );
    let arrivals: Arrivals = Arc::default();
    let connected = Instant::now();
    for _ in 0..clients {
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect");
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let at = Instant::now();
                let Ok(text) = message.into_text() else {
                    continue;
                };
                // Only the queued events are timed: the rest are not parsed (this client shares
                // the machine's two cores with the server it measures).
                if !text.contains("\"execution:queued\"") {
                    continue;
                }
                let Ok(event) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let queued = event["type"] == "execution:queued";
                if let (true, Some(id)) = (queued, event["executionId"].as_str()) {
                    arrivals
                        .lock()
                        .expect("lock")
                        .entry(id.to_string())
                        .or_default()
                        .push(at);
                }
            }
        });
    }
    let connected = connected.elapsed();

    let enqueue = bench.execution_request(json!({"async": true}));
    let mut sent = Vec::new();
    for _ in 0..executions {
        let at = Instant::now();
        let response = bench
            .http
            .post(&enqueue.url)
            .bearer_auth(&bench.token)
            .header("content-type", "application/json")
            .body(enqueue.body.clone())
            .send()
            .await
            .expect("enqueue");
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap_or_default())
            .unwrap_or(Value::Null);
        sent.push((body["executionId"].as_str().expect("id").to_string(), at));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait for every client to have every event (or give up after 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received: usize = arrivals.lock().expect("lock").values().map(Vec::len).sum();
        if received >= clients * executions || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = arrivals.lock().expect("lock").clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .flat_map(|(id, at)| {
            arrivals
                .get(id)
                .into_iter()
                .flatten()
                .map(move |t| t.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let expected = clients * executions;
    println!(
        "# WebSocket delivery ({clients} clients on one flow, {executions} queued executions)\n"
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| clients connected in | {} |", ms(connected));
    println!("| events delivered | {} of {expected} |", latencies.len());
    println!("| delivery p50 | {} |", ms(pct(&latencies, 0.50)));
    println!("| delivery p99 | {} |", ms(pct(&latencies, 0.99)));
    println!(
        "| delivery max | {} |",
        ms(latencies.last().copied().unwrap_or_default())
    );
    if clients == 10_000 {
        // The performance target, with this run's figure.
        let p99 = pct(&latencies, 0.99).as_secs_f64() * 1e3;
        let outcome = if p99 < 200.0 {
            "met".to_string()
        } else {
            format!("missed by {:.0} ms", p99 - 200.0)
        };
        println!("\n| target | this run | |\n|---|---|---|");
        println!("| 10,000 clients on one flow: delivery p99 < 200 ms | {p99:.0} ms | {outcome} |");
    }
    assert_eq!(latencies.len(), expected, "every client got every event");
}
