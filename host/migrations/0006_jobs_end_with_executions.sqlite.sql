-- An embedded job ends in the statement that ends its execution (completed, failed or cancelled):
-- no separate write to remove it, and no job outliving its execution.
CREATE TRIGGER executions_end_jobs AFTER UPDATE OF status ON executions
WHEN NEW.status IN ('COMPLETED', 'ERROR', 'CANCELLED')
BEGIN
    DELETE FROM jobs WHERE execution_id = NEW.id;
END;

CREATE TRIGGER executions_deleted_end_jobs AFTER DELETE ON executions
BEGIN
    DELETE FROM jobs WHERE execution_id = OLD.id;
END;
