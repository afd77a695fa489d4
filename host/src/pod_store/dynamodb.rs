//! Pod configs as DynamoDB items: partition key `workspace_id`, sort key `pod_id`; attributes
//! `flow_id`, `config` (the pod's config as JSON), `version`, `created_at`, `updated_at` (unix
//! ms). Every write is conditional: a new pod must not exist, an update must find the version
//! it expects, so two concurrent edits cannot silently overwrite each other. Reads are strongly
//! consistent, like the SQL store's.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType,
};

use crate::domain::now_ms;
use crate::store::{Pod, PodConfig, Result, StoreError, version_conflict};

type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoPods {
    client: Client,
    table: String,
}

fn backend_error<E: ProvideErrorMetadata + std::fmt::Display>(e: E) -> StoreError {
    StoreError::PodBackend(match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => e.to_string(),
    })
}

fn conditional_check_failed<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoPods {
    /// Uses `table`, making it (on-demand billing) if it does not exist.
    pub async fn open(client: Client, table: &str) -> Result<Self> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::PodBackend(e.to_string()))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::PodBackend(e.to_string()))
        };
        let made = client
            .create_table()
            .table_name(table)
            .attribute_definitions(attribute("workspace_id")?)
            .attribute_definitions(attribute("pod_id")?)
            .key_schema(key("workspace_id", KeyType::Hash)?)
            .key_schema(key("pod_id", KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match made {
            Err(e) if e.code() != Some("ResourceInUseException") => return Err(backend_error(e)),
            _ => {}
        }
        Ok(DynamoPods {
            client,
            table: table.to_string(),
        })
    }

    pub async fn put_new(&self, ws: &str, pod: &Pod) -> Result<()> {
        let config =
            serde_json::to_string(&pod.config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("workspace_id", s(ws))
            .item("pod_id", s(&pod.id))
            .item("flow_id", s(&pod.flow_id))
            .item("config", s(&config))
            .item("version", n(pod.version))
            .item("created_at", n(pod.created_at))
            .item("updated_at", n(pod.updated_at))
            .condition_expression("attribute_not_exists(pod_id)")
            .send()
            .await
            .map_err(|e| {
                if conditional_check_failed(&e) {
                    StoreError::Conflict(format!("pod {} already exists", pod.id))
                } else {
                    backend_error(e)
                }
            })?;
        Ok(())
    }

    pub async fn get(&self, ws: &str, id: &str) -> Result<Pod> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("workspace_id", s(ws))
            .key("pod_id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend_error)?
            .item
            .ok_or(StoreError::NotFound)?;
        pod(&item)
    }

    /// The workspace's pods (of one flow, if given), oldest first.
    pub async fn list(&self, ws: &str, flow_id: Option<&str>) -> Result<Vec<Pod>> {
        let mut pods = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("workspace_id = :ws")
                .expression_attribute_values(":ws", s(ws))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if let Some(flow_id) = flow_id {
                query = query
                    .filter_expression("flow_id = :flow")
                    .expression_attribute_values(":flow", s(flow_id));
            }
            let page = query.send().await.map_err(backend_error)?;
            for item in page.items.unwrap_or_default() {
                pods.push(pod(&item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        pods.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(pods)
    }

    pub async fn update(
        &self,
        ws: &str,
        id: &str,
        config: &PodConfig,
        expected_version: Option<i64>,
    ) -> Result<Pod> {
        let json = serde_json::to_string(config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("workspace_id", s(ws))
            .key("pod_id", s(id))
            .update_expression("SET config = :config, version = version + :one, updated_at = :now")
            .expression_attribute_values(":config", s(&json))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now_ms()))
            .return_values(ReturnValue::AllNew);
        update = match expected_version {
            Some(version) => update
                .condition_expression("attribute_exists(pod_id) AND version = :expected")
                .expression_attribute_values(":expected", n(version)),
            None => update.condition_expression("attribute_exists(pod_id)"),
        };
        match update.send().await {
            Ok(out) => pod(&out.attributes.unwrap_or_default()),
            Err(e) if conditional_check_failed(&e) => {
                // Missing, or at another version: say which.
                let current = self.get(ws, id).await?;
                Err(version_conflict(current.version, expected_version))
            }
            Err(e) => Err(backend_error(e)),
        }
    }

    /// Deletes the item; a missing one is not an error (a retried delete finishes the job).
    pub async fn delete(&self, ws: &str, id: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("workspace_id", s(ws))
            .key("pod_id", s(id))
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

fn pod(item: &Item) -> Result<Pod> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(StoreError::Corrupt(format!("pod item: no {name}"))),
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse::<i64>()
            .map_err(|e| StoreError::Corrupt(format!("pod item {name}: {e}"))),
        _ => Err(StoreError::Corrupt(format!("pod item: no {name}"))),
    };
    let config: PodConfig = serde_json::from_str(&text("config")?)
        .map_err(|e| StoreError::Corrupt(format!("pod item config: {e}")))?;
    Ok(Pod {
        id: text("pod_id")?,
        flow_id: text("flow_id")?,
        config,
        version: number("version")?,
        created_at: number("created_at")?,
        updated_at: number("updated_at")?,
    })
}
