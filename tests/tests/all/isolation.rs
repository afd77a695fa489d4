//! Workspace isolation: for every route, another workspace's ids are a 404 — never data, never a
//! change — and roles limit what members may do.

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Server};
use serde_json::{Value, json};

#[tokio::test]
async fn another_workspace_is_invisible_on_every_route() {
    let mock = MockProvider::start().await;
    let server = Server::start("isolation", Backend::Sqlite, &[mock.egress()]).await;
    let (alice, ws_a, _) = server.user_with_workspace("alice@pods.test", false);
    let (bob, ws_b, _) = server.user_with_workspace("bob@pods.test", false);

    // Alice's workspace: a flow, two pods, an edge, a key, an execution.
    let key = alice
        .put(
            &format!("/api/v1/workspaces/{ws_a}/provider-keys/openai"),
            json!({"apiKey": "sk-alice-secret", "baseUrl": format!("{}/v1", mock.url)}),
        )
        .await;
    assert_eq!(key.status, 204);
    let flow = alice
        .post(
            &format!("/api/v1/workspaces/{ws_a}/flows"),
            json!({"name": "secret"}),
        )
        .await
        .body["id"]
        .clone();
    let flow = flow.as_str().expect("flow").to_string();
    let pod = |name: &str| json!({"name": name, "provider": "openai", "model": "gpt-4o-mini", "userPrompt": "secret prompt"});
    let p1 = alice
        .post(
            &format!("/api/v1/workspaces/{ws_a}/flows/{flow}/pods"),
            pod("one"),
        )
        .await
        .body["id"]
        .as_str()
        .expect("pod")
        .to_string();
    let p2 = alice
        .post(
            &format!("/api/v1/workspaces/{ws_a}/flows/{flow}/pods"),
            pod("two"),
        )
        .await
        .body["id"]
        .as_str()
        .expect("pod")
        .to_string();
    let edge = alice
        .post(
            &format!("/api/v1/workspaces/{ws_a}/flows/{flow}/edges"),
            json!({"sourcePodId": p1, "targetPodId": p2}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("edge")
        .to_string();
    let run = alice
        .post(
            &format!("/api/v1/workspaces/{ws_a}/executions"),
            json!({"podId": p1}),
        )
        .await;
    assert_eq!(run.status, 200, "{}", run.text);
    let exec = run.body["executionId"]
        .as_str()
        .expect("execution")
        .to_string();
    let bob_flow = bob
        .post(
            &format!("/api/v1/workspaces/{ws_b}/flows"),
            json!({"name": "mine"}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("flow")
        .to_string();
    let requests_before = mock.seen().len();

    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        // Alice's workspace, as Bob.
        ("GET", format!("/api/v1/workspaces/{ws_a}/flows"), None),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_a}/flows"),
            Some(json!({"name": "x"})),
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}"),
            Some(json!({"name": "pwned"})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}/execution-order"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}/pods"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}/pods"),
            Some(pod("x")),
        ),
        ("GET", format!("/api/v1/workspaces/{ws_a}/pods/{p1}"), None),
        (
            "PATCH",
            format!("/api/v1/workspaces/{ws_a}/pods/{p1}"),
            Some(json!({"userPrompt": "pwned"})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_a}/pods/{p1}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}/edges"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_a}/flows/{flow}/edges"),
            Some(json!({"sourcePodId": p2, "targetPodId": p1})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_a}/edges/{edge}"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_a}/executions"),
            Some(json!({"podId": p1})),
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/executions/{exec}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/executions/pod/{p1}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_a}/provider-keys"),
            None,
        ),
        (
            "PUT",
            format!("/api/v1/workspaces/{ws_a}/provider-keys/openai"),
            Some(json!({"apiKey": "sk-bob"})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_a}/provider-keys/openai"),
            None,
        ),
        (
            "PUT",
            format!("/api/v1/workspaces/{ws_a}/members/bob@pods.test"),
            Some(json!({"role": "owner"})),
        ),
        // Bob's own workspace, with Alice's ids.
        (
            "GET",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}"),
            None,
        ),
        (
            "PATCH",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}"),
            Some(json!({"name": "pwned"})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}/execution-order"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}/pods"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}/pods"),
            Some(pod("x")),
        ),
        ("GET", format!("/api/v1/workspaces/{ws_b}/pods/{p1}"), None),
        (
            "PATCH",
            format!("/api/v1/workspaces/{ws_b}/pods/{p1}"),
            Some(json!({"userPrompt": "pwned"})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_b}/pods/{p1}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}/edges"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_b}/flows/{flow}/edges"),
            Some(json!({"sourcePodId": p2, "targetPodId": p1})),
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_b}/flows/{bob_flow}/edges"),
            Some(json!({"sourcePodId": p1, "targetPodId": p2})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws_b}/edges/{edge}"),
            None,
        ),
        (
            "POST",
            format!("/api/v1/workspaces/{ws_b}/executions"),
            Some(json!({"podId": p1})),
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_b}/executions/{exec}"),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{ws_b}/executions/pod/{p1}"),
            None,
        ),
    ];
    for (method, path, body) in &attempts {
        let r = bob.send(method, path, body.as_ref()).await;
        assert_eq!(r.status, 404, "{method} {path} → {} {}", r.status, r.text);
        assert_eq!(r.body["error"]["code"], "NOT_FOUND", "{method} {path}");
        for secret in ["secret", "sk-alice"] {
            assert!(
                !r.text.contains(secret),
                "{method} {path} leaked {secret}: {}",
                r.text
            );
        }
    }

    // Nothing of Alice's changed, and no provider was called on Bob's behalf.
    assert_eq!(mock.seen().len(), requests_before);
    let mine = alice
        .get(&format!("/api/v1/workspaces/{ws_a}/pods/{p1}"))
        .await;
    assert_eq!(mine.body["userPrompt"], "secret prompt");
    assert_eq!(mine.body["version"], 1);
    assert_eq!(
        alice
            .get(&format!("/api/v1/workspaces/{ws_a}/flows/{flow}"))
            .await
            .body["name"],
        "secret"
    );
    assert_eq!(
        alice
            .get(&format!("/api/v1/workspaces/{ws_a}/flows/{flow}/edges"))
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        alice
            .get(&format!("/api/v1/workspaces/{ws_a}/provider-keys"))
            .await
            .body[0]["hint"],
        "…cret"
    );
    // Bob sees only his own workspace.
    let listed = bob.get("/api/v1/workspaces").await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body[0]["id"], json!(ws_b));
    // Without a token, nothing at all.
    let anonymous = bob
        .with_token("")
        .get(&format!("/api/v1/workspaces/{ws_b}/flows"))
        .await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn roles_limit_what_members_may_do() {
    let server = Server::start("roles", Backend::Sqlite, &[]).await;
    let (owner, ws, _) = server.user_with_workspace("owner@pods.test", false);
    let (viewer, _, viewer_id) = server.user_with_workspace("viewer@pods.test", false);
    let (member, _, member_id) = server.user_with_workspace("member@pods.test", false);
    assert_eq!(
        owner
            .put(
                &format!("/api/v1/workspaces/{ws}/members/{viewer_id}"),
                json!({"role": "viewer"})
            )
            .await
            .status,
        204
    );
    assert_eq!(
        owner
            .put(
                &format!("/api/v1/workspaces/{ws}/members/member@pods.test"),
                json!({"role": "member"})
            )
            .await
            .status,
        204
    );
    let flow = owner
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "f"}),
        )
        .await
        .body["id"]
        .as_str()
        .expect("flow")
        .to_string();

    // A viewer reads but cannot write or execute.
    assert_eq!(
        viewer
            .get(&format!("/api/v1/workspaces/{ws}/flows/{flow}"))
            .await
            .status,
        200
    );
    let denied = viewer
        .post(
            &format!("/api/v1/workspaces/{ws}/flows"),
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(
        (denied.status, denied.body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    assert_eq!(
        viewer
            .post(
                &format!("/api/v1/workspaces/{ws}/executions"),
                json!({"podId": "p"})
            )
            .await
            .status,
        403
    );
    // A member edits flows but cannot manage keys or members.
    assert_eq!(
        member
            .post(
                &format!("/api/v1/workspaces/{ws}/flows"),
                json!({"name": "x"})
            )
            .await
            .status,
        201
    );
    assert_eq!(
        member
            .put(
                &format!("/api/v1/workspaces/{ws}/provider-keys/openai"),
                json!({"apiKey": "sk"})
            )
            .await
            .status,
        403
    );
    assert_eq!(
        member
            .put(
                &format!("/api/v1/workspaces/{ws}/members/{member_id}"),
                json!({"role": "owner"})
            )
            .await
            .status,
        403
    );
    // Only system admins change prices.
    let price =
        json!({"provider": "openai", "model": "gpt-9", "inputPerMtok": "1", "outputPerMtok": "2"});
    assert_eq!(
        owner.post("/api/v1/pricing", price.clone()).await.status,
        403
    );
    let (admin, _, _) = server.user_with_workspace("root@pods.test", true);
    // A price is a decimal string, as documented: not a JSON number, not an exponent.
    for refused in [
        json!({"provider": "openai", "model": "gpt-9", "inputPerMtok": 1.5, "outputPerMtok": "2"}),
        json!({"provider": "openai", "model": "gpt-9", "inputPerMtok": "1", "outputPerMtok": "1e-7"}),
        json!({"provider": "openai", "model": "gpt-9", "inputPerMtok": "1", "outputPerMtok": "2", "reasoningPerMtok": "1.5e3"}),
    ] {
        let answer = admin.post("/api/v1/pricing", refused.clone()).await;
        assert_eq!(answer.status, 400, "{refused}: {}", answer.text);
        assert_eq!(
            answer.body["error"]["code"], "INVALID_FIELD",
            "{}",
            answer.text
        );
    }
    let added = admin.post("/api/v1/pricing", price).await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(added.body["inputPerMtok"], "1");
    assert!(
        owner
            .get("/api/v1/pricing")
            .await
            .body
            .as_array()
            .expect("prices")
            .iter()
            .any(|p| p["model"] == "gpt-9")
    );
}
