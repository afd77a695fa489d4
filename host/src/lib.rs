//! Pods: runs LLM pods wired into flows. Providers are sandboxed WebAssembly plugins.
//!
//! Data flows one way: [`api`] and [`worker`] → [`execution`] → ([`workspace_config`],
//! [`context`], [`plugins`] via [`egress`], [`cost`], [`vault`]) → [`ledger`] (every status
//! change) → ([`store`], [`queue`], [`events`]) → [`domain`] (the shared types, at the bottom).
//! [`config`] opens them all from flags and environment. `ARCHITECTURE.md` draws the whole
//! graph; the `module_graph` test below keeps it true and free of cycles.

pub mod api;
pub mod auth;
pub mod aws;
pub mod config;
pub mod conformance;
pub mod console;
pub mod context;
pub mod cost;
pub mod domain;
pub mod egress;
pub mod events;
pub mod execution;
pub mod ledger;
pub mod limiter;
pub mod metrics;
pub mod plugins;
pub mod pod_store;
pub mod queue;
pub mod request_id;
pub mod runs;
pub mod scaffold;
pub mod server;
pub mod sse;
pub mod store;
pub mod telemetry;
pub mod vault;
pub mod worker;
pub mod workspace_config;

/// The module graph, read from the sources: it has no cycle, and it is the one ARCHITECTURE.md
/// draws (a `crate::X` path in code, not in a comment, is a dependency on `X`).
#[cfg(test)]
mod module_graph {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    type Graph = BTreeMap<String, BTreeSet<String>>;

    fn files(path: &Path) -> Vec<PathBuf> {
        if path.is_file() {
            return vec![path.to_path_buf()];
        }
        let mut found = vec![];
        for entry in std::fs::read_dir(path).expect("a source folder").flatten() {
            found.extend(files(&entry.path()));
        }
        found
    }

    /// Every top-level module of the library and the modules it uses.
    fn graph() -> Graph {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut modules = BTreeMap::new();
        for entry in std::fs::read_dir(&src).expect("src").flatten() {
            let path = entry.path();
            let name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name != "lib" && name != "main" {
                modules.insert(name, path);
            }
        }
        let mut graph = Graph::new();
        for (name, path) in &modules {
            let mut uses = BTreeSet::new();
            for file in files(path) {
                let text = std::fs::read_to_string(&file).expect("a source file");
                for line in text.lines() {
                    let code = line.split("//").next().unwrap_or_default();
                    for (i, _) in code.match_indices("crate::") {
                        let used: String = code[i + 7..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if used != *name && modules.contains_key(&used) {
                            uses.insert(used);
                        }
                    }
                }
            }
            graph.insert(name.clone(), uses);
        }
        graph
    }

    /// A cycle through `from`, if there is one.
    fn cycle(graph: &Graph, from: &str, path: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == from) {
            let mut cycle = path[at..].to_vec();
            cycle.push(from.to_string());
            return Some(cycle);
        }
        path.push(from.to_string());
        for next in graph.get(from).into_iter().flatten() {
            if let Some(found) = cycle(graph, next, path) {
                return Some(found);
            }
        }
        path.pop();
        None
    }

    #[test]
    fn the_module_graph_has_no_cycle() {
        let graph = graph();
        for module in graph.keys() {
            let found = cycle(&graph, module, &mut vec![]);
            assert!(
                found.is_none(),
                "a cycle: {}",
                found.unwrap_or_default().join(" → ")
            );
        }
        assert!(
            graph["domain"].is_empty(),
            "domain uses nothing: {:?}",
            graph["domain"]
        );
    }

    /// Only the ledger publishes execution events and calls the store's status-changing writes
    /// (the hub defines `publish`; the store defines the writes).
    #[test]
    fn only_the_ledger_changes_an_execution_s_status() {
        const STATUS_WRITES: [&str; 11] = [
            ".publish(",
            ".publish_confirmed(",
            ".start_execution(",
            ".insert_queued_execution(",
            ".claim_execution(",
            ".claim_executions(",
            ".finish_execution(",
            ".requeue_execution(",
            ".requeue_stale(",
            ".abandon_execution(",
            ".cancel_execution(",
        ];
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut outside = vec![];
        for file in files(&src) {
            let relative = file.strip_prefix(&src).unwrap_or(&file).to_path_buf();
            // lib.rs holds only this list and the module declarations.
            let allowed = ["ledger.rs", "events.rs", "store", "lib.rs"]
                .iter()
                .any(|owner| relative.starts_with(owner));
            if allowed {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("a source file");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                // The sweeper's re-queue goes through `Ledger::requeue_stale`.
                let via_ledger = code.contains("ledger.requeue_stale(");
                if !via_ledger && STATUS_WRITES.iter().any(|w| code.contains(w)) {
                    outside.push(format!("{}:{}: {}", relative.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            outside.is_empty(),
            "status changes outside the ledger: {outside:#?}"
        );
    }

    #[test]
    fn architecture_md_draws_the_graph_the_code_has() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"),
        )
        .expect("ARCHITECTURE.md at the repository's root");
        // Its table: | `module` | `a`, `b` | …
        let mut drawn = Graph::new();
        for row in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_string();
            let uses = cells[2]
                .split(',')
                .map(|u| u.trim().trim_matches('`').to_string())
                .filter(|u| !u.is_empty() && u != "—")
                .collect();
            drawn.insert(name, uses);
        }
        assert_eq!(
            drawn,
            graph(),
            "ARCHITECTURE.md's module table is out of date"
        );
    }
}
