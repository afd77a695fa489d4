//! `GET /api/v1/workspaces/{ws}/usage`: the spend view's sums equal the executions' own usage and
//! cost (exact decimals), by day, model and provider, on SQLite and PostgreSQL (each has its own
//! rollup trigger).

use pods_e2e::mock::MockProvider;
use pods_e2e::{Backend, Client, Server};
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn decimal(v: &Value) -> Decimal {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("decimal: {v}"))
}

async fn run(client: &Client, ws: &str, pod: &str, model: &str) -> Value {
    client
        .post(
            &format!("/api/v1/workspaces/{ws}/executions"),
            json!({"podId": pod, "model": model}),
        )
        .await
        .body
}

async fn spend_adds_up(backend: Backend, name: &str) {
    let mock = MockProvider::start().await;
    let server = Server::start(name, backend, &[mock.egress()]).await;
    let (owner, ws, _) = server.user_with_workspace(&format!("{name}@pods.test"), false);
    let (_, pod) = owner
        .openai_pod(&ws, "sk-usage-key-123456", &mock.url, "gpt-4o-mini")
        .await;
    let mut cost_by_model = std::collections::BTreeMap::<String, Decimal>::new();
    for model in [
        "gpt-4o-mini",
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-4o-mini-bad-request",
    ] {
        let done = run(&owner, &ws, &pod, model).await;
        let cost = done["cost"]["totalCost"]
            .as_str()
            .map_or(Decimal::ZERO, |c| c.parse().expect("cost"));
        *cost_by_model.entry(model.to_string()).or_default() += cost;
    }
    let today = time::OffsetDateTime::now_utc().date().to_string();

    let by_day_model = owner
        .get(&format!("/api/v1/workspaces/{ws}/usage?groupBy=day,model"))
        .await;
    assert_eq!(by_day_model.status, 200, "{}", by_day_model.text);
    let body = &by_day_model.body;
    assert_eq!(body["groupBy"], json!(["day", "model"]));
    assert_eq!(body["to"], json!(today));
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in rows {
        assert_eq!(row["day"], json!(today));
        assert!(row.get("provider").is_none());
        let model = row["model"].as_str().expect("model");
        assert_eq!(decimal(&row["costUsd"]), cost_by_model[model], "{model}");
    }
    let mini = rows
        .iter()
        .find(|r| r["model"] == "gpt-4o-mini")
        .expect("mini");
    // The stand-in answers 20 prompt (8 cached) and 12 completion tokens.
    assert_eq!(
        (
            &mini["executions"],
            &mini["promptTokens"],
            &mini["cachedTokens"],
            &mini["completionTokens"]
        ),
        (&json!(2), &json!(40), &json!(16), &json!(24))
    );
    let failed = rows
        .iter()
        .find(|r| r["model"] == "gpt-4o-mini-bad-request")
        .expect("failed");
    assert_eq!(
        (&failed["executions"], &failed["errors"]),
        (&json!(1), &json!(1))
    );
    let total: Decimal = cost_by_model.values().sum();
    assert!(total > Decimal::ZERO);
    assert_eq!(decimal(&body["totals"]["costUsd"]), total);
    assert_eq!(body["totals"]["executions"], 4);

    // By provider: one row; no groupBy: totals only.
    let by_provider = owner
        .get(&format!("/api/v1/workspaces/{ws}/usage?groupBy=provider"))
        .await;
    assert_eq!(by_provider.body["rows"][0]["provider"], "openai");
    assert_eq!(decimal(&by_provider.body["rows"][0]["costUsd"]), total);
    let totals = owner.get(&format!("/api/v1/workspaces/{ws}/usage")).await;
    assert_eq!(totals.body["rows"], json!([]));
    assert_eq!(decimal(&totals.body["totals"]["costUsd"]), total);

    // A range without usage, and bad requests.
    let past = owner
        .get(&format!(
            "/api/v1/workspaces/{ws}/usage?from=2020-01-01&to=2020-01-31&groupBy=day"
        ))
        .await;
    assert_eq!(
        (
            past.body["rows"].clone(),
            past.body["totals"]["costUsd"].clone()
        ),
        (json!([]), json!("0"))
    );
    for bad in [
        "from=2026-13-01",
        "from=2026-11-02&to=2026-11-01",
        "from=2024-01-01&to=2026-01-01",
        "groupBy=day,user",
    ] {
        let r = owner
            .get(&format!("/api/v1/workspaces/{ws}/usage?{bad}"))
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (400, Some("INVALID_FIELD")),
            "{bad}: {}",
            r.text
        );
    }

    // Another tenant sees nothing of it.
    let (stranger, _, _) = server.user_with_workspace(&format!("{name}-other@pods.test"), false);
    let r = stranger
        .get(&format!("/api/v1/workspaces/{ws}/usage"))
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_by_day_model_and_provider_adds_up_on_sqlite() {
    spend_adds_up(Backend::Sqlite, "usage_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_by_day_model_and_provider_adds_up_on_postgres() {
    spend_adds_up(Backend::Postgres, "usage_postgres").await;
}
