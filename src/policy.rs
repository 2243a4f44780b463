//! Authorization policy: path normalization, the route table, roles and the permission matrix,
//! and the decision that joins them.
//!
//! Everything here is pure: no I/O, no clock, no Pingora types.

pub mod path;
pub mod roles;
pub mod routes;

use http::Method;
pub use roles::{PermissionMatrix, Roles};
pub use routes::RouteTable;

/// What a route demands of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token needed (and none is read).
    Public,
    /// An authenticated caller whose role level is at least `min_level`.
    Role { role: String, min_level: u32 },
    /// An authenticated caller whose role is granted `resource:action` (directly or inherited);
    /// `min_level` is None when no role is granted it.
    Permission { resource: String, action: String, min_level: Option<u32> },
}

impl Access {
    /// Whether a caller whose role has `level` (None: unknown role) is allowed.
    pub fn allows(&self, level: Option<u32>) -> bool {
        match self {
            Access::Public => true,
            Access::Role { min_level, .. } => level.is_some_and(|l| l >= *min_level),
            Access::Permission { min_level, .. } => {
                matches!((level, min_level), (Some(l), Some(m)) if l >= *m)
            }
        }
    }

    /// A short description for logs and the audit trail: `role:admin`, `projects:read`, `public`.
    pub fn describe(&self) -> String {
        match self {
            Access::Public => "public".into(),
            Access::Role { role, .. } => ["role:", role].concat(),
            Access::Permission { resource, action, .. } => [resource.as_str(), ":", action].concat(),
        }
    }
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The upstream at this index of the config's upstream list.
    Upstream(usize),
    /// The provider chain at this index of the config's chain list.
    Chain(usize),
}

/// One configured route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub pattern: String,
    pub access: Access,
    pub target: Target,
    /// The route's own limit (name, limit), counted per user (or per IP when public).
    pub rate_limit: Option<(String, crate::ratelimit::Limit)>,
}

/// The routes and roles a request is judged against.
pub struct Policy {
    pub roles: Roles,
    pub routes: RouteTable<Route>,
}

impl Policy {
    /// The first route matching a normalized path and method.
    pub fn route(&self, method: &Method, path: &str) -> Option<(usize, &Route)> {
        self.routes.find(method, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_are_no_role_at_all() {
        let role = Access::Role { role: "guest".into(), min_level: 0 };
        assert!(role.allows(Some(0)));
        assert!(!role.allows(None));
        let perm = Access::Permission { resource: "p".into(), action: "read".into(), min_level: Some(1) };
        assert!(perm.allows(Some(3)));
        assert!(!perm.allows(Some(0)));
        assert!(!perm.allows(None));
        let nobody = Access::Permission { resource: "p".into(), action: "x".into(), min_level: None };
        assert!(!nobody.allows(Some(u32::MAX)));
        assert!(Access::Public.allows(None));
    }
}
