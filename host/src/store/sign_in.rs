//! What signing in needs from the store: users' password hashes and single-use WebSocket
//! tickets (stored by their hash, so any node may redeem one, and only once).

use super::{Result, Store, StoreError, get, now_ms};
use crate::store::User;

/// A redeemed WebSocket ticket: whom it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub user_id: String,
    /// The API key, when the ticket was asked for with a key.
    pub api_key_id: Option<String>,
}

impl Store {
    /// Sets (or with `None` clears) a user's password hash.
    pub async fn set_password_hash(&self, id_or_email: &str, hash: Option<&str>) -> Result<User> {
        let user = self.user(id_or_email).await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash.map(str::to_string))
            .bind(&user.id)
            .execute(&self.pool)
            .await?;
        Ok(user)
    }

    /// The user with this email, in any case (`email` lower-cased), and their password hash
    /// (`None`: no password set). A scan of the users, not an index: sign-ins are few and limited.
    pub async fn password_of(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        let row = sqlx::query(
            "SELECT id, email, name, is_admin, disabled_at, password_hash FROM users WHERE lower(email) = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            super::workspaces::user_row(&row)?,
            get(&row, "password_hash")?,
        )))
    }

    /// Stores a new ticket and forgets the expired ones.
    pub async fn create_ws_ticket(
        &self,
        ticket_hash: &str,
        ticket: &Ticket,
        ttl: std::time::Duration,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query("DELETE FROM ws_tickets WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO ws_tickets (ticket_hash, user_id, api_key_id, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(ticket_hash)
        .bind(&ticket.user_id)
        .bind(ticket.api_key_id.clone())
        .bind(now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Uses a ticket up: whom it stands for if it exists and has not expired, and never again.
    pub async fn redeem_ws_ticket(&self, ticket_hash: &str) -> Result<Ticket> {
        let row = sqlx::query(
            "DELETE FROM ws_tickets WHERE ticket_hash = $1 RETURNING user_id, api_key_id, expires_at",
        )
        .bind(ticket_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        if get::<i64>(&row, "expires_at")? <= now_ms() {
            return Err(StoreError::NotFound);
        }
        Ok(Ticket {
            user_id: get(&row, "user_id")?,
            api_key_id: get(&row, "api_key_id")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_ticket_opens_once_and_not_after_it_expires() {
        let (store, _dir) = Store::temp("pods-tickets").await;
        let ticket = Ticket {
            user_id: "u1".into(),
            api_key_id: None,
        };
        store
            .create_ws_ticket("h1", &ticket, Duration::from_secs(30))
            .await
            .expect("create");
        assert_eq!(store.redeem_ws_ticket("h1").await.expect("redeem"), ticket);
        assert!(matches!(
            store.redeem_ws_ticket("h1").await,
            Err(StoreError::NotFound)
        ));
        store
            .create_ws_ticket("h2", &ticket, Duration::ZERO)
            .await
            .expect("create");
        assert!(matches!(
            store.redeem_ws_ticket("h2").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.redeem_ws_ticket("never issued").await,
            Err(StoreError::NotFound)
        ));
    }
}
