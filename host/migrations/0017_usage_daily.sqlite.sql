-- What each workspace spent, per UTC day, provider and model: kept up by a trigger in the same
-- statement that finishes an execution (exactly once), so the spend view reads a few rows per
-- day however many executions there were — and keeps them after retention deletes executions.
CREATE TABLE usage_daily (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    executions BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cost_picousd BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, day, provider, model)
);

INSERT INTO usage_daily
SELECT workspace_id, strftime('%Y-%m-%d', finished_at / 1000, 'unixepoch'), provider, model_id, COUNT(*),
       SUM(status = 'ERROR'), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),
       COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(cost_picousd), 0)
FROM executions WHERE finished_at IS NOT NULL
GROUP BY 1, 2, 3, 4;

CREATE TRIGGER executions_count_daily_usage AFTER UPDATE OF status ON executions
FOR EACH ROW WHEN OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO usage_daily VALUES (NEW.workspace_id, strftime('%Y-%m-%d', NEW.finished_at / 1000, 'unixepoch'),
        NEW.provider, NEW.model_id, 1, NEW.status = 'ERROR', COALESCE(NEW.prompt_tokens, 0),
        COALESCE(NEW.completion_tokens, 0), COALESCE(NEW.reasoning_tokens, 0), COALESCE(NEW.cached_tokens, 0),
        COALESCE(NEW.cost_picousd, 0))
    ON CONFLICT (workspace_id, day, provider, model) DO UPDATE SET executions = executions + 1,
        errors = errors + excluded.errors, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens, cost_picousd = cost_picousd + excluded.cost_picousd;
END;
