//! Signing in with a password (`POST /api/v1/auth/login`, `pods admin create-user
//! --password-stdin`, `pods admin set-password`) and opening WebSockets with single-use tickets.

use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};

async fn login(server: &Server, email: &str, password: &str) -> pods_e2e::Reply {
    Client::new(&server.url, "")
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_user_signs_in_with_a_password_and_guessing_is_rate_limited() {
    let server = Server::start("sign_in", Backend::Sqlite, &[]).await;
    let out = server.cli_stdin(
        &[
            "admin",
            "create-user",
            "--email",
            "ada@pods.test",
            "--admin",
            "--workspace",
            "Ada's",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");

    // The right password: a token that works, for the user the CLI made.
    let r = login(&server, "Ada@Pods.test ", "correct horse battery").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["userId"], created["userId"]);
    assert_eq!(r.body["isAdmin"], true);
    assert!(!r.text.contains("argon2"), "no hash in the answer");
    let ada = Client::new(&server.url, r.body["token"].as_str().expect("token"));
    let spaces = ada.get("/api/v1/workspaces").await;
    assert_eq!(spaces.status, 200);
    assert_eq!(spaces.body[0]["id"], created["workspaceId"]);
    let audit = ada.get("/api/v1/audit").await;
    assert!(
        audit.text.contains("user.login"),
        "a sign-in is audited: {}",
        audit.text
    );

    // A wrong password and an unknown email get the same answer.
    let wrong = login(&server, "ada@pods.test", "correct horse").await;
    let unknown = login(&server, "nobody@pods.test", "correct horse battery").await;
    assert_eq!((wrong.status, code(&wrong.body)), (401, "UNAUTHORIZED"));
    assert_eq!(wrong.body, unknown.body);

    // An email is matched in any case, as it was written when the user was made or not.
    let out = server.cli_stdin(
        &[
            "admin",
            "create-user",
            "--email",
            "Grace@Pods.test",
            "--password-stdin",
        ],
        "grace's passphrase\n",
    );
    assert!(out.status.success());
    let grace = login(&server, "grace@pods.test", "grace's passphrase").await;
    assert_eq!(grace.status, 200, "{}", grace.text);
    assert_eq!(grace.body["email"], "Grace@Pods.test");

    // A user without a password cannot sign in with one.
    let (_, _, _) = server.user_with_workspace("token-only@pods.test", false);
    assert_eq!(login(&server, "token-only@pods.test", "").await.status, 401);

    // Five attempts a minute for one email from one address, right or wrong; the sixth is 429
    // even with the right password; another email from the same address is not held up.
    let out = server.cli_stdin(
        &[
            "admin",
            "create-user",
            "--email",
            "bob@pods.test",
            "--password-stdin",
        ],
        "bob's password\n",
    );
    assert!(out.status.success());
    for _ in 0..5 {
        assert_eq!(login(&server, "bob@pods.test", "guess").await.status, 401);
    }
    let limited = login(&server, "bob@pods.test", "bob's password").await;
    assert_eq!(
        (limited.status, code(&limited.body)),
        (429, "RATE_LIMITED"),
        "{}",
        limited.text
    );
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(
        login(&server, "token-only@pods.test", "x").await.status,
        401
    );

    // set-password replaces it; a disabled user is told so only with the right password.
    let out = server.cli_stdin(
        &["admin", "set-password", "--user", "ada@pods.test"],
        "a new passphrase\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        login(&server, "ada@pods.test", "correct horse battery")
            .await
            .status,
        401
    );
    assert_eq!(
        login(&server, "ada@pods.test", "a new passphrase")
            .await
            .status,
        200
    );
    let out = server.cli(&["admin", "disable-user", "--user", "ada@pods.test"]);
    assert!(out.status.success());
    let disabled = login(&server, "ada@pods.test", "a new passphrase").await;
    assert_eq!(disabled.status, 401);
    assert!(disabled.text.contains("disabled"), "{}", disabled.text);

    // Too short a password is refused by the CLI, and nothing is set.
    let out = server.cli_stdin(
        &["admin", "set-password", "--user", "bob@pods.test"],
        "short\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 to 1024"));
}

/// Connects to `path` with `?ticket=`; the handshake's HTTP status.
async fn open_with_ticket(server: &Server, path: &str, ticket: &str) -> u16 {
    let url = format!(
        "{}{path}?ticket={ticket}",
        server.url.replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(url).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("connect: {e}"),
    }
}

#[tokio::test]
async fn a_ticket_opens_one_websocket_once_for_its_caller_only() {
    let server = Server::start("ws_ticket", Backend::Sqlite, &[]).await;
    let (alice, ws, _) = server.user_with_workspace("alice-ticket@pods.test", false);
    let (mallory, _, _) = server.user_with_workspace("mallory-ticket@pods.test", false);
    let path = format!("/api/v1/workspaces/{ws}/ws");

    let r = alice.post("/api/v1/ws-ticket", json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["expiresInSeconds"], 30);
    let ticket = r.body["ticket"].as_str().expect("ticket").to_string();
    assert_eq!(open_with_ticket(&server, &path, &ticket).await, 101);
    // Used up.
    assert_eq!(open_with_ticket(&server, &path, &ticket).await, 401);
    assert_eq!(open_with_ticket(&server, &path, "made-up").await, 401);

    // A ticket stands for its caller: someone else's workspace stays closed.
    let theirs = mallory.post("/api/v1/ws-ticket", json!({})).await;
    let theirs = theirs.body["ticket"].as_str().expect("ticket");
    assert_eq!(open_with_ticket(&server, &path, theirs).await, 404);

    // Without a caller there is no ticket.
    let anonymous = Client::new(&server.url, "")
        .post("/api/v1/ws-ticket", json!({}))
        .await;
    assert_eq!(anonymous.status, 401);

    // An API key's ticket acts as the key, and fails once the key is revoked.
    let key = alice
        .post(
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            json!({"name": "console", "role": "viewer"}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let as_key = Client::new(&server.url, key.body["key"].as_str().expect("key"));
    let first = as_key.post("/api/v1/ws-ticket", json!({})).await;
    let second = as_key.post("/api/v1/ws-ticket", json!({})).await;
    let (first, second) = (
        first.body["ticket"].as_str().expect("ticket"),
        second.body["ticket"].as_str().expect("ticket"),
    );
    assert_eq!(open_with_ticket(&server, &path, first).await, 101);
    let revoked = alice
        .delete(&format!(
            "/api/v1/workspaces/{ws}/api-keys/{}",
            key.body["id"].as_str().expect("id")
        ))
        .await;
    assert!(revoked.status < 300, "{}", revoked.text);
    assert_eq!(open_with_ticket(&server, &path, second).await, 401);
}

#[tokio::test]
async fn tickets_are_rate_limited_per_caller() {
    let server = Server::start(
        "ws_ticket_rate",
        Backend::Sqlite,
        &[("PODS_RATE_WS_TICKETS_PER_MIN", "3")],
    )
    .await;
    let (alice, _, _) = server.user_with_workspace("alice-tickets@pods.test", false);
    let (bob, _, _) = server.user_with_workspace("bob-tickets@pods.test", false);
    for _ in 0..3 {
        let r = alice.post("/api/v1/ws-ticket", json!({})).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let limited = alice.post("/api/v1/ws-ticket", json!({})).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(limited.headers.contains_key("retry-after"));
    // Someone else's bucket is their own.
    assert_eq!(bob.post("/api/v1/ws-ticket", json!({})).await.status, 201);
}
