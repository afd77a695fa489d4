//! The plugin folder (`PLUGIN_DIR`): `.wasm` files dropped in are loaded, changed ones reloaded,
//! removed ones unloaded, while the server runs.
//!
//! The folder is scanned every `every`; a file is (re)loaded once its size and modification time
//! are the same in two scans in a row (a copy still being written waits), and a file that was
//! refused is not tried again until it changes. Loads go through [`Registry::load`], with its
//! caps and checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::Registry;

/// What a file looked like: its size and modification time.
type Signature = (u64, SystemTime);

#[derive(Default)]
struct Seen {
    /// Last scan's signature of every `.wasm` file.
    last: HashMap<PathBuf, Signature>,
    /// What was loaded (or refused) from each file: its signature, and the plugin id if loaded.
    done: HashMap<PathBuf, (Signature, Option<String>)>,
}

/// Watches `dir` until the process ends.
pub fn spawn(registry: Registry, dir: PathBuf, every: Duration) {
    tokio::spawn(async move {
        let mut seen = Seen::default();
        loop {
            scan(&registry, &dir, &mut seen).await;
            tokio::time::sleep(every).await;
        }
    });
}

fn wasm_files(dir: &Path) -> HashMap<PathBuf, Signature> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), (meta.len(), meta.modified().ok()?)))
        })
        .collect()
}

async fn scan(registry: &Registry, dir: &Path, seen: &mut Seen) {
    let now = wasm_files(dir);
    for (path, signature) in &now {
        let stable = seen.last.get(path) == Some(signature);
        let new = seen.done.get(path).map(|(s, _)| s) != Some(signature);
        if !(stable && new) {
            continue;
        }
        let loaded = match std::fs::read(path) {
            Ok(wasm) => registry
                .load_from(wasm, "dir")
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let id = match loaded {
            Ok(swapped) => Some(swapped.manifest.id),
            Err(why) => {
                tracing::warn!(file = %path.display(), %why, "plugin file refused; the loaded version keeps serving");
                None
            }
        };
        seen.done.insert(path.clone(), (*signature, id));
    }
    // Files gone: unload what they had loaded.
    let gone: Vec<PathBuf> = seen
        .done
        .keys()
        .filter(|p| !now.contains_key(*p))
        .cloned()
        .collect();
    for path in gone {
        if let Some((_, Some(id))) = seen.done.remove(&path) {
            tracing::info!(file = %path.display(), plugin = %id, "plugin file removed");
            registry.remove(&id);
        }
    }
    seen.last = now;
}
