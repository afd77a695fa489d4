//! The event hub: serialized events fanned out to the WebSocket clients watching a flow
//! (in-process; Redis pub/sub carries them between nodes when several run), cancel requests, and
//! notices that a user's access changed (so open WebSockets re-check it).
//! The hub is transport only: what an event says is [`crate::ledger`]'s business.
//!
//! Each flow has a bounded broadcast channel. A client that falls more than `BUFFER` events behind
//! is dropped (its socket closed with a reason) rather than allowed to hold the server back.
//!
//! **Order.** A node's events leave in the order it published them (one relay task, pipelined).
//! Across nodes, order follows causality only if a node waits for its event to be delivered
//! before it lets another node act: [`Hub::publish_confirmed`] returns once Redis has handed the
//! event to every subscribed node, so a `queued` event confirmed before its job is added reaches
//! every client before the `running` event of the worker that takes the job.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, oneshot};

/// Events one flow's subscribers may lag behind by before they are dropped.
pub const BUFFER: usize = 1024;

/// How long a confirmed publish waits for the relay before it gives up waiting (the event still
/// goes out; only its order with what follows is no longer promised).
const CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Per-flow channels of serialized events, and requests to cancel a running execution, which
/// reach every node when a relay joins them (each node then delivers what the relay brings back,
/// its own events included, so every client sees one order).
#[derive(Clone)]
pub struct Hub {
    flows: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
    cancels: Arc<CancelBoard>,
    /// User ids whose access changed (removed from a workspace, role changed, disabled).
    access: broadcast::Sender<Arc<str>>,
    relay: Option<tokio::sync::mpsc::Sender<Outgoing>>,
    /// The relay's Redis, for readiness checks.
    redis: Option<redis::aio::ConnectionManager>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            flows: Default::default(),
            cancels: Arc::new(CancelBoard {
                requests: broadcast::channel(BUFFER).0,
                recent: Mutex::default(),
            }),
            access: broadcast::channel(BUFFER).0,
            relay: None,
            redis: None,
        }
    }
}

/// Cancel requests as they arrive, and the latest of them remembered: a request can reach a node
/// between a worker's claim and the moment its call starts watching, and must not be missed.
struct CancelBoard {
    requests: broadcast::Sender<String>,
    recent: Mutex<Recent>,
}

/// The latest cancel requests: a set to look them up, and their order to forget the oldest.
#[derive(Default)]
struct Recent {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

/// Cancel requests remembered for calls that start watching late.
const RECENT_CANCELS: usize = 4 * BUFFER;

impl CancelBoard {
    fn post(&self, execution_id: String) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.ids.insert(execution_id.clone()) {
                recent.order.push_back(execution_id.clone());
            }
            if recent.order.len() > RECENT_CANCELS
                && let Some(oldest) = recent.order.pop_front()
            {
                recent.ids.remove(&oldest);
            }
        }
        let _ = self.requests.send(execution_id);
    }

    fn seen(&self, execution_id: &str) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.ids.contains(execution_id)
    }
}

/// What a node sends through the relay; `confirm` is told once Redis has taken the event.
#[derive(Debug)]
enum Outgoing {
    Event {
        /// Channel names joined by spaces.
        channels: String,
        text: String,
        confirm: Option<oneshot::Sender<()>>,
    },
    Cancel(String),
    Access(String),
}

/// Where an event goes: one channel or more — a flow (its id), a workspace
/// ([`workspace_channel`]). Kept as the names joined by spaces, the form the relay carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels(String);

impl Channels {
    /// A flow's channel.
    pub fn flow(flow_id: &str) -> Self {
        Channels(flow_id.to_string())
    }

    /// A flow's channel (none if `flow_id` is empty: a call without a pod) and its workspace's.
    pub fn flow_and_workspace(flow_id: &str, workspace_id: &str) -> Self {
        let workspace = workspace_channel(workspace_id);
        match flow_id {
            "" => Channels(workspace),
            flow => Channels(format!("{flow} {workspace}")),
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        names(&self.0)
    }
}

fn names(channels: &str) -> impl Iterator<Item = &str> {
    channels.split(' ').filter(|name| !name.is_empty())
}

/// The channel of every execution event in a workspace (flows' pods and calls without a pod).
pub fn workspace_channel(workspace_id: &str) -> String {
    format!("workspace:{workspace_id}")
}

impl Hub {
    /// Sends to the channels' subscribers on every node (none: the event is dropped), without
    /// waiting.
    pub fn publish(&self, to: &Channels, event: &impl Serialize) {
        if self.relay.is_none() && !to.names().any(|name| self.watched(name)) {
            // Nobody here watches: spare the serializing.
            return;
        }
        let Ok(text) = serde_json::to_string(event) else {
            return;
        };
        match &self.relay {
            Some(relay) => {
                let out = Outgoing::Event {
                    channels: to.0.clone(),
                    text,
                    confirm: None,
                };
                if relay.try_send(out).is_err() {
                    tracing::warn!(channels = %to.0, "the event relay is backed up; an event was dropped");
                }
            }
            None => self.deliver(&to.0, text.into()),
        }
    }

    /// Sends as [`Hub::publish`] does, and returns once every node has it: in-process at once;
    /// through Redis once its PUBLISH returned (Redis has then queued it to every subscribed node,
    /// ahead of anything published later by anyone). Gives up waiting after a few seconds.
    pub async fn publish_confirmed(&self, to: &Channels, event: &impl Serialize) {
        let Some(relay) = &self.relay else {
            return self.publish(to, event);
        };
        let Ok(text) = serde_json::to_string(event) else {
            return;
        };
        let (confirm, confirmed) = oneshot::channel();
        let out = Outgoing::Event {
            channels: to.0.clone(),
            text,
            confirm: Some(confirm),
        };
        let sent = tokio::time::timeout(CONFIRM_TIMEOUT, async {
            relay.send(out).await.ok()?;
            confirmed.await.ok()
        })
        .await;
        if !matches!(sent, Ok(Some(()))) {
            tracing::warn!(channels = %to.0, "the event relay did not confirm an event in time; going on");
        }
    }

    fn watched(&self, channel: &str) -> bool {
        let flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.contains_key(channel)
    }

    /// Hands an event to this node's subscribers of the channels (names joined by spaces).
    fn deliver(&self, channels: &str, text: Arc<str>) {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        for channel in names(channels) {
            if let Some(sender) = flows.get(channel)
                && sender.send(text.clone()).is_err()
            {
                // Nobody listens any more.
                flows.remove(channel);
            }
        }
    }

    /// A receiver of a channel's events from now on: a flow's (its id) or a workspace's
    /// ([`workspace_channel`]).
    pub fn subscribe(&self, flow_id: &str) -> broadcast::Receiver<Arc<str>> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows
            .entry(flow_id.to_string())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }

    /// Asks whichever node runs the execution to abort its provider call.
    pub fn request_cancel(&self, execution_id: &str) {
        match &self.relay {
            Some(relay) => {
                if relay
                    .try_send(Outgoing::Cancel(execution_id.to_string()))
                    .is_err()
                {
                    tracing::warn!(execution = %execution_id, "the event relay is backed up; a cancel was not relayed");
                }
            }
            None => self.cancels.post(execution_id.to_string()),
        }
    }

    /// Tells every node that `user_id`'s access changed: whoever holds something on their behalf
    /// (an open WebSocket) checks it again.
    pub fn access_changed(&self, user_id: &str) {
        match &self.relay {
            Some(relay) => {
                if relay
                    .try_send(Outgoing::Access(user_id.to_string()))
                    .is_err()
                {
                    tracing::warn!(user = %user_id, "the event relay is backed up; an access change was not relayed");
                }
            }
            None => {
                let _ = self.access.send(user_id.into());
            }
        }
    }

    /// User ids whose access changed, as [`Hub::access_changed`] announces them on any node.
    pub fn access_changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.access.subscribe()
    }

    /// Resolves when a cancel of the execution is requested on any node — including one that
    /// arrived before this was called (a worker claims an execution, then starts its call).
    pub fn cancelled(&self, execution_id: &str) -> impl Future<Output = ()> + Send + 'static {
        // Subscribed before the look at the board: a request lands in one or the other.
        let mut requests = self.cancels.requests.subscribe();
        let (board, id) = (self.cancels.clone(), execution_id.to_string());
        async move {
            if board.seen(&id) {
                return;
            }
            loop {
                match requests.recv().await {
                    Ok(cancelled) if cancelled == id => return,
                    Ok(_) => {}
                    // Fell behind: what was missed is on the board.
                    Err(broadcast::error::RecvError::Lagged(_)) if board.seen(&id) => return,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        }
    }

    /// Whether events reach the other nodes: in-process always; through Redis, a `PING`.
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        match &self.redis {
            Some(redis) => {
                let mut redis = redis.clone();
                redis::cmd("PING").query_async::<()>(&mut redis).await
            }
            None => Ok(()),
        }
    }

    /// A hub whose events, cancels and access changes travel through Redis pub/sub (channels
    /// `{prefix}:events`, `{prefix}:cancel` and `{prefix}:access`), so that clients on every node see every node's events. If Redis goes
    /// away, the relay reconnects; what is published meanwhile is lost (clients can read the
    /// execution's final state over REST).
    pub async fn with_redis(url: &str, prefix: &str) -> Result<Hub, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let mut publisher = client.get_connection_manager().await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Outgoing>(RELAY_BUFFER);
        let hub = Hub {
            relay: Some(tx),
            redis: Some(publisher.clone()),
            ..Hub::default()
        };
        let (events, cancels, access) = (
            format!("{prefix}:events"),
            format!("{prefix}:cancel"),
            format!("{prefix}:access"),
        );
        // Subscribed before the first publish, so this node sees its own first event.
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&[&events, &cancels, &access]).await?;
        tokio::spawn({
            let (events, cancels, access) = (events.clone(), cancels.clone(), access.clone());
            async move {
                // One publisher, in order: a node's events keep their order on every node. What
                // has piled up while a round trip ran goes out as one pipeline.
                let mut batch = Vec::new();
                while rx.recv_many(&mut batch, RELAY_BATCH).await > 0 {
                    let mut pipe = redis::pipe();
                    let mut confirms = Vec::new();
                    for out in batch.drain(..) {
                        match out {
                            Outgoing::Event {
                                channels,
                                text,
                                confirm,
                            } => {
                                pipe.publish(&events, format!("{channels}\n{text}"))
                                    .ignore();
                                confirms.extend(confirm);
                            }
                            Outgoing::Cancel(id) => {
                                pipe.publish(&cancels, id).ignore();
                            }
                            Outgoing::Access(user_id) => {
                                pipe.publish(&access, user_id).ignore();
                            }
                        }
                    }
                    if let Err(e) = pipe.query_async::<()>(&mut publisher).await {
                        tracing::warn!(error = %e, "publishing to Redis failed");
                    }
                    for confirm in confirms {
                        let _ = confirm.send(());
                    }
                }
            }
        });
        let weak = hub.downgrade();
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            let mut pubsub = Some(pubsub);
            loop {
                if let Some(mut conn) = pubsub.take() {
                    let mut messages = conn.on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(hub) = weak.upgrade() else { return };
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        if msg.get_channel_name() == cancels {
                            hub.cancels.post(payload);
                        } else if msg.get_channel_name() == access {
                            let _ = hub.access.send(payload.into());
                        } else if let Some((channels, text)) = payload.split_once('\n') {
                            hub.deliver(channels, text.into());
                        }
                    }
                }
                if weak.upgrade().is_none() {
                    return;
                }
                tracing::warn!("lost the Redis event subscription; reconnecting");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if let Ok(mut conn) = client.get_async_pubsub().await
                    && conn.subscribe(&[&events, &cancels, &access]).await.is_ok()
                {
                    pubsub = Some(conn);
                }
            }
        });
        Ok(hub)
    }

    fn downgrade(&self) -> WeakHub {
        WeakHub {
            flows: Arc::downgrade(&self.flows),
            cancels: self.cancels.clone(),
            access: self.access.clone(),
        }
    }
}

/// The relay's hold on a hub: it stops when the hub is gone.
struct WeakHub {
    flows: std::sync::Weak<Mutex<HashMap<String, broadcast::Sender<Arc<str>>>>>,
    cancels: Arc<CancelBoard>,
    access: broadcast::Sender<Arc<str>>,
}

impl WeakHub {
    fn upgrade(&self) -> Option<Hub> {
        Some(Hub {
            flows: self.flows.upgrade()?,
            cancels: self.cancels.clone(),
            access: self.access.clone(),
            relay: None,
            redis: None,
        })
    }
}

/// Events a node may have waiting for the relay before it drops new ones.
const RELAY_BUFFER: usize = 65_536;
/// Most events sent to Redis in one pipeline.
const RELAY_BATCH: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[tokio::test]
    async fn subscribers_of_a_flow_get_its_events_in_order_and_only_its_events() {
        let hub = Hub::default();
        let mut a = hub.subscribe("flow-a");
        let mut b = hub.subscribe("flow-b");
        hub.publish(&Channels::flow("flow-a"), &json!({"n": 1}));
        hub.publish_confirmed(&Channels::flow("flow-a"), &json!({"n": 2}))
            .await;
        let first: serde_json::Value =
            serde_json::from_str(&a.recv().await.expect("event")).expect("json");
        let second: serde_json::Value =
            serde_json::from_str(&a.recv().await.expect("event")).expect("json");
        assert_eq!(
            (first["n"].as_i64(), second["n"].as_i64()),
            (Some(1), Some(2))
        );
        assert!(b.try_recv().is_err(), "flow-b saw nothing");
    }

    #[tokio::test]
    async fn an_execution_event_reaches_its_flow_and_its_workspace_once_each() {
        let hub = Hub::default();
        let mut flow = hub.subscribe("flow-a");
        let mut workspace = hub.subscribe(&workspace_channel("w1"));
        let mut other = hub.subscribe(&workspace_channel("w2"));
        hub.publish(
            &Channels::flow_and_workspace("flow-a", "w1"),
            &json!({"n": 1}),
        );
        // A call without a pod: its workspace only.
        hub.publish(&Channels::flow_and_workspace("", "w1"), &json!({"n": 2}));
        assert_eq!(&*flow.recv().await.expect("event"), r#"{"n":1}"#);
        assert!(flow.try_recv().is_err());
        assert_eq!(&*workspace.recv().await.expect("event"), r#"{"n":1}"#);
        assert_eq!(&*workspace.recv().await.expect("event"), r#"{"n":2}"#);
        assert!(other.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_it_lagged() {
        let hub = Hub::default();
        let mut slow = hub.subscribe("f");
        for i in 0..BUFFER + 10 {
            hub.publish(&Channels::flow("f"), &json!({"n": i}));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
    }

    /// Whether `watch` resolves within a short while (it should at once, or never).
    async fn resolves(watch: impl Future<Output = ()>) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(100), watch)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn access_changes_reach_whoever_listens() {
        let hub = Hub::default();
        let mut changes = hub.access_changes();
        hub.access_changed("u1");
        let got = tokio::time::timeout(std::time::Duration::from_millis(100), changes.recv())
            .await
            .expect("in time")
            .expect("a change");
        assert_eq!(&*got, "u1");
    }

    #[tokio::test]
    async fn a_cancel_is_seen_by_a_call_watching_before_or_after_it_arrived() {
        let hub = Hub::default();
        let early = hub.cancelled("e1");
        hub.request_cancel("e1");
        // A worker that claimed e1 but starts watching only now still sees the cancel.
        let late = hub.cancelled("e1");
        assert!(resolves(early).await, "watching before the cancel");
        assert!(resolves(late).await, "watching after the cancel");
        assert!(!resolves(hub.cancelled("e2")).await, "another execution");
    }

    #[tokio::test]
    async fn a_watch_that_falls_behind_finds_its_cancel_on_the_board() {
        let hub = Hub::default();
        // Already waiting on the channel (so past its first look at the board)...
        let watch = tokio::spawn(hub.cancelled("e0"));
        tokio::task::yield_now().await;
        // ...when e0's request is pushed out of the channel by the ones after it.
        for i in 0..BUFFER + 10 {
            hub.request_cancel(&format!("e{i}"));
        }
        assert!(resolves(async { watch.await.expect("watch") }).await);
    }

    #[tokio::test]
    async fn the_board_forgets_the_oldest_cancels_first() {
        let hub = Hub::default();
        hub.request_cancel("first");
        hub.request_cancel("first"); // twice: remembered once
        for i in 0..RECENT_CANCELS - 1 {
            hub.request_cancel(&format!("e{i}"));
        }
        assert!(
            hub.cancels.seen("first"),
            "still among the latest {RECENT_CANCELS}"
        );
        hub.request_cancel("one-more");
        assert!(!hub.cancels.seen("first"), "the oldest is forgotten");
        assert!(hub.cancels.seen("e0") && hub.cancels.seen("one-more"));
    }
}
