-- A workspace's configuration version: every change to what an execution reads of its workspace
-- (memberships, pods, edges, provider keys) bumps it, whoever makes the change. Executions cache
-- that configuration and record themselves only while the version they read it under still holds.
ALTER TABLE workspaces ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION pods_bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE workspaces SET config_version = config_version + 1 WHERE id = OLD.workspace_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.workspace_id <> OLD.workspace_id) THEN
        UPDATE workspaces SET config_version = config_version + 1 WHERE id = NEW.workspace_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER memberships_config AFTER INSERT OR UPDATE OR DELETE ON memberships
FOR EACH ROW EXECUTE FUNCTION pods_bump_config_version();
CREATE TRIGGER pods_config AFTER INSERT OR UPDATE OR DELETE ON pods
FOR EACH ROW EXECUTE FUNCTION pods_bump_config_version();
CREATE TRIGGER edges_config AFTER INSERT OR UPDATE OR DELETE ON edges
FOR EACH ROW EXECUTE FUNCTION pods_bump_config_version();
CREATE TRIGGER provider_keys_config AFTER INSERT OR UPDATE OR DELETE ON provider_keys
FOR EACH ROW EXECUTE FUNCTION pods_bump_config_version();
