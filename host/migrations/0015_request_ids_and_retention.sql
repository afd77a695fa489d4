-- The `x-request-id` of the request that recorded an execution (null for one a run or the
-- sweeper made), to follow a client's report to the logs.
ALTER TABLE executions ADD COLUMN request_id TEXT;

-- Retention (`PODS_RETENTION_DAYS`) deletes the oldest finished executions a batch at a time.
CREATE INDEX executions_by_finish ON executions (finished_at);
