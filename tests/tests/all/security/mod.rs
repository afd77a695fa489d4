//! The security suite: each attack an outside probe tried, against a real server over HTTP, with
//! what must happen and what did. It prints a table (attack | expected | observed | pass) — the
//! one in docs/security.md — and fails if any row does not pass.

mod access;
mod api_keys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pods_e2e::mock::{LARGE_ANSWER_BYTES, MockProvider, OPENAI_ANSWER};
use pods_e2e::{Backend, Client, Server};
use serde_json::{Value, json};

/// One row of the table.
struct Row {
    attack: String,
    expected: String,
    observed: String,
    pass: bool,
}

/// Prints the rows as the table, then fails if any did not pass.
fn finish(rows: &[Row]) {
    println!("\n| attack | expected | observed | pass |\n|---|---|---|---|");
    for r in rows {
        let pass = if r.pass { "yes" } else { "**NO**" };
        println!(
            "| {} | {} | {} | {pass} |",
            r.attack, r.expected, r.observed
        );
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.pass)
        .map(|r| r.attack.as_str())
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// A row for an attack that must be answered with `status` and `code`, and nothing more.
fn answered(attack: impl Into<String>, r: &pods_e2e::Reply, status: u16, code_: &str) -> Row {
    Row {
        attack: attack.into(),
        expected: format!("{status} {code_}"),
        observed: format!("{} {}", r.status, code(&r.body)),
        pass: r.status == status && code(&r.body) == code_,
    }
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("-")
}

/// Egress: no provider call, and no key, may reach an internal address unless an operator opened
/// it; refusals are typed and name the rule; redirects are not followed.
#[tokio::test]
async fn the_server_connects_only_where_the_egress_policy_allows() {
    let mock = MockProvider::start().await;
    // The stand-in, by address and by name (a name is judged by the resolver, address by address).
    let port = mock.url.rsplit(':').next().unwrap_or_default().to_string();
    let allow = format!("{},localhost:{port}", mock.egress().1);
    let server = Server::start(
        "security_egress",
        Backend::Sqlite,
        &[("PODS_EGRESS_ALLOW", &allow)],
    )
    .await;
    let (owner, ws, _) = server.user_with_workspace("egress@pods.test", false);
    let (by_name, ws_by_name, _) = server.user_with_workspace("egress-name@pods.test", false);
    let (_, pod_by_name) = by_name
        .openai_pod(
            &ws_by_name,
            "sk-by-name",
            &format!("http://localhost:{port}/v1"),
            "gpt-4o-mini",
        )
        .await;
    let own_port = server
        .url
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut rows = vec![];

    // A key whose base URL points inside: refused when it is saved.
    let inside = [
        (
            "loopback, Redis's port",
            "http://127.0.0.1:6379/v1".to_string(),
        ),
        (
            "loopback, shortened, PostgreSQL's port",
            "http://127.1:5432/v1".into(),
        ),
        (
            "loopback as one decimal number",
            "http://2130706433/v1".into(),
        ),
        ("unspecified address", "http://0.0.0.0:8080/v1".into()),
        (
            "localhost, the server's own port",
            format!("http://localhost:{own_port}/v1"),
        ),
        ("IPv6 loopback", "http://[::1]:8080/v1".into()),
        (
            "IPv4-mapped IPv6 loopback",
            "http://[::ffff:127.0.0.1]:8080/v1".into(),
        ),
        (
            "cloud metadata (link-local)",
            "http://169.254.169.254/latest/meta-data".into(),
        ),
        ("private 10/8", "http://10.0.0.1/v1".into()),
        ("private 172.16/12", "http://172.16.0.1/v1".into()),
        ("private 192.168/16", "http://192.168.0.1/v1".into()),
        ("carrier-grade NAT", "http://100.64.0.1/v1".into()),
        ("IPv6 unique-local", "http://[fd00::1]/v1".into()),
    ];
    for (what, url) in inside {
        let r = owner
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
                json!({"apiKey": "sk-inside", "baseUrl": url}),
            )
            .await;
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        rows.push(Row {
            attack: format!("key baseUrl {url} ({what})"),
            expected: "400 DESTINATION_NOT_ALLOWED, naming the rule".into(),
            observed: format!("{} {}", r.status, code(&r.body)),
            pass: r.status == 400
                && code(&r.body) == "DESTINATION_NOT_ALLOWED"
                && message.contains("PODS_EGRESS_ALLOW"),
        });
    }

    // Credentials in the URL: refused (they would be shown to viewers and copied everywhere).
    let r = owner
        .put(
            &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
            json!({"apiKey": "sk-x", "baseUrl": "https://user:secret@api.example.com/v1"}),
        )
        .await;
    rows.push(answered(
        "key baseUrl with user:password@",
        &r,
        400,
        "INVALID_FIELD",
    ));

    // The stand-in the operator allowed works.
    let (_, pod) = owner
        .openai_pod(
            &ws,
            "sk-allowed",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini",
        )
        .await;
    let run = |client: Client, body: Value| {
        let ws = ws.clone();
        async move {
            client
                .post(&format!("/api/v1/workspaces/{ws}/executions"), body)
                .await
        }
    };
    let r = run(owner.clone(), json!({"podId": pod})).await;
    rows.push(Row {
        attack: "a call to the stand-in PODS_EGRESS_ALLOW names".into(),
        expected: "200 COMPLETED".into(),
        observed: format!("{} {}", r.status, r.body["status"].as_str().unwrap_or("-")),
        pass: r.status == 200 && r.body["content"] == OPENAI_ANSWER,
    });

    // A redirect is not followed: the answer is the provider's, typed; nothing reaches /sink.
    let r = run(
        owner.clone(),
        json!({"podId": pod, "model": "gpt-4o-mini-redirect"}),
    )
    .await;
    let followed = mock.seen().iter().any(|s| s.path.starts_with("/sink"));
    rows.push(Row {
        attack: "provider answers 302 to another address".into(),
        expected: "not followed; a typed provider error".into(),
        observed: format!("{} {}, followed: {followed}", r.status, code(&r.body)),
        pass: !followed && r.status >= 400 && code(&r.body) != "-",
    });

    let r = by_name
        .post(
            &format!("/api/v1/workspaces/{ws_by_name}/executions"),
            json!({"podId": pod_by_name}),
        )
        .await;
    rows.push(Row {
        attack: "a call to the stand-in by a name PODS_EGRESS_ALLOW names".into(),
        expected: "200 COMPLETED".into(),
        observed: format!("{} {}", r.status, r.body["status"].as_str().unwrap_or("-")),
        pass: r.status == 200 && r.body["content"] == OPENAI_ANSWER,
    });

    // The same keys after the operator closed the exceptions: refused when the call connects.
    let before = mock.seen().len();
    let server = server.restart_with(&[("PODS_EGRESS_ALLOW", "")]).await;
    let owner = owner.with_base(&server.url);
    let r = run(owner.clone(), json!({"podId": pod})).await;
    let reached = mock.seen().len() - before;
    let stored = owner
        .get(&format!(
            "/api/v1/workspaces/{ws}/executions/{}",
            r.body["executionId"].as_str().unwrap_or_default()
        ))
        .await;
    rows.push(Row {
        attack: "a saved key's base URL, once no longer allowed".into(),
        expected: "refused at connect: DESTINATION_NOT_ALLOWED, recorded, nothing sent".into(),
        observed: format!(
            "{} {}, recorded {}, requests that reached it: {reached}",
            r.status,
            code(&r.body),
            stored.body["errorCode"].as_str().unwrap_or("-")
        ),
        pass: r.status == 400
            && code(&r.body) == "DESTINATION_NOT_ALLOWED"
            && stored.body["errorCode"] == "DESTINATION_NOT_ALLOWED"
            && reached == 0,
    });

    let r = by_name
        .with_base(&server.url)
        .post(
            &format!("/api/v1/workspaces/{ws_by_name}/executions"),
            json!({"podId": pod_by_name}),
        )
        .await;
    let reached = mock.seen().len() - before;
    rows.push(Row {
        attack: "a saved key's base URL by name (localhost), once no longer allowed".into(),
        expected: "refused by the resolver: DESTINATION_NOT_ALLOWED, nothing sent".into(),
        observed: format!(
            "{} {}, requests that reached it: {reached}",
            r.status,
            code(&r.body)
        ),
        pass: r.status == 400 && code(&r.body) == "DESTINATION_NOT_ALLOWED" && reached == 0,
    });

    finish(&rows);
}

/// What the plugin list says of `id`: the kind and source of each loaded version.
async fn loaded(admin: &Client, id: &str) -> Vec<(String, String)> {
    let list = admin.get("/api/v1/plugins").await.body;
    list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"] == id)
        .map(|p| {
            (
                p["kind"].as_str().unwrap_or_default().to_string(),
                p["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Plugins an operator uploads are checked before anything is written or replaced: a version
/// that climbs out of the data folder, a provider that takes the built-in extractor's id, and the
/// built-ins themselves, which can be shadowed but not removed.
#[tokio::test]
async fn uploads_cannot_escape_the_data_folder_or_take_another_kinds_id() {
    let server = Server::start("security_plugins", Backend::Sqlite, &[]).await;
    let (admin, _, _) = server.user_with_workspace("plugins-admin@pods.test", true);
    let mut rows = vec![];
    let upload = |variant: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .raw(
                    "POST",
                    "/api/v1/plugins",
                    "application/wasm",
                    pods_e2e::hostile_variant_wasm(variant),
                )
                .await
        }
    };

    let r = upload("traversal-version").await;
    let kept = server.data().join("plugins");
    let written: Vec<_> = std::fs::read_dir(&kept)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let escaped = server
        .data()
        .parent()
        .map(|p| p.join("elsewhere").exists())
        .unwrap_or(false);
    rows.push(Row {
        attack: "upload with version 6.6.7-x/../../../../elsewhere/pwned".into(),
        expected: "400 PLUGIN_INVALID, nothing written".into(),
        observed: format!(
            "{} {}, files kept: {}, escaped: {escaped}",
            r.status,
            code(&r.body),
            written.len()
        ),
        pass: r.status == 400
            && code(&r.body) == "PLUGIN_INVALID"
            && written.is_empty()
            && !escaped,
    });

    let r = upload("extractor-impostor").await;
    let json_field = loaded(&admin, "json-field").await;
    rows.push(Row {
        attack: "a provider plugin with the built-in extractor's id (json-field)".into(),
        expected: "400 PLUGIN_INVALID; json-field still the built-in extractor".into(),
        observed: format!("{} {}, json-field: {json_field:?}", r.status, code(&r.body)),
        pass: r.status == 400
            && code(&r.body) == "PLUGIN_INVALID"
            && json_field == [("extractor".to_string(), "builtin".to_string())],
    });

    // The same version uploaded shadows the built-in; unloading it brings the built-in back.
    let (_, builtin) = pods::plugins::BUILTIN
        .iter()
        .find(|(id, _)| *id == "json-field")
        .copied()
        .expect("json-field is built in");
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            builtin.to_vec(),
        )
        .await;
    let shadowed = loaded(&admin, "json-field").await;
    let removed = admin.delete("/api/v1/plugins/json-field").await;
    let back = loaded(&admin, "json-field").await;
    rows.push(Row {
        attack: "shadow the built-in json-field with an upload, then DELETE it".into(),
        expected: "201 (serves as the upload), 204, the built-in serves again".into(),
        observed: format!("{} {:?}, {} {:?}", r.status, shadowed, removed.status, back),
        pass: r.status == 201
            && shadowed == [("extractor".to_string(), "upload".to_string())]
            && removed.status == 204
            && back == [("extractor".to_string(), "builtin".to_string())],
    });

    for id in ["json-field", "openai"] {
        let r = admin.delete(&format!("/api/v1/plugins/{id}")).await;
        let still = loaded(&admin, id).await;
        rows.push(Row {
            attack: format!("DELETE the built-in plugin {id}"),
            expected: "409 CONFLICT; still loaded".into(),
            observed: format!("{} {}, loaded: {}", r.status, code(&r.body), still.len()),
            pass: r.status == 409 && code(&r.body) == "CONFLICT" && still.len() == 1,
        });
    }

    finish(&rows);
}

/// NUL: refused in what clients send, replaced (and said so) in what providers answer — the same
/// on SQLite and PostgreSQL, which cannot store one in text.
#[tokio::test]
async fn nul_characters_are_refused_on_input_and_replaced_in_answers_on_every_backend() {
    let mut rows = vec![];
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let mock = MockProvider::start().await;
        let name = format!("security_nul_{backend:?}").to_lowercase();
        let server = Server::start(&name, backend, &[mock.egress()]).await;
        let (owner, ws, _) = server.user_with_workspace("nul@pods.test", false);
        let r = owner
            .post(
                &format!("/api/v1/workspaces/{ws}/flows"),
                json!({"name": "a\u{0}b"}),
            )
            .await;
        rows.push(answered(
            format!("a flow name with \\u0000 ({backend:?})"),
            &r,
            400,
            "INVALID_FIELD",
        ));
        let (_, pod) = owner
            .openai_pod(
                &ws,
                "sk-nul",
                &format!("{}/v1", mock.url),
                "gpt-4o-mini-nul",
            )
            .await;
        let r = owner
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": pod}),
            )
            .await;
        let warned = r.body["warnings"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains("NUL")))
        });
        rows.push(Row {
            attack: format!("a provider answer with \\u0000 ({backend:?})"),
            expected: "200 COMPLETED, U+FFFD in its place, a warning".into(),
            observed: format!(
                "{} {} {:?}, warned: {warned}",
                r.status,
                r.body["status"].as_str().unwrap_or("-"),
                r.body["content"].as_str().unwrap_or("-")
            ),
            pass: r.status == 200
                && r.body["status"] == "COMPLETED"
                && r.body["content"] == "before\u{FFFD}after"
                && warned,
        });
    }
    finish(&rows);
}

/// Members: owners alone touch owners, a workspace keeps an owner, members are listed and
/// removed, and a removed member loses access at once.
#[tokio::test]
async fn a_workspace_cannot_be_taken_from_its_owner_on_sqlite() {
    a_workspace_cannot_be_taken_from_its_owner(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_workspace_cannot_be_taken_from_its_owner_on_postgres() {
    a_workspace_cannot_be_taken_from_its_owner(Backend::Postgres).await;
}

async fn a_workspace_cannot_be_taken_from_its_owner(backend: Backend) {
    let name = format!("security_members_{backend:?}").to_lowercase();
    let server = Server::start(&name, backend, &[]).await;
    let (owner, ws, owner_id) = server.user_with_workspace("owner@pods.test", false);
    let (admin, _, admin_id) = server.user_with_workspace("admin@pods.test", false);
    let (member, _, member_id) = server.user_with_workspace("member@pods.test", false);
    let members = format!("/api/v1/workspaces/{ws}/members");
    let set = |who: &Client, user: &str, role: &str| {
        let (who, path) = (who.clone(), format!("{members}/{user}"));
        let role = role.to_string();
        async move { who.put(&path, json!({"role": role})).await }
    };
    assert_eq!(set(&owner, &admin_id, "admin").await.status, 204);
    // Added by email, not only by id.
    assert_eq!(set(&owner, "member@pods.test", "member").await.status, 204);
    let mut rows = vec![];

    for (attack, r) in [
        (
            "an admin demotes the owner to viewer",
            set(&admin, &owner_id, "viewer").await,
        ),
        (
            "an admin makes themselves owner",
            set(&admin, &admin_id, "owner").await,
        ),
        (
            "an admin removes the owner",
            admin.delete(&format!("{members}/{owner_id}")).await,
        ),
    ] {
        rows.push(answered(attack, &r, 403, "FORBIDDEN"));
    }
    for (attack, r) in [
        (
            "the last owner demotes themselves",
            set(&owner, &owner_id, "admin").await,
        ),
        (
            "the last owner leaves",
            owner.delete(&format!("{members}/{owner_id}")).await,
        ),
    ] {
        rows.push(Row {
            attack: attack.into(),
            expected: "409 CONFLICT; still owner".into(),
            observed: format!("{} {}", r.status, code(&r.body)),
            pass: r.status == 409 && code(&r.body) == "CONFLICT",
        });
    }

    let listed = owner.get(&members).await;
    let roles: Vec<(String, String)> = listed
        .body
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["email"].as_str().unwrap_or_default().to_string(),
                m["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        ("owner@pods.test", "owner"),
        ("admin@pods.test", "admin"),
        ("member@pods.test", "member"),
    ]
    .map(|(e, r)| (e.to_string(), r.to_string()));
    rows.push(Row {
        attack: "GET the members after all that".into(),
        expected: "owner still owner; admin, member as set".into(),
        observed: format!("{} {roles:?}", listed.status),
        pass: listed.status == 200 && roles == expected,
    });

    let before = member
        .get(&format!("/api/v1/workspaces/{ws}/flows"))
        .await
        .status;
    let removed = admin.delete(&format!("{members}/{member_id}")).await;
    let after = member.get(&format!("/api/v1/workspaces/{ws}/flows")).await;
    rows.push(Row {
        attack: "an admin removes a member, who then reads the workspace".into(),
        expected: "204; the member's next request is 404".into(),
        observed: format!("{before} then {}, then {}", removed.status, after.status),
        pass: before == 200 && removed.status == 204 && after.status == 404,
    });

    finish(&rows);
}

/// A plugin cannot hand the host more than it takes: 300,000 request headers (which once panicked
/// a server thread and stranded the execution RUNNING) and a 9 MiB answer are typed errors, the
/// execution ends, and the server keeps answering.
#[tokio::test]
async fn a_plugin_cannot_overwhelm_the_host_with_what_it_returns() {
    let mock = MockProvider::start().await;
    let server = Server::start("security_caps", Backend::Sqlite, &[mock.egress()]).await;
    let (admin, ws, _) = server.user_with_workspace("caps@pods.test", true);
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            pods_e2e::hostile_wasm(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (_, pod) = admin
        .provider_pod(&ws, "hostile", "sk-hostile", &mock.url, "headers")
        .await;
    let executions = format!("/api/v1/workspaces/{ws}/executions");
    let mut rows = vec![];
    for (attack, model) in [
        ("a plugin builds a request with 300,000 headers", "headers"),
        ("a plugin parses a 9 MiB answer", "huge-content"),
    ] {
        let r = admin
            .post(&executions, json!({"podId": pod, "model": model}))
            .await;
        let id = r.body["executionId"].as_str().unwrap_or_default();
        let stored = admin.get(&format!("{executions}/{id}")).await;
        rows.push(Row {
            attack: attack.into(),
            expected: "502 PLUGIN_OUTPUT_TOO_LARGE; recorded ERROR".into(),
            observed: format!(
                "{} {}; recorded {} {}",
                r.status,
                code(&r.body),
                stored.body["status"].as_str().unwrap_or("-"),
                stored.body["errorCode"].as_str().unwrap_or("-")
            ),
            pass: r.status == 502
                && code(&r.body) == "PLUGIN_OUTPUT_TOO_LARGE"
                && stored.body["status"] == "ERROR"
                && stored.body["errorCode"] == "PLUGIN_OUTPUT_TOO_LARGE",
        });
    }
    let id = admin
        .enqueue(&ws, json!({"podId": pod, "model": "headers"}))
        .await;
    let ended = admin
        .wait_until_finished(
            &ws,
            std::slice::from_ref(&id),
            std::time::Duration::from_secs(20),
        )
        .await;
    let stored = admin.get(&format!("{executions}/{id}")).await;
    let health = Client::new(&server.url, "").get("/health").await;
    rows.push(Row {
        attack: "the same, queued".into(),
        expected: "ends ERROR PLUGIN_OUTPUT_TOO_LARGE (nothing left RUNNING); server healthy"
            .into(),
        observed: format!(
            "{:?} {}; /health {}",
            ended,
            stored.body["errorCode"].as_str().unwrap_or("-"),
            health.status
        ),
        pass: ended == ["ERROR"]
            && stored.body["errorCode"] == "PLUGIN_OUTPUT_TOO_LARGE"
            && health.status == 200,
    });
    finish(&rows);
}

/// An output extractor is held to the same cap as the answer: what it pulls out beyond
/// `PODS_PLUGIN_MAX_OUTPUT_BYTES` is not kept; the answer text is, with a warning.
#[tokio::test]
async fn an_extractor_cannot_hand_back_more_than_an_answer_may_hold() {
    let mock = MockProvider::start().await;
    // Room for the 256 KiB answer, not for the message object around it.
    let cap = (LARGE_ANSWER_BYTES + 20).to_string();
    let server = Server::start(
        "security_extractor_cap",
        Backend::Sqlite,
        &[mock.egress(), ("PODS_PLUGIN_MAX_OUTPUT_BYTES", &cap)],
    )
    .await;
    let (owner, ws, _) = server.user_with_workspace("extract@pods.test", false);
    let (_, pod) = owner
        .openai_pod(
            &ws,
            "sk-x",
            &format!("{}/v1", mock.url),
            "gpt-4o-mini-large",
        )
        .await;
    let r = owner
        .patch(
            &format!("/api/v1/workspaces/{ws}/pods/{pod}"),
            json!({"outputExtractor": "/choices/0/message"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = owner
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await;
    let content = r.body["content"].as_str().unwrap_or_default();
    let warned = r.body["warnings"].as_array().is_some_and(|w| {
        w.iter().any(|w| {
            w.as_str()
                .is_some_and(|w| w.contains("PLUGIN_OUTPUT_TOO_LARGE"))
        })
    });
    finish(&[Row {
        attack: "an output extractor hands back more than PODS_PLUGIN_MAX_OUTPUT_BYTES".into(),
        expected: "200; the answer text kept, a warning".into(),
        observed: format!(
            "{} {} bytes of content, warned: {warned}",
            r.status,
            content.len()
        ),
        pass: r.status == 200 && content.len() == LARGE_ANSWER_BYTES && warned,
    }]);
}

/// The p-th percentile of `samples` (sorted in place).
fn percentile(samples: &mut [std::time::Duration], p: f64) -> std::time::Duration {
    samples.sort();
    let at = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
    samples.get(at).copied().unwrap_or_default()
}

/// Twenty parallel 12 MiB answers from a tenant's own base URL, each parsed by the built-in
/// openai plugin, do not stall the server: `/health` keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_answers_does_not_stall_the_server() {
    let mock = MockProvider::start().await;
    let server = Server::start("security_huge", Backend::Sqlite, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace("huge@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-huge-key-123456", &mock.url, "gpt-4o-mini-huge")
        .await;
    let flood: Vec<_> = (0..20)
        .map(|_| {
            let (owner, ws, pod) = (owner.clone(), ws.clone(), pod.clone());
            tokio::spawn(async move {
                owner
                    .post(
                        &format!("/api/v1/workspaces/{ws}/executions"),
                        json!({"podId": pod}),
                    )
                    .await
            })
        })
        .collect();
    // The probe runs on a thread and runtime of its own: the stand-in sending 240 MiB shares
    // this test's runtime, and a probe queued behind it would time the test, not the server.
    let done = Arc::new(AtomicBool::new(false));
    let probing = {
        let (url, done) = (server.url.clone(), done.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("probe runtime");
            runtime.block_on(async move {
                let probe = Client::new(&url, "");
                let mut times = vec![];
                while !done.load(Ordering::Relaxed) && times.len() < 200 {
                    let started = std::time::Instant::now();
                    let health = probe.get("/health").await;
                    assert_eq!(health.status, 200);
                    times.push(started.elapsed());
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                times
            })
        })
    };
    let mut outcomes = vec![];
    for task in flood {
        let r = task.await.expect("task");
        outcomes.push(format!("{} {}", r.status, code(&r.body)));
    }
    done.store(true, Ordering::Relaxed);
    let mut health_times = probing.join().expect("probe thread");
    outcomes.sort();
    outcomes.dedup();
    let slowest = health_times.iter().max().copied().unwrap_or_default();
    let median = percentile(&mut health_times, 0.5);
    // 240 MiB cross this machine's two cores meanwhile (sent by the stand-in in this very
    // process): the bound is on the server staying responsive, not on copying being free.
    finish(&[Row {
        attack: "20 parallel 12 MiB answers from the tenant's own base URL, parsed by the built-in openai plugin; meanwhile `/health`".into(),
        expected: "`/health` median < 50 ms, every one < 500 ms (was 2.6 s); each call ends with a typed error (the answer is over the 8 MiB cap)".into(),
        observed: format!(
            "median {median:.1?}, slowest {slowest:.1?} of {}; calls: {}",
            health_times.len(),
            outcomes.join(", ")
        ),
        pass: median < std::time::Duration::from_millis(50)
            && slowest < std::time::Duration::from_millis(500)
            && outcomes.iter().all(|o| o.starts_with("502 PLUGIN_")),
    }]);
}

/// One tenant's spinning plugin cannot stall the server: while 20 of its calls spin (10 in
/// `build-request`, 10 in `parse-response`), another workspace's executions and `/health` keep
/// answering (bounds generous on purpose: this is isolation, not speed).
#[tokio::test]
async fn a_spinning_plugin_stalls_neither_other_tenants_nor_the_server() {
    let mock = MockProvider::start().await;
    let server = Server::start("security_spin", Backend::Sqlite, &[mock.egress()]).await;
    let (admin, ws, _) = server.user_with_workspace("spin@pods.test", true);
    let (other, other_ws, _) = server.user_with_workspace("calm@pods.test", false);
    let r = admin
        .raw(
            "POST",
            "/api/v1/plugins",
            "application/wasm",
            pods_e2e::hostile_wasm(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (_, spinner) = admin
        .provider_pod(&ws, "hostile", "sk-hostile", &mock.url, "loop")
        .await;
    let (_, calm) = other
        .openai_pod(&other_ws, "sk-calm", &mock.url, "gpt-4o-mini")
        .await;

    let spinning: Vec<_> = (0..20)
        .map(|i| {
            let (admin, ws, pod) = (admin.clone(), ws.clone(), spinner.clone());
            let model = if i % 2 == 0 { "loop" } else { "loop-parse" };
            tokio::spawn(async move {
                admin
                    .post(
                        &format!("/api/v1/workspaces/{ws}/executions"),
                        json!({"podId": pod, "model": model}),
                    )
                    .await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let window = std::time::Instant::now();
    let (mut calm_times, mut health_times, mut calm_ok) = (vec![], vec![], 0);
    let probe = Client::new(&server.url, "");
    while window.elapsed() < std::time::Duration::from_secs(3) {
        let started = std::time::Instant::now();
        let r = other
            .post(
                &format!("/api/v1/workspaces/{other_ws}/executions"),
                json!({"podId": calm}),
            )
            .await;
        calm_times.push(started.elapsed());
        calm_ok += usize::from(r.status == 200);
        let started = std::time::Instant::now();
        let health = probe.get("/health").await;
        assert_eq!(health.status, 200);
        health_times.push(started.elapsed());
    }
    let calls = calm_times.len();
    let calm_p99 = percentile(&mut calm_times, 0.99);
    let health_max = health_times.iter().max().copied().unwrap_or_default();
    let mut spun = vec![];
    for task in spinning {
        let r = task.await.expect("task");
        spun.push(format!("{} {}", r.status, code(&r.body)));
    }
    spun.dedup();
    let rows = vec![
        Row {
            attack: "20 parallel calls to a plugin spinning in build-request / parse-response \
                     (one workspace); meanwhile another workspace executes"
                .into(),
            expected: "the other workspace's p99 < 250 ms, all answered".into(),
            observed: format!("p99 {calm_p99:.1?} over {calls} calls, {calm_ok} answered 200"),
            pass: calm_p99 < std::time::Duration::from_millis(250) && calm_ok == calls,
        },
        Row {
            attack: "the same; meanwhile `/health`".into(),
            expected: "every answer < 100 ms".into(),
            observed: format!("slowest {health_max:.1?} of {}", health_times.len()),
            pass: health_max < std::time::Duration::from_millis(100),
        },
        Row {
            attack: "the same; the spinning calls themselves".into(),
            expected: "each ends 502 PLUGIN_ERROR (stopped at its deadline)".into(),
            observed: spun.join(", "),
            pass: spun == ["502 PLUGIN_ERROR"],
        },
    ];
    finish(&rows);
}

/// A write the database refuses for what it holds (here: a PostgreSQL trigger raising a data
/// exception on the answer text) is not transient: the execution ends `STORE_REJECTED` with the
/// usage the provider billed, and the provider is not called again — sync or queued.
#[tokio::test]
async fn an_answer_the_database_refuses_ends_the_execution_without_calling_the_provider_again() {
    let mock = MockProvider::start().await;
    let server = Server::start("security_rejected", Backend::Postgres, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace("refused@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-refused-key-1234", &mock.url, "gpt-4o-mini")
        .await;
    let db = sqlx::PgPool::connect(&server.database_url())
        .await
        .expect("connect to the server's database");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_qubits() RETURNS trigger AS $$
         BEGIN
           IF NEW.content LIKE '%qubits%' THEN
             RAISE EXCEPTION 'answers about qubits are refused' USING ERRCODE = '22023';
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER refuse_qubits BEFORE UPDATE ON executions
           FOR EACH ROW EXECUTE FUNCTION refuse_qubits();",
    )
    .execute(&db)
    .await
    .expect("install the trigger");
    let executions = format!("/api/v1/workspaces/{ws}/executions");
    let calls = |model: &str| {
        mock.seen()
            .iter()
            .filter(|s| s.body["model"] == model)
            .count()
    };
    let mut rows = vec![];

    let r = owner
        .post(
            &executions,
            json!({"podId": pod, "model": "gpt-4o-mini-sync"}),
        )
        .await;
    rows.push(Row {
        attack: "sync: the database refuses the answer (a data exception)".into(),
        expected: "500 STORE_REJECTED; the provider called once".into(),
        observed: format!(
            "{} {}; called {}",
            r.status,
            code(&r.body),
            calls("gpt-4o-mini-sync")
        ),
        pass: r.status == 500
            && code(&r.body) == "STORE_REJECTED"
            && calls("gpt-4o-mini-sync") == 1,
    });

    let id = owner
        .enqueue(&ws, json!({"podId": pod, "model": "gpt-4o-mini-queued"}))
        .await;
    let ended = owner
        .wait_until_finished(
            &ws,
            std::slice::from_ref(&id),
            std::time::Duration::from_secs(20),
        )
        .await;
    // Long enough for a retry (the first backoff is 1 s) to have happened, were there one.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let stored = owner.get(&format!("{executions}/{id}")).await;
    rows.push(Row {
        attack: "queued: the same".into(),
        expected: "ERROR STORE_REJECTED with the billed usage; the provider called once".into(),
        observed: format!(
            "{ended:?} {} prompt tokens {}; called {}",
            stored.body["errorCode"].as_str().unwrap_or("-"),
            stored.body["usage"]["promptTokens"],
            calls("gpt-4o-mini-queued")
        ),
        pass: ended == ["ERROR"]
            && stored.body["errorCode"] == "STORE_REJECTED"
            && stored.body["usage"]["promptTokens"]
                .as_i64()
                .is_some_and(|n| n > 0)
            && calls("gpt-4o-mini-queued") == 1,
    });
    finish(&rows);
}

/// The provider answer a server reads (and hands to a plugin) has a ceiling of its own.
#[tokio::test]
async fn a_provider_answer_over_the_response_cap_is_not_read() {
    let mock = MockProvider::start().await;
    let server = Server::start(
        "security_response_cap",
        Backend::Sqlite,
        &[
            mock.egress(),
            ("PODS_PROVIDER_MAX_RESPONSE_BYTES", "100000"),
        ],
    )
    .await;
    let (owner, ws, _) = server.user_with_workspace("cap@pods.test", false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-cap-key-123456", &mock.url, "gpt-4o-mini-large")
        .await;
    let r = owner
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod}),
        )
        .await;
    finish(&[Row {
        attack: "a 256 KiB answer under PODS_PROVIDER_MAX_RESPONSE_BYTES=100000".into(),
        expected: "502 PROVIDER_MALFORMED_RESPONSE naming the cap".into(),
        observed: format!(
            "{} {}: {}",
            r.status,
            code(&r.body),
            r.body["error"]["message"]
        ),
        pass: r.status == 502
            && code(&r.body) == "PROVIDER_MALFORMED_RESPONSE"
            && r.text.contains("100000"),
    }]);
}
