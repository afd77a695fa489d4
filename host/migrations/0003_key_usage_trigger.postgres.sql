-- Count a completed execution's usage against its provider key in the same statement that
-- completes it: one atomic write, exactly once (the trigger fires only on RUNNING → COMPLETED).
ALTER TABLE executions ADD COLUMN key_id TEXT;
ALTER TABLE executions ADD COLUMN cost_picousd BIGINT;

CREATE FUNCTION pods_count_key_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_usage (key_id, day, requests, prompt_tokens, completion_tokens, reasoning_tokens, cost_picousd)
    SELECT NEW.key_id, to_char(to_timestamp(NEW.finished_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 1,
           COALESCE(NEW.prompt_tokens, 0), COALESCE(NEW.completion_tokens, 0), COALESCE(NEW.reasoning_tokens, 0),
           COALESCE(NEW.cost_picousd, 0)
    FROM provider_keys WHERE id = NEW.key_id
    ON CONFLICT (key_id, day) DO UPDATE SET requests = key_usage.requests + 1,
        prompt_tokens = key_usage.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = key_usage.completion_tokens + excluded.completion_tokens,
        reasoning_tokens = key_usage.reasoning_tokens + excluded.reasoning_tokens,
        cost_picousd = key_usage.cost_picousd + excluded.cost_picousd;
    RETURN NEW;
END $$;

CREATE TRIGGER executions_count_key_usage AFTER UPDATE OF status ON executions
FOR EACH ROW WHEN (OLD.status = 'RUNNING' AND NEW.status = 'COMPLETED' AND NEW.key_id IS NOT NULL)
EXECUTE FUNCTION pods_count_key_usage();
