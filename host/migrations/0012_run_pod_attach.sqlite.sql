-- A run pod's execution is attached to it by the statement that records the execution: one
-- atomic write, so no crash can leave an execution that its run does not know about, and a pod
-- that is no longer PENDING (another node scheduled it) refuses a second execution.
CREATE TRIGGER executions_attach_run_pod AFTER INSERT ON executions
WHEN NEW.run_id IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'pods: run pod not pending')
    WHERE NOT EXISTS (SELECT 1 FROM flow_run_pods
                      WHERE run_id = NEW.run_id AND pod_id = NEW.pod_id
                        AND status = 'PENDING' AND execution_id IS NULL);
    UPDATE flow_run_pods SET status = 'QUEUED', execution_id = NEW.id
    WHERE run_id = NEW.run_id AND pod_id = NEW.pod_id;
END;

-- Which reopening of a run is the latest: its pods are reset by the same transaction only if
-- that transaction's reopen took effect.
ALTER TABLE flow_runs ADD COLUMN round TEXT;

-- Who holds a run's advancing lease (taking it and asking its holder to look again are one
-- statement, which says who won).
ALTER TABLE flow_runs ADD COLUMN advancing_by TEXT;
