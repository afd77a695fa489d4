-- A disabled user's tokens fail at once (NULL: active).
ALTER TABLE users ADD COLUMN disabled_at BIGINT;

-- Security-relevant actions: who (user, or NULL for the operator's CLI), from where, what, when.
-- `detail` is JSON and never holds a secret.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT,
    actor_address TEXT,
    workspace_id TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace_id, id);
