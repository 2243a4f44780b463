//! The role hierarchy and the permission matrix, compiled into minimum levels.
//!
//! Levels are distinct, so the roles form one chain: a role may do what it is granted plus what
//! every lower role is granted. That makes every requirement a single number, the lowest level
//! that satisfies it, and a decision one comparison.

use std::collections::{BTreeMap, HashMap};

/// The configured roles and their levels.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    levels: HashMap<String, u32>,
}

impl Roles {
    /// Builds the hierarchy; the caller has checked that levels are distinct.
    pub fn new(levels: impl IntoIterator<Item = (String, u32)>) -> Self {
        Roles { levels: levels.into_iter().collect() }
    }

    /// The level of a role name; `None` for a role the config does not define.
    pub fn level(&self, role: &str) -> Option<u32> {
        self.levels.get(role).copied()
    }

    /// Role names, for did-you-mean suggestions.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.keys().map(String::as_str)
    }
}

/// `resource -> action -> lowest level granted it` (None: the action exists but no role has it).
#[derive(Debug, Clone, Default)]
pub struct PermissionMatrix {
    grants: HashMap<String, HashMap<String, Option<u32>>>,
}

impl PermissionMatrix {
    /// Compiles `resource -> role -> actions`; roles must already be known to `roles`.
    pub fn new(matrix: &BTreeMap<String, BTreeMap<String, Vec<String>>>, roles: &Roles) -> Self {
        let mut grants: HashMap<String, HashMap<String, Option<u32>>> = HashMap::new();
        for (resource, by_role) in matrix {
            let actions = grants.entry(resource.clone()).or_default();
            for (role, list) in by_role {
                let level = roles.level(role);
                for action in list {
                    let slot = actions.entry(action.clone()).or_insert(None);
                    *slot = match (*slot, level) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        PermissionMatrix { grants }
    }

    /// The lowest level allowed `action` on `resource`: `Err(())` if no such permission exists.
    pub fn min_level(&self, resource: &str, action: &str) -> Result<Option<u32>, UnknownPermission> {
        self.grants.get(resource).ok_or(UnknownPermission::Resource)?.get(action).copied().ok_or(UnknownPermission::Action)
    }

    /// Resource names, for did-you-mean suggestions.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.grants.keys().map(String::as_str)
    }

    /// The actions known for a resource, for did-you-mean suggestions.
    pub fn actions(&self, resource: &str) -> impl Iterator<Item = &str> {
        self.grants.get(resource).into_iter().flat_map(|m| m.keys().map(String::as_str))
    }

    /// Whether `role` may perform `action` on `resource` (unknown roles and permissions: no).
    pub fn allows(&self, roles: &Roles, role: &str, resource: &str, action: &str) -> bool {
        match (roles.level(role), self.min_level(resource, action)) {
            (Some(level), Ok(Some(min))) => level >= min,
            _ => false,
        }
    }
}

/// Which half of a `resource:action` permission is not defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPermission {
    Resource,
    Action,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> (Roles, PermissionMatrix) {
        let roles = Roles::new([("admin".into(), 3), ("user".into(), 2), ("viewer".into(), 1), ("guest".into(), 0)]);
        let mut m: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let grant = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let projects = m.entry("projects".into()).or_default();
        projects.insert("admin".into(), grant(&["create", "read", "update", "delete"]));
        projects.insert("user".into(), grant(&["create", "read", "update"]));
        projects.insert("viewer".into(), grant(&["read"]));
        projects.insert("guest".into(), grant(&[]));
        let settings = m.entry("settings".into()).or_default();
        settings.insert("admin".into(), grant(&["read", "update"]));
        settings.insert("user".into(), grant(&["read"]));
        settings.insert("viewer".into(), grant(&[]));
        settings.insert("guest".into(), grant(&[]));
        let matrix = PermissionMatrix::new(&m, &roles);
        (roles, matrix)
    }

    #[test]
    fn the_seed_matrix_as_a_table_of_decisions() {
        let (roles, m) = seed();
        // role, resource, action, allowed
        let table = [
            ("admin", "projects", "create", true),
            ("admin", "projects", "read", true),
            ("admin", "projects", "update", true),
            ("admin", "projects", "delete", true),
            ("user", "projects", "create", true),
            ("user", "projects", "read", true),
            ("user", "projects", "update", true),
            ("user", "projects", "delete", false),
            ("viewer", "projects", "create", false),
            ("viewer", "projects", "read", true),
            ("viewer", "projects", "update", false),
            ("viewer", "projects", "delete", false),
            ("guest", "projects", "create", false),
            ("guest", "projects", "read", false),
            ("guest", "projects", "update", false),
            ("guest", "projects", "delete", false),
            ("admin", "settings", "read", true),
            ("admin", "settings", "update", true),
            ("user", "settings", "read", true),
            ("user", "settings", "update", false),
            ("viewer", "settings", "read", false),
            ("viewer", "settings", "update", false),
            ("guest", "settings", "read", false),
            ("guest", "settings", "update", false),
            // unknown role, resource or action: never
            ("root", "projects", "read", false),
            ("", "projects", "read", false),
            ("admin", "billing", "read", false),
            ("admin", "projects", "archive", false),
        ];
        for (role, resource, action, want) in table {
            assert_eq!(m.allows(&roles, role, resource, action), want, "{role} {resource}:{action}");
        }
    }

    #[test]
    fn a_higher_role_inherits_grants_it_was_not_given_directly() {
        let roles = Roles::new([("admin".into(), 3), ("viewer".into(), 1)]);
        let mut m: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        m.entry("reports".into()).or_default().insert("viewer".into(), vec!["export".into()]);
        let matrix = PermissionMatrix::new(&m, &roles);
        assert!(matrix.allows(&roles, "admin", "reports", "export"));
        assert_eq!(matrix.min_level("reports", "export"), Ok(Some(1)));
        assert_eq!(matrix.min_level("reports", "delete"), Err(UnknownPermission::Action));
        assert_eq!(matrix.min_level("nope", "x"), Err(UnknownPermission::Resource));
    }
}
