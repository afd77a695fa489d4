//! Workspace API keys: a key acts only in its workspace, with at most its role and its maker's,
//! within its requests and tokens a minute (shared by every node through Redis) and its monthly
//! budget; a revocation holds at once on every node and closes its WebSockets; the secret is
//! never stored or shown again.

use std::time::Duration;

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Client, Reply, Server};
use serde_json::{Value, json};

use super::access::closed_within;
use super::{Row, answered, finish};

/// Makes a key in `ws` as `admin`; returns (secret, id).
async fn make_key(admin: &Client, ws: &str, body: Value) -> (String, String) {
    let r = admin
        .post(&format!("/api/v1/workspaces/{ws}/api-keys"), body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["key"].as_str().expect("the secret").to_string(),
        r.body["id"].as_str().expect("id").to_string(),
    )
}

async fn execute(client: &Client, ws: &str, pod: &str) -> Reply {
    client
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await
}

fn row(attack: &str, expected: &str, observed: String, pass: bool) -> Row {
    Row {
        attack: attack.into(),
        expected: expected.into(),
        observed,
        pass,
    }
}

/// Scope: one workspace, the weaker of the key's role and its maker's, nothing people alone do.
#[tokio::test]
async fn an_api_key_acts_only_in_its_workspace_within_its_role() {
    let server = Server::start("security_api_key_scope", Backend::Sqlite, &[]).await;
    let (owner, ws, _) = server.user_with_workspace("keys-owner@pods.test", false);
    let (_, _, _) = server.user_with_workspace("keys-other@pods.test", false);
    let other_ws = owner
        .post("/api/v1/workspaces", json!({"name": "second"}))
        .await
        .body["id"]
        .as_str()
        .expect("ws")
        .to_string();
    let mut rows = vec![];

    let (viewer_secret, _) =
        make_key(&owner, &ws, json!({"name": "reader", "role": "viewer"})).await;
    let (admin_secret, admin_id) =
        make_key(&owner, &ws, json!({"name": "deployer", "role": "admin"})).await;
    let viewer = Client::new(&server.url, &viewer_secret);
    let admin = Client::new(&server.url, &admin_secret);

    let listed = owner
        .get(&format!("/api/v1/workspaces/{ws}/api-keys"))
        .await;
    rows.push(row(
        "list a workspace's API keys",
        "names and hints, no secret",
        format!("{} keys", listed.body.as_array().map_or(0, Vec::len)),
        listed.status == 200
            && listed.body.as_array().map_or(0, Vec::len) == 2
            && !listed.text.contains(&admin_secret[5..])
            && !listed.text.contains(&viewer_secret[5..])
            && [&admin_secret, &viewer_secret].iter().all(|secret| {
                listed
                    .text
                    .contains(&format!("pods_…{}", &secret[secret.len() - 4..]))
            }),
    ));

    let r = admin.get("/api/v1/workspaces").await;
    let ids: Vec<&str> = r
        .body
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["id"].as_str()).collect())
        .unwrap_or_default();
    rows.push(row(
        "an API key lists workspaces",
        "its own only",
        format!("{ids:?}"),
        r.status == 200 && ids == [ws.as_str()],
    ));
    let r = admin
        .get(&format!("/api/v1/workspaces/{other_ws}/flows"))
        .await;
    rows.push(answered(
        "an API key reads another workspace its maker owns",
        &r,
        404,
        "NOT_FOUND",
    ));
    let r = viewer
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "x"}),
        )
        .await;
    rows.push(answered(
        "a viewer key creates a flow",
        &r,
        403,
        "FORBIDDEN",
    ));
    let r = viewer.get(&format!("/api/v1/workspaces/{ws}/flows")).await;
    rows.push(row(
        "a viewer key reads its workspace's flows",
        "200",
        r.status.to_string(),
        r.status == 200,
    ));
    for (what, reply) in [
        (
            "an admin key makes another API key",
            admin
                .post(
                    &format!("/api/v1/workspaces/{ws}/api-keys"),
                    json!({"name": "more", "role": "admin"}),
                )
                .await,
        ),
        (
            "an admin key revokes an API key",
            admin
                .delete(&format!("/api/v1/workspaces/{ws}/api-keys/{admin_id}"))
                .await,
        ),
        (
            "an admin key adds a member",
            admin
                .put(
                    &format!("/api/v1/workspaces/{ws}/members/keys-other@pods.test"),
                    json!({"role": "admin"}),
                )
                .await,
        ),
        (
            "an API key creates a workspace",
            admin
                .post("/api/v1/workspaces", json!({"name": "mine"}))
                .await,
        ),
        (
            "an API key reads the workspace's audit log (owners only)",
            admin.get(&format!("/api/v1/workspaces/{ws}/audit")).await,
        ),
    ] {
        rows.push(answered(what, &reply, 403, "FORBIDDEN"));
    }
    let r = owner
        .post(
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            json!({"name": "boss", "role": "owner"}),
        )
        .await;
    rows.push(answered(
        "make a key with the owner role",
        &r,
        400,
        "INVALID_FIELD",
    ));
    let r = owner
        .post(
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            json!({"name": "old", "role": "member", "expiresAt": "2020-01-01T00:00:00Z"}),
        )
        .await;
    rows.push(answered(
        "make a key that expired already",
        &r,
        400,
        "INVALID_FIELD",
    ));

    // The maker's own role caps the key: a demoted maker's admin key acts as a viewer.
    let (maker, _, _) = server.user_with_workspace("keys-maker@pods.test", false);
    let r = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/members/keys-maker@pods.test"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let (made_secret, _) = make_key(&maker, &ws, json!({"name": "m", "role": "admin"})).await;
    let made = Client::new(&server.url, &made_secret);
    let r = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/members/keys-maker@pods.test"),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = made
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "x"}),
        )
        .await;
    rows.push(answered(
        "an admin key whose maker was demoted to viewer creates a flow",
        &r,
        403,
        "FORBIDDEN",
    ));
    let r = owner
        .delete(&format!(
            "/api/v1/workspaces/{ws}/members/keys-maker@pods.test"
        ))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = made.get(&format!("/api/v1/workspaces/{ws}/flows")).await;
    rows.push(answered(
        "a key whose maker left the workspace reads it",
        &r,
        404,
        "NOT_FOUND",
    ));

    // A key that expires stops working then.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let (brief_secret, _) = make_key(
        &owner,
        &ws,
        json!({"name": "brief", "role": "viewer", "expiresAt": soon}),
    )
    .await;
    let brief = Client::new(&server.url, &brief_secret);
    let before = brief.get("/api/v1/workspaces").await.status;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = brief.get("/api/v1/workspaces").await;
    rows.push(row(
        "a key past its expiresAt",
        "200 before, 401 UNAUTHORIZED after",
        format!("{before} before, {} after", r.status),
        before == 200 && r.status == 401,
    ));
    let r = Client::new(&server.url, "pods_not-a-real-key-at-all")
        .get("/api/v1/workspaces")
        .await;
    rows.push(answered("a made-up API key", &r, 401, "UNAUTHORIZED"));

    // The secret is nowhere in the database (its hash is).
    let mut bytes = Vec::new();
    for file in ["pods.db", "pods.db-wal"] {
        if let Ok(b) = std::fs::read(server.data().join(file)) {
            bytes.extend(b);
        }
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let hash = pods::auth::api_key_hash(&admin_secret);
    rows.push(row(
        "look for API keys in the database file",
        "no secret, only its SHA-256",
        format!(
            "secret {}, hash {}",
            contains(&admin_secret[5..]),
            contains(&hash)
        ),
        !contains(&admin_secret[5..]) && !contains(&viewer_secret[5..]) && contains(&hash),
    ));
    finish(&rows);
}

/// Two nodes on one PostgreSQL and one Redis: limits are shared, a revocation holds at once on
/// the other node and closes the key's WebSocket there.
#[tokio::test]
async fn an_api_keys_limits_and_revocation_hold_on_every_node() {
    let mock = MockProvider::start().await;
    let prefix = format!("pods-apikeys-{}", std::process::id());
    let env = [
        ("EVENTS_BACKEND", "redis"),
        ("PODS_RATE_LIMITS_BACKEND", "redis"),
        ("PODS_REDIS_PREFIX", prefix.as_str()),
        mock.egress(),
    ];
    let a = Server::start("security_api_key_nodes", Backend::Postgres, &env).await;
    let b = a.another(&[]).await;
    let (owner, ws, _) = a.user_with_workspace("nodes-keys@pods.test", false);
    let (flow, pod) = owner
        .openai_pod(&ws, "sk-keys", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let mut rows = vec![];

    // Requests a minute, counted on both nodes together.
    let (secret, _) = make_key(
        &owner,
        &ws,
        json!({"name": "rpm", "role": "viewer", "rpm": 3}),
    )
    .await;
    let on_a = Client::new(&a.url, &secret);
    let on_b = on_a.with_base(&b.url);
    let mut statuses = vec![];
    for client in [&on_a, &on_b, &on_a, &on_b] {
        statuses.push(client.get("/api/v1/workspaces").await);
    }
    let last = statuses.last().expect("four");
    rows.push(row(
        "4 requests with an rpm=3 key, alternating between two nodes",
        "200 200 200 then 429 with Retry-After",
        format!(
            "{:?}, Retry-After {:?}",
            statuses.iter().map(|r| r.status).collect::<Vec<_>>(),
            last.headers.get("retry-after")
        ),
        statuses[..3].iter().all(|r| r.status == 200)
            && last.status == 429
            && last.headers.contains_key("retry-after"),
    ));

    // Tokens a minute: a call's usage (32 tokens) is taken after it; the bucket (20) is empty.
    let (secret, _) = make_key(
        &owner,
        &ws,
        json!({"name": "tpm", "role": "member", "tpm": 20}),
    )
    .await;
    let on_a = Client::new(&a.url, &secret);
    let first = execute(&on_a, &ws, &pod).await;
    let second = execute(&on_a.with_base(&b.url), &ws, &pod).await;
    rows.push(row(
        "two calls of 32 tokens with a tpm=20 key, one per node",
        "200 then 429 RATE_LIMITED",
        format!(
            "{} then {} {}",
            first.status,
            second.status,
            super::code(&second.body)
        ),
        first.status == 200 && second.status == 429 && super::code(&second.body) == "RATE_LIMITED",
    ));

    // A monthly budget, counted from recorded costs (one call costs 0.0000096 USD: 12 + 8
    // cached prompt tokens, 12 completion tokens of gpt-4o-mini).
    let (secret, budget_id) = make_key(
        &owner,
        &ws,
        json!({"name": "budget", "role": "member", "monthlyBudgetUsd": "0.000009"}),
    )
    .await;
    let on_a = Client::new(&a.url, &secret);
    let first = execute(&on_a, &ws, &pod).await;
    let second = execute(&on_a.with_base(&b.url), &ws, &pod).await;
    rows.push(row(
        "a second call once a key's monthly budget is spent",
        "200 then 402 BUDGET_EXHAUSTED",
        format!(
            "{} then {} {}",
            first.status,
            second.status,
            super::code(&second.body)
        ),
        first.status == 200
            && second.status == 402
            && super::code(&second.body) == "BUDGET_EXHAUSTED",
    ));
    let listed = owner
        .get(&format!("/api/v1/workspaces/{ws}/api-keys"))
        .await;
    let usage = listed
        .body
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == budget_id.as_str()))
        .map(|k| k["usage"].clone())
        .unwrap_or_default();
    rows.push(row(
        "the key's usage this month",
        "1 request, 20 + 12 tokens, 0.0000096 USD; lastUsedAt set",
        usage.to_string(),
        usage["requests"] == 1
            && listed.body.as_array().is_some_and(|keys| {
                keys.iter()
                    .any(|k| k["id"] == budget_id.as_str() && k["lastUsedAt"].is_string())
            })
            && usage["promptTokens"] == 20
            && usage["completionTokens"] == 12
            && usage["costUsd"] == "0.0000096",
    ));
    let r = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
            json!({"apiKey": "sk-keys", "baseUrl": format!("{}/v1", mock.url)}),
        )
        .await;
    assert_eq!(r.status, 204);
    let (secret, _) = make_key(
        &owner,
        &ws,
        json!({"name": "budget2", "role": "member", "monthlyBudgetUsd": "5"}),
    )
    .await;
    let r = Client::new(&a.url, &secret)
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod, "model": "no-price-model"}),
        )
        .await;
    rows.push(answered(
        "a budgeted key calls a model with no price",
        &r,
        400,
        "UNPRICED_MODEL_UNDER_BUDGET",
    ));

    // Revocation: refused at once on the other node; the key's socket there closes.
    let (secret, id) = make_key(&owner, &ws, json!({"name": "gone", "role": "viewer"})).await;
    let on_b = Client::new(&b.url, &secret);
    assert_eq!(on_b.get("/api/v1/workspaces").await.status, 200);
    let path = format!("/api/v1/workspaces/{ws}/flows/{flow}/ws?token={secret}");
    let mut socket = pods_e2e::ws::connect(&b, &path).await.expect("connects");
    let r = owner
        .delete(&format!("/api/v1/workspaces/{ws}/api-keys/{id}"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let after = on_b.get("/api/v1/workspaces").await;
    rows.push(answered(
        "a revoked key, at once, on another node",
        &after,
        401,
        "UNAUTHORIZED",
    ));
    let closed = closed_within(&mut socket, Duration::from_secs(3)).await;
    rows.push(row(
        "a revoked key's open WebSocket on another node",
        "closed with 4003 within 3 s",
        format!("{closed:?}"),
        closed == Some(4003),
    ));
    let again = pods_e2e::ws::connect(&b, &path).await.err();
    rows.push(row(
        "a revoked key opens a WebSocket",
        "refused 401",
        format!("{again:?}"),
        again == Some(401),
    ));
    let audit = owner.get(&format!("/api/v1/workspaces/{ws}/audit")).await;
    let actions: Vec<&str> = audit
        .body
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    rows.push(row(
        "making and revoking keys is audited",
        "apikey.create, apikey.revoke",
        format!("{actions:?}"),
        actions.contains(&"apikey.create") && actions.contains(&"apikey.revoke"),
    ));
    finish(&rows);
}

/// `Idempotency-Key`: the same key answers with the same execution (the provider is called
/// once); the same key with another request is refused.
#[tokio::test]
async fn an_idempotency_key_runs_a_request_once() {
    let mock = MockProvider::start().await;
    let server = Server::start("api_key_idempotency", Backend::Sqlite, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace("idem@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-idem", &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let (secret, _) = make_key(&owner, &ws, json!({"name": "idem", "role": "member"})).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/workspaces/{ws}/executions", server.url);
    let post = |token: String, key: &'static str, body: Value| {
        http.post(&url)
            .bearer_auth(token)
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let send = |key: &'static str, body: Value| post(secret.clone(), key, body);
    let first = send("order-1", json!({"podId": pod})).await.expect("send");
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = json_of(first).await;
    let again = send("order-1", json!({"podId": pod})).await.expect("send");
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = json_of(again).await;
    assert_eq!(again["executionId"], first["executionId"]);
    assert_eq!(again["content"], first["content"]);
    assert_eq!(again["cost"], first["cost"]);
    assert_eq!(mock.seen().len(), 1, "the provider was called once");

    let other = send("order-1", json!({"podId": pod, "temperature": 0.5}))
        .await
        .expect("send");
    assert_eq!(other.status(), 422);
    // The same key from another caller (the owner's token) is another key.
    let theirs = post(
        server.token("idem@pods.test"),
        "order-1",
        json!({"podId": pod}),
    )
    .await
    .expect("send");
    assert_eq!(theirs.status(), 200);
    assert_eq!(mock.seen().len(), 2);

    let queued = send("order-2", json!({"podId": pod, "async": true}))
        .await
        .expect("send");
    assert_eq!(queued.status(), 202);
    let queued: Value = json_of(queued).await;
    let replayed = send("order-2", json!({"podId": pod, "async": true}))
        .await
        .expect("send");
    assert_eq!(replayed.status(), 202);
    let replayed: Value = json_of(replayed).await;
    assert_eq!(replayed["executionId"], queued["executionId"]);
    let bad = send("", json!({"podId": pod})).await.expect("send");
    assert_eq!(bad.status(), 400);
}

async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.expect("body")).expect("JSON")
}
