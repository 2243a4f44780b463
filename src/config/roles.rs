//! Lowering of `roles:` and `permissions:`: the hierarchy and the permission matrix.

use std::collections::{BTreeMap, HashMap};

use super::{did_you_mean, problem, Problem, Where};
use crate::policy::{PermissionMatrix, Roles};

/// `roles:`: role name -> level (a missing level is reported, not defaulted).
pub type RawRoles = BTreeMap<String, Option<i64>>;

/// `permissions.<resource>:`: role -> actions.
pub type RawGrants = BTreeMap<String, Option<Vec<String>>>;

pub(super) fn lower_roles(raw: Option<&RawRoles>, p: &mut Vec<Problem>) -> Roles {
    let mut levels: Vec<(String, u32)> = Vec::new();
    let mut seen: HashMap<u32, String> = HashMap::new();
    for (name, level) in raw.into_iter().flatten() {
        let path = format!("roles.{name}");
        if name.is_empty() || name.contains(char::is_whitespace) {
            p.push(Problem::new(Where::Key(path.clone()), "a role name must be non-empty and contain no spaces"));
        }
        let level = match level {
            None => {
                p.push(Problem::new(Where::Key(path.clone()), format!("role `{name}` has no level")));
                continue;
            }
            Some(l) => match u32::try_from(*l) {
                Ok(l) => l,
                Err(_) => {
                    problem(p, &path, "a role level is a whole number from 0 up");
                    continue;
                }
            },
        };
        if let Some(other) = seen.insert(level, name.clone()) {
            problem(p, &path, format!("roles `{other}` and `{name}` have the same level {level}: levels must be distinct"));
        }
        levels.push((name.clone(), level));
    }
    Roles::new(levels)
}

pub(super) fn lower_permissions(raw: &BTreeMap<String, RawGrants>, roles: &Roles, p: &mut Vec<Problem>) -> PermissionMatrix {
    let mut matrix: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (resource, grants) in raw {
        if resource.is_empty() || resource.contains([':', ' ']) {
            p.push(Problem::new(Where::Key(format!("permissions.{resource}")), "a resource name must be non-empty, without ':' or spaces"));
        }
        let by_role = matrix.entry(resource.clone()).or_default();
        for (role, actions) in grants {
            let path = format!("permissions.{resource}.{role}");
            if roles.level(role).is_none() {
                p.push(Problem::new(
                    Where::Key(path.clone()),
                    format!("role `{role}` has no level: it is not defined under `roles`{}", did_you_mean(role, roles.names())),
                ));
                continue;
            }
            for (i, action) in actions.iter().flatten().enumerate() {
                if action.is_empty() || action.contains([':', ' ']) {
                    problem(p, &format!("{path}[{i}]"), "an action must be non-empty, without ':' or spaces");
                }
            }
            by_role.insert(role.clone(), actions.clone().unwrap_or_default());
        }
    }
    PermissionMatrix::new(&matrix, roles)
}
