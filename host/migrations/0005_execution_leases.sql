-- Whoever runs an execution holds a lease on its row: the row, not the queue, decides who may run
-- it. `leased_until` of a QUEUED execution is when a worker should have taken it by; the sweeper
-- re-adds to the queue the executions still QUEUED or RUNNING after their lease.
ALTER TABLE executions ADD COLUMN lease_owner TEXT;
ALTER TABLE executions ADD COLUMN leased_until BIGINT;
CREATE INDEX executions_unfinished ON executions (leased_until) WHERE status IN ('QUEUED', 'RUNNING');
