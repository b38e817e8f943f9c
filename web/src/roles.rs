//! Who may do what: each person has a role, and each route (JSON API and
//! pages alike) needs one. The rule is one table here, checked where a
//! session is read (`auth::User::from_session`), so no handler can forget
//! it, and `web/tests/api.rs` checks it against every operation of the
//! OpenAPI document.

use axum::http::Method;

/// A person's role; each can do what the ones before it can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything (secrets never show), changes only their own
    /// password and sessions.
    Viewer,
    /// Also creates, changes and deletes pollers, and retries transfers.
    Operator,
    /// Also manages people, agents, plugins, targets and agent settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role stored as `text`; an unknown one (a newer version's) reads
    /// as the least.
    pub fn parse(text: &str) -> Role {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .unwrap_or(Role::Viewer)
    }
}

/// The least role that may call `method` on `route` (the route's pattern
/// as matched, e.g. `/api/v1/pollers/{id}`; `None` when nothing matched).
/// Anything not named here that changes something is for admins.
pub fn needed(method: &Method, route: Option<&str>) -> Role {
    let Some(route) = route else {
        return if is_read(method) {
            Role::Viewer
        } else {
            Role::Admin
        };
    };
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    if route.starts_with("/users") {
        return Role::Admin;
    }
    if is_read(method) {
        return Role::Viewer;
    }
    match route {
        // Their own session and password.
        "/logout"
        | "/logout/everywhere"
        | "/me/password"
        | "/account/password"
        | "/account/logout-everywhere" => Role::Viewer,
        "/transfers/{id}/retry" | "/plugins/{name}/move" => Role::Operator,
        r if r == "/pollers" || r.starts_with("/pollers/") => Role::Operator,
        _ => Role::Admin,
    }
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_is_for_everyone_changing_is_by_role_and_unknown_changes_are_for_admins() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(needed(&get, Some("/api/v1/targets")), Role::Viewer);
        assert_eq!(needed(&get, Some("/api/v1/users")), Role::Admin);
        assert_eq!(needed(&post, Some("/api/v1/pollers")), Role::Operator);
        assert_eq!(
            needed(&Method::DELETE, Some("/api/v1/pollers/{id}")),
            Role::Operator
        );
        assert_eq!(needed(&post, Some("/transfers/{id}/retry")), Role::Operator);
        assert_eq!(needed(&post, Some("/api/v1/targets")), Role::Admin);
        assert_eq!(needed(&post, Some("/api/v1/me/password")), Role::Viewer);
        assert_eq!(needed(&post, Some("/something/new")), Role::Admin);
        assert_eq!(needed(&post, None), Role::Admin);
        assert_eq!(Role::parse("operator"), Role::Operator);
        assert_eq!(Role::parse("superuser"), Role::Viewer);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
    }
}
