-- Whole-flow runs. A run's pods are ordinary executions (executions.run_id); a run pod with an
-- execution takes that execution's status, one without keeps its own (PENDING, SKIPPED,
-- CANCELLED, or ERROR when it could not even be queued).
CREATE TABLE flow_runs (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    flow_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    budget_usd TEXT,
    messages TEXT,
    stream BIGINT NOT NULL DEFAULT 0,
    -- The graph the run was made for: {"pods": [...], "edges": [[source, target], ...]}.
    graph TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    -- When the run was last (re)opened: only executions recorded since belong to its pods now.
    round_started_at BIGINT NOT NULL,
    -- One node advances a run at a time: it holds this lease; `dirty` asks it to look again.
    advancing_until BIGINT,
    dirty BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX flow_runs_by_flow ON flow_runs (workspace_id, flow_id, created_at);
CREATE INDEX flow_runs_by_status ON flow_runs (status, updated_at);

CREATE TABLE flow_run_pods (
    run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    pod_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    status TEXT NOT NULL,
    execution_id TEXT,
    error TEXT,
    skipped_because TEXT,
    -- The most this pod may cost (the budget's reservation), a decimal; NULL: unpriced.
    max_cost_usd TEXT,
    PRIMARY KEY (run_id, pod_id)
);

ALTER TABLE executions ADD COLUMN run_id TEXT;
CREATE INDEX executions_by_run ON executions (run_id);
