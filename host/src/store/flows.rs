//! Flows, their pods (LLM prompt nodes) and the edges between pods.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError, conflict, get, new_id, now_ms, touched};
use crate::domain::ResponseFormat;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub updated_at: i64,
}

/// What a pod does when executed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodConfig {
    pub name: String,
    /// Provider plugin id, e.g. `openai`.
    pub provider: String,
    pub model: String,
    pub system_prompt: Option<String>,
    /// The user message sent when an execution brings no messages of its own.
    pub user_prompt: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    #[schema(value_type = Option<crate::domain::ResponseFormat>)]
    pub response_format: Option<ResponseFormat>,
    pub thinking_budget: Option<u32>,
    /// Output extractor: a JSON pointer into the provider's raw response (`/…`, the provider
    /// plugin's own extractor), or `ID[:ARGS]` for an extractor plugin (e.g. `json-field:/summary`);
    /// unset = the answer text.
    pub output_extractor: Option<String>,
    /// The provider plugin version this pod runs on; unset = the newest loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub id: String,
    pub flow_id: String,
    #[serde(flatten)]
    pub config: PodConfig,
    /// Bumped by every update; send it back as `expectedVersion` to refuse lost updates.
    pub version: i64,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub created_at: i64,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub id: String,
    pub flow_id: String,
    pub source_pod_id: String,
    pub target_pod_id: String,
    /// When set, the target reads this execution's output instead of the source's latest.
    pub pinned_execution_id: Option<String>,
    #[serde(with = "crate::domain::iso_time")]
    #[schema(value_type = String)]
    pub created_at: i64,
}

const POD_COLUMNS: &str = "id, flow_id, name, provider, model, system_prompt, user_prompt, temperature, max_tokens, top_p, response_format, thinking_budget, output_extractor, plugin_version, version, created_at, updated_at";

fn flow_row(row: &AnyRow) -> Result<Flow> {
    Ok(Flow {
        id: get(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn pod_row(row: &AnyRow) -> Result<Pod> {
    let format: Option<String> = get(row, "response_format")?;
    let response_format = format
        .map(|f| {
            serde_json::from_str(&f)
                .map_err(|e| StoreError::Corrupt(format!("response_format: {e}")))
        })
        .transpose()?;
    let small = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
    Ok(Pod {
        id: get(row, "id")?,
        flow_id: get(row, "flow_id")?,
        config: PodConfig {
            name: get(row, "name")?,
            provider: get(row, "provider")?,
            model: get(row, "model")?,
            system_prompt: get(row, "system_prompt")?,
            user_prompt: get(row, "user_prompt")?,
            temperature: get(row, "temperature")?,
            max_tokens: small(get(row, "max_tokens")?),
            top_p: get(row, "top_p")?,
            response_format,
            thinking_budget: small(get(row, "thinking_budget")?),
            output_extractor: get(row, "output_extractor")?,
            plugin_version: get(row, "plugin_version")?,
        },
        version: get(row, "version")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

/// An update that expected another version of the pod.
pub(crate) fn version_conflict(current: i64, expected: Option<i64>) -> StoreError {
    StoreError::Conflict(format!(
        "the pod is at version {current}, not {}",
        expected.unwrap_or_default()
    ))
}

fn edge_row(row: &AnyRow) -> Result<Edge> {
    Ok(Edge {
        id: get(row, "id")?,
        flow_id: get(row, "flow_id")?,
        source_pod_id: get(row, "source_pod_id")?,
        target_pod_id: get(row, "target_pod_id")?,
        pinned_execution_id: get(row, "pinned_execution_id")?,
        created_at: get(row, "created_at")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds a pod config's twelve columns, in the order the pod statements list them (name …
/// plugin_version).
fn bind_config<'q>(query: AnyQuery<'q>, config: &'q PodConfig) -> AnyQuery<'q> {
    query
        .bind(&config.name)
        .bind(&config.provider)
        .bind(&config.model)
        .bind(&config.system_prompt)
        .bind(&config.user_prompt)
        .bind(config.temperature)
        .bind(config.max_tokens.map(i64::from))
        .bind(config.top_p)
        .bind(format_json(config))
        .bind(config.thinking_budget.map(i64::from))
        .bind(&config.output_extractor)
        .bind(&config.plugin_version)
}

fn format_json(config: &PodConfig) -> Option<String> {
    config
        .response_format
        .as_ref()
        .and_then(|f| serde_json::to_string(f).ok())
}

impl Store {
    pub async fn create_flow(&self, ws: &str, name: &str, description: &str) -> Result<Flow> {
        let (id, now) = (new_id(), now_ms());
        sqlx::query("INSERT INTO flows (id, workspace_id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(&id)
            .bind(ws)
            .bind(name)
            .bind(description)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.flow(ws, &id).await
    }

    pub async fn flows(&self, ws: &str) -> Result<Vec<Flow>> {
        sqlx::query("SELECT id, name, description, created_at, updated_at FROM flows WHERE workspace_id = $1 ORDER BY created_at, id")
            .bind(ws)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(flow_row)
            .collect()
    }

    pub async fn flow(&self, ws: &str, id: &str) -> Result<Flow> {
        // A hot read: every run's start looks the flow up.
        let row = self
            .read_one(
                sqlx::query("SELECT id, name, description, created_at, updated_at FROM flows WHERE workspace_id = $1 AND id = $2")
                    .bind(ws.to_string())
                    .bind(id.to_string()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        flow_row(&row)
    }

    pub async fn update_flow(
        &self,
        ws: &str,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<Flow> {
        let done = sqlx::query("UPDATE flows SET name = $1, description = $2, updated_at = $3 WHERE workspace_id = $4 AND id = $5")
            .bind(name)
            .bind(description)
            .bind(now_ms())
            .bind(ws)
            .bind(id)
            .execute(&self.pool)
            .await?;
        touched(done)?;
        self.flow(ws, id).await
    }

    /// Deletes the flow with its pods and edges (executions stay, for billing history).
    pub async fn delete_flow(&self, ws: &str, id: &str) -> Result<()> {
        self.delete_in_workspace(
            "DELETE FROM flows WHERE workspace_id = $1 AND id = $2",
            ws,
            id,
        )
        .await
    }

    pub async fn create_pod(&self, ws: &str, flow_id: &str, config: &PodConfig) -> Result<Pod> {
        self.flow(ws, flow_id).await?;
        let (id, now) = (new_id(), now_ms());
        let query = sqlx::query(
            "INSERT INTO pods (id, workspace_id, flow_id, name, provider, model, system_prompt, user_prompt, temperature, max_tokens, top_p, response_format, thinking_budget, output_extractor, plugin_version, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1, $16, $16)",
        )
        .bind(&id)
        .bind(ws)
        .bind(flow_id);
        bind_config(query, config)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.pod(ws, &id).await
    }

    /// Records a pod whose config lives elsewhere (DynamoDB): the row anchors its edges and is
    /// deleted with its flow, and holds no config. Returns the new pod's id and creation time.
    pub async fn register_pod(&self, ws: &str, flow_id: &str) -> Result<(String, i64)> {
        self.flow(ws, flow_id).await?;
        let (id, now) = (new_id(), now_ms());
        sqlx::query(
            "INSERT INTO pods (id, workspace_id, flow_id, name, provider, model, version, created_at, updated_at)
             VALUES ($1, $2, $3, '', '', '', 0, $4, $4)",
        )
        .bind(&id)
        .bind(ws)
        .bind(flow_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok((id, now))
    }

    pub async fn pods(&self, ws: &str, flow_id: &str) -> Result<Vec<Pod>> {
        // On the pool, not a hot read: a flow may have many pods with long prompts, and a hot
        // read holds a runtime thread for as long as it takes.
        sqlx::query(&format!("SELECT {POD_COLUMNS} FROM pods WHERE workspace_id = $1 AND flow_id = $2 ORDER BY created_at, id"))
            .bind(ws)
            .bind(flow_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(pod_row)
            .collect()
    }

    pub async fn pod(&self, ws: &str, id: &str) -> Result<Pod> {
        static POD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("SELECT {POD_COLUMNS} FROM pods WHERE workspace_id = $1 AND id = $2")
        });
        let row = self
            .read_one(
                sqlx::query(POD.as_str())
                    .bind(ws.to_string())
                    .bind(id.to_string()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        pod_row(&row)
    }

    /// Replaces a pod's config. With `expected_version`, refuses (`Conflict`) if someone else
    /// updated it meanwhile.
    pub async fn update_pod(
        &self,
        ws: &str,
        id: &str,
        config: &PodConfig,
        expected_version: Option<i64>,
    ) -> Result<Pod> {
        let query = sqlx::query(
            "UPDATE pods SET name = $1, provider = $2, model = $3, system_prompt = $4, user_prompt = $5, temperature = $6, max_tokens = $7, top_p = $8, response_format = $9, thinking_budget = $10, output_extractor = $11, plugin_version = $12, version = version + 1, updated_at = $13
             WHERE workspace_id = $14 AND id = $15 AND ($16 IS NULL OR version = $16)",
        );
        let done = bind_config(query, config)
            .bind(now_ms())
            .bind(ws)
            .bind(id)
            .bind(expected_version)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            let current = self.pod(ws, id).await?;
            return Err(version_conflict(current.version, expected_version));
        }
        self.pod(ws, id).await
    }

    pub async fn delete_pod(&self, ws: &str, id: &str) -> Result<()> {
        self.delete_in_workspace(
            "DELETE FROM pods WHERE workspace_id = $1 AND id = $2",
            ws,
            id,
        )
        .await
    }

    /// Adds an edge. The caller has checked both pods belong to the flow and that no cycle forms.
    pub async fn create_edge(
        &self,
        ws: &str,
        flow_id: &str,
        source: &str,
        target: &str,
        pinned: Option<&str>,
    ) -> Result<Edge> {
        let (id, now) = (new_id(), now_ms());
        sqlx::query(
            "INSERT INTO edges (id, workspace_id, flow_id, source_pod_id, target_pod_id, pinned_execution_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(ws)
        .bind(flow_id)
        .bind(source)
        .bind(target)
        .bind(pinned)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, "these pods are already connected"))?;
        Ok(Edge {
            id,
            flow_id: flow_id.into(),
            source_pod_id: source.into(),
            target_pod_id: target.into(),
            pinned_execution_id: pinned.map(str::to_string),
            created_at: now,
        })
    }

    pub async fn edges(&self, ws: &str, flow_id: &str) -> Result<Vec<Edge>> {
        self.read(
            sqlx::query("SELECT id, flow_id, source_pod_id, target_pod_id, pinned_execution_id, created_at FROM edges WHERE workspace_id = $1 AND flow_id = $2 ORDER BY created_at, id")
                .bind(ws.to_string())
                .bind(flow_id.to_string()),
        )
        .await?
        .iter()
            .map(edge_row)
            .collect()
    }

    pub async fn delete_edge(&self, ws: &str, id: &str) -> Result<()> {
        self.delete_in_workspace(
            "DELETE FROM edges WHERE workspace_id = $1 AND id = $2",
            ws,
            id,
        )
        .await
    }
}
