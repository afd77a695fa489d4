//! Who may act, and for how long: tokens must name an active user and be within their time;
//! disabling a user or removing a member takes effect at once (WebSockets included, on every
//! node); rate limits answer 429 with `Retry-After`; security-relevant actions are audited.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use pods_e2e::mock::{HTML_ERROR_PAGE, MockProvider};
use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Row, answered, code, finish};

/// The e2e servers' signing secret (see `Server::start`).
const SECRET: &[u8] = b"e2e-test-secret-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token with these claims, correctly signed.
fn signed(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("sign")
}

/// Waits up to `within` for the socket to be closed by the server; the close code, if any.
pub(super) async fn closed_within(
    socket: &mut pods_e2e::ws::Socket,
    within: Duration,
) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(frame.map_or(1005, |f| f.code.into()));
            }
            Ok(None) | Ok(Some(Err(_))) => return Some(1006),
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn new_flow(client: &Client, ws: &str) -> String {
    let r = client
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "watched"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().expect("flow id").to_string()
}

#[tokio::test]
async fn a_token_must_name_an_active_user_and_be_within_its_time() {
    let server = Server::start("security_tokens", Backend::Sqlite, &[]).await;
    let (_, _, user_id) = server.user_with_workspace("tokens@pods.test", false);
    let t = now();
    let mut rows = vec![];
    let made_up = signed(json!({"sub": "no-such-user", "iat": t, "exp": t + 600}));
    for path in ["/api/v1/workspaces", "/api/v1/pricing", "/api/v1/plugins"] {
        let r = Client::new(&server.url, &made_up).get(path).await;
        rows.push(answered(
            format!("a signed token for a made-up user: GET {path}"),
            &r,
            401,
            "UNAUTHORIZED",
        ));
    }
    let r = Client::new(&server.url, &made_up)
        .post("/api/v1/workspaces", json!({"name": "x"}))
        .await;
    rows.push(answered(
        "a signed token for a made-up user: POST /api/v1/workspaces",
        &r,
        401,
        "UNAUTHORIZED",
    ));
    for (attack, claims) in [
        (
            "a token not valid before a minute from now (nbf)",
            json!({"sub": user_id, "iat": t, "nbf": t + 60, "exp": t + 600}),
        ),
        (
            "a token issued a minute in the future (iat)",
            json!({"sub": user_id, "iat": t + 60, "exp": t + 600}),
        ),
        (
            "a token that expired 10 s ago (leeway is 5 s)",
            json!({"sub": user_id, "iat": t - 600, "exp": t - 10}),
        ),
        (
            "a token living 30 days (the server's lifetime is 24 h)",
            json!({"sub": user_id, "iat": t, "exp": t + 30 * 24 * 3600}),
        ),
        (
            "a token without iat",
            json!({"sub": user_id, "exp": t + 600}),
        ),
    ] {
        let r = Client::new(&server.url, &signed(claims))
            .get("/api/v1/workspaces")
            .await;
        rows.push(answered(attack, &r, 401, "UNAUTHORIZED"));
    }
    // Within the leeway, and the well-formed case: accepted.
    let skewed = signed(json!({"sub": user_id, "iat": t + 3, "nbf": t + 3, "exp": t + 600}));
    let r = Client::new(&server.url, &skewed)
        .get("/api/v1/workspaces")
        .await;
    rows.push(Row {
        attack: "(control) a token from a clock 3 s ahead".into(),
        expected: "200".into(),
        observed: r.status.to_string(),
        pass: r.status == 200,
    });
    let minted = server.cli(&["token", "--user", "tokens@pods.test", "--ttl-hours", "48"]);
    rows.push(Row {
        attack: "`pods token --ttl-hours 48` with the default 24 h lifetime".into(),
        expected: "refused, no token printed".into(),
        observed: format!(
            "exit {:?}, {} bytes out",
            minted.status.code(),
            minted.stdout.len()
        ),
        pass: !minted.status.success() && minted.stdout.is_empty(),
    });
    finish(&rows);
}

/// Disabling a user fails every token of theirs at once on every node, closes their
/// WebSockets there, and is audited; enabling them again restores their tokens.
#[tokio::test]
async fn a_disabled_user_is_locked_out_on_every_node_at_once() {
    let prefix = format!("pods-disable-{}", std::process::id());
    let redis = [
        ("EVENTS_BACKEND", "redis"),
        ("PODS_REDIS_PREFIX", prefix.as_str()),
    ];
    let a = Server::start("security_disable", Backend::Postgres, &redis).await;
    let b = a.another(&[]).await;
    let (root, _, _) = a.user_with_workspace("root@pods.test", true);
    let (user, ws, user_id) = a.user_with_workspace("leaver@pods.test", false);
    let (plain, _, _) = a.user_with_workspace("plain@pods.test", false);
    let flow = new_flow(&user, &ws).await;
    let on_b = user.with_base(&b.url);
    assert_eq!(on_b.get("/api/v1/workspaces").await.status, 200);
    let token = a.token("leaver@pods.test");
    let path = format!("/api/v1/workspaces/{ws}/flows/{flow}/ws?token={token}");
    let mut socket = pods_e2e::ws::connect(&b, &path).await.expect("connects");

    let mut rows = vec![];
    let r = plain
        .post(&format!("/api/v1/admin/users/{user_id}/disable"), json!({}))
        .await;
    rows.push(answered(
        "a user who is not a system admin disables another",
        &r,
        403,
        "FORBIDDEN",
    ));
    let r = root
        .post("/api/v1/admin/users/root@pods.test/disable", json!({}))
        .await;
    rows.push(answered(
        "a system admin disables themselves",
        &r,
        409,
        "CONFLICT",
    ));

    let r = root
        .post("/api/v1/admin/users/leaver@pods.test/disable", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["disabled"], true);
    let after = on_b.get("/api/v1/workspaces").await;
    rows.push(answered(
        "the disabled user's token, at once, on another node",
        &after,
        401,
        "UNAUTHORIZED",
    ));
    let closed = closed_within(&mut socket, Duration::from_secs(3)).await;
    rows.push(Row {
        attack: "the disabled user's open WebSocket on another node".into(),
        expected: "closed with 4003 within 3 s".into(),
        observed: format!("{closed:?}"),
        pass: closed == Some(4003),
    });
    let again = pods_e2e::ws::connect(&b, &path).await.err();
    rows.push(Row {
        attack: "the disabled user opens a new WebSocket".into(),
        expected: "refused 401".into(),
        observed: format!("{again:?}"),
        pass: again == Some(401),
    });
    let r = root
        .post("/api/v1/admin/users/leaver@pods.test/enable", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let back = on_b.get("/api/v1/workspaces").await;
    rows.push(Row {
        attack: "(control) enabled again: the same token".into(),
        expected: "200".into(),
        observed: back.status.to_string(),
        pass: back.status == 200,
    });
    // From the command line, too.
    let out = a.cli(&["admin", "disable-user", "--user", "leaver@pods.test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = on_b.get("/api/v1/workspaces").await;
    rows.push(answered(
        "disabled with `pods admin disable-user`: the token on another node",
        &r,
        401,
        "UNAUTHORIZED",
    ));
    let audit = root.get("/api/v1/audit").await;
    let actions: Vec<&str> = audit
        .body
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    rows.push(Row {
        attack: "the audit log after disable, enable, disable (API, API, CLI)".into(),
        expected: "user.disable, user.enable, user.disable, newest first".into(),
        observed: actions.join(", "),
        pass: actions.starts_with(&["user.disable", "user.enable", "user.disable"]),
    });
    finish(&rows);
}

/// A removed member's open WebSocket closes at once and every route of the workspace is a 404
/// to them; owners read the workspace's audit log, admins do not.
#[tokio::test]
async fn a_removed_member_loses_the_workspace_at_once_and_it_is_audited() {
    let server = Server::start("security_removed", Backend::Sqlite, &[]).await;
    let (owner, ws, _) = server.user_with_workspace("keeper@pods.test", false);
    let (member, _, member_id) = server.user_with_workspace("removed@pods.test", false);
    let (admin, _, _) = server.user_with_workspace("deputy@pods.test", false);
    let members = format!("/api/v1/workspaces/{ws}/members");
    for (who, role) in [
        ("removed@pods.test", "member"),
        ("deputy@pods.test", "admin"),
    ] {
        let r = owner
            .put(&format!("{members}/{who}"), json!({"role": role}))
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let r = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
            json!({"apiKey": "sk-audited-key-abcdef123456"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let flow = new_flow(&owner, &ws).await;
    let token = server.token("removed@pods.test");
    let path = format!("/api/v1/workspaces/{ws}/flows/{flow}/ws?token={token}");
    let mut socket = pods_e2e::ws::connect(&server, &path)
        .await
        .expect("connects");

    let r = owner.delete(&format!("{members}/{member_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mut rows = vec![];
    let closed = closed_within(&mut socket, Duration::from_secs(3)).await;
    rows.push(Row {
        attack: "a removed member's open WebSocket".into(),
        expected: "closed with 4003 within 3 s".into(),
        observed: format!("{closed:?}"),
        pass: closed == Some(4003),
    });
    let r = member.get(&format!("/api/v1/workspaces/{ws}/flows")).await;
    rows.push(answered(
        "a removed member reads the workspace's flows",
        &r,
        404,
        "NOT_FOUND",
    ));
    let r = admin.get(&format!("/api/v1/workspaces/{ws}/audit")).await;
    rows.push(answered(
        "a workspace admin (not owner) reads its audit log",
        &r,
        403,
        "FORBIDDEN",
    ));
    let r = owner.get(&format!("/api/v1/workspaces/{ws}/audit")).await;
    let entries = r.body.as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    let removal = entries.iter().find(|e| e["action"] == "member.remove");
    rows.push(Row {
        attack: "the owner reads the audit log".into(),
        expected: "member.remove, key.set, member.set ×2 (newest first); who, from where; no key"
            .into(),
        observed: format!(
            "{}; removal by {} from {}",
            actions.join(", "),
            removal.map_or("-", |e| e["actorEmail"].as_str().unwrap_or("-")),
            removal.map_or("-", |e| e["actorAddress"].as_str().unwrap_or("-")),
        ),
        pass: actions == ["member.remove", "key.set", "member.set", "member.set"]
            && removal.is_some_and(|e| {
                e["actorEmail"] == "keeper@pods.test"
                    && e["actorAddress"] == "127.0.0.1"
                    && e["target"] == member_id.as_str()
            })
            && !r.text.contains("sk-audited-key"),
    });
    finish(&rows);
}

/// Rate limits: executions per user and failed authentications per client address answer 429
/// with `Retry-After`; a valid token is not held back by others' failures.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let mock = MockProvider::start().await;
    let server = Server::start(
        "security_rates",
        Backend::Sqlite,
        &[
            mock.egress(),
            ("PODS_RATE_EXECUTIONS_PER_MIN", "3"),
            ("PODS_RATE_AUTH_FAILURES_PER_MIN", "3"),
        ],
    )
    .await;
    let (owner, ws, _) = server.user_with_workspace("busy@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-busy-key-123456", &mock.url, "gpt-4o-mini")
        .await;
    let http = reqwest::Client::new();
    let token = server.token("busy@pods.test");
    let execute = |auth: String| {
        http.post(format!("{}/api/v1/workspaces/{ws}/executions", server.url))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(json!({"podId": pod}).to_string())
            .send()
    };
    let mut statuses = vec![];
    let mut retry_after = None;
    for _ in 0..4 {
        let r = execute(format!("Bearer {token}")).await.expect("send");
        retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        statuses.push(r.status().as_u16());
    }
    let mut rows = vec![Row {
        attack: "4 executions in a row under a limit of 3 a minute".into(),
        expected: "200, 200, 200, 429 with Retry-After 1–60".into(),
        observed: format!("{statuses:?}, Retry-After {retry_after:?}"),
        pass: statuses == [200, 200, 200, 429]
            && retry_after.is_some_and(|s| (1..=60).contains(&s)),
    }];
    let mut failures = vec![];
    for i in 0..4 {
        let r = http
            .get(format!("{}/api/v1/workspaces", server.url))
            .header("authorization", format!("Bearer forged.token.{i}"))
            .send()
            .await
            .expect("send");
        let after = r.headers().get("retry-after").is_some();
        failures.push((r.status().as_u16(), after));
    }
    rows.push(Row {
        attack: "4 forged tokens from one address under a limit of 3 failures a minute".into(),
        expected: "401 ×3, then 429 with Retry-After".into(),
        observed: format!("{failures:?}"),
        pass: failures == [(401, false), (401, false), (401, false), (429, true)],
    });
    let r = owner.get("/api/v1/workspaces").await;
    rows.push(Row {
        attack: "(control) a valid token from that address meanwhile".into(),
        expected: "200".into(),
        observed: r.status.to_string(),
        pass: r.status == 200,
    });
    finish(&rows);
}

/// A base URL's query string (Azure's `?api-version=`, a gateway's signature) is a secret: sent
/// to the provider, sealed at rest, never shown; a short key shows no hint; an upstream's own
/// error page is not quoted back.
#[tokio::test]
async fn secrets_in_a_base_url_and_upstream_pages_stay_out_of_answers() {
    let mock = MockProvider::start().await;
    let server = Server::start("security_redaction", Backend::Sqlite, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace("redact@pods.test", false);
    let (viewer, _, _) = server.user_with_workspace("glance@pods.test", false);
    let r = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/members/glance@pods.test"),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let base = format!(
        "{}/v1?api-version=2024-10-21&sig=s3cr3t-signature",
        mock.url
    );
    let (_, pod) = owner.openai_pod(&ws, "sk-1", &base, "gpt-4o-mini").await;
    let mut rows = vec![];
    let keys = viewer
        .get(&format!("/api/v1/workspaces/{ws}/provider-keys"))
        .await;
    rows.push(Row {
        attack: "a viewer lists keys: base URL with a signed query, key of 4 characters".into(),
        expected: "baseUrl scheme://host/path only; hint `…`".into(),
        observed: format!(
            "baseUrl {}, hint {}",
            keys.body[0]["baseUrl"], keys.body[0]["hint"]
        ),
        pass: keys.body[0]["baseUrl"] == format!("{}/v1", mock.url)
            && keys.body[0]["hint"] == "…"
            && !keys.text.contains("s3cr3t"),
    });
    let executions = format!("/api/v1/workspaces/{ws}/executions");
    let r = owner.post(&executions, json!({"podId": pod})).await;
    let id = r.body["executionId"].as_str().unwrap_or_default();
    let stored = viewer.get(&format!("{executions}/{id}")).await;
    let sent = mock.last("/chat/completions");
    rows.push(Row {
        attack: "an execution with that key: what the provider gets, what is recorded".into(),
        expected: "the provider gets the whole query; requestMetadata shows no query".into(),
        observed: format!(
            "{} sent to {}; requestMetadata.baseUrl {}",
            r.status, sent.path, stored.body["requestMetadata"]["baseUrl"]
        ),
        pass: r.status == 200
            && sent.path == "/v1/chat/completions?api-version=2024-10-21&sig=s3cr3t-signature"
            && !stored.text.contains("s3cr3t"),
    });
    let r = owner
        .post(
            &executions,
            json!({"podId": pod, "model": "gpt-4o-mini-html-error"}),
        )
        .await;
    rows.push(Row {
        attack: "the upstream answers 502 with its own HTML page".into(),
        expected: "502 PROVIDER_…; the page is not quoted".into(),
        observed: format!(
            "{} {}: {}",
            r.status,
            code(&r.body),
            r.body["error"]["message"]
        ),
        pass: r.status == 502
            && code(&r.body).starts_with("PROVIDER_")
            && !r.text.contains("internal-banner")
            && !HTML_ERROR_PAGE.is_empty(),
    });
    finish(&rows);
}
