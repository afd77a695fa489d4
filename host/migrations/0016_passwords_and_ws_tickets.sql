-- A user's password as an argon2id PHC string (NULL: no password; they sign in with a token).
ALTER TABLE users ADD COLUMN password_hash TEXT;

-- Single-use tickets that open one WebSocket, stored by their SHA-256 (any node may redeem
-- one): the user, and the API key when the ticket was asked for with a key.
CREATE TABLE ws_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    api_key_id TEXT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ws_tickets_by_expiry ON ws_tickets (expires_at);
