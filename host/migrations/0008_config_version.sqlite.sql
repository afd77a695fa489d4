-- A workspace's configuration version: every change to what an execution reads of its workspace
-- (memberships, pods, edges, provider keys) bumps it, whoever makes the change. Executions cache
-- that configuration and record themselves only while the version they read it under still holds.
ALTER TABLE workspaces ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER memberships_inserted_config AFTER INSERT ON memberships
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = NEW.workspace_id; END;
CREATE TRIGGER memberships_updated_config AFTER UPDATE ON memberships
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id IN (OLD.workspace_id, NEW.workspace_id); END;
CREATE TRIGGER memberships_deleted_config AFTER DELETE ON memberships
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = OLD.workspace_id; END;

CREATE TRIGGER pods_inserted_config AFTER INSERT ON pods
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = NEW.workspace_id; END;
CREATE TRIGGER pods_updated_config AFTER UPDATE ON pods
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id IN (OLD.workspace_id, NEW.workspace_id); END;
CREATE TRIGGER pods_deleted_config AFTER DELETE ON pods
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = OLD.workspace_id; END;

CREATE TRIGGER edges_inserted_config AFTER INSERT ON edges
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = NEW.workspace_id; END;
CREATE TRIGGER edges_updated_config AFTER UPDATE ON edges
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id IN (OLD.workspace_id, NEW.workspace_id); END;
CREATE TRIGGER edges_deleted_config AFTER DELETE ON edges
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = OLD.workspace_id; END;

CREATE TRIGGER provider_keys_inserted_config AFTER INSERT ON provider_keys
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = NEW.workspace_id; END;
CREATE TRIGGER provider_keys_updated_config AFTER UPDATE ON provider_keys
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id IN (OLD.workspace_id, NEW.workspace_id); END;
CREATE TRIGGER provider_keys_deleted_config AFTER DELETE ON provider_keys
BEGIN UPDATE workspaces SET config_version = config_version + 1 WHERE id = OLD.workspace_id; END;
