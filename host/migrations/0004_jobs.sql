-- The embedded queue: one row per queued execution, leased by the worker that runs it. A lease
-- that expires (the worker died) makes the job claimable again.
CREATE TABLE jobs (
    execution_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL,
    leased_until BIGINT,
    lease_owner TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (not_before, created_at);
