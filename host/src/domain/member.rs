//! A member's role in a workspace.

use serde::{Deserialize, Serialize};

/// A member's role, weakest first: each role can do everything the ones before it can.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads flows, pods and executions.
    Viewer,
    /// Also edits flows, pods and edges, and executes pods.
    Member,
    /// Also manages provider keys and members.
    Admin,
    /// Created the workspace.
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// Why a caller may not do something in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not a member: the workspace is not theirs to know about (answered as not found).
    #[error("workspace not found")]
    NotMember,
    /// A member whose role is weaker than what is needed.
    #[error("this needs the {} role; you are {}", needed.as_str(), actual.as_str())]
    TooWeak { needed: Role, actual: Role },
}

/// The one role check: `actual` (`None`: not a member) must be at least `needed`.
pub fn require(actual: Option<Role>, needed: Role) -> Result<Role, Denied> {
    match actual {
        None => Err(Denied::NotMember),
        Some(actual) if actual < needed => Err(Denied::TooWeak { needed, actual }),
        Some(actual) => Ok(actual),
    }
}

/// Who acts: a person (by a token), or a workspace API key acting for the member who made it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: String,
    pub api_key: Option<KeyScope>,
}

/// What an API key may touch: one workspace, with at most one role, within its limits.
#[derive(Debug, Clone)]
pub struct KeyScope {
    pub id: String,
    pub workspace_id: String,
    pub role: Role,
    /// Tokens a minute, if limited.
    pub tpm: Option<u32>,
    /// USD a UTC calendar month, if limited: a model without a price is then refused.
    pub monthly_budget_usd: Option<rust_decimal::Decimal>,
}

impl Principal {
    pub fn user(user_id: &str) -> Self {
        Principal {
            user_id: user_id.to_string(),
            api_key: None,
        }
    }

    /// The role this principal acts with in `ws`, given its user's role there (`None`: not a
    /// member). A key acts only in its own workspace, and never with more than its own role or
    /// its creator's current one — demoting or removing the creator limits their keys at once.
    pub fn role_in(&self, ws: &str, user_role: Option<Role>) -> Option<Role> {
        match &self.api_key {
            None => user_role,
            Some(key) if key.workspace_id != ws => None,
            Some(key) => user_role.map(|role| role.min(key.role)),
        }
    }
}

/// Whether a member with role `mine` may change a member whose role is `current` to `new`
/// (`None`: remove them). Owners alone grant, change or remove `owner`; admins manage the roles
/// below it and never grant above their own. (That a workspace keeps an owner is the store's to
/// hold, in the same transaction as the change.)
pub fn may_change(mine: Role, current: Role, new: Option<Role>) -> Result<(), Denied> {
    let touches_owner = current == Role::Owner || new == Some(Role::Owner);
    let needed = match new {
        _ if touches_owner => Role::Owner,
        Some(new) => new.max(Role::Admin),
        None => Role::Admin,
    };
    require(Some(mine), needed).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_alone_touch_owners_and_admins_manage_the_rest() {
        use Role::*;
        // An admin cannot demote, remove or create an owner.
        assert!(may_change(Admin, Owner, Some(Viewer)).is_err());
        assert!(may_change(Admin, Owner, None).is_err());
        assert!(may_change(Admin, Member, Some(Owner)).is_err());
        // …but manages everyone below.
        assert!(may_change(Admin, Member, Some(Admin)).is_ok());
        assert!(may_change(Admin, Admin, Some(Viewer)).is_ok());
        assert!(may_change(Admin, Viewer, None).is_ok());
        // Owners do all of it.
        assert!(may_change(Owner, Owner, Some(Viewer)).is_ok());
        assert!(may_change(Owner, Member, Some(Owner)).is_ok());
        // Members and viewers manage no one.
        assert!(may_change(Member, Viewer, Some(Member)).is_err());
        assert!(may_change(Viewer, Viewer, None).is_err());
    }

    #[test]
    fn a_key_acts_in_its_workspace_with_the_weaker_of_its_role_and_its_creators() {
        let key = |role| Principal {
            user_id: "u".into(),
            api_key: Some(KeyScope {
                id: "k".into(),
                workspace_id: "w".into(),
                role,
                tpm: None,
                monthly_budget_usd: None,
            }),
        };
        assert_eq!(
            key(Role::Admin).role_in("w", Some(Role::Owner)),
            Some(Role::Admin)
        );
        assert_eq!(
            key(Role::Admin).role_in("w", Some(Role::Member)),
            Some(Role::Member)
        );
        assert_eq!(
            key(Role::Viewer).role_in("w", Some(Role::Owner)),
            Some(Role::Viewer)
        );
        // Another workspace, even one the creator owns; a creator who left.
        assert_eq!(key(Role::Admin).role_in("other", Some(Role::Owner)), None);
        assert_eq!(key(Role::Admin).role_in("w", None), None);
        assert_eq!(
            Principal::user("u").role_in("any", Some(Role::Owner)),
            Some(Role::Owner)
        );
    }

    #[test]
    fn each_role_can_do_what_the_ones_before_it_can() {
        assert_eq!(require(None, Role::Viewer), Err(Denied::NotMember));
        assert_eq!(require(Some(Role::Viewer), Role::Viewer), Ok(Role::Viewer));
        assert_eq!(require(Some(Role::Owner), Role::Admin), Ok(Role::Owner));
        assert_eq!(
            require(Some(Role::Member), Role::Admin),
            Err(Denied::TooWeak {
                needed: Role::Admin,
                actual: Role::Member
            })
        );
    }
}
