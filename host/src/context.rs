//! Context resolution: which pods feed a pod, in what order pods run, and `{{pod_id}}` /
//! `{{pod_id.output}}` interpolation.
//!
//! A pod may reference any of its ancestors (direct or transitive). Each reference resolves to
//! the output of the ancestor's execution pinned on the edge leaving it, or else to its latest
//! COMPLETED execution. A reference that does not resolve stays as written and is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::store::{Edge, Pod, Result, Store};

/// Resolved upstream outputs by pod id, and what could not be resolved.
#[derive(Debug, Default)]
pub struct Context {
    pub variables: HashMap<String, String>,
    /// Ancestors without a completed execution.
    pub pending: BTreeSet<String>,
}

/// Every ancestor of `pod_id`, nearest first.
pub fn ancestors(pod_id: &str, edges: &[Edge]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut queue = VecDeque::from([pod_id.to_string()]);
    while let Some(current) = queue.pop_front() {
        for edge in edges.iter().filter(|e| e.target_pod_id == current) {
            if seen.insert(edge.source_pod_id.clone()) {
                order.push(edge.source_pod_id.clone());
                queue.push_back(edge.source_pod_id.clone());
            }
        }
    }
    order
}

/// Whether adding `source → target` would close a cycle (including a self-loop).
pub fn would_cycle(edges: &[Edge], source: &str, target: &str) -> bool {
    source == target || ancestors(source, edges).iter().any(|a| a == target)
}

/// The pods in an order where every pod comes after all its upstream pods (Kahn's algorithm;
/// ties keep the pods' creation order). `None` if the edges contain a cycle.
pub fn execution_order(pods: &[Pod], edges: &[Edge]) -> Option<Vec<String>> {
    let mut indegree: BTreeMap<&str, usize> = pods.iter().map(|p| (p.id.as_str(), 0)).collect();
    for e in edges {
        if let Some(d) = indegree.get_mut(e.target_pod_id.as_str()) {
            *d += 1;
        }
    }
    let position: HashMap<&str, usize> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut ready: BTreeSet<(usize, &str)> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(id, _)| (position[id], *id))
        .collect();
    let mut order = Vec::with_capacity(pods.len());
    while let Some(next) = ready.pop_first() {
        order.push(next.1.to_string());
        for e in edges.iter().filter(|e| e.source_pod_id == next.1) {
            if let Some(d) = indegree.get_mut(e.target_pod_id.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.insert((position[e.target_pod_id.as_str()], e.target_pod_id.as_str()));
                }
            }
        }
    }
    (order.len() == pods.len()).then_some(order)
}

/// Loads the outputs of every ancestor of `pod_id`: an execution pinned on an edge leaving it;
/// else, in a flow run, the run's own execution of it; else its latest completed one.
pub async fn resolve(
    store: &Store,
    ws: &str,
    pod_id: &str,
    edges: &[Edge],
    run_id: Option<&str>,
) -> Result<Context> {
    let mut context = Context::default();
    let ancestors = ancestors(pod_id, edges);
    // An edge leaving an ancestor may pin one of its executions; in a run, the others' outputs
    // are the run's own, all read at once.
    let pin = |ancestor: &str| {
        edges
            .iter()
            .filter(|e| e.source_pod_id == ancestor)
            .find_map(|e| e.pinned_execution_id.as_deref())
    };
    let mut run: HashMap<String, String> = match run_id {
        Some(run) => {
            let unpinned: Vec<&str> = ancestors
                .iter()
                .map(String::as_str)
                .filter(|a| pin(a).is_none())
                .collect();
            store
                .run_outputs(run, &unpinned)
                .await?
                .into_iter()
                .collect()
        }
        None => HashMap::new(),
    };
    for ancestor in ancestors {
        let output = match pin(&ancestor) {
            Some(execution) => store.execution_output(ws, &ancestor, execution).await?,
            None if run_id.is_some() => run.remove(&ancestor),
            None => store
                .latest_output(ws, &ancestor)
                .await?
                .map(|(_, output)| output),
        };
        match output {
            Some(output) => {
                context.variables.insert(ancestor, output);
            }
            None => {
                context.pending.insert(ancestor);
            }
        }
    }
    Ok(context)
}

/// Replaces `{{id}}` and `{{id.output}}` (spaces inside the braces allowed) with the context's
/// outputs. A reference that does not resolve stays literal and adds a warning.
pub fn interpolate(text: &str, context: &Context, warnings: &mut BTreeSet<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = after[..end].trim();
        let id = inner.strip_suffix(".output").unwrap_or(inner);
        let is_reference = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match (is_reference, context.variables.get(id)) {
            (true, Some(output)) => out.push_str(output),
            (true, None) => {
                warnings.insert(if context.pending.contains(id) {
                    format!(
                        "{{{{{inner}}}}} was left as is: pod {id} has no completed execution yet"
                    )
                } else {
                    format!(
                        "{{{{{inner}}}}} was left as is: {id} is not an upstream pod of this pod"
                    )
                });
                out.push_str(&rest[start..start + 2 + end + 2]);
            }
            // Not a reference at all (e.g. a JSON example in a prompt): leave it alone.
            (false, _) => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(source: &str, target: &str) -> Edge {
        Edge {
            id: format!("{source}->{target}"),
            flow_id: "f".into(),
            source_pod_id: source.into(),
            target_pod_id: target.into(),
            pinned_execution_id: None,
            created_at: 0,
        }
    }

    fn pod(id: &str) -> Pod {
        Pod {
            id: id.into(),
            flow_id: "f".into(),
            config: Default::default(),
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn ancestors_are_transitive_and_nearest_first() {
        let edges = [edge("a", "b"), edge("b", "c"), edge("x", "c")];
        assert_eq!(ancestors("c", &edges), ["b", "x", "a"]);
        assert!(ancestors("a", &edges).is_empty());
    }

    #[test]
    fn cycles_and_self_loops_are_detected() {
        let edges = [edge("a", "b"), edge("b", "c")];
        assert!(would_cycle(&edges, "c", "a"));
        assert!(would_cycle(&edges, "a", "a"));
        assert!(!would_cycle(&edges, "a", "c"));
    }

    #[test]
    fn execution_order_is_topological_and_stable() {
        let pods = [pod("summary"), pod("research"), pod("actions"), pod("lone")];
        let edges = [edge("research", "summary"), edge("summary", "actions")];
        assert_eq!(
            execution_order(&pods, &edges).expect("acyclic"),
            ["research", "summary", "actions", "lone"]
        );
        let cyclic = [edge("research", "summary"), edge("summary", "research")];
        assert_eq!(execution_order(&pods, &cyclic), None);
    }

    #[test]
    fn interpolation_replaces_resolves_and_reports() {
        let mut context = Context::default();
        context.variables.insert("pod_a".into(), "Qubits!".into());
        context.pending.insert("pod_b".into());
        let mut warnings = BTreeSet::new();
        let text = "A: {{pod_a}} / {{ pod_a.output }} / B: {{pod_b}} / C: {{pod_c.output}} / {{not a ref}} / {{";
        let out = interpolate(text, &context, &mut warnings);
        assert_eq!(
            out,
            "A: Qubits! / Qubits! / B: {{pod_b}} / C: {{pod_c.output}} / {{not a ref}} / {{"
        );
        let warnings: Vec<_> = warnings.into_iter().collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("pod_b has no completed execution yet"));
        assert!(warnings[1].contains("pod_c is not an upstream pod"));
    }

    #[test]
    fn outputs_are_not_interpolated_twice() {
        let mut context = Context::default();
        context.variables.insert("a".into(), "{{b}}".into());
        context.variables.insert("b".into(), "secret".into());
        let out = interpolate("{{a}}", &context, &mut BTreeSet::new());
        assert_eq!(out, "{{b}}", "an upstream output is data, not a template");
    }
}
