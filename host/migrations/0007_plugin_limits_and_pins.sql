-- Limits operators set per plugin through the API (JSON of PluginLimits). Every node reads them.
CREATE TABLE plugin_limits (
    plugin_id TEXT PRIMARY KEY,
    limits TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A pod may pin the version of its provider plugin; NULL = the newest loaded.
ALTER TABLE pods ADD COLUMN plugin_version TEXT;

-- The plugin version that ran an execution (set when it ends).
ALTER TABLE executions ADD COLUMN plugin_version TEXT;
