//! Where pod configs live, chosen by `POD_STORE`: `sql` (default: the `pods` table) or
//! `dynamodb`. Both behave the same: ids, versions, `expectedVersion` conflicts, not-found.
//!
//! With DynamoDB, the SQL store keeps a bare row per pod (id, workspace, flow) so that edges can
//! reference it and deleting a flow deletes its pods' rows; the config and its version are the
//! DynamoDB item's. Writes touch DynamoDB first when removing and SQL first when adding, so a
//! failure between the two leaves at most an invisible SQL row, never a config without a pod.

mod dynamodb;

use crate::store::{Pod, PodConfig, Result, Store};

pub use dynamodb::DynamoPods;

#[derive(Clone)]
pub enum PodStore {
    Sql(Store),
    Dynamo { store: Store, items: DynamoPods },
}

impl PodStore {
    pub async fn create(&self, ws: &str, flow_id: &str, config: &PodConfig) -> Result<Pod> {
        match self {
            PodStore::Sql(store) => store.create_pod(ws, flow_id, config).await,
            PodStore::Dynamo { store, items } => {
                let (id, now) = store.register_pod(ws, flow_id).await?;
                let pod = Pod {
                    id,
                    flow_id: flow_id.to_string(),
                    config: config.clone(),
                    version: 1,
                    created_at: now,
                    updated_at: now,
                };
                if let Err(e) = items.put_new(ws, &pod).await {
                    // Undo the row, so no pod without a config remains.
                    let _ = store.delete_pod(ws, &pod.id).await;
                    return Err(e);
                }
                Ok(pod)
            }
        }
    }

    pub async fn get(&self, ws: &str, id: &str) -> Result<Pod> {
        match self {
            PodStore::Sql(store) => store.pod(ws, id).await,
            PodStore::Dynamo { items, .. } => items.get(ws, id).await,
        }
    }

    /// The flow's pods, oldest first.
    pub async fn list(&self, ws: &str, flow_id: &str) -> Result<Vec<Pod>> {
        match self {
            PodStore::Sql(store) => store.pods(ws, flow_id).await,
            PodStore::Dynamo { items, .. } => items.list(ws, Some(flow_id)).await,
        }
    }

    /// Replaces the config. With `expected_version`, refuses (`Conflict`) if someone else
    /// updated it meanwhile.
    pub async fn update(
        &self,
        ws: &str,
        id: &str,
        config: &PodConfig,
        expected_version: Option<i64>,
    ) -> Result<Pod> {
        match self {
            PodStore::Sql(store) => store.update_pod(ws, id, config, expected_version).await,
            PodStore::Dynamo { items, .. } => items.update(ws, id, config, expected_version).await,
        }
    }

    pub async fn delete(&self, ws: &str, id: &str) -> Result<()> {
        match self {
            PodStore::Sql(store) => store.delete_pod(ws, id).await,
            PodStore::Dynamo { store, items } => {
                items.delete(ws, id).await?;
                store.delete_pod(ws, id).await
            }
        }
    }

    /// Deletes a flow with its pods and edges.
    pub async fn delete_flow(&self, ws: &str, flow_id: &str) -> Result<()> {
        match self {
            PodStore::Sql(store) => store.delete_flow(ws, flow_id).await,
            PodStore::Dynamo { store, items } => {
                store.flow(ws, flow_id).await?;
                for pod in items.list(ws, Some(flow_id)).await? {
                    items.delete(ws, &pod.id).await?;
                }
                store.delete_flow(ws, flow_id).await
            }
        }
    }
}
