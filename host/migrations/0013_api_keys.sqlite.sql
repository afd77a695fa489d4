-- Workspace API keys: for machines (JWTs stay for people). Only a SHA-256 of the secret is kept;
-- `hint` is what a list shows. A key acts for the member who made it (`created_by`), never with
-- more than that member's role in the workspace.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    rpm BIGINT,
    tpm BIGINT,
    monthly_budget_usd TEXT,
    expires_at BIGINT,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at);

-- What each key's executions used and cost, per UTC calendar month ('YYYY-MM'): the monthly
-- budget is checked against one row.
CREATE TABLE api_key_usage (
    api_key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    month TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost_picousd BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (api_key_id, month)
);

-- The key an execution (or a flow run's executions) was started with.
ALTER TABLE executions ADD COLUMN api_key_id TEXT;
ALTER TABLE flow_runs ADD COLUMN api_key_id TEXT;

-- `Idempotency-Key`: `{caller}:{key}` (a user's or an API key's), and a hash of the request it
-- came with. The same key in a workspace finds the same execution.
ALTER TABLE executions ADD COLUMN idempotency_key TEXT;
ALTER TABLE executions ADD COLUMN idempotency_hash TEXT;
CREATE UNIQUE INDEX executions_idempotency ON executions (workspace_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- An execution started with an API key counts against the key's month when it stops running
-- (completed, failed or cancelled), in the statement that ends it: exactly once.
CREATE TRIGGER executions_count_api_key_usage AFTER UPDATE OF status ON executions
FOR EACH ROW WHEN OLD.status = 'RUNNING' AND NEW.status NOT IN ('RUNNING', 'QUEUED') AND NEW.api_key_id IS NOT NULL
BEGIN
    INSERT INTO api_key_usage (api_key_id, month, requests, prompt_tokens, completion_tokens, reasoning_tokens, cost_picousd)
    SELECT NEW.api_key_id, strftime('%Y-%m', COALESCE(NEW.finished_at, NEW.created_at) / 1000, 'unixepoch'), 1,
           COALESCE(NEW.prompt_tokens, 0), COALESCE(NEW.completion_tokens, 0), COALESCE(NEW.reasoning_tokens, 0),
           COALESCE(NEW.cost_picousd, 0)
    FROM api_keys WHERE id = NEW.api_key_id
    ON CONFLICT (api_key_id, month) DO UPDATE SET requests = requests + 1,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        cost_picousd = cost_picousd + excluded.cost_picousd;
END;
