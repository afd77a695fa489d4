-- An embedded job ends in the statement that ends its execution (completed, failed or cancelled):
-- no separate write to remove it, and no job outliving its execution.
CREATE FUNCTION pods_end_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM jobs WHERE execution_id = OLD.id;
    RETURN NULL;
END $$;

CREATE TRIGGER executions_end_jobs AFTER UPDATE OF status ON executions
FOR EACH ROW WHEN (NEW.status IN ('COMPLETED', 'ERROR', 'CANCELLED'))
EXECUTE FUNCTION pods_end_job();

CREATE TRIGGER executions_deleted_end_jobs AFTER DELETE ON executions
FOR EACH ROW EXECUTE FUNCTION pods_end_job();
