//! The plugin folder (`PLUGIN_DIR`): `.wasm` files dropped in are loaded, changed ones reloaded,
//! removed ones unloaded, while the server runs.
//!
//! The folder is scanned every `every`; a file is (re)loaded once its size and modification time
//! are the same in two scans in a row (a copy still being written waits), and a file that was
//! refused is not tried again until it changes. Loads go through [`Registry::load_file`], with
//! its caps and checks. A file that now holds another version unloads the version it held before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Registry, Source};

/// What a file looked like: its size and modification time.
type Signature = (u64, SystemTime);

#[derive(Default)]
struct Seen {
    /// Last scan's signature of every `.wasm` file.
    last: HashMap<PathBuf, Signature>,
    /// What was loaded (or refused) from each file: its signature, and the plugin id and
    /// version if loaded.
    done: HashMap<PathBuf, (Signature, Option<(String, String)>)>,
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
        // A refusal is logged and emitted by the registry.
        let loaded = registry
            .load_file(path.clone(), Source::Dir(path.clone()))
            .await
            .ok()
            .map(|swapped| (swapped.manifest.id, swapped.manifest.version));
        let before = seen.done.get(path).and_then(|(_, l)| l.clone());
        if let (Some(before), Some(now)) = (&before, &loaded)
            && before != now
        {
            // A built-in version stays; a file never held one (the same version is refused).
            let _ = registry.remove(&before.0, Some(&before.1));
        }
        // A refused change keeps what the file loaded before.
        seen.done
            .insert(path.clone(), (*signature, loaded.or(before)));
    }
    // Files gone: unload what they had loaded.
    let gone: Vec<PathBuf> = seen
        .done
        .keys()
        .filter(|p| !now.contains_key(*p))
        .cloned()
        .collect();
    for path in gone {
        if let Some((_, Some((id, version)))) = seen.done.remove(&path) {
            tracing::info!(file = %path.display(), plugin = %id, %version, "plugin file removed");
            let _ = registry.remove(&id, Some(&version));
        }
    }
    seen.last = now;
}
