-- A run pod's execution is attached to it by the statement that records the execution: one
-- atomic write, so no crash can leave an execution that its run does not know about, and a pod
-- that is no longer PENDING (another node scheduled it) refuses a second execution.
CREATE FUNCTION pods_attach_run_pod() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE flow_run_pods SET status = 'QUEUED', execution_id = NEW.id
    WHERE run_id = NEW.run_id AND pod_id = NEW.pod_id AND status = 'PENDING' AND execution_id IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pods: run pod not pending';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER executions_attach_run_pod AFTER INSERT ON executions
FOR EACH ROW WHEN (NEW.run_id IS NOT NULL)
EXECUTE FUNCTION pods_attach_run_pod();

-- Which reopening of a run is the latest: its pods are reset by the same transaction only if
-- that transaction's reopen took effect.
ALTER TABLE flow_runs ADD COLUMN round TEXT;

-- Who holds a run's advancing lease (taking it and asking its holder to look again are one
-- statement, which says who won).
ALTER TABLE flow_runs ADD COLUMN advancing_by TEXT;
