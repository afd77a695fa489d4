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
