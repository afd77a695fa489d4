-- One schema for SQLite and PostgreSQL: ids are TEXT, times are unix milliseconds (BIGINT), money is
-- an exact decimal string (TEXT), booleans are BIGINT 0/1, JSON is TEXT.

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

CREATE TABLE flows (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX flows_workspace ON flows (workspace_id, created_at);

CREATE TABLE pods (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    system_prompt TEXT,
    user_prompt TEXT,
    temperature DOUBLE PRECISION,
    max_tokens BIGINT,
    top_p DOUBLE PRECISION,
    response_format TEXT,
    thinking_budget BIGINT,
    output_extractor TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX pods_flow ON pods (flow_id, created_at);

CREATE TABLE edges (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    flow_id TEXT NOT NULL REFERENCES flows(id) ON DELETE CASCADE,
    source_pod_id TEXT NOT NULL REFERENCES pods(id) ON DELETE CASCADE,
    target_pod_id TEXT NOT NULL REFERENCES pods(id) ON DELETE CASCADE,
    pinned_execution_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (source_pod_id, target_pod_id)
);
CREATE INDEX edges_flow ON edges (flow_id);

CREATE TABLE pricing (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_per_mtok TEXT NOT NULL,
    cached_input_per_mtok TEXT,
    cache_write_per_mtok TEXT,
    output_per_mtok TEXT NOT NULL,
    reasoning_per_mtok TEXT,
    effective_from BIGINT NOT NULL,
    effective_until BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX pricing_model ON pricing (provider, model);

CREATE TABLE executions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    flow_id TEXT NOT NULL,
    pod_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    provider TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_name TEXT,
    streamed BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT,
    cached_tokens BIGINT,
    cache_write_tokens BIGINT,
    completion_tokens BIGINT,
    reasoning_tokens BIGINT,
    input_cost TEXT,
    output_cost TEXT,
    reasoning_cost TEXT,
    total_cost TEXT,
    pricing_id TEXT,
    content TEXT,
    request_metadata TEXT NOT NULL,
    response_metadata TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    error_code TEXT,
    error_message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
CREATE INDEX executions_pod ON executions (pod_id, created_at);
CREATE INDEX executions_pod_status ON executions (pod_id, status, finished_at);

CREATE TABLE provider_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    hint TEXT NOT NULL,
    base_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, provider)
);

CREATE TABLE key_usage (
    key_id TEXT NOT NULL REFERENCES provider_keys(id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost_picousd BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
