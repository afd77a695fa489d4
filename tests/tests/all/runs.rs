//! Whole-flow runs against a real server and the local provider stand-in: parallel branches,
//! context from the run itself, a failure that skips its descendants, resume, budgets, the cost
//! estimate, cancel, and the WebSocket's run events.

use std::time::{Duration, Instant};

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};

/// A workspace with an OpenAI key on the stand-in and an empty flow.
struct Flow {
    client: Client,
    ws: String,
    flow: String,
}

impl Flow {
    async fn new(server: &Server, mock: &MockProvider, email: &str) -> Flow {
        let (client, ws, _) = server.user_with_workspace(email, false);
        let r = client
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
                json!({"apiKey": "sk-runs-key-123456", "baseUrl": format!("{}/v1", mock.url)}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let r = client
            .post(
                &format!("/api/v1/workspaces/{ws}/flows"),
                json!({"name": "runs"}),
            )
            .await;
        let flow = r.body["id"].as_str().expect("flow").to_string();
        Flow { client, ws, flow }
    }

    async fn pod(&self, model: &str, user_prompt: &str, max_tokens: Option<u32>) -> String {
        let mut body =
            json!({"name": model, "provider": "openai", "model": model, "userPrompt": user_prompt});
        if let Some(n) = max_tokens {
            body["maxTokens"] = n.into();
        }
        let r = self
            .client
            .post(
                &format!("/api/v1/workspaces/{}/flows/{}/pods", self.ws, self.flow),
                body,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().expect("pod").to_string()
    }

    async fn edge(&self, source: &str, target: &str) {
        let r = self
            .client
            .post(
                &format!("/api/v1/workspaces/{}/flows/{}/edges", self.ws, self.flow),
                json!({"sourcePodId": source, "targetPodId": target}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    fn runs(&self) -> String {
        format!("/api/v1/workspaces/{}/flows/{}/runs", self.ws, self.flow)
    }

    async fn start(&self, body: Value) -> String {
        let r = self.client.post(&self.runs(), body).await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.body["runId"].as_str().expect("run id").to_string()
    }

    /// Waits until the run has finished; the run as the API shows it.
    async fn finished(&self, run: &str) -> Value {
        let started = Instant::now();
        loop {
            let r = self.client.get(&format!("{}/{run}", self.runs())).await;
            assert_eq!(r.status, 200, "{}", r.text);
            if !matches!(r.body["status"].as_str(), Some("QUEUED" | "RUNNING")) {
                return r.body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the run did not finish: {}",
                r.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn pod_of<'a>(run: &'a Value, pod: &str) -> &'a Value {
    run["pods"]
        .as_array()
        .and_then(|pods| pods.iter().find(|p| p["podId"] == pod))
        .expect("the pod is in the run")
}

/// What the stand-in was sent for `model`: (calls, the last request's text).
fn sent(mock: &MockProvider, model: &str) -> (usize, String) {
    let seen: Vec<_> = mock
        .seen()
        .into_iter()
        .filter(|s| s.body["model"] == model)
        .collect();
    let last = seen.last().map(|s| s.body.to_string()).unwrap_or_default();
    (seen.len(), last)
}

#[tokio::test]
async fn a_diamond_runs_its_branches_in_parallel_and_resumes_only_what_failed() {
    let mock = MockProvider::start().await;
    let server = Server::start("runs_diamond", Backend::Sqlite, &[mock.egress()]).await;
    let f = Flow::new(&server, &mock, "diamond@pods.test").await;
    let a = f.pod("a-named", "start", None).await;
    let b = f.pod("b-half-named", "B reads {{A}}", None).await;
    let c = f.pod("c-half-named", "C reads {{A}}", None).await;
    let d = f.pod("d-named", "D joins [{{B}}] and [{{C}}]", None).await;
    let d_prompt = format!("D joins [{{{{{b}}}}}] and [{{{{{c}}}}}]");
    let r = f
        .client
        .patch(
            &format!("/api/v1/workspaces/{}/pods/{d}", f.ws),
            json!({"userPrompt": d_prompt}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (s, t) in [(&a, &b), (&a, &c), (&b, &d), (&c, &d)] {
        f.edge(s, t).await;
    }

    // Parallel: B and C take 500 ms each; together well under their serial 1 s.
    let run = f.start(json!({})).await;
    let done = f.finished(&run).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let took = |run: &Value| {
        let t = |k: &str| {
            time::OffsetDateTime::parse(
                run[k].as_str().unwrap_or_default(),
                &time::format_description::well_known::Rfc3339,
            )
            .expect("a time")
        };
        (t("finishedAt") - t("startedAt")).whole_milliseconds()
    };
    assert!(took(&done) < 1000, "the run took {} ms", took(&done));
    let (_, to_d) = sent(&mock, "d-named");
    assert!(
        to_d.contains("answer from b-half-named") && to_d.contains("answer from c-half-named"),
        "D was sent: {to_d}"
    );
    // Each pod is an ordinary execution of the run.
    for pod in [&a, &b, &c, &d] {
        assert_eq!(pod_of(&done, pod)["status"], "COMPLETED");
        let id = pod_of(&done, pod)["executionId"]
            .as_str()
            .expect("execution");
        let e = f
            .client
            .get(&format!("/api/v1/workspaces/{}/executions/{id}", f.ws))
            .await;
        assert_eq!(e.body["status"], "COMPLETED");
    }

    // A failing C skips D; B still completes; the run fails.
    let r = f
        .client
        .patch(
            &format!("/api/v1/workspaces/{}/pods/{c}", f.ws),
            json!({"model": "c-bad-request"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let before = (sent(&mock, "a-named").0, sent(&mock, "b-half-named").0);
    let failed_run = f.start(json!({})).await;
    let failed = f.finished(&failed_run).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(pod_of(&failed, &b)["status"], "COMPLETED");
    assert_eq!(pod_of(&failed, &c)["status"], "ERROR");
    assert_eq!(pod_of(&failed, &d)["status"], "SKIPPED");
    assert_eq!(pod_of(&failed, &d)["skippedBecause"], c.as_str());
    let b_output_calls = sent(&mock, "b-half-named").0;

    // Fix C, resume: only C and D run; D sees B's output from this run.
    let r = f
        .client
        .patch(
            &format!("/api/v1/workspaces/{}/pods/{c}", f.ws),
            json!({"model": "c2-named"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d_calls = sent(&mock, "d-named").0;
    let r = f
        .client
        .post(&format!("{}/{failed_run}/resume", f.runs()), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let resumed = f.finished(&failed_run).await;
    assert_eq!(resumed["status"], "COMPLETED", "{resumed}");
    assert_eq!(
        (sent(&mock, "a-named").0, sent(&mock, "b-half-named").0),
        (before.0 + 1, b_output_calls),
        "A and B ran once in the failed run and not again"
    );
    assert_eq!(b_output_calls, before.1 + 1);
    assert_eq!(sent(&mock, "c2-named").0, 1);
    assert_eq!(sent(&mock, "d-named").0, d_calls + 1);
    let (_, to_d) = sent(&mock, "d-named");
    assert!(
        to_d.contains("answer from b-half-named") && to_d.contains("answer from c2-named"),
        "D was sent: {to_d}"
    );
    // B kept its execution from before the resume.
    assert_eq!(
        pod_of(&resumed, &b)["executionId"],
        pod_of(&failed, &b)["executionId"]
    );
    // A completed run cannot be resumed; the flow's pods cannot go while a run is under way.
    let r = f
        .client
        .post(&format!("{}/{failed_run}/resume", f.runs()), json!({}))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let listed = f.client.get(&f.runs()).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(2));
    assert_eq!(listed.body[0]["runId"], failed_run.as_str());
}

#[tokio::test]
async fn budgets_bound_a_run_and_the_estimate_says_by_how_much() {
    let mock = MockProvider::start().await;
    let server = Server::start("runs_budget", Backend::Sqlite, &[mock.egress()]).await;
    let (admin, _, _) = server.user_with_workspace("prices@pods.test", true);
    for model in ["pa", "pb", "pc"] {
        let r = admin
            .post(
                "/api/v1/pricing",
                json!({"provider": "openai", "model": model, "inputPerMtok": "10", "outputPerMtok": "1000", "effectiveFrom": 0}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let f = Flow::new(&server, &mock, "budget@pods.test").await;
    let a = f.pod("pa", "hi", Some(100)).await;
    let b = f.pod("pb", "x", Some(100)).await;
    let c = f.pod("pc", "y", Some(1000)).await;
    for (pod, prompt) in [(&b, format!("{{{{{a}}}}}")), (&c, format!("{{{{{b}}}}}!"))] {
        let r = f
            .client
            .patch(
                &format!("/api/v1/workspaces/{}/pods/{pod}", f.ws),
                json!({"userPrompt": prompt}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    f.edge(&a, &b).await;
    f.edge(&b, &c).await;

    // By hand: A ⌈2/4⌉ = 1 prompt token, 100 completion: 1×10 + 100×1000 = 100,010 µUSD;
    // B: A's 100 → 100×10 + 100×1000 = 101,000; C: 1 byte + B's 100 = 101 → 1,010 + 1,000,000.
    let e = f
        .client
        .post(
            &format!("/api/v1/workspaces/{}/flows/{}/estimate", f.ws, f.flow),
            json!({}),
        )
        .await;
    assert_eq!(e.status, 200, "{}", e.text);
    assert_eq!(e.body["maxCostUsd"], "1.20202", "{}", e.text);
    assert_eq!(e.body["pods"][2]["promptTokens"], 101);
    assert_eq!(e.body["unpriced"], json!([]));

    // A and B fit in 0.5; C's bound does not: it is skipped, the run ends BUDGET_EXCEEDED.
    let run = f.start(json!({"budgetUsd": "0.5"})).await;
    let done = f.finished(&run).await;
    assert_eq!(done["status"], "BUDGET_EXCEEDED", "{done}");
    assert_eq!(pod_of(&done, &b)["status"], "COMPLETED");
    assert_eq!(pod_of(&done, &c)["status"], "SKIPPED");
    assert_eq!(pod_of(&done, &c)["skippedBecause"], "budget");
    let spent: f64 = done["spentUsd"]
        .as_str()
        .unwrap_or("9")
        .parse()
        .unwrap_or(9.0);
    assert!(spent > 0.0 && spent <= 0.5, "spent {spent}");
    assert_eq!(sent(&mock, "pc").0, 0, "C was never called");

    // Resumed with a budget that covers C: only C runs.
    let r = f
        .client
        .post(
            &format!("{}/{run}/resume", f.runs()),
            json!({"budgetUsd": "2"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let resumed = f.finished(&run).await;
    assert_eq!(resumed["status"], "COMPLETED", "{resumed}");
    assert_eq!(resumed["budgetUsd"], "2");
    assert_eq!(
        (
            sent(&mock, "pa").0,
            sent(&mock, "pb").0,
            sent(&mock, "pc").0
        ),
        (1, 1, 1)
    );

    // A budget under the cheapest pod, and an unpriced model under a budget: refused.
    let r = f.client.post(&f.runs(), json!({"budgetUsd": "0.05"})).await;
    assert_eq!(r.body["error"]["code"], "BUDGET_TOO_LOW", "{}", r.text);
    let r = f
        .client
        .patch(
            &format!("/api/v1/workspaces/{}/pods/{c}", f.ws),
            json!({"model": "unpriced-model"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = f.client.post(&f.runs(), json!({"budgetUsd": "5"})).await;
    assert_eq!(
        r.body["error"]["code"], "UNPRICED_MODEL_UNDER_BUDGET",
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_run_can_be_cancelled_mid_way_and_its_events_arrive_in_order() {
    let mock = MockProvider::start().await;
    let server = Server::start("runs_cancel", Backend::Sqlite, &[mock.egress()]).await;
    let f = Flow::new(&server, &mock, "cancel@pods.test").await;
    let a = f.pod("a-named", "start", None).await;
    let b = f.pod("b-named", "then", None).await;
    f.edge(&a, &b).await;
    let token = server.token("cancel@pods.test");
    let path = format!(
        "/api/v1/workspaces/{}/flows/{}/ws?token={token}",
        f.ws, f.flow
    );
    let mut socket = pods_e2e::ws::connect(&server, &path).await.expect("ws");

    let run = f.start(json!({})).await;
    assert_eq!(f.finished(&run).await["status"], "COMPLETED");
    let mut types = vec![];
    let mut statuses: std::collections::HashMap<String, Vec<String>> = Default::default();
    while types.last().map(String::as_str) != Some("run:completed") {
        let event = next_event(&mut socket).await;
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        if kind.starts_with("run:") {
            if kind == "run:pod" {
                statuses
                    .entry(event["podId"].as_str().unwrap_or_default().into())
                    .or_default()
                    .push(event["status"].as_str().unwrap_or_default().into());
            }
            types.push(kind);
        }
    }
    assert_eq!(types.first().map(String::as_str), Some("run:queued"));
    assert_eq!(types.get(1).map(String::as_str), Some("run:started"));
    for pod in [&a, &b] {
        let mut seen = statuses[pod.as_str()].clone();
        seen.dedup();
        assert_eq!(seen, ["QUEUED", "RUNNING", "COMPLETED"], "pod {pod}");
    }

    // With `stream: true`, every pod's token deltas reach the flow's WebSocket.
    let run = f.start(json!({"stream": true})).await;
    assert_eq!(f.finished(&run).await["status"], "COMPLETED");
    let mut deltas = std::collections::HashSet::new();
    loop {
        let event = next_event(&mut socket).await;
        if event["type"] == "execution:delta" {
            deltas.insert(event["podId"].as_str().unwrap_or_default().to_string());
        }
        if event["type"] == "run:completed" {
            break;
        }
    }
    assert_eq!(deltas, [a.clone(), b.clone()].into_iter().collect());

    // Cancel while A is still answering (a slow model): A is cancelled, B never starts.
    let r = f
        .client
        .patch(
            &format!("/api/v1/workspaces/{}/pods/{a}", f.ws),
            json!({"model": "a-slow"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let run = f.start(json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = f
        .client
        .delete(&format!("/api/v1/workspaces/{}/pods/{b}", f.ws))
        .await;
    assert_eq!(
        r.status, 409,
        "a pod cannot go while its flow runs: {}",
        r.text
    );
    let r = f.client.delete(&format!("{}/{run}", f.runs())).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let done = f.finished(&run).await;
    assert_eq!(done["status"], "CANCELLED");
    assert_eq!(pod_of(&done, &a)["status"], "CANCELLED");
    assert_eq!(pod_of(&done, &b)["status"], "CANCELLED");
    let r = f.client.delete(&format!("{}/{run}", f.runs())).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        sent(&mock, "b-named").0,
        2,
        "B ran only in the first two runs"
    );

    // A cancelled run resumes: both pods run (neither had completed).
    let r = f
        .client
        .patch(
            &format!("/api/v1/workspaces/{}/pods/{a}", f.ws),
            json!({"model": "a-named"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = f
        .client
        .post(&format!("{}/{run}/resume", f.runs()), json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let resumed = f.finished(&run).await;
    assert_eq!(resumed["status"], "COMPLETED", "{resumed}");
    assert_eq!(sent(&mock, "b-named").0, 3);
}

async fn next_event(socket: &mut pods_e2e::ws::Socket) -> Value {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("an event within 20 s")
            .expect("socket open")
            .expect("message");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// `kill -9` mid-way through 20 runs of a five-pod flow, then a restart: every run finishes, and
/// every pod of every run completed exactly once (billed once) — on each queue backend.
async fn runs_survive_kill_9(queue: pods_e2e::services::QueueKind) {
    use pods_e2e::services::{queue_env, with_queue};
    let mock = MockProvider::start().await;
    let name = format!("runs_kill_{queue:?}").to_lowercase();
    let owned = queue_env(queue, &name);
    let env = with_queue(&owned, &[mock.egress(), ("PODS_LEASE_SECS", "2")]);
    let server = Server::start(&name, Backend::Sqlite, &env).await;
    let f = Flow::new(&server, &mock, "kill@pods.test").await;
    let pods = five_pods(&f).await;
    let mut runs = vec![];
    for _ in 0..20 {
        runs.push(f.start(json!({})).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls_before = mock.seen().len();
    let server = server.restart_with(&[]).await;
    assert!(
        calls_before < 100,
        "all 100 pods ran before the kill: nothing was interrupted"
    );
    let client = f.client.with_base(&server.url);
    let f = Flow {
        client,
        ws: f.ws.clone(),
        flow: f.flow.clone(),
    };
    each_pod_completed_once(&f, &pods, &runs).await;
}

/// A → B → C, A → D, (C, D) → E; each answer takes 100 ms.
async fn five_pods(f: &Flow) -> Vec<String> {
    let mut pods = vec![];
    for _ in 0..5 {
        pods.push(f.pod("run-delay", "go", Some(50)).await);
    }
    for (s, t) in [(0, 1), (1, 2), (0, 3), (2, 4), (3, 4)] {
        f.edge(&pods[s], &pods[t]).await;
    }
    pods
}

/// Every run completed, and each of its pods has exactly one completed execution.
async fn each_pod_completed_once(f: &Flow, pods: &[String], runs: &[String]) {
    for run in runs {
        let done = f.finished(run).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
    }
    for pod in pods {
        let history = f
            .client
            .get(&format!(
                "/api/v1/workspaces/{}/executions/pod/{pod}?limit=100",
                f.ws
            ))
            .await;
        let rows = history.body.as_array().cloned().unwrap_or_default();
        for run in runs {
            let completed = rows
                .iter()
                .filter(|e| e["runId"] == run.as_str() && e["status"] == "COMPLETED")
                .count();
            assert_eq!(completed, 1, "pod {pod} in run {run}");
        }
    }
}

/// Two nodes sharing PostgreSQL and a Redis queue run the pods of the same runs: whichever
/// node's worker finishes a pod moves its run on, one node at a time.
#[tokio::test]
async fn runs_move_across_two_nodes() {
    use pods_e2e::services::{QueueKind, queue_env, with_queue};
    let mock = MockProvider::start().await;
    let owned = queue_env(QueueKind::Redis, "runs_two_nodes");
    let env = with_queue(&owned, &[mock.egress()]);
    let a = Server::start("runs_two_nodes", Backend::Postgres, &env).await;
    let b = a.another(&[]).await;
    let f = Flow::new(&a, &mock, "nodes@pods.test").await;
    let pods = five_pods(&f).await;
    let on_b = Flow {
        client: f.client.with_base(&b.url),
        ws: f.ws.clone(),
        flow: f.flow.clone(),
    };
    let mut runs = vec![];
    for i in 0..10 {
        let node = if i % 2 == 0 { &f } else { &on_b };
        runs.push(node.start(json!({})).await);
    }
    each_pod_completed_once(&on_b, &pods, &runs).await;
}

#[tokio::test]
async fn runs_survive_kill_9_on_the_embedded_queue() {
    runs_survive_kill_9(pods_e2e::services::QueueKind::Embedded).await;
}

#[tokio::test]
async fn runs_survive_kill_9_on_redis() {
    runs_survive_kill_9(pods_e2e::services::QueueKind::Redis).await;
}

#[tokio::test]
async fn runs_survive_kill_9_on_sqs() {
    runs_survive_kill_9(pods_e2e::services::QueueKind::Sqs).await;
}
