-- Every execution is inserted unfinished and most are not part of a flow run: entries for a null
-- `finished_at` or `run_id` were two index pages written per insert that no query reads
-- (retention asks `finished_at < cutoff`, a run `run_id = …`, both of which imply not null).
DROP INDEX executions_by_finish;
CREATE INDEX executions_by_finish ON executions (finished_at) WHERE finished_at IS NOT NULL;
DROP INDEX executions_by_run;
CREATE INDEX executions_by_run ON executions (run_id) WHERE run_id IS NOT NULL;
