//! Lowers the raw serde model into a validated [`Config`], collecting every problem.

use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::audit::RawAudit;
use super::cors::RawCors;
use super::credentials::{RawApiKeys, RawClientCerts};
use super::identity::RawIdentityProvider;
use super::limits::{RawLockout, RawRateLimits};
use super::logging::{RawLogging, RawMetrics};
use super::passwords::RawPasswords;
use super::providers::{RawChain, RawHealth, RawLlmLimits, RawPrice, RawProvider};
use super::roles::{RawGrants, RawRoles};
use super::routes::RawRoute;
use super::server::RawServer;
use super::sessions::RawSessions;
use super::store::RawStore;
use super::tokens::RawTokens;
use super::upstreams::RawUpstream;
use super::users::RawUsers;
use super::{
    audit, cors, credentials, identity, limits, logging, passwords, providers, roles, routes, server, sessions, store, tokens, upstreams,
    users,
};
use super::{did_you_mean, lenient, problem, Config, Diagnostic, Problem, Where};
use crate::limits::Limit;
use crate::policy::{Policy, RouteTable};
use crate::store::StoreSettings;

pub(crate) const SECTIONS: [&str; 24] = [
    "api_keys",
    "llm_limits",
    "models_pricing",
    "identity_providers",
    "client_certs",
    "providers",
    "provider_chains",
    "health",
    "server",
    "store",
    "tokens",
    "roles",
    "permissions",
    "upstreams",
    "routes",
    "users",
    "sessions",
    "passwords",
    "metrics",
    "logging",
    "rate_limits",
    "lockout",
    "audit",
    "cors",
];

#[derive(Default)]
struct Raw {
    server: Option<RawServer>,
    store: Option<RawStore>,
    tokens: Option<RawTokens>,
    roles: Option<RawRoles>,
    permissions: BTreeMap<String, RawGrants>,
    upstreams: BTreeMap<String, Option<RawUpstream>>,
    routes: Vec<Option<RawRoute>>,
    users: Option<RawUsers>,
    sessions: Option<RawSessions>,
    passwords: Option<RawPasswords>,
    metrics: Option<RawMetrics>,
    logging: Option<RawLogging>,
    rate_limits: Option<RawRateLimits>,
    lockout: Option<RawLockout>,
    audit: Option<RawAudit>,
    cors: Option<RawCors>,
    providers: BTreeMap<String, RawProvider>,
    chains: BTreeMap<String, RawChain>,
    health: Option<RawHealth>,
    llm_limits: Option<RawLlmLimits>,
    models_pricing: BTreeMap<String, RawPrice>,
    api_keys: Option<RawApiKeys>,
    client_certs: Option<RawClientCerts>,
    identity_providers: BTreeMap<String, RawIdentityProvider>,
}

/// Checks everything and builds the config, or returns every problem found.
pub fn validate(
    value: Value,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    other_files: &mut Vec<Diagnostic>,
) -> Result<Config, Vec<Problem>> {
    let mut p = Vec::new();
    let raw = split_sections(value, &mut p);
    let server = raw.server.as_ref().map(|s| server::lower_server(s, source, &mut p));
    let store = raw.store.as_ref().map(|s| store::lower_store(s, env, &mut p));
    let tokens = raw.tokens.as_ref().map(|t| tokens::lower_tokens(t, source, env, &mut p));
    let roles = roles::lower_roles(raw.roles.as_ref(), &mut p);
    let matrix = roles::lower_permissions(&raw.permissions, &roles, &mut p);
    let upstreams = upstreams::lower_upstreams(&raw.upstreams, &mut p);
    let upstream_names: Vec<&str> = raw.upstreams.keys().map(String::as_str).collect();
    let route_limits: HashMap<String, Limit> = raw
        .rate_limits
        .as_ref()
        .map(|r| {
            r.routes
                .iter()
                .filter_map(|(name, l)| limits::limit(l, &format!("rate_limits.routes.{name}"), &mut p).map(|l| (name.clone(), l)))
                .collect()
        })
        .unwrap_or_default();
    let providers = providers::providers(&raw.providers, env, &mut p);
    let provider_names: Vec<&str> = raw.providers.keys().map(String::as_str).collect();
    let chains = providers::chains(&raw.chains, &provider_names, &mut p);
    let chain_names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
    let health = providers::health(raw.health.as_ref().unwrap_or(&RawHealth::default()), &mut p);
    let routes = routes::lower_routes(&raw.routes, &roles, &matrix, &upstream_names, &chain_names, &route_limits, &mut p);
    let users = raw.users.as_ref().map(|u| users::lower_users(u, source, &roles, &mut p, other_files));
    let sessions = raw.sessions.as_ref().map(|s| sessions::lower_sessions(s, &mut p));
    let passwords = raw.passwords.as_ref().map(|s| passwords::lower_passwords(s, &mut p));
    let logging = raw.logging.as_ref().map(|l| logging::lower_logging(l, &mut p));
    let rate_limits = raw.rate_limits.as_ref().map(|r| limits::rate_limits(r, &mut p)).unwrap_or_default();
    let lockout = raw.lockout.as_ref().and_then(|l| limits::lockout(l, &mut p));
    let store_redis = match &store {
        Some(Some(StoreSettings::Redis { redis, .. })) => Some(redis.clone()),
        _ => None,
    };
    let audit = raw.audit.as_ref().and_then(|a| audit::lower_audit(a, store_redis.as_ref(), source, &mut p));
    let cors = raw.cors.as_ref().and_then(|c| cors::lower_cors(c, &mut p));
    let metrics_enabled = raw.metrics.as_ref().map(|m| m.enabled);
    let asymmetric = raw.tokens.as_ref().is_some_and(|t| matches!(t.algorithm.as_str(), "ES256" | "EdDSA"));
    for (name, up) in &raw.upstreams {
        if up.as_ref().is_some_and(|u| u.identity_assertion) && !asymmetric {
            problem(
                &mut p,
                &format!("upstreams.{name}.identity_assertion"),
                "an identity assertion is signed with the gateway's asymmetric key: set `tokens.algorithm` to ES256 or EdDSA with a key ring",
            );
        }
    }
    let api_keys = raw.api_keys.as_ref().map(|k| credentials::lower_api_keys(k, env, &mut p));
    let identity_providers = identity::lower_identity_providers(&raw.identity_providers, &roles, &mut p);
    let model_access = matrix.resources().any(|r| r == "models").then(|| {
        crate::providers::models::ModelAccess::new(
            matrix.actions("models").map(|a| (a.to_string(), matrix.min_level("models", a).ok().flatten())).collect::<Vec<_>>(),
        )
    });
    let llm = providers::llm(raw.llm_limits.as_ref(), &raw.models_pricing, &roles, model_access, &providers, &mut p);
    let client_certs = raw.client_certs.as_ref().map(|c| credentials::lower_client_certs(c, &roles, &mut p)).unwrap_or_default();
    let client_auth = matches!(&server, Some(Some(s)) if s.tls.as_ref().is_some_and(|t| t.client_auth.is_some()));
    if !client_auth && raw.client_certs.as_ref().is_some_and(|c| !c.map.is_empty()) {
        problem(&mut p, "client_certs", "client certificates are only verified with `server.tls.client_auth`");
    }
    if !client_auth {
        for (i, r) in raw.routes.iter().enumerate() {
            if r.as_ref().is_some_and(|r| r.require_client_cert) {
                problem(
                    &mut p,
                    &format!("routes[{i}].require_client_cert"),
                    "client certificates are only verified with `server.tls.client_auth`",
                );
            }
        }
    }
    let clean = p.is_empty() && other_files.is_empty();
    let sections = (server, store, tokens, users, sessions, passwords);
    match (sections, logging, metrics_enabled, audit, clean) {
        (
            (Some(Some(server)), Some(Some(store)), Some(Some(tokens)), Some(Some(users)), Some(Some(sessions)), Some(Some(passwords))),
            Some(Some(logging)),
            Some(metrics_enabled),
            Some(audit),
            true,
        ) => Ok(Config {
            source: source.to_path_buf(),
            server,
            store,
            tokens,
            policy: Policy::new(roles, RouteTable::new(routes), &users.admin_role),
            upstreams: upstreams.into_iter().flatten().collect(),
            users,
            sessions,
            passwords,
            metrics_enabled,
            logging,
            rate_limits,
            lockout,
            audit,
            cors,
            providers: providers.into_iter().flatten().collect(),
            chains,
            health,
            api_keys: api_keys.flatten(),
            client_certs,
            named_limits: route_limits,
            identity_providers,
            llm,
        }),
        _ => Err(p),
    }
}

fn split_sections(value: Value, p: &mut Vec<Problem>) -> Raw {
    // Absent sections take their defaults; a section that fails to parse becomes None.
    let mut raw = Raw {
        server: Some(RawServer::default()),
        store: Some(RawStore::default()),
        tokens: Some(RawTokens::default()),
        users: Some(RawUsers::default()),
        sessions: Some(RawSessions::default()),
        passwords: Some(RawPasswords::default()),
        metrics: Some(RawMetrics::default()),
        logging: Some(RawLogging::default()),
        rate_limits: Some(RawRateLimits::default()),
        audit: Some(RawAudit::default()),
        ..Raw::default()
    };
    let root = match value {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => {
            p.push(Problem::new(Where::Value(String::new()), "the config must be a mapping of sections (server, tokens, roles, ...)"));
            return raw;
        }
    };
    for (k, v) in root {
        let Some(key) = k.as_str().map(str::to_string) else {
            p.push(Problem::new(Where::Value(String::new()), "section names must be strings"));
            continue;
        };
        match key.as_str() {
            "server" => raw.server = section(v, "server", p),
            "store" => raw.store = section(v, "store", p),
            "tokens" => raw.tokens = section(v, "tokens", p),
            "users" => raw.users = section(v, "users", p),
            "sessions" => raw.sessions = section(v, "sessions", p),
            "passwords" => raw.passwords = section(v, "passwords", p),
            "metrics" => raw.metrics = section(v, "metrics", p),
            "logging" => raw.logging = section(v, "logging", p),
            "rate_limits" => raw.rate_limits = section(v, "rate_limits", p),
            "lockout" => raw.lockout = section(v, "lockout", p),
            "audit" => raw.audit = section(v, "audit", p),
            "cors" => raw.cors = section(v, "cors", p),
            "health" => raw.health = section(v, "health", p),
            "llm_limits" => raw.llm_limits = section(v, "llm_limits", p),
            "models_pricing" => {
                for (name, pv) in entries(v, "models_pricing", p) {
                    if let Some(parsed) = lenient::deserialize(pv, &format!("models_pricing.{name}"), p) {
                        raw.models_pricing.insert(name, parsed);
                    }
                }
            }
            "api_keys" => raw.api_keys = section(v, "api_keys", p),
            "client_certs" => raw.client_certs = section(v, "client_certs", p),
            "identity_providers" => {
                for (name, v) in entries(v, "identity_providers", p) {
                    if let Some(parsed) = lenient::deserialize(v, &format!("identity_providers.{name}"), p) {
                        raw.identity_providers.insert(name, parsed);
                    }
                }
            }
            "providers" => {
                for (name, pv) in entries(v, "providers", p) {
                    if let Some(parsed) = lenient::deserialize(pv, &format!("providers.{name}"), p) {
                        raw.providers.insert(name, parsed);
                    }
                }
            }
            "provider_chains" => {
                for (name, c) in entries(v, "provider_chains", p) {
                    if let Some(parsed) = lenient::deserialize(c, &format!("provider_chains.{name}"), p) {
                        raw.chains.insert(name, parsed);
                    }
                }
            }
            "roles" => raw.roles = lenient::deserialize(v, "roles", p),
            "permissions" => {
                for (resource, grants) in entries(v, "permissions", p) {
                    let path = format!("permissions.{resource}");
                    let grants = if grants.is_null() { Some(RawGrants::new()) } else { lenient::deserialize(grants, &path, p) };
                    raw.permissions.insert(resource, grants.unwrap_or_default());
                }
            }
            "upstreams" => {
                for (name, up) in entries(v, "upstreams", p) {
                    let parsed = lenient::deserialize(up, &format!("upstreams.{name}"), p);
                    raw.upstreams.insert(name, parsed);
                }
            }
            "routes" => match v {
                Value::Sequence(items) => {
                    raw.routes = items.into_iter().enumerate().map(|(i, r)| lenient::deserialize(r, &format!("routes[{i}]"), p)).collect();
                }
                Value::Null => {}
                _ => p.push(Problem::new(Where::Value("routes".into()), "expected a list of routes")),
            },
            other => p.push(Problem::new(Where::Key(other.into()), format!("unknown key `{other}`{}", did_you_mean(other, SECTIONS)))),
        }
    }
    raw
}

/// A section that may be empty (`server:` with nothing under it takes every default).
fn section<T: serde::de::DeserializeOwned + Default>(v: Value, path: &str, p: &mut Vec<Problem>) -> Option<T> {
    if v.is_null() {
        return Some(T::default());
    }
    lenient::deserialize(v, path, p)
}

/// The string-keyed entries of a mapping section.
fn entries(v: Value, path: &str, p: &mut Vec<Problem>) -> Vec<(String, Value)> {
    match v {
        Value::Mapping(m) => m
            .into_iter()
            .filter_map(|(k, v)| match k.as_str() {
                Some(s) => Some((s.to_string(), v)),
                None => {
                    p.push(Problem::new(Where::Value(path.into()), "keys must be strings"));
                    None
                }
            })
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            p.push(Problem::new(Where::Value(path.into()), "expected a mapping"));
            Vec::new()
        }
    }
}
