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
SELECT workspace_id, to_char(to_timestamp(finished_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), provider, model_id,
       COUNT(*), COUNT(*) FILTER (WHERE status = 'ERROR'), COALESCE(SUM(prompt_tokens), 0),
       COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cached_tokens), 0),
       COALESCE(SUM(cost_picousd), 0)
FROM executions WHERE finished_at IS NOT NULL
GROUP BY 1, 2, 3, 4;

CREATE FUNCTION pods_count_daily_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_daily VALUES (NEW.workspace_id,
        to_char(to_timestamp(NEW.finished_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), NEW.provider, NEW.model_id,
        1, CASE WHEN NEW.status = 'ERROR' THEN 1 ELSE 0 END, COALESCE(NEW.prompt_tokens, 0),
        COALESCE(NEW.completion_tokens, 0), COALESCE(NEW.reasoning_tokens, 0), COALESCE(NEW.cached_tokens, 0),
        COALESCE(NEW.cost_picousd, 0))
    ON CONFLICT (workspace_id, day, provider, model) DO UPDATE SET executions = usage_daily.executions + 1,
        errors = usage_daily.errors + excluded.errors, prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens,
        reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens,
        cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens,
        cost_picousd = usage_daily.cost_picousd + excluded.cost_picousd;
    RETURN NEW;
END $$;

CREATE TRIGGER executions_count_daily_usage AFTER UPDATE OF status ON executions
FOR EACH ROW WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL)
EXECUTE FUNCTION pods_count_daily_usage();
