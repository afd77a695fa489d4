//! Users, workspaces and memberships.

use serde::Serialize;

use crate::domain::Role;

use super::{Result, Store, StoreError, conflict, get, new_id, now_ms};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    /// A disabled user's tokens are refused.
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    pub name: String,
    /// The caller's role in it.
    pub role: Role,
}

impl Store {
    pub async fn create_user(&self, email: &str, name: &str, is_admin: bool) -> Result<User> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO users (id, email, name, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(email)
        .bind(name)
        .bind(i64::from(is_admin))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, "a user with this email exists"))?;
        Ok(User {
            id,
            email: email.into(),
            name: name.into(),
            is_admin,
            disabled: false,
        })
    }

    /// A user by id or email.
    pub async fn user(&self, id_or_email: &str) -> Result<User> {
        let row = sqlx::query(
            "SELECT id, email, name, is_admin, disabled_at FROM users WHERE id = $1 OR email = $1",
        )
        .bind(id_or_email)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        user_row(&row)
    }

    /// The user a token names, by id only; `None` if there is none or it is disabled.
    pub async fn active_user(&self, id: &str) -> Result<Option<User>> {
        let row = self
            .read_one(
                sqlx::query(
                    "SELECT id, email, name, is_admin, disabled_at FROM users WHERE id = $1 AND disabled_at IS NULL",
                )
                .bind(id.to_string()),
            )
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// Disables (every token of the user fails from now on) or enables a user.
    pub async fn set_user_disabled(&self, id_or_email: &str, disabled: bool) -> Result<User> {
        let user = self.user(id_or_email).await?;
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(now_ms))
            .bind(&user.id)
            .execute(&self.pool)
            .await?;
        Ok(User { disabled, ..user })
    }

    /// Creates a workspace owned by `owner`.
    pub async fn create_workspace(&self, name: &str, owner: &str) -> Result<Workspace> {
        let id = new_id();
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(owner)
            .bind(Role::Owner.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Workspace {
            id,
            name: name.into(),
            role: Role::Owner,
        })
    }

    /// Adds a member, or changes their role.
    pub async fn set_member(&self, workspace_id: &str, user_id: &str, role: Role) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(workspace_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives `user_id` the role `role` (`None`: removes them) unless that would leave the
    /// workspace without an owner: then `Err(Conflict)`. One transaction that first locks the
    /// workspace's row, so two changes to one workspace's members never interleave.
    pub async fn change_member(
        &self,
        workspace_id: &str,
        user_id: &str,
        role: Option<Role>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let locked =
            sqlx::query("UPDATE workspaces SET config_version = config_version WHERE id = $1")
                .bind(workspace_id)
                .execute(&mut *tx)
                .await?;
        if locked.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let owners = sqlx::query(
            "SELECT user_id FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
        )
        .bind(workspace_id)
        .fetch_all(&mut *tx)
        .await?;
        let owner_ids: Vec<String> = owners
            .iter()
            .map(|row| get(row, "user_id"))
            .collect::<Result<_>>()?;
        let stays_owner = role == Some(Role::Owner);
        if !stays_owner && owner_ids.len() == 1 && owner_ids[0] == user_id {
            return Err(StoreError::Conflict(
                "a workspace keeps at least one owner: make another member owner first".into(),
            ));
        }
        let changed = match role {
            Some(role) => sqlx::query(
                "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(workspace_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?,
            None => sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?,
        };
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// The workspace's members: (user, role), owners first.
    pub async fn members(&self, workspace_id: &str) -> Result<Vec<(User, Role)>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, u.name, u.is_admin, u.disabled_at, m.role FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = $1 ORDER BY m.created_at, u.email",
        )
        .bind(workspace_id)
        .fetch_all(&self.pool)
        .await?;
        let mut members: Vec<(User, Role)> = rows
            .iter()
            .map(|row| {
                let role: String = get(row, "role")?;
                Ok((
                    user_row(row)?,
                    Role::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                ))
            })
            .collect::<Result<_>>()?;
        members.sort_by_key(|(_, role)| std::cmp::Reverse(*role));
        Ok(members)
    }

    /// The user's role in the workspace, or `NotFound` if they are not a member (or it does not exist).
    pub async fn role(&self, workspace_id: &str, user_id: &str) -> Result<Role> {
        let row = self
            .read_one(
                sqlx::query(
                    "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
                )
                .bind(workspace_id.to_string())
                .bind(user_id.to_string()),
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let role: String = get(&row, "role")?;
        Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))
    }

    /// The workspace's configuration version (see migration 0008); `None` if it does not exist.
    pub async fn config_version(&self, workspace_id: &str) -> Result<Option<i64>> {
        let row = self
            .read_one(
                sqlx::query("SELECT config_version FROM workspaces WHERE id = $1")
                    .bind(workspace_id.to_string()),
            )
            .await?;
        row.map(|row| get(&row, "config_version")).transpose()
    }

    pub async fn workspaces_of(&self, user_id: &str) -> Result<Vec<Workspace>> {
        let rows = sqlx::query(
            "SELECT w.id, w.name, m.role FROM workspaces w JOIN memberships m ON m.workspace_id = w.id
             WHERE m.user_id = $1 ORDER BY w.created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = get(row, "role")?;
                Ok(Workspace {
                    id: get(row, "id")?,
                    name: get(row, "name")?,
                    role: Role::parse(&role)
                        .ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
                })
            })
            .collect()
    }
}

/// A user from a row with `id, email, name, is_admin`.
pub(super) fn user_row(row: &sqlx::any::AnyRow) -> Result<User> {
    Ok(User {
        id: get(row, "id")?,
        email: get(row, "email")?,
        name: get(row, "name")?,
        is_admin: get::<i64>(row, "is_admin")? != 0,
        disabled: get::<Option<i64>>(row, "disabled_at")?.is_some(),
    })
}
