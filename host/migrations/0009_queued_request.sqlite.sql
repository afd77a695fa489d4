-- A queued execution's request gets a column of its own (it was a key of request_metadata).
ALTER TABLE executions ADD COLUMN queued_request TEXT;
UPDATE executions SET queued_request = json_extract(request_metadata, '$.execute')
  WHERE status IN ('QUEUED', 'RUNNING') AND json_extract(request_metadata, '$.execute') IS NOT NULL;
