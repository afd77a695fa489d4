//! Each workspace's share of the plugin sandbox: at most `per_workspace` of its plugin calls run
//! at once on this node; the rest wait (asynchronously, holding no thread) for one to end.
//!
//! Together with the runtime's epoch yielding (a running guest gives its thread back every tick)
//! this keeps one tenant's spinning plugin from queueing everyone else: it can occupy at most
//! `per_workspace` threads' worth of plugin time, a tick at a time, and other workspaces' calls
//! and the server's own tasks get their turn in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Past this many workspaces remembered, idle ones are forgotten (their semaphore is rebuilt on
/// their next call).
const PRUNE_ABOVE: usize = 1024;

/// The per-workspace caps of one node.
#[derive(Debug)]
pub struct Shares {
    per_workspace: usize,
    workspaces: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One workspace's share, held by its plugin instances.
#[derive(Debug, Clone)]
pub struct Share(Arc<Semaphore>);

impl Shares {
    /// `per_workspace` is at least 1.
    pub fn new(per_workspace: usize) -> Self {
        Shares {
            per_workspace: per_workspace.max(1),
            workspaces: Mutex::default(),
        }
    }

    /// The share of `workspace`.
    pub fn of(&self, workspace: &str) -> Share {
        // A poisoned lock only means another call panicked while holding it; the map is intact.
        let mut map = self
            .workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(semaphore) = map.get(workspace) {
            return Share(semaphore.clone());
        }
        if map.len() >= PRUNE_ABOVE {
            let full = self.per_workspace;
            // Idle: nobody holds it and no call is running under it.
            map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
        }
        let semaphore = Arc::new(Semaphore::new(self.per_workspace));
        map.insert(workspace.to_string(), semaphore.clone());
        Share(semaphore)
    }
}

impl Share {
    /// Waits for a turn; the call runs while the permit lives. (`None` only were the semaphore
    /// closed, which it never is.)
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_workspace_waits_for_its_own_turns_only() {
        let shares = Shares::new(2);
        let a = shares.of("a");
        let (_one, _two) = (a.turn().await, a.turn().await);
        // A third call of "a" waits…
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), a.turn()).await;
        assert!(
            third.is_err(),
            "a third concurrent call of one workspace ran"
        );
        // …while "b" goes ahead.
        let b =
            tokio::time::timeout(std::time::Duration::from_millis(50), shares.of("b").turn()).await;
        assert!(
            b.is_ok(),
            "another workspace waited for the first one's calls"
        );
        // The same workspace shares one semaphore however often it is looked up.
        let again = shares.of("a");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), again.turn())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn idle_workspaces_are_forgotten_busy_ones_kept() {
        let shares = Shares::new(1);
        let busy = shares.of("busy");
        let _running = busy.turn().await;
        for i in 0..PRUNE_ABOVE {
            drop(shares.of(&format!("idle-{i}")));
        }
        let map = shares.workspaces.lock().expect("lock");
        assert!(map.contains_key("busy"));
        assert!(map.len() <= PRUNE_ABOVE, "{} remembered", map.len());
    }
}
