-- A queued execution's request gets a column of its own (it was a key of request_metadata).
ALTER TABLE executions ADD COLUMN queued_request TEXT;
UPDATE executions SET queued_request = (request_metadata::jsonb -> 'execute')::text
  WHERE status IN ('QUEUED', 'RUNNING') AND (request_metadata::jsonb -> 'execute') IS NOT NULL;
