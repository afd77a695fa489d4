//! Execution events, fanned out to the WebSocket clients watching a flow (in-process; a broker
//! carries them between nodes when several run).
//!
//! Each flow has a bounded broadcast channel. A client that falls more than `BUFFER` events behind
//! is dropped (its socket closed with a reason) rather than allowed to hold the server back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events one flow's subscribers may lag behind by before they are dropped.
pub const BUFFER: usize = 1024;

/// One event, as sent to clients (JSON, camelCase): `type` is `execution:queued`,
/// `execution:running`, `execution:delta`, `execution:completed`, `execution:error` or
/// `execution:cancelled`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub execution_id: String,
    pub pod_id: String,
    pub flow_id: String,
    pub status: &'static str,
    /// RFC 3339, when the event happened.
    pub timestamp: String,
    /// `execution:delta`: `{text, reasoning}`; `execution:completed`: the result;
    /// `execution:error`: `{code, message}`.
    #[serde(flatten)]
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    pub fn new(
        kind: &'static str,
        status: &'static str,
        execution_id: &str,
        pod_id: &str,
        flow_id: &str,
    ) -> Self {
        Event {
            kind,
            execution_id: execution_id.to_string(),
            pod_id: pod_id.to_string(),
            flow_id: flow_id.to_string(),
            status,
            timestamp: crate::store::iso_time::format(crate::store::now_ms()),
            payload: serde_json::Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.payload.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or_default(),
        );
        self
    }
}

/// Per-flow channels of serialized events.
#[derive(Clone, Default)]
pub struct Hub {
    flows: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
}

impl Hub {
    /// Sends to the flow's current subscribers (none: the event is dropped).
    pub fn publish(&self, event: &Event) {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = flows.get(&event.flow_id) else {
            return;
        };
        let Ok(text) = serde_json::to_string(event) else {
            return;
        };
        if sender.send(text.into()).is_err() {
            // Nobody listens any more.
            flows.remove(&event.flow_id);
        }
    }

    /// A receiver of the flow's events from now on.
    pub fn subscribe(&self, flow_id: &str) -> broadcast::Receiver<Arc<str>> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows
            .entry(flow_id.to_string())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_of_a_flow_get_its_events_in_order_and_only_its_events() {
        let hub = Hub::default();
        let mut a = hub.subscribe("flow-a");
        let mut b = hub.subscribe("flow-b");
        hub.publish(&Event::new(
            "execution:queued",
            "QUEUED",
            "e1",
            "p1",
            "flow-a",
        ));
        hub.publish(
            &Event::new("execution:running", "RUNNING", "e1", "p1", "flow-a").with("attempt", 1),
        );
        let first: serde_json::Value =
            serde_json::from_str(&a.recv().await.expect("event")).expect("json");
        let second: serde_json::Value =
            serde_json::from_str(&a.recv().await.expect("event")).expect("json");
        assert_eq!(
            (first["type"].as_str(), second["type"].as_str()),
            (Some("execution:queued"), Some("execution:running"))
        );
        assert_eq!(second["attempt"], 1);
        assert!(b.try_recv().is_err(), "flow-b saw nothing");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_it_lagged() {
        let hub = Hub::default();
        let mut slow = hub.subscribe("f");
        for i in 0..BUFFER + 10 {
            hub.publish(&Event::new(
                "execution:delta",
                "RUNNING",
                &format!("e{i}"),
                "p",
                "f",
            ));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }
}
