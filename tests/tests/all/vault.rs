//! Provider keys at rest: encrypted, rotated with `pods keys rotate`, and failing closed.

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Server};
use serde_json::json;

const K1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const K2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

#[tokio::test]
async fn keys_are_encrypted_rotate_to_a_new_master_key_and_fail_closed() {
    let mock = MockProvider::start().await;
    let server = Server::start(
        "vault",
        Backend::Sqlite,
        &[("PODS_MASTER_KEY", K1), mock.egress()],
    )
    .await;
    let (client, ws, _) = server.user_with_workspace("vault@pods.test", false);
    let secret = "sk-very-secret-provider-key-9z9z";
    let (_, pod) = client
        .openai_pod(&ws, secret, &format!("{}/v1", mock.url), "gpt-4o-mini")
        .await;
    let run = |client: pods_e2e::Client| {
        let (ws, pod) = (ws.clone(), pod.clone());
        async move {
            client
                .post(
                    &format!("/api/v1/workspaces/{ws}/executions"),
                    json!({"podId": pod}),
                )
                .await
        }
    };
    assert_eq!(run(client.clone()).await.status, 200);
    assert_eq!(
        mock.last("/chat/completions").headers["authorization"],
        format!("Bearer {secret}")
    );

    // Neither the database file nor any API answer holds the key in clear.
    let db = std::fs::read(server.data().join("pods.db")).expect("db");
    let wal = std::fs::read(server.data().join("pods.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the key is stored in clear"
        );
    }
    let keys = client
        .get(&format!("/api/v1/workspaces/{ws}/provider-keys"))
        .await;
    assert!(!keys.text.contains(secret));
    assert_eq!(keys.body[0]["hint"], "…9z9z");

    // Rotate: K2 becomes current, K1 is kept only to open the old ciphertext.
    let rotate = server.cli_with(
        &["keys", "rotate"],
        &[
            ("PODS_MASTER_KEY", K2),
            ("PODS_MASTER_KEY_ID", "k2"),
            ("PODS_PREVIOUS_MASTER_KEYS", &format!("k1:{K1}")),
        ],
    );
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(
        String::from_utf8_lossy(&rotate.stdout)
            .contains("re-encrypted 1 provider key(s) under master key k2")
    );

    // With only K2 configured, the key still opens.
    let server = server
        .restart_with(&[("PODS_MASTER_KEY", K2), ("PODS_MASTER_KEY_ID", "k2")])
        .await;
    let client = pods_e2e::Client::new(&server.url, &server.token("vault@pods.test"));
    assert_eq!(run(client.clone()).await.status, 200);

    // With only K1 (the retired key), it fails closed: no call is made.
    let calls = mock.seen().len();
    let server = server
        .restart_with(&[("PODS_MASTER_KEY", K1), ("PODS_MASTER_KEY_ID", "k1")])
        .await;
    let client = pods_e2e::Client::new(&server.url, &server.token("vault@pods.test"));
    let refused = run(client).await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (500, Some("KEY_UNREADABLE")),
        "{}",
        refused.text
    );
    assert!(!refused.text.contains(secret));
    assert_eq!(mock.seen().len(), calls, "nothing was sent without a key");
}
