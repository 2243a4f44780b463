//! Lowers the raw serde model into a validated [`Config`], collecting every problem.

use http::Method;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::raw::{
    RawAudit, RawChain, RawCors, RawFileUser, RawGrants, RawHealth, RawLockout, RawLogging, RawMetrics, RawPasswords, RawProvider,
    RawRateLimits, RawRoles, RawRoute, RawServer, RawSessions, RawStore, RawTokens, RawUpstream, RawUsers, RawUsersFile,
};
use super::security;
use super::{
    did_you_mean, lenient, Config, Diagnostic, LoggingSettings, Problem, Secret, ServerSettings, StoreSettings, TokenSettings, Upstream,
    UserSettings, Where,
};
use crate::auth::passwords::{is_argon2_hash, PasswordSettings};
use crate::auth::sessions::{OutageMode, RoleChange, SessionSettings};
use crate::auth::users::FileUser;
use crate::policy::roles::UnknownPermission;
use crate::policy::routes::parse_pattern;
use crate::policy::{Access, PermissionMatrix, Policy, Roles, Route, RouteTable, Target};
use crate::ratelimit::Limit;

pub(crate) const SECTIONS: [&str; 19] = [
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
const MIN_SECRET_BYTES: usize = 32;

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
    let server = raw.server.as_ref().map(|s| lower_server(s, source, &mut p));
    let store = raw.store.as_ref().map(|s| lower_store(s, env, &mut p));
    let tokens = raw.tokens.as_ref().map(|t| lower_tokens(t, env, &mut p));
    let roles = lower_roles(raw.roles.as_ref(), &mut p);
    let matrix = lower_permissions(&raw.permissions, &roles, &mut p);
    let upstreams = lower_upstreams(&raw.upstreams, &mut p);
    let upstream_names: Vec<&str> = raw.upstreams.keys().map(String::as_str).collect();
    let route_limits: HashMap<String, Limit> = raw
        .rate_limits
        .as_ref()
        .map(|r| {
            r.routes
                .iter()
                .filter_map(|(name, l)| security::limit(l, &format!("rate_limits.routes.{name}"), &mut p).map(|l| (name.clone(), l)))
                .collect()
        })
        .unwrap_or_default();
    let providers = super::providers::providers(&raw.providers, env, &mut p);
    let provider_names: Vec<&str> = raw.providers.keys().map(String::as_str).collect();
    let chains = super::providers::chains(&raw.chains, &provider_names, &mut p);
    let chain_names: Vec<&str> = chains.iter().map(|c| c.name.as_str()).collect();
    let health = super::providers::health(raw.health.as_ref().unwrap_or(&RawHealth::default()), &mut p);
    let routes = lower_routes(&raw.routes, &roles, &matrix, &upstream_names, &chain_names, &route_limits, &mut p);
    let users = raw.users.as_ref().map(|u| lower_users(u, source, &roles, &mut p, other_files));
    let sessions = raw.sessions.as_ref().map(|s| lower_sessions(s, &mut p));
    let passwords = raw.passwords.as_ref().map(|s| lower_passwords(s, &mut p));
    let logging = raw.logging.as_ref().map(|l| lower_logging(l, &mut p));
    let rate_limits = raw.rate_limits.as_ref().map(|r| security::rate_limits(r, &mut p)).unwrap_or_default();
    let lockout = raw.lockout.as_ref().and_then(|l| security::lockout(l, &mut p));
    let store_redis = match &store {
        Some(Some(StoreSettings::Redis { url, .. })) => Some(url.clone()),
        _ => None,
    };
    let audit = raw.audit.as_ref().and_then(|a| security::audit(a, store_redis.as_deref(), source, &mut p));
    let cors = raw.cors.as_ref().and_then(|c| security::cors(c, &mut p));
    let metrics_enabled = raw.metrics.as_ref().map(|m| m.enabled);
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
            policy: Policy { roles, routes: RouteTable::new(routes) },
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

fn value_problem(p: &mut Vec<Problem>, path: &str, message: impl Into<String>) {
    p.push(Problem::new(Where::Value(path.into()), message));
}

fn lower_server(s: &RawServer, source: &Path, p: &mut Vec<Problem>) -> Option<ServerSettings> {
    let addr = |path: &str, text: &str, p: &mut Vec<Problem>| -> Option<SocketAddr> {
        let parsed = text.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            value_problem(p, path, "expected an IP address and port, like 127.0.0.1:8080");
        }
        parsed
    };
    let listen = addr("server.listen", &s.listen, p);
    let admin_listen = addr("server.admin_listen", &s.admin_listen, p);
    if listen.is_some() && listen == admin_listen {
        value_problem(p, "server.admin_listen", "the admin listener must not share the proxy listener's address");
    }
    if !(1..=1024).contains(&s.threads) {
        value_problem(p, "server.threads", "threads must be between 1 and 1024");
    }
    if s.upstream_keepalive_pool_size == 0 {
        value_problem(p, "server.upstream_keepalive_pool_size", "the pool size must be at least 1");
    }
    if s.max_header_bytes < 1024 || s.max_header_count < 8 {
        value_problem(p, "server", "`max_header_bytes` must be at least 1024 and `max_header_count` at least 8");
    }
    let trusted_proxies = security::trusted_proxies(&s.trusted_proxies, p);
    let tls = match &s.tls {
        Some(t) => Some(security::tls(t, source, p)?),
        None => None,
    };
    Some(ServerSettings {
        listen: listen?,
        admin_listen: admin_listen?,
        threads: s.threads,
        grace_period_seconds: s.grace_period_seconds,
        graceful_shutdown_timeout_seconds: s.graceful_shutdown_timeout_seconds,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        trusted_proxies,
        max_header_bytes: s.max_header_bytes,
        max_header_count: s.max_header_count,
        tls,
    })
}

fn lower_store(s: &RawStore, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<StoreSettings> {
    match s.backend.as_str() {
        "memory" => Some(StoreSettings::Memory),
        "redis" => {
            let (url, place) = match env("REDIS_URL") {
                Some(url) => (url, "environment variable `REDIS_URL`"),
                None => match &s.redis_url {
                    Some(url) => (url.clone(), "`redis_url`"),
                    None => {
                        value_problem(p, "store", "the redis backend needs `redis_url` (or the environment variable `REDIS_URL`)");
                        return None;
                    }
                },
            };
            // The URL may carry a password: never repeat it.
            if redis::Client::open(url.as_str()).is_err() {
                value_problem(
                    p,
                    "store.redis_url",
                    format!("{place} is not a valid Redis URL (redis://host:port/db or redis+unix:///path)"),
                );
                return None;
            }
            Some(StoreSettings::Redis { url, key_prefix: s.key_prefix.clone() })
        }
        other => {
            value_problem(
                p,
                "store.backend",
                format!("unknown store backend `{other}`: use `memory` or `redis`{}", did_you_mean(other, ["memory", "redis"])),
            );
            None
        }
    }
}

fn env_number(env: &dyn Fn(&str) -> Option<String>, var: &str, path: &str, p: &mut Vec<Problem>) -> Option<u64> {
    let text = env(var)?;
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            value_problem(p, path, format!("environment variable `{var}` must be a whole number greater than 0"));
            None
        }
    }
}

/// The largest `tokens.verify_cache_size` accepted (about 1 GiB of tokens at worst).
const MAX_VERIFY_CACHE: usize = 1_000_000;

fn lower_tokens(t: &RawTokens, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<TokenSettings> {
    let algorithm = match t.algorithm.as_str() {
        "HS256" => Some(jsonwebtoken::Algorithm::HS256),
        "HS384" => Some(jsonwebtoken::Algorithm::HS384),
        "HS512" => Some(jsonwebtoken::Algorithm::HS512),
        other => {
            value_problem(
                p,
                "tokens.algorithm",
                format!("unsupported algorithm `{other}`: use HS256, HS384 or HS512{}", did_you_mean(other, ["HS256", "HS384", "HS512"])),
            );
            None
        }
    };
    let secret = match env(&t.secret_env) {
        None => {
            value_problem(
                p,
                "tokens.secret_env",
                format!(
                    "environment variable `{}` is not set: it must hold the token signing secret (at least {MIN_SECRET_BYTES} bytes)",
                    t.secret_env
                ),
            );
            None
        }
        Some(s) if s.len() < MIN_SECRET_BYTES => {
            value_problem(
                p,
                "tokens.secret_env",
                format!("the secret in environment variable `{}` is shorter than {MIN_SECRET_BYTES} bytes", t.secret_env),
            );
            None
        }
        Some(s) => Some(Secret::new(s.into_bytes())),
    };
    let access_minutes = env_number(env, "ACCESS_TOKEN_EXPIRE_MINUTES", "tokens.access_ttl_minutes", p).unwrap_or(t.access_ttl_minutes);
    let refresh_days = env_number(env, "REFRESH_TOKEN_EXPIRE_DAYS", "tokens.refresh_ttl_days", p).unwrap_or(t.refresh_ttl_days);
    if access_minutes == 0 {
        value_problem(p, "tokens.access_ttl_minutes", "the access token lifetime must be at least 1 minute");
    }
    if t.verify_cache_size > MAX_VERIFY_CACHE {
        // Each entry holds a token of up to 1 KiB: bound the memory an operator's typo can take.
        value_problem(
            p,
            "tokens.verify_cache_size",
            format!("at most {MAX_VERIFY_CACHE} verified tokens can be cached (0 turns the cache off)"),
        );
    }
    if refresh_days == 0 {
        value_problem(p, "tokens.refresh_ttl_days", "the refresh token lifetime must be at least 1 day");
    }
    Some(TokenSettings {
        secret: secret?,
        algorithm: algorithm?,
        access_ttl: Duration::from_secs(access_minutes.checked_mul(60)?),
        refresh_ttl: Duration::from_secs(refresh_days.checked_mul(86_400)?),
        leeway_seconds: t.leeway_seconds,
        issuer: t.issuer.clone(),
        audience: t.audience.clone(),
        verify_cache_size: t.verify_cache_size,
    })
}

fn lower_roles(raw: Option<&RawRoles>, p: &mut Vec<Problem>) -> Roles {
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
                    value_problem(p, &path, "a role level is a whole number from 0 up");
                    continue;
                }
            },
        };
        if let Some(other) = seen.insert(level, name.clone()) {
            value_problem(p, &path, format!("roles `{other}` and `{name}` have the same level {level}: levels must be distinct"));
        }
        levels.push((name.clone(), level));
    }
    Roles::new(levels)
}

fn lower_permissions(raw: &BTreeMap<String, RawGrants>, roles: &Roles, p: &mut Vec<Problem>) -> PermissionMatrix {
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
                    value_problem(p, &format!("{path}[{i}]"), "an action must be non-empty, without ':' or spaces");
                }
            }
            by_role.insert(role.clone(), actions.clone().unwrap_or_default());
        }
    }
    PermissionMatrix::new(&matrix, roles)
}

fn lower_upstreams(raw: &BTreeMap<String, Option<RawUpstream>>, p: &mut Vec<Problem>) -> Vec<Option<Upstream>> {
    raw.iter().map(|(name, up)| up.as_ref().and_then(|u| lower_upstream(name, u, p))).collect()
}

/// A parsed `http(s)://host[:port]` target.
pub(super) struct UrlTarget {
    pub address: SocketAddr,
    pub tls: bool,
    pub host: String,
    pub host_header: String,
}

/// Parses and resolves an upstream or provider URL (no path, no credentials); problems at `path`.
pub(super) fn parse_url(url: &str, path: &str, p: &mut Vec<Problem>) -> Option<UrlTarget> {
    let bad = |p: &mut Vec<Problem>, why: &str| {
        value_problem(p, path, why);
        None
    };
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad(p, "not a valid URL: expected http://host:port or https://host:port");
    };
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return bad(p, "the URL scheme must be http or https"),
    };
    let Some(authority) = uri.authority() else {
        return bad(p, "the URL has no host");
    };
    if authority.as_str().contains('@') {
        return bad(p, "credentials in a URL are not supported");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return bad(p, "the URL must not have a path or query: routes keep the request's path");
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => match (host.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(a) => a,
            None => return bad(p, &format!("cannot resolve host `{host}`")),
        },
    };
    let host_header = if authority.port_u16().is_some() { authority.as_str().to_string() } else { host.clone() };
    Some(UrlTarget { address, tls, host, host_header })
}

fn lower_upstream(name: &str, u: &RawUpstream, p: &mut Vec<Problem>) -> Option<Upstream> {
    let UrlTarget { address, tls, host, host_header } = parse_url(&u.url, &format!("upstreams.{name}.url"), p)?;
    for (key, v) in [
        ("connect_timeout_ms", u.connect_timeout_ms),
        ("read_timeout_ms", u.read_timeout_ms),
        ("write_timeout_ms", u.write_timeout_ms),
        ("idle_timeout_seconds", u.idle_timeout_seconds),
    ] {
        if v == 0 {
            value_problem(p, &format!("upstreams.{name}.{key}"), "a timeout must be greater than 0");
        }
    }
    Some(Upstream {
        name: name.to_string(),
        address,
        tls,
        sni: u.sni.clone().unwrap_or_else(|| host.clone()),
        host,
        verify_cert: u.tls_verify,
        connect_timeout: Duration::from_millis(u.connect_timeout_ms),
        read_timeout: Duration::from_millis(u.read_timeout_ms),
        write_timeout: Duration::from_millis(u.write_timeout_ms),
        idle_timeout: Duration::from_secs(u.idle_timeout_seconds),
        forward_authorization: u.forward_authorization,
        rewrite_host: u.rewrite_host.then_some(host_header),
        security_headers: u.security_headers,
    })
}

type RouteEntry = (Vec<crate::policy::routes::Segment>, Option<Vec<Method>>, Route);

fn lower_routes(
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
            value_problem(p, &at("name"), "a route name must not be empty");
        } else if let Some(j) = names.insert(&r.name, i) {
            value_problem(p, &at("name"), format!("route name `{}` is already used by routes[{j}]", r.name));
        }
        let segments = parse_pattern(&r.path).map_err(|e| value_problem(p, &at("path"), e)).ok();
        let methods = r.methods.as_ref().map(|list| {
            if list.is_empty() {
                value_problem(p, &at("methods"), "an empty method list matches nothing: omit `methods` to allow all");
            }
            list.iter()
                .enumerate()
                .filter_map(|(j, m)| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        value_problem(p, &format!("routes[{i}].methods[{j}]"), "not an HTTP method");
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
                    value_problem(p, &at("upstream"), format!("unknown upstream `{u}`{}", did_you_mean(u, upstreams.iter().copied())));
                    None
                }
            },
            (None, Some(c)) => match chains.iter().position(|n| n == c) {
                Some(idx) => Some(Target::Chain(idx)),
                None => {
                    value_problem(p, &at("chain"), format!("unknown provider chain `{c}`{}", did_you_mean(c, chains.iter().copied())));
                    None
                }
            },
        };
        let rate_limit = match &r.rate_limit {
            None => None,
            Some(name) => match limits.get(name) {
                Some(l) => Some((name.clone(), *l)),
                None => {
                    value_problem(
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
            out.push((segments, methods, Route { name: r.name.clone(), pattern: r.path.clone(), access, target, rate_limit }));
        }
    }
    out
}

fn lower_access(
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
        value_problem(p, &place, "a route must say exactly one of `public: true`, `require_role` or `permission`");
        return None;
    }
    if public {
        return Some(Access::Public);
    }
    if let Some(role) = &r.require_role {
        return match roles.level(role) {
            Some(min_level) => Some(Access::Role { role: role.clone(), min_level }),
            None => {
                value_problem(p, &at("require_role"), format!("unknown role `{role}`{}", did_you_mean(role, roles.names())));
                None
            }
        };
    }
    let perm = r.permission.as_deref().unwrap_or_default();
    let Some((resource, action)) = perm.split_once(':') else {
        value_problem(p, &at("permission"), "a permission is written `resource:action`, like `projects:read`");
        return None;
    };
    match matrix.min_level(resource, action) {
        Ok(min_level) => Some(Access::Permission { resource: resource.into(), action: action.into(), min_level }),
        Err(UnknownPermission::Resource) => {
            value_problem(
                p,
                &at("permission"),
                format!("unknown resource `{resource}` (not under `permissions`){}", did_you_mean(resource, matrix.resources())),
            );
            None
        }
        Err(UnknownPermission::Action) => {
            value_problem(
                p,
                &at("permission"),
                format!("no role is granted `{action}` on `{resource}`{}", did_you_mean(action, matrix.actions(resource))),
            );
            None
        }
    }
}

fn lower_users(
    u: &RawUsers,
    source: &Path,
    roles: &Roles,
    p: &mut Vec<Problem>,
    other_files: &mut Vec<Diagnostic>,
) -> Option<UserSettings> {
    if roles.level(&u.admin_role).is_none() && roles.names().next().is_some() {
        value_problem(p, "users.admin_role", format!("unknown role `{}`{}", u.admin_role, did_you_mean(&u.admin_role, roles.names())));
    }
    let file_users = match &u.file {
        None => Vec::new(),
        Some(file) => {
            let path = source.parent().unwrap_or(Path::new(".")).join(file);
            match load_users_file(&path, roles) {
                Ok(users) => users,
                Err(mut diagnostics) => {
                    if diagnostics.is_empty() {
                        value_problem(p, "users.file", "cannot read the users file");
                    }
                    other_files.append(&mut diagnostics);
                    Vec::new()
                }
            }
        }
    };
    Some(UserSettings { file_users, admin_role: u.admin_role.clone() })
}

/// Reads and checks the users file; problems are located in that file.
fn load_users_file(path: &Path, roles: &Roles) -> Result<Vec<FileUser>, Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            path: String::new(),
            message: format!("cannot read the users file: {e}"),
        }]
    })?;
    let value = super::parse_yaml(&text, path).map_err(|d| vec![d])?;
    let mut p = Vec::new();
    let file: Option<RawUsersFile> = if value.is_null() { Some(RawUsersFile::default()) } else { lenient::deserialize(value, "", &mut p) };
    let mut users: Vec<FileUser> = Vec::new();
    for (i, entry) in file.map(|f| f.users).unwrap_or_default().into_iter().enumerate() {
        let at = format!("users[{i}]");
        let Some(u) = lenient::deserialize::<RawFileUser>(entry, &at, &mut p) else { continue };
        if roles.level(&u.role).is_none() {
            value_problem(&mut p, &format!("{at}.role"), format!("unknown role `{}`{}", u.role, did_you_mean(&u.role, roles.names())));
        }
        if !is_argon2_hash(&u.password_hash) {
            // Never repeat the hash.
            value_problem(&mut p, &format!("{at}.password_hash"), "not an argon2 PHC string (make one with `portcullis hash-password`)");
        }
        if !u.email.contains('@') {
            value_problem(&mut p, &format!("{at}.email"), "not an email address");
        }
        if users.iter().any(|o| o.id == u.id) {
            value_problem(&mut p, &format!("{at}.id"), format!("user id `{}` appears twice", u.id));
        }
        if users.iter().any(|o| o.email.eq_ignore_ascii_case(&u.email)) {
            value_problem(&mut p, &format!("{at}.email"), "this email appears twice");
        }
        users.push(FileUser { id: u.id, email: u.email, role: u.role, password_hash: u.password_hash });
    }
    if p.is_empty() {
        Ok(users)
    } else {
        Err(super::locate(&text, path, p))
    }
}

fn lower_sessions(s: &RawSessions, p: &mut Vec<Problem>) -> Option<SessionSettings> {
    let on_store_outage = match s.on_store_outage.as_str() {
        "serve_cached" => Some(OutageMode::ServeCached),
        "deny" => Some(OutageMode::Deny),
        other => {
            value_problem(p, "sessions.on_store_outage", format!("unknown mode `{other}`: use `serve_cached` or `deny`"));
            None
        }
    };
    let on_role_change = match s.on_role_change.as_str() {
        "refresh" => Some(RoleChange::Refresh),
        "revoke" => Some(RoleChange::Revoke),
        other => {
            value_problem(p, "sessions.on_role_change", format!("unknown mode `{other}`: use `refresh` or `revoke`"));
            None
        }
    };
    for (key, v) in [
        ("idle_timeout_minutes", s.idle_timeout_minutes),
        ("absolute_timeout_hours", s.absolute_timeout_hours),
        ("activity_flush_seconds", s.activity_flush_seconds),
    ] {
        if v == 0 {
            value_problem(p, &format!("sessions.{key}"), "must be greater than 0");
        }
    }
    let flush = Duration::from_secs(s.activity_flush_seconds.max(1));
    Some(SessionSettings {
        idle_timeout: Duration::from_secs(s.idle_timeout_minutes.checked_mul(60)?),
        absolute_timeout: Duration::from_secs(s.absolute_timeout_hours.checked_mul(3600)?),
        on_store_outage: on_store_outage?,
        on_role_change: on_role_change?,
        activity_flush: flush,
        reconcile_every: flush,
    })
}

fn lower_passwords(s: &RawPasswords, p: &mut Vec<Problem>) -> Option<PasswordSettings> {
    if argon2::Params::new(s.memory_kib, s.iterations, s.parallelism, None).is_err() {
        value_problem(p, "passwords", "invalid argon2 parameters (memory_kib >= 8 x parallelism, iterations >= 1, parallelism >= 1)");
    }
    if s.min_length < 8 {
        value_problem(p, "passwords.min_length", "must be at least 8");
    }
    if s.max_concurrent == 0 {
        value_problem(p, "passwords.max_concurrent", "must be at least 1");
    }
    Some(PasswordSettings {
        memory_kib: s.memory_kib,
        iterations: s.iterations,
        parallelism: s.parallelism,
        min_length: s.min_length,
        max_concurrent: s.max_concurrent,
        max_queue: s.max_queue,
    })
}

fn lower_logging(l: &RawLogging, p: &mut Vec<Problem>) -> Option<LoggingSettings> {
    let json = match l.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            value_problem(p, "logging.format", format!("unknown format `{other}`: use `text` or `json`"));
            return None;
        }
    };
    if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
        value_problem(p, "logging.level", "not a log level or filter (e.g. `info`, `warn`, `portcullis=debug,info`)");
        return None;
    }
    Some(LoggingSettings { json, level: l.level.clone() })
}
