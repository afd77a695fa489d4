-- A workspace's executions, newest first (`GET …/workspaces/{ws}/executions`): pods' and calls
-- made without a pod through the OpenAI-compatible door.
CREATE INDEX executions_by_workspace ON executions (workspace_id, created_at);
