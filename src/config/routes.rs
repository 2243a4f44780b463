//! Lowering of `routes:`: patterns, methods, access rules, targets and named limits.

use schemars::JsonSchema;
use serde::Deserialize;

use http::Method;
use std::collections::HashMap;

use super::{did_you_mean, problem, Problem, Where};
use crate::limits::Limit;
use crate::policy::roles::UnknownPermission;
use crate::policy::routes::parse_pattern;
use crate::policy::{Access, PermissionMatrix, Roles, Route, Target};

/// One entry of `routes:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub require_role: Option<String>,
    #[serde(default)]
    pub permission: Option<String>,
    #[serde(default)]
    pub upstream: Option<String>,
    /// A limit from `rate_limits.routes` for this route (per user, or per IP when public).
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// A provider chain from `provider_chains` (instead of `upstream`).
    #[serde(default)]
    pub chain: Option<String>,
    /// Scopes a scope-limited credential (an API key made with scopes) must all hold.
    #[serde(default)]
    pub require_scopes: Vec<String>,
    /// Only for clients with a verified TLS certificate (`server.tls.client_auth`).
    #[serde(default)]
    pub require_client_cert: bool,
}

pub(super) type RouteEntry = (Vec<crate::policy::routes::Segment>, Option<Vec<Method>>, Route);

pub(super) fn lower_routes(
    raw: &[Option<RawRoute>],
    roles: &Roles,
    matrix: &PermissionMatrix,
    upstreams: &[&str],
    chains: &[&str],
    limits: &HashMap<String, Limit>,
    p: &mut Vec<Problem>,
) -> Vec<RouteEntry> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let Some(r) = r else { continue };
        let at = |key: &str| format!("routes[{i}].{key}");
        if r.name.is_empty() {
            problem(p, &at("name"), "a route name must not be empty");
        } else if let Some(j) = names.insert(&r.name, i) {
            problem(p, &at("name"), format!("route name `{}` is already used by routes[{j}]", r.name));
        }
        let segments = parse_pattern(&r.path).map_err(|e| problem(p, &at("path"), e)).ok();
        let methods = r.methods.as_ref().map(|list| {
            if list.is_empty() {
                problem(p, &at("methods"), "an empty method list matches nothing: omit `methods` to allow all");
            }
            list.iter()
                .enumerate()
                .filter_map(|(j, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        problem(p, &format!("routes[{i}].methods[{j}]"), "not an HTTP method");
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let access = lower_access(r, roles, matrix, &at, p);
        let target = match (&r.upstream, &r.chain) {
            (None, None) => {
                p.push(Problem::new(Where::Value(format!("routes[{i}]")), "missing required key `upstream` (or `chain`)"));
                None
            }
            (Some(_), Some(_)) => {
                p.push(Problem::new(Where::Value(format!("routes[{i}]")), "a route has either `upstream` or `chain`, not both"));
                None
            }
            (Some(u), None) => match upstreams.iter().position(|n| n == u) {
                Some(idx) => Some(Target::Upstream(idx)),
                None => {
                    problem(p, &at("upstream"), format!("unknown upstream `{u}`{}", did_you_mean(u, upstreams.iter().copied())));
                    None
                }
            },
            (None, Some(c)) => match chains.iter().position(|n| n == c) {
                Some(idx) => Some(Target::Chain(idx)),
                None => {
                    problem(p, &at("chain"), format!("unknown provider chain `{c}`{}", did_you_mean(c, chains.iter().copied())));
                    None
                }
            },
        };
        let rate_limit = match &r.rate_limit {
            None => None,
            Some(name) => match limits.get(name) {
                Some(l) => Some((name.clone(), *l)),
                None => {
                    problem(
                        p,
                        &at("rate_limit"),
                        format!(
                            "unknown limit `{name}` (not under `rate_limits.routes`){}",
                            did_you_mean(name, limits.keys().map(String::as_str))
                        ),
                    );
                    continue;
                }
            },
        };
        if let (Some(segments), Some(access), Some(target)) = (segments, access, target) {
            for (i, scope) in r.require_scopes.iter().enumerate() {
                if scope.is_empty() || !scope.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
                    problem(p, &at(&format!("require_scopes[{i}]")), "a scope is printable ASCII without spaces, quotes or backslashes");
                }
            }
            let route = Route {
                name: r.name.clone(),
                pattern: r.path.clone(),
                access,
                target,
                rate_limit,
                require_scopes: r.require_scopes.clone(),
                require_client_cert: r.require_client_cert,
            };
            out.push((segments, methods, route));
        }
    }
    out
}

pub(super) fn lower_access(
    r: &RawRoute,
    roles: &Roles,
    matrix: &PermissionMatrix,
    at: &dyn Fn(&str) -> String,
    p: &mut Vec<Problem>,
) -> Option<Access> {
    let public = r.public == Some(true);
    let said = [public, r.require_role.is_some(), r.permission.is_some()].iter().filter(|b| **b).count();
    if said != 1 {
        let place = at("name");
        let place = place.rsplit_once('.').map(|(route, _)| route.to_string()).unwrap_or(place);
        problem(p, &place, "a route must say exactly one of `public: true`, `require_role` or `permission`");
        return None;
    }
    if public {
        return Some(Access::Public);
    }
    if let Some(role) = &r.require_role {
        return match roles.level(role) {
            Some(min_level) => Some(Access::Role { role: role.clone(), min_level }),
            None => {
                problem(p, &at("require_role"), format!("unknown role `{role}`{}", did_you_mean(role, roles.names())));
                None
            }
        };
    }
    let perm = r.permission.as_deref().unwrap_or_default();
    let Some((resource, action)) = perm.split_once(':') else {
        problem(p, &at("permission"), "a permission is written `resource:action`, like `projects:read`");
        return None;
    };
    match matrix.min_level(resource, action) {
        Ok(min_level) => Some(Access::Permission { resource: resource.into(), action: action.into(), min_level }),
        Err(UnknownPermission::Resource) => {
            problem(
                p,
                &at("permission"),
                format!("unknown resource `{resource}` (not under `permissions`){}", did_you_mean(resource, matrix.resources())),
            );
            None
        }
        Err(UnknownPermission::Action) => {
            problem(
                p,
                &at("permission"),
                format!("no role is granted `{action}` on `{resource}`{}", did_you_mean(action, matrix.actions(resource))),
            );
            None
        }
    }
}
